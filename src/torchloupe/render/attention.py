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

__all__ = ["maps_figure", "heads_grid", "layer_figures", "layer_picker_html", "palette_png", "matrix_figure", "patch_overlay", "token_view_html",
           "token_view_assets", "patch_grid", "read_weights_figure"]



def _labels(tokens: Sequence[str] | None, T: int, width: int = 14) -> list[str]:
    """Tick labels: the tokens (cut to ``width`` characters), or their indices."""
    if tokens is None:
        return [str(i) for i in range(T)]
    return [t if len(t) <= width else t[: width - 1] + "…" for t in (str(t) for t in list(tokens)[:T])]


def _tick_labels(ax, labels: Sequence[str], T: int, S: int, tile_px: float, font_pt: float, rows: bool, cols: bool) -> None:
    """Token names as ticks when each fits (one per ``font_pt`` line), else every k-th index."""
    line_px = font_pt * 100 / 72
    for n, axis, show in ((S, "x", cols), (T, "y", rows)):
        setter = ax.set_xticks if axis == "x" else ax.set_yticks
        if not show:
            setter([])
            continue
        step = max(1, math.ceil(n * line_px / max(tile_px, 1.0)))
        idx = list(range(0, n, step))
        names = [labels[i] if i < len(labels) else str(i) for i in idx] if step == 1 else [str(i) for i in idx]
        if axis == "x":
            setter(idx, names, rotation=90, fontsize=font_pt)
        else:
            setter(idx, names, fontsize=font_pt)
    ax.tick_params(length=2, pad=1)


def heads_grid(
    maps: Mapping[str, Tensor],
    sample: int = 0,
    tokens: Sequence[str] | None = None,
    max_tokens: int = 48,
    max_heads: int = 12,
    width: float = 9.5,
    vmax: float | None = None,
    columns: int | None = None,
) -> Figure:
    """One image per (layer, head) of sample ``sample``, all on one colour scale with its bar.

    Rows are layers and columns heads; a single layer wraps its heads into rows of ``columns``
    (default 4). Maps of any attention shape (:func:`torchloupe.attention.as_heads`):
    ``(B, heads, T, S)``, ``(B, T, S)`` as one head, ``(B, S)`` as one row (a memory read). Long
    inputs are cut to their first ``max_tokens`` queries and keys (said in the title). Token
    names label the axes where they fit at 8 pt; the figure is ``width`` inches wide and meant to
    be shown at 100 px an inch (text at least 11 px). ``vmax``: the top of the scale (default:
    the largest weight drawn), so several figures can share one scale.
    """
    layers = [(k, as_heads(v)) for k, v in maps.items() if isinstance(v, Tensor) and v.dim() >= 2]
    if not layers:
        raise InputError("no attention maps to draw: expected (B, heads, T, S), (B, T, S) or (B, S) tensors")
    cut = any(v.shape[-1] > max_tokens or v.shape[-2] > max_tokens for _, v in layers)
    mats = []
    for name, a in layers:
        a = a[sample].detach().float().cpu()[:max_heads, :max_tokens, :max_tokens]
        mats.append((name, a))
    H = max(a.shape[0] for _, a in mats)
    top = vmax if vmax is not None else max(float(a.max()) for _, a in mats) or 1.0
    single = len(mats) == 1
    cols = min(H, columns or 4) if single else H
    nrows = math.ceil(H / cols) if single else len(mats)
    font = 8.0
    left, right, bottom_extra = 1.0, 0.9, 0.0
    labels = _labels(tokens, max(max(a.shape[-1], a.shape[-2]) for _, a in mats))
    tile = min(2.6, (width - left - right) / cols - 0.12)
    T_max = max(a.shape[-2] for _, a in mats)
    S_max = max(a.shape[-1] for _, a in mats)
    named = tokens is not None and max(T_max, S_max) <= 40
    if named and S_max * font * 100 / 72 <= tile * 100:  # the keys' names fit under a tile
        bottom_extra = min(1.2, 0.09 * max(len(t) for t in labels[:S_max]) + 0.1)
    title = ("attention of " + (f"{mats[0][0]}, " if single else "each layer (rows) and head (columns), ")
             + f"sample {sample}: query ↓, key →; one colour scale for all maps, 0 to {top:.2f}")
    if cut:
        title += f"; first {max_tokens} tokens"
    import textwrap

    title = textwrap.fill(title, max(30, int(width * 11)))
    head_h = 0.35 + 0.17 * (title.count("\n") + 1)
    gap = 0.42 if named else 0.3
    height = head_h + nrows * (tile + gap) + 0.15 + bottom_extra
    fig = Figure(figsize=(width, height))
    row_labels = _row_labels([name for name, _ in mats])
    image = None
    for r, (name, a) in enumerate(mats):
        for h in range(H):
            pos = h if single else r * H + h
            rr, cc = divmod(pos, cols)
            x0 = (left + cc * (tile + 0.12)) / width
            y0 = 1 - (head_h + rr * (tile + gap) + tile + 0.15) / height
            ax = fig.add_axes((x0, y0, tile / width, tile / height))
            if h >= a.shape[0]:
                ax.axis("off")
                continue
            image = ax.imshow(a[h].numpy(), cmap="viridis", vmin=0.0, vmax=top, interpolation="nearest", aspect="auto")
            T, S = a.shape[-2:]
            last_row = rr == nrows - 1 or (single and pos + cols >= H)
            if named:
                _tick_labels(ax, labels, T, S, tile * 100, font, rows=cc == 0, cols=last_row)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_title(f"head {h}" if single or r == 0 else "", fontsize=font + 1, pad=2)
            if cc == 0 and not single:
                ax.set_ylabel(row_labels[r], fontsize=font + 1)
    if image is not None:
        cax = fig.add_axes(((width - right + 0.25) / width, 1 - (head_h + min(nrows, 3) * (tile + gap)) / height,
                            0.14 / width, (min(nrows, 3) * (tile + gap) - gap) / height))
        bar = fig.colorbar(image, cax=cax)
        bar.ax.tick_params(labelsize=font)
        bar.set_label("attention weight", fontsize=font)
    fig.suptitle(title, fontsize=font + 1.5, x=left / width, y=1 - 0.12 / height, ha="left", va="top")
    return fig


