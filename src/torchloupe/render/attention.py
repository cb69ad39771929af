"""Pictures of attention: a layers × heads grid, rollout maps and patch overlays, and an
interactive token-to-token view (self-contained HTML, inline JS, every token escaped)."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..attention import as_heads
from .plain import figure_class
from ..errors import InputError, InputShapeError, require

Figure = figure_class()  # strings drawn without mathtext

__all__ = ["heads_grid", "matrix_figure", "patch_overlay", "token_view_html", "patch_grid", "read_weights_figure"]



def _labels(tokens: Sequence[str] | None, T: int) -> list[str]:
    if tokens is None:
        return [str(i) for i in range(T)]
    return [str(t) for t in list(tokens)[:T]]


def heads_grid(
    maps: Mapping[str, Tensor],
    sample: int = 0,
    tokens: Sequence[str] | None = None,
    max_tokens: int = 48,
    max_heads: int = 12,
) -> Figure:
    """One image per (layer, head) of sample ``sample``: rows are layers, columns heads.

    Maps of any attention shape (:func:`torchloupe.attention.as_heads`): ``(B, heads, T, S)``,
    ``(B, T, S)`` as one head (``capture(softmax=True)`` of a hand-written attention), ``(B, S)``
    as one row (a memory read). Long inputs are cut to their first ``max_tokens`` queries and keys
    (said in the title).
    """
    layers = [(k, as_heads(v)) for k, v in maps.items() if isinstance(v, Tensor) and v.dim() >= 2]
    if not layers:
        raise InputError("no attention maps to draw: expected (B, heads, T, S), (B, T, S) or (B, S) tensors")
    H = min(max(v.shape[1] for _, v in layers), max_heads)
    L = len(layers)
    cell = 1.35 if H > 4 else 1.9
    # Fixed margins (no tick labels here; row labels and head titles have known sizes): a grid of
    # 72 maps lays out in a fraction of the time constrained layout takes.
    width = 0.5 + cell * H
    title = "attention per layer (rows) and head (columns): query ↓, key →\neach map on its own scale (brightest: its largest weight)"
    if any(v.shape[-1] > max_tokens or v.shape[-2] > max_tokens for _, v in layers):
        title += f"; first {max_tokens} tokens"
    # the title wrapped to the figure's width (about 13 characters an inch at 9 pt): a grid of one
    # head is narrower than the title's two lines
    import textwrap

    title = "\n".join(textwrap.fill(line, max(18, int(width * 13))) for line in title.split("\n"))
    top = 0.5 + 0.16 * (title.count("\n") + 1)
    height = top + 0.12 + cell * L
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(L, H, squeeze=False)
    fig.subplots_adjust(left=0.4 / width, right=1 - 0.1 / width, bottom=0.1 / height, top=1 - top / height,
                        wspace=0.1, hspace=0.1)
    labels = _row_labels([name for name, _ in layers])
    for r, (name, a) in enumerate(layers):
        a = a[sample].detach().float().cpu()
        T, S = a.shape[-2:]
        if T > max_tokens or S > max_tokens:
            a = a[:, :max_tokens, :max_tokens]
        for c in range(H):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= a.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(a[c].numpy(), cmap="viridis", vmin=0.0, vmax=float(a[c].max()) or 1.0, interpolation="nearest")
            if r == 0:
                ax.set_title(f"head {c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(labels[r], fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def _short(name: str, n: int = 22) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1) :]


def _row_labels(names: Sequence[str]) -> list[str]:
    """Layer names without the dotted prefix and suffix they all share ("encoder.layer.3.attention.self" -> "layer 3")."""
    parts = [n.split(".") for n in names]
    if len(parts) < 2:
        return [_short(n) for n in names]
    pre = 0
    while all(len(p) > pre + 1 for p in parts) and len({p[pre] for p in parts}) == 1:
        pre += 1
    suf = 0
    while all(len(p) > pre + suf + 1 for p in parts) and len({p[-1 - suf] for p in parts}) == 1:
        suf += 1
    core = [".".join(p[pre : len(p) - suf]) for p in parts]
    return [f"layer {c}" if c.isdigit() else _short(c) for c in core]


def matrix_figure(
    m: Tensor,
    tokens: Sequence[str] | None = None,
    title: str = "",
    max_tokens: int = 48,
    cmap: str = "magma",
) -> Figure:
    """A single (T, S) matrix (rollout, relevance, a fused layer) with token tick labels."""
    m = m.detach().float().cpu()[:max_tokens, :max_tokens]
    T, S = m.shape
    size = min(7.0, 2.0 + 0.16 * max(T, S))
    fig = Figure(figsize=(size + 0.8, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(m.numpy(), cmap=cmap, interpolation="nearest")
    labels = _labels(tokens, max(T, S))
    if max(T, S) <= 40:
        ax.set_xticks(range(S), labels[:S], rotation=90, fontsize=7)
        ax.set_yticks(range(T), labels[:T], fontsize=7)
    ax.set_xlabel("attended token (key)")
    ax.set_ylabel("token (query)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def patch_grid(T: int) -> tuple[int, int] | None:
    """``(offset, side)`` when ``T`` tokens are ``side²`` image patches, after ``offset`` (0 or 1, a CLS token)."""
    for offset in (1, 0):
        side = math.isqrt(T - offset)
        if side >= 2 and side * side == T - offset:
            return offset, side
    return None


def patch_overlay(images: Tensor, rollout: Tensor, n: int = 4) -> Figure:
    """Rollout of the CLS token (or the mean over tokens) over the image patches of a ViT.

    ``images`` ``(N, 3, H, W)`` in [0, 1]; ``rollout`` ``(N, T, T)`` with ``T = 1 + side²`` or ``side²``.
    """
    grid = patch_grid(rollout.shape[-1])
    if grid is None:
        raise InputShapeError(f"{rollout.shape[-1]} tokens are not image patches (side² or 1 + side²)")
    offset, side = grid
    n = min(n, images.shape[0])
    row = rollout[:n, 0, offset:] if offset else rollout[:n].mean(dim=1)
    heat = row.reshape(n, 1, side, side).float()
    heat = torch.nn.functional.interpolate(heat, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    fig = Figure(figsize=(2.2 * n, 2.4), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, ax in enumerate(axes):
        img = images[i].detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
        h = heat[i].cpu()
        h = (h - h.min()) / (h.max() - h.min() + 1e-12)
        ax.imshow(img)
        ax.imshow(h.numpy(), cmap="jet", alpha=0.45)
        ax.axis("off")
    fig.suptitle("attention rollout over the image patches" + (" (CLS token)" if offset else ""), fontsize=9)
    return fig


def read_weights_figure(weights: Tensor, truth: Tensor | None = None, n: int = 8) -> Figure:
    """Memory read weights ``(B, slots)`` as bars per sample; the true slot outlined."""
    w = weights.detach().float().cpu()[:n]
    n = w.shape[0]
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.4 * cols, 1.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        colors = ["#4c72b0"] * w.shape[1]
        if truth is not None:
            colors[int(truth[i])] = "#dd5522"
        ax.bar(range(w.shape[1]), w[i].numpy(), color=colors)
        ax.set_ylim(0, 1)
        ax.set_xticks(range(w.shape[1]))
        ax.tick_params(labelsize=7)
        ax.set_title(f"sample {i}", fontsize=8)
    fig.suptitle("read weight per memory slot" + (" (orange: the slot holding the answer)" if truth is not None else ""), fontsize=9)
    return fig


_SCRIPT = """
(function () {
  // The view is this script's parent: no id, so views made in different processes never clash.
  var root = document.currentScript.parentElement;
  var data = JSON.parse(root.querySelector("script.tl-data").textContent);
  var toks = root.querySelectorAll(".tl-tok");
  var layerSel = root.querySelector(".tl-layer"), headSel = root.querySelector(".tl-head");
  var current = 0;
  function matrix() {
    var l = +layerSel.value, h = headSel.value;
    return h === "mean" ? data.mean[l] : data.heads[l][+h];
  }
  function show(i) {
    current = i;
    var row = matrix()[i], mx = Math.max.apply(null, row) || 1;
    for (var j = 0; j < toks.length; j++) {
      var v = row[j] / mx;
      toks[j].style.background = "rgba(221, 85, 34, " + v.toFixed(3) + ")";
      toks[j].style.outline = j === i ? "2px solid #222" : "none";
      toks[j].title = "weight " + (row[j] / 1000).toFixed(3);
    }
  }
  for (var i = 0; i < toks.length; i++) {
    toks[i].addEventListener("mouseenter", (function (k) { return function () { show(k); }; })(i));
  }
  layerSel.addEventListener("change", function () { show(current); });
  headSel.addEventListener("change", function () { show(current); });
  show(0);
})();
"""


def token_view_html(
    maps: Mapping[str, Tensor],
    tokens: Sequence[str],
    sample: int = 0,
    max_tokens: int = 64,
    max_values: int = 250_000,
) -> str:
    """Self-contained markup: hover a token to see where it attends; choose layer and head.

    Every token is HTML-escaped; the weights travel as integers 0..1000 in an inline JSON
    block (numbers only). Inputs longer than ``max_tokens`` are cut (said in the view);
    per-head matrices are included only while ``layers·heads·T²`` stays under ``max_values``,
    otherwise only the mean over heads per layer (said in the view).
    """
    layers = [(k, as_heads(v)[sample].detach().float().cpu()) for k, v in maps.items()
              if isinstance(v, Tensor) and v.dim() >= 3 and v.shape[-1] == v.shape[-2]]
    if not layers:
        raise InputError("no self-attention maps (B, heads, T, T) for a token view")
    T = min(layers[0][1].shape[-1], len(tokens), max_tokens)
    notes = []
    if T < layers[0][1].shape[-1]:
        notes.append(f"first {T} of {layers[0][1].shape[-1]} tokens")
    per_head = sum(a.shape[0] for _, a in layers) * T * T <= max_values
    if not per_head:
        notes.append("heads averaged (too many values for a per-head view)")

    def q(m: Tensor) -> list:
        return (m[:T, :T] * 1000).round().int().tolist()

    data = {
        "mean": [q(a.mean(0)) for _, a in layers],
        "heads": [[q(h) for h in a] for _, a in layers] if per_head else [],
    }
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    layer_opts = "".join(f'<option value="{i}">{html.escape(name)}</option>' for i, (name, _) in enumerate(layers))
    n_heads = layers[0][1].shape[0]
    head_opts = '<option value="mean">mean of heads</option>'
    if per_head:
        head_opts += "".join(f'<option value="{h}">head {h}</option>' for h in range(n_heads))
    spans = " ".join(
        f'<span class="tl-tok" style="padding:1px 3px;border-radius:3px;cursor:default;display:inline-block;margin:1px">'
        f"{html.escape(str(t))}</span>"
        for t in list(tokens)[:T]
    )
    note = f'<div style="font-size:smaller;color:#666">{html.escape("; ".join(notes))}</div>' if notes else ""
    return (
        f'<div class="tl-token-view" style="font-family:monospace;line-height:1.9">'
        f'<label>layer <select class="tl-layer">{layer_opts}</select></label> '
        f'<label>head <select class="tl-head">{head_opts}</select></label>'
        f'<div style="font-size:smaller;color:#666">hover a token: the others are shaded by how much it attends to them</div>'
        f"{note}<div>{spans}</div>"
        f'<script type="application/json" class="tl-data">{payload}</script>'
        f"<script>{_SCRIPT}</script></div>"
    )