def _is_read(v: Tensor) -> bool:
    """One query per sample (a memory read over slots): ``(B, S)`` or ``(B, 1, 1, S)``."""
    return v.dim() <= 2 or (v.dim() == 4 and v.shape[1] == 1 and v.shape[2] == 1)


def _sample_tokens(tokens, sample: int) -> list[str] | None:
    if not tokens:
        return None
    if isinstance(tokens[0], str):
        return [str(t) for t in tokens]
    return [str(t) for t in tokens[sample]] if sample < len(tokens) else None


def maps_figure(
    maps: Mapping[str, Tensor],
    tokens: Sequence[str] | Sequence[Sequence[str]] | None = None,
    sample: int = 0,
    max_layers: int = 6,
    max_heads: int = 8,
    max_tokens: int = 32,
    tile: float = 1.25,
) -> Figure:
    """A small overview of captured attention (what :class:`~torchloupe.attention.AttentionMaps` shows in
    a notebook): one row per layer (the first ``max_layers``), its heads side by side (the first
    ``max_heads``, the first ``max_tokens`` queries and keys) for batch row ``sample``, every map on
    one colour scale with its bar; a memory read (one query per sample, ``(B, S)``) as bars over its
    slots. ``tokens`` (one list, or one per sample) label an axis whose length they match, up to 24.
    """
    entries = [(k, v) for k, v in maps.items() if isinstance(v, Tensor) and v.dim() >= 1 and v.numel()]
    if not entries:
        raise InputError("no attention maps to draw: the dict is empty")
    shown = entries[:max_layers]
    rows = []
    for name, v in shown:
        if _is_read(v):
            w = v.detach().float().cpu().reshape(-1, v.shape[-1])
            rows.append((name, "read", w[min(sample, w.shape[0] - 1)]))
        else:
            a = as_heads(v)
            rows.append((name, "map", a[min(sample, a.shape[0] - 1), :max_heads, :max_tokens, :max_tokens].detach().float().cpu()))
    cols = max([m.shape[0] for _, kind, m in rows if kind == "map"] or [1])
    maps_only = [m for _, kind, m in rows if kind == "map"]
    top = max((float(m.max()) for m in maps_only), default=1.0) or 1.0
    toks = _sample_tokens(tokens, sample)
    t = tile if cols <= 4 else max(0.8, 6.0 / cols)
    named = toks is not None and len(toks) <= 24
    label_room = 0.6 if named else 0.25
    fig = Figure(figsize=(1.2 + cols * (t + 0.08) + 0.7, 0.55 + len(rows) * (t + 0.3 + label_room)), layout="constrained")
    grid = fig.add_gridspec(len(rows), cols)
    row_names = _row_labels([name for name, _, _ in rows])
    image, drawn = None, []
    for r, (name, kind, m) in enumerate(rows):
        if kind == "read":
            ax = fig.add_subplot(grid[r, :])
            ax.bar(range(m.shape[0]), m.numpy(), color="#4c72b0")
            ax.set_ylim(0, 1)
            ax.set_xlim(-0.6, m.shape[0] - 0.4)
            if m.shape[0] <= 32:
                ax.set_xticks(range(m.shape[0]))
            ax.set_xlabel("slot", fontsize=7, labelpad=1)
            ax.set_ylabel(row_names[r], fontsize=8)
            ax.set_title(f"{_short(name, 40)}: read weight per slot", fontsize=8, pad=2)
            ax.tick_params(labelsize=7)
            continue
        for h in range(cols):
            ax = fig.add_subplot(grid[r, h])
            if h >= m.shape[0]:
                ax.axis("off")
                continue
            image = ax.imshow(m[h].numpy(), cmap="viridis", vmin=0.0, vmax=top, interpolation="nearest", aspect="auto")
            drawn.append(ax)
            T, S = m.shape[-2:]
            ys = toks if named and h == 0 and len(toks) == T else None
            xs = toks if named and len(toks) == S else None
            if ys is not None:
                ax.set_yticks(range(T), _labels(ys, T, 8), fontsize=6)
            else:
                ax.set_yticks([])
            if xs is not None:
                ax.set_xticks(range(S), _labels(xs, S, 8), fontsize=6, rotation=90)
            else:
                ax.set_xticks([])
            ax.tick_params(length=1.5, pad=1)
            ax.set_title(f"head {h}", fontsize=8, pad=2)
            if h == 0:
                ax.set_ylabel(row_names[r], fontsize=8)
    if image is not None:
        bar = fig.colorbar(image, ax=drawn, shrink=0.9, fraction=0.04, pad=0.02)
        bar.ax.tick_params(labelsize=7)
        bar.set_label("attention weight", fontsize=7)
    reads = len(rows) - len(maps_only)
    what = "attention and memory reads" if maps_only and reads else "attention" if maps_only else "memory reads"
    title = f"{what} of sample {sample}" + (": query ↓, key →" if maps_only else "")
    cut = []
    if len(entries) > len(shown):
        cut.append(f"first {len(shown)} of {len(entries)} layers")
    if any(as_heads(v).shape[1] > max_heads for _, v in shown if not _is_read(v)):
        cut.append(f"first {max_heads} heads")
    if any(max(v.shape[-2:]) > max_tokens for _, v in shown if v.dim() >= 2 and not _is_read(v)):
        cut.append(f"first {max_tokens} tokens")
    fig.suptitle(title + (f" ({', '.join(cut)})" if cut else ""), fontsize=9)
    return fig


def layer_figures(maps: Mapping[str, Tensor], sample: int = 0, tokens: Sequence[str] | None = None,
                  max_tokens: int = 48, width: float = 9.5, max_heads: int = 12) -> list[tuple[str, Figure]]:
    """One :func:`heads_grid` per layer, its heads in rows of four, all on one shared colour scale."""
    drawn = {k: as_heads(v) for k, v in maps.items() if isinstance(v, Tensor) and v.dim() >= 2}
    if not drawn:
        raise InputError("no attention maps to draw: expected (B, heads, T, S), (B, T, S) or (B, S) tensors")
    top = max(float(v[sample, :max_heads, :max_tokens, :max_tokens].max()) for v in drawn.values()) or 1.0
    return [(name, heads_grid({name: v}, sample, tokens, max_tokens=max_tokens, max_heads=max_heads, width=width, vmax=top))
            for name, v in drawn.items()]


def palette_png(fig: Figure, dpi: float = 100.0) -> tuple[bytes, int, int]:
    """``(PNG bytes, width, height)`` of ``fig`` in 256 colours (a third of the full-colour size;
    heat maps in one colormap and text lose nothing visible)."""
    import io

    from .png import to_png

    PILImage = require("PIL.Image", "render", package="pillow")
    with PILImage.open(io.BytesIO(to_png(fig, dpi=dpi))) as im:
        small = im.convert("RGB").quantize(colors=256, method=PILImage.Quantize.MEDIANCUT,
                                           dither=PILImage.Dither.NONE)
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
        return buf.getvalue(), im.size[0], im.size[1]


def layer_picker_html(images: Sequence[tuple[str, str, str, int, int]]) -> str:
    """One figure per layer shown one at a time with a layer selector (all of them, stacked, without
    scripts or in print). ``images``: ``(layer name, image data URI, alt text, width px, height px)``;
    the size reserves the figure's room before it decodes."""
    opts = "".join(f'<option value="{i}">{html.escape(im[0])}</option>' for i, im in enumerate(images))
    figs = "".join(
        f'<figure class="tl-layer-fig" data-layer="{i}"><img src="{html.escape(uri)}" alt="{html.escape(alt)}" '
        f'width="{int(w)}" height="{int(h)}" style="max-width:100%;height:auto">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for i, (name, uri, alt, w, h) in enumerate(images)
    )
    return (f'<div class="tl-layer-picker"><label class="tl-ctl">layer <select class="tl-pick">{opts}</select></label>'
            f'<button type="button" class="tl-ctl tl-prev" aria-label="previous layer">◀</button>'
            f'<button type="button" class="tl-ctl tl-next" aria-label="next layer">▶</button>{figs}</div>')


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
        ax.set_xticks(range(S), labels[:S], rotation=90, fontsize=8)
        ax.set_yticks(range(T), labels[:T], fontsize=8)
    ax.set_xlabel("attended token (key)", fontsize=9)
    ax.set_ylabel("token (query)", fontsize=9)
    ax.set_title(title, fontsize=9.5)
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    bar.ax.tick_params(labelsize=8)
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
        ax.tick_params(labelsize=8)
        ax.set_title(f"sample {i}", fontsize=9)
    fig.suptitle("read weight per memory slot" + (" (orange: the slot holding the answer)" if truth is not None else ""), fontsize=9)
    return fig


TOKEN_CSS = """
.tl-token-view{font-family:DejaVu Sans Mono,Menlo,Consolas,monospace;font-size:13px;line-height:1.5;color:#1d2433}
.tl-token-view .tl-tv-bar{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;margin-bottom:6px;font-family:DejaVu Sans,Helvetica,Arial,sans-serif}
.tl-token-view .tl-tv-note{font-size:12px;color:#4a5468;font-family:DejaVu Sans,Helvetica,Arial,sans-serif}
.tl-token-view .tl-key{display:inline-flex;align-items:center;gap:6px;font-size:12px;font-family:DejaVu Sans,Helvetica,Arial,sans-serif}
.tl-token-view .tl-key i{display:inline-block;width:120px;height:12px;border:1px solid #8a93a6;
  background:linear-gradient(90deg,rgba(214,72,20,0),rgba(214,72,20,1))}
.tl-token-view .tl-toks{margin:4px 0 8px}
.tl-token-view .tl-tok{padding:1px 4px;border-radius:3px;cursor:pointer;display:inline-block;margin:1px;border:1px solid #c9cfdb}
.tl-token-view .tl-tok:focus{outline:2px solid #0a58ca;outline-offset:1px}
.tl-token-view .tl-tok[aria-pressed="true"]{border:2px solid #111;font-weight:700}
.tl-token-view table.tl-heads{border-collapse:collapse;font-size:12px}
.tl-token-view table.tl-heads th{font-weight:normal;color:#3a4358;text-align:right;padding:1px 6px 1px 0;white-space:nowrap;
  font-family:DejaVu Sans,Helvetica,Arial,sans-serif}
.tl-token-view table.tl-heads td{padding:1px 3px;border:1px solid #eef0f5;text-align:center;white-space:nowrap}
.tl-token-view .tl-heads-wrap{overflow-x:auto;max-width:100%}
.tl-layer-picker figure{margin:4px 0}
.tl-layer-picker figcaption{font-size:12px;color:#3a4358}
.tl-layer-picker:not([data-ready]) .tl-ctl{display:none}
@media print{.tl-token-view .tl-tv-bar select,.tl-layer-picker .tl-ctl{display:none}.tl-layer-picker figure[hidden]{display:block}}
"""

TOKEN_SCRIPT = """
(function () {
  "use strict";
  if (window.torchloupeTokens) { window.torchloupeTokens.scan(); return; }
  function shade(v) { return "rgba(214, 72, 20, " + v.toFixed(3) + ")"; }
  function ink(v) { return v > 0.6 ? "#fff" : "#1d2433"; }
  function initView(root) {
    var data = JSON.parse(root.querySelector("script.tl-data").textContent);
    var sampleSel = root.querySelector(".tl-sample"), layerSel = root.querySelector(".tl-layer");
    var dirSel = root.querySelector(".tl-dir"), wrap = root.querySelector(".tl-toks");
    var table = root.querySelector("table.tl-heads"), keyMax = root.querySelector(".tl-key-max");
    var status = root.querySelector(".tl-status");
    var pinned = null, hover = null;
    function sample() { return data.samples[+sampleSel.value]; }
    function direction() { return dirSel.value; }
    // weights of token t: "from" its row (where it looks), "to" its column (who looks at it)
    function weights(m, t) {
      if (direction() === "from") return m[t];
      var out = []; for (var i = 0; i < m.length; i++) out.push(m[i][t]); return out;
    }
    function drawTokens() {
      var toks = sample().tokens;
      wrap.innerHTML = "";
      toks.forEach(function (t, i) {
        var el = document.createElement("span");
        el.className = "tl-tok"; el.textContent = t; el.tabIndex = 0;
        el.setAttribute("role", "button"); el.setAttribute("aria-pressed", "false"); el.setAttribute("data-i", String(i));
        wrap.appendChild(el); wrap.appendChild(document.createTextNode(" "));
      });
      if (pinned !== null && pinned >= toks.length) pinned = null;
    }
    function show() {
      var s = sample(), l = +layerSel.value, toks = s.tokens, t = pinned !== null ? pinned : (hover !== null ? hover : 0);
      var mean = weights(s.mean[l], t), heads = (s.heads[l] || []).map(function (m) { return weights(m, t); });
      var rows = heads.concat([mean]), mx = 0;
      rows.forEach(function (r) { r.forEach(function (v) { if (v > mx) mx = v; }); });
      mx = mx || 1;
      keyMax.textContent = (mx / 1000).toFixed(2);
      var els = wrap.querySelectorAll(".tl-tok");
      for (var j = 0; j < els.length; j++) {
        var v = mean[j] / mx;
        els[j].style.background = shade(v); els[j].style.color = ink(v);
        els[j].title = (direction() === "from" ? "weight " + toks[t] + " → " + toks[j] : "weight " + toks[j] + " → " + toks[t]) + ": " + (mean[j] / 1000).toFixed(3) + " (mean of heads)";
        els[j].setAttribute("aria-pressed", String(j === pinned));
        els[j].style.outline = j === t ? "2px solid #222" : "";
      }
      var head = "<tr><th></th>" + toks.map(function (x) { return "<th scope=col style=text-align:center>" + esc(x) + "</th>"; }).join("") + "</tr>";
      var body = rows.map(function (r, h) {
        var name = h < heads.length ? "head " + h : "mean of heads";
        return "<tr><th scope=row>" + name + "</th>" + r.map(function (v, j) {
          var a = v / mx;
          return "<td style=\\"background:" + shade(a) + ";color:" + ink(a) + "\\" title=\\"" + (v / 1000).toFixed(3) + "\\">" + (v / 1000).toFixed(2).replace(/^0/, "") + "</td>";
        }).join("") + "</tr>";
      }).join("");
      table.innerHTML = "<caption style=\\"caption-side:top;text-align:left;font-size:12px\\">" + esc((direction() === "from" ? "where " + toks[t] + " attends" : "what attends to " + toks[t]) + ", per head (" + layerSel.options[layerSel.selectedIndex].text + ")") + "</caption>" + head + body;
      status.textContent = (pinned !== null ? "pinned: " : "showing: ") + toks[t] + (direction() === "from" ? " (attention from this token)" : " (attention to this token)");
    }
    function esc(x) { return String(x).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;"); }
    function tokAt(ev) { var el = ev.target.closest && ev.target.closest(".tl-tok"); return el ? +el.getAttribute("data-i") : null; }
    wrap.addEventListener("mouseover", function (ev) { var i = tokAt(ev); if (i !== null && pinned === null) { hover = i; show(); } });
    wrap.addEventListener("click", function (ev) { var i = tokAt(ev); if (i === null) return; pinned = pinned === i ? null : i; hover = i; show(); });
    wrap.addEventListener("keydown", function (ev) {
      var i = tokAt(ev); if (i === null) return;
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pinned = pinned === i ? null : i; hover = i; show(); }
      else if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
        ev.preventDefault();
        var els = wrap.querySelectorAll(".tl-tok"), k = Math.max(0, Math.min(els.length - 1, i + (ev.key === "ArrowRight" ? 1 : -1)));
        els[k].focus(); if (pinned === null) { hover = k; show(); }
      }
    });
    sampleSel.addEventListener("change", function () { drawTokens(); show(); });
    layerSel.addEventListener("change", show);
    dirSel.addEventListener("change", show);
    drawTokens(); show();
    root.setAttribute("data-ready", "1");
  }
  function initPicker(root) {
    var sel = root.querySelector(".tl-pick"), figs = root.querySelectorAll(".tl-layer-fig");
    function show() { for (var i = 0; i < figs.length; i++) figs[i].hidden = String(i) !== sel.value; }
    function step(d) { sel.selectedIndex = (sel.selectedIndex + d + sel.options.length) % sel.options.length; show(); }
    sel.addEventListener("change", show);
    root.querySelector(".tl-prev").addEventListener("click", function () { step(-1); });
    root.querySelector(".tl-next").addEventListener("click", function () { step(1); });
    show();
    root.setAttribute("data-ready", "1");
  }
  function scan() {
    document.querySelectorAll(".tl-token-view:not([data-ready])").forEach(initView);
    document.querySelectorAll(".tl-layer-picker:not([data-ready])").forEach(initPicker);
  }
  window.torchloupeTokens = {scan: scan};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan); else scan();
})();
"""


def token_view_assets() -> tuple[str, str]:
    """``(css, js)`` of the token view and the layer picker: include each once per page."""
    return TOKEN_CSS, TOKEN_SCRIPT


def token_view_html(
    maps: Mapping[str, Tensor],
    tokens: Sequence[str] | Sequence[Sequence[str]],
    sample: int | None = None,
    max_tokens: int = 64,
    max_values: int = 250_000,
    assets: bool = True,
    total: int | None = None,
) -> str:
    """Markup of the token-to-token view: click (or Enter) a token to pin it, hover to preview;
    choose the sample, the layer and the direction (attention *from* the token: where it looks,
    or *to* it: which tokens look at it); every head side by side as a row of shaded weights
    under a key of the shading.

    ``tokens``: one list of strings (every sample shares it) or one list per sample. ``sample``:
    only that sample (default: every sample, as many as ``max_values`` allows). Every token is
    HTML-escaped; the weights travel as integers 0..1000 in a JSON island (numbers and escaped
    strings only). Inputs longer than ``max_tokens`` are cut (said in the view); per-head
    matrices are included while ``samples·layers·heads·T²`` stays under ``max_values``, otherwise
    only the mean over heads per layer (said in the view). ``assets=False`` leaves out the style
    and script, for a page that includes :func:`token_view_assets` once. ``total``: the samples there
    were when ``maps`` hold only the first of them (the view says how many it leaves out).
    """
    layers = [(k, as_heads(v).detach().float().cpu()) for k, v in maps.items()
              if isinstance(v, Tensor) and v.dim() >= 3 and v.shape[-1] == v.shape[-2]]
    if not layers:
        raise InputError("no self-attention maps (B, heads, T, T) for a token view")
    per_sample = len(tokens) > 0 and not isinstance(tokens[0], str) and isinstance(tokens[0], Sequence)
    B = min(a.shape[0] for _, a in layers)
    chosen = [sample] if sample is not None else list(range(max(B, total or 0)))
    if sample is not None and not 0 <= sample < B:
        raise InputError(f"sample {sample} is out of range: the maps hold {B} samples")
    full = layers[0][1].shape[-1]
    notes = []

    def toks_of(b: int) -> list[str]:
        seq = tokens[b] if per_sample else tokens
        return [str(t) for t in list(seq)[:min(full, max_tokens)]]

    chosen = [b for b in chosen if not per_sample or b < len(tokens)]
    T = min(full, max_tokens, *(len(toks_of(b)) for b in chosen))
    if T < full:
        notes.append(f"first {T} of {full} tokens")
    heads_total = sum(a.shape[1] for _, a in layers)
    per_head = heads_total * T * T <= max_values
    if not per_head:
        notes.append("heads averaged (too many values for a per-head view)")
    cost = (heads_total if per_head else len(layers)) * T * T
    keep = max(1, max_values // max(cost, 1))
    if len(chosen) > keep:
        notes.append(f"first {keep} of {len(chosen)} samples")
        chosen = chosen[:keep]
    chosen = [b for b in chosen if b < B]  # the maps hold these

    def q(m: Tensor) -> list:
        return (m[:T, :T] * 1000).round().int().tolist()

    samples = []
    for b in chosen:
        samples.append({
            "tokens": toks_of(b)[:T],
            "mean": [q(a[b].mean(0)) for _, a in layers],
            "heads": [[q(h) for h in a[b]] for _, a in layers] if per_head else [],
        })
    payload = json.dumps({"samples": samples}, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")
    layer_opts = "".join(f'<option value="{i}">{html.escape(name)}</option>' for i, (name, _) in enumerate(layers))
    sample_opts = "".join(f'<option value="{i}">sample {b}</option>' for i, b in enumerate(chosen))
    note = f'<div class="tl-tv-note">{html.escape("; ".join(notes))}</div>' if notes else ""
    first = " ".join(f'<span class="tl-tok">{html.escape(t)}</span>' for t in samples[0]["tokens"])
    markup = (
        '<div class="tl-token-view" role="group" aria-label="attention between tokens">'
        '<div class="tl-tv-bar">'
        f'<label>sample <select class="tl-sample">{sample_opts}</select></label>'
        f'<label>layer <select class="tl-layer">{layer_opts}</select></label>'
        '<label>direction <select class="tl-dir"><option value="from">from the token: where it looks</option>'
        '<option value="to">to the token: what looks at it</option></select></label>'
        '<span class="tl-key" aria-label="key">0 <i></i> <span class="tl-key-max">1.00</span> attention weight '
        '(darkest: the largest weight shown)</span></div>'
        '<div class="tl-tv-note">Click a token (or Tab to it and press Enter) to pin it, click again to unpin; '
        'hovering previews. Tokens are shaded by the mean of the heads; the table shows each head. '
        '<span class="tl-status" aria-live="polite"></span></div>'
        f'{note}<div class="tl-toks">{first}</div>'
        '<div class="tl-heads-wrap"><table class="tl-heads"></table></div>'
        f'<script type="application/json" class="tl-data">{payload}</script></div>'
    )
    if assets:
        return f"<div><style>{TOKEN_CSS}</style>{markup}<script>{TOKEN_SCRIPT}</script></div>"
    return markup
