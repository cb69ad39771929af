"""Views of a :class:`~torchloupe.weights.WeightHistory`: how the weights were learned.

Figures (matplotlib ``Figure`` objects, never pyplot state):

- :func:`plot_norms` — ‖W‖ and the update ratio ‖ΔW‖/‖W‖ per tensor over steps (log scale);
- :func:`plot_histograms` — a tensor's value histogram over time as a heat map;
- :func:`plot_templates` — class templates at chosen steps: rows of the head reshaped to the
  input, and for an MLP the effective input-space template ``W_L ... W_1`` (the linear path,
  nonlinearities ignored);
- :func:`plot_kernels` — the first layer's kernels (conv) or hidden units' input templates (MLP) at chosen steps;
- :func:`plot_similarity` — cosine similarity between the class weight vectors over time.

The tensors they draw (templates, kernels, class similarity) come from
:mod:`torchloupe.weights.learned`. Torch-only: :func:`frame_images` (tiles as ``(3, H, W)``
images in [0, 1], used by TensorBoard / Visdom) and :func:`animate` (GIF, Pillow).
matplotlib is imported inside the drawing functions only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .plain import figure_class
from ..errors import TrackerError, require
from ..weights.learned import class_similarity, kernel_tensor, pick_steps, template_tensor
from .colormaps import MAGNITUDE, SIGNED, colorize
from .figures import PAGE_WIDTH

__all__ = [
    "plot_norms",
    "plot_histograms",
    "plot_templates",
    "plot_kernels",
    "plot_similarity",
    "frame_images",
    "animate",
]


# -- tiles (torch only) ---------------------------------------------------------------------------


def _as_images(t: Tensor) -> Tensor:
    """``(N, *shape)`` -> ``(N, C, H, W)`` with C in (1, 3)."""
    if t.dim() == 2:  # (N, L) -> one row
        return t[:, None, None, :]
    if t.dim() == 3:
        return t[:, None]
    if t.dim() == 4 and t.shape[1] in (1, 3):
        return t
    if t.dim() == 4:  # many input channels: show their mean
        return t.mean(dim=1, keepdim=True)
    return t.reshape(t.shape[0], 1, 1, -1)


#: The one colormap of signed weights, in still figures and animations alike (blue < 0 < red).
DIVERGING = SIGNED


def _diverging(x: Tensor) -> Tensor:
    """``(N, 1, H, W)`` in [-1, 1] -> ``(N, 3, H, W)`` RGB in :data:`DIVERGING`: blue (neg) - white (0) - red (pos)."""
    return colorize(x[:, 0].float(), DIVERGING, -1.0, 1.0)


def _scaled_tiles(t: Tensor) -> tuple[Tensor, float]:
    """Weights ``(N, *shape)`` -> ``(N, 3, H, W)`` in [0, 1] and the scale used (max |w|): one-channel
    maps in :data:`DIVERGING` around 0, RGB kernels centred at 0.5; one scale per call so tiles compare."""
    imgs = _as_images(t.detach().double().cpu())
    scale = imgs.abs().amax().clamp_min(1e-12)
    if imgs.shape[1] == 3:
        return (0.5 + imgs / (2 * scale)).float().clamp(0, 1), float(scale)
    return _diverging(imgs / scale).float(), float(scale)


def _tiles(t: Tensor) -> Tensor:
    return _scaled_tiles(t)[0]


def _grid(tiles: Tensor, ncol: int, pad: int = 1, value: float = 1.0) -> Tensor:
    n, c, h, w = tiles.shape
    nrow = math.ceil(n / ncol)
    out = torch.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), value)
    for i in range(n):
        r, k = divmod(i, ncol)
        out[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = tiles[i]
    return out


def frame_images(history, what: str = "auto", max_tiles: int = 32, min_tile: int = 48) -> tuple[list[Tensor], str]:
    """One ``(3, H, W)`` image in [0, 1] per snapshot (templates or kernels as a grid), and what it shows.

    ``what``: ``"templates"``, ``"kernels"`` or ``"auto"`` (templates when the head's rows are
    input-shaped or the model is an MLP, else kernels). Tiles are upscaled (nearest) to at
    least ``min_tile`` pixels.
    """
    frames, what, _ = _frames(history, what, max_tiles, min_tile)
    return frames, what


def _frames(history, what: str, max_tiles: int, min_tile: int) -> tuple[list[Tensor], str, list[float]]:
    """:func:`frame_images` with each frame's scale (the max |w| its colours span)."""
    if what not in ("auto", "templates", "kernels"):
        raise TrackerError(f"what={what!r}: expected 'auto', 'templates' or 'kernels'")
    s = len(history.snapshot_steps)
    if s == 0:
        raise TrackerError("the history has no snapshots to draw; track with snapshots=[...] layers")
    get = None
    if what in ("auto", "templates") and template_tensor(history, 0) is not None:
        get, what = (lambda i: template_tensor(history, i)[0]), "templates"
    elif what in ("auto", "kernels") and kernel_tensor(history, 0) is not None:
        get, what = (lambda i: kernel_tensor(history, i)[0]), "kernels"
    if get is None:
        raise TrackerError(
            f"nothing to draw as {what!r}: the snapshots ({', '.join(history.snapshots)}) hold neither "
            f"input-shaped class templates nor kernels; pass input_shape= to the tracker or snapshot a conv layer"
        )
    frames, scales = [], []
    for i in range(s):
        t = get(i)[:max_tiles]
        tiles, scale = _scaled_tiles(t)
        scales.append(scale)
        h, w = tiles.shape[-2:]
        k = max(1, math.ceil(min_tile / max(h, w)))
        if k > 1:
            tiles = tiles.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)
        ncol = min(len(tiles), 10 if what == "templates" else 8)
        frames.append(_grid(tiles, ncol, pad=max(1, k // 2)))
    return frames, what, scales


def _label_font(size: int):
    """Pillow's bundled scalable font at ``size`` px (Pillow >= 10.1 with FreeType), else its small
    bitmap font."""
    ImageFont = require("PIL.ImageFont", "render", package="pillow")

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def animate(history, path: str | os.PathLike, what: str = "auto", fps: float = 4.0,
            max_frames: int | None = None, **kwargs: Any) -> str:
    """Write a GIF, one frame per snapshot (or ``max_frames`` evenly picked ones, first and last
    included), labelled with its step. Returns the path."""
    Image = require("PIL.Image", "render", package="pillow")
    ImageDraw = require("PIL.ImageDraw", "render", package="pillow")

    if max_frames is not None and len(history.snapshot_steps) > max_frames:
        import dataclasses

        keep = pick_steps(history, max(2, max_frames))
        history = dataclasses.replace(
            history,
            snapshot_steps=history.snapshot_steps[keep],
            snapshots={k: v[keep] for k, v in history.snapshots.items()},
        )
    frames, what, scales = _frames(history, what, kwargs.get("max_tiles", 32), kwargs.get("min_tile", 48))
    font, head = _label_font(14), 40
    key = (_diverging(torch.linspace(-1, 1, 120).reshape(1, 1, 1, 120))[0].repeat(1, 10, 1) * 255)
    key = Image.fromarray(key.round().byte().permute(1, 2, 0).numpy(), "RGB")
    images = []
    for step, f, scale in zip(history.snapshot_steps.tolist(), frames, scales):
        arr = (f.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        body = Image.fromarray(arr, "RGB")
        canvas = Image.new("RGB", (max(body.width, 330), body.height + head), "white")
        canvas.paste(body, (0, head))
        draw = ImageDraw.Draw(canvas)
        draw.text((3, 2), f"{what} at step {step}", fill=(0, 0, 0), font=font)
        # the scale of this frame: the colour strip spans -max|w| .. +max|w|
        draw.text((3, 21), f"-{scale:.2g}", fill=(0, 0, 0), font=font)
        left = 3 + int(draw.textlength(f"-{scale:.2g}", font=font)) + 5
        canvas.paste(key, (left, 25))
        draw.text((left + 125, 21), f"+{scale:.2g}", fill=(0, 0, 0), font=font)
        images.append(canvas)
    path = os.fspath(path)
    from ..files import atomic_path

    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "GIF")
    with atomic_path(path) as tmp:  # complete or not at all; a symbolic link there is replaced, not followed
        images[0].save(tmp, format=fmt, save_all=True, append_images=images[1:], duration=max(20, int(1000 / fps)),
                       loop=0, optimize=False)
    return path


# -- figures (matplotlib) -------------------------------------------------------------------------


def _figure(w: float, h: float):
    Figure = figure_class()  # strings drawn without mathtext

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _default_names(history, limit: int = 10) -> list[str]:
    names = [n for n in history.names if len(history.shapes.get(n, (0, 0))) >= 2] or list(history.names)
    if len(names) > limit:
        idx = sorted({round(i * (len(names) - 1) / (limit - 1)) for i in range(limit)})
        names = [names[i] for i in idx]
    return names


def plot_norms(history, names: Sequence[str] | None = None):
    """‖W‖ (left) and update ratio ‖ΔW‖/‖W_prev‖ (right) per tensor over steps, log scale."""
    names = list(names) if names is not None else _default_names(history)
    fig = _figure(11, 3.8)
    ax_n, ax_r = fig.subplots(1, 2)
    steps = history.steps.numpy()
    colormaps = require("matplotlib", "render").colormaps

    cmap = colormaps["tab10"] if len(names) <= 10 else colormaps["viridis"]
    for k, name in enumerate(names):
        color = cmap(k) if len(names) <= 10 else cmap(k / max(1, len(names) - 1))
        ax_n.plot(steps, history.stat(name, "norm").numpy(), color=color, label=name, lw=1.5)
        r = history.stat(name, "update_ratio").numpy()
        ax_r.plot(steps[1:], r[1:], color=color, label=name, lw=1.5, marker="." if len(steps) < 30 else None)
    ax_n.set_yscale("log")
    FuncFormatter = require("matplotlib.ticker", "render").FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")  # "6", not "6x10^0"
    ax_n.yaxis.set_major_formatter(plain)
    norms = torch.stack([history.stat(name, "norm") for name in names]) if names else torch.ones(1)
    positive = norms[norms > 0]
    if positive.numel() and float(positive.max() / positive.min()) <= 30:  # a decade or so: label minor ticks too
        ax_n.yaxis.set_minor_formatter(plain)
        ax_n.tick_params(axis="y", which="minor", labelsize=8)
    ax_n.set_title("weight norm ‖W‖")
    ratios = history.stats[1:, :, 5]
    if bool(((ratios > 0) & ratios.isfinite()).any()):
        ax_r.set_yscale("log")
    ax_r.axhline(1e-3, color="0.5", ls="--", lw=1)
    # The label at the left edge, where training has just begun and ratios lie well above the line.
    ax_r.text(0.01, 1e-3, " 1e-3", color="0.4", ha="left", va="bottom", fontsize=8,
              transform=ax_r.get_yaxis_transform())
    ax_r.set_title(f"update ratio ‖ΔW‖/‖W‖ per {history.every} steps")
    for ax in (ax_n, ax_r):
        ax.set_xlabel("step")
        ax.grid(True, which="major", alpha=0.3)
    ax_r.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def plot_histograms(history, name: str | None = None, rows: int = 96):
    """Heat map of the value histogram of ``name`` (default: the head's weight) over steps."""
    import numpy as np

    name = name or history.head_name() or _default_names(history)[-1]
    counts = history.hist[:, history.index(name)].double().numpy()
    edges = history.bin_edges(name).numpy()
    lo, hi = float(edges[:, 0].min()), float(edges[:, -1].max())
    grid = np.linspace(lo, hi, rows + 1)
    # Re-bin each step onto one value grid, spreading every bin's count evenly over its range.
    cdf = np.concatenate([np.zeros((len(counts), 1)), np.cumsum(counts, axis=1)], axis=1)
    heat = np.stack([np.diff(np.interp(grid, e, c)) for e, c in zip(edges, cdf)], axis=1)
    fig = _figure(7, 3.6)
    ax = fig.subplots()
    steps = history.steps.numpy()
    x_edges = np.concatenate([steps, [steps[-1] + max(1, history.every)]]) if len(steps) else np.array([0, 1])
    mesh = ax.pcolormesh(x_edges, grid, np.log1p(heat), cmap=MAGNITUDE, shading="flat")
    fig.colorbar(mesh, ax=ax, label="log(1 + count)")
    ax.set_xlabel("step")
    ax.set_ylabel("weight value")
    ax.set_title(f"{name}: histogram over time")
    return fig


def _label(labels, c):
    return str(labels[c]) if labels is not None and c < len(labels) else str(c)


def _row_tiles(imgs: Tensor) -> tuple[list[Tensor], float]:
    """One row of a steps x tiles mosaic: ``(N, C, H, W)`` weights as RGB tiles on one symmetric
    scale, ±(99th percentile of |w|), so one extreme weight does not leave the rest pale (beyond
    it: full colour); returns the tiles and the scale. 3-channel tiles are centred at mid-gray,
    others drawn blue < 0 < red."""
    from .colormaps import colorize

    imgs = imgs.float()
    v = float(torch.quantile(imgs.abs().flatten(), 0.99)) or float(imgs.abs().max()) or 1.0
    return [(0.5 + img / (2 * v)).clamp(0, 1) if img.shape[0] == 3 else colorize(img[0], DIVERGING, -v, v)
            for img in imgs], v


def plot_templates(history, steps: Sequence[int] | None = None, labels: Sequence[str] | None = None,
                   kind: str = "auto", max_classes: int = 12):
    """Class templates at snapshot indices ``steps`` (default start / middle / end).

    Rows are steps, columns classes; each row on its own symmetric color scale (blue < 0 < red),
    ±(99th percentile of |w|) as its label states.
    When the head's rows are not input-shaped (a CNN after pooling), the head matrix is shown.
    """
    import numpy as np

    idx = list(steps) if steps is not None else pick_steps(history)
    if not idx:
        raise TrackerError("the history has no snapshots; nothing to draw")
    snap_steps = history.snapshot_steps.tolist()
    first = template_tensor(history, idx[0], kind)
    if first is None:  # head matrix per step
        head = history.head_name()
        if head is None:
            raise TrackerError("no classifier head among the snapshots")
        # the head's columns: the input itself, pooled conv features or an MLP's last hidden units
        xlabel = ("input feature" if history.reads_input(head) else
                  "feature" if history.kernel_name() is not None else "hidden unit")
        fig = _figure(3.6 * len(idx), 3.2)
        axes = np.atleast_1d(fig.subplots(1, len(idx)))
        v = float(history[head][idx].abs().max()) or 1.0  # one scale for all steps: the colorbar holds for each
        for ax, i in zip(axes, idx):
            w = history[head][i].double().numpy()
            im = ax.imshow(w, cmap=DIVERGING, vmin=-v, vmax=v, aspect="auto", interpolation="nearest")
            ax.set_title(f"{head} at step {snap_steps[i]}", fontsize=9)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("class")
            ax.set_yticks(range(w.shape[0]), [_label(labels, c) for c in range(w.shape[0])], fontsize=8)
        fig.colorbar(im, ax=list(axes), shrink=0.8)
        return fig
    _, what = first
    n_cls = min(first[0].shape[0], max_classes)
    from .figures import mosaic_figure

    tiles, scales = [], []
    for i in idx:
        row, v = _row_tiles(_as_images(template_tensor(history, i, kind)[0][:n_cls]))
        tiles += row
        scales.append(v)
    title = "effective input-space templates (W_L···W_1)" if what == "effective" else "class templates (head rows)"
    return mosaic_figure(tiles, None, n_cls, tile_w=1.0, tile_h=1.0, title_h=0.08, fontsize=9, suptitle=title,
                          col_titles=[_label(labels, c) for c in range(n_cls)],
                          row_titles=[f"step {snap_steps[i]}\n±{v:.2g}" for i, v in zip(idx, scales)],
                          **_row_scale_bar())


def plot_kernels(history, steps: Sequence[int] | None = None, max_kernels: int = 16):
    """First-layer kernels (conv) or units (MLP) at snapshot indices ``steps``; rows are steps, each
    on its own symmetric scale (stated in its label, as in :func:`plot_templates`)."""

    idx = list(steps) if steps is not None else pick_steps(history)
    got = kernel_tensor(history, idx[0]) if idx else None
    if got is None:
        raise TrackerError("no first-layer kernels among the snapshots (snapshot a conv or the first Linear)")
    name = got[1]
    n = min(got[0].shape[0], max_kernels)
    snap_steps = history.snapshot_steps.tolist()
    from .figures import mosaic_figure

    tiles, scales = [], []
    for i in idx:
        row, v = _row_tiles(_as_images(kernel_tensor(history, i)[0][:n].detach().float().cpu()))
        tiles += row
        scales.append(v)
    linear = len(history.shapes.get(name, ())) == 2  # an MLP's first layer: its rows are hidden units
    what = f"input templates of hidden units 0..{n - 1}" if linear else f"first {n} filters"
    return mosaic_figure(tiles, None, n, tile_w=0.65, tile_h=0.65, title_h=0.08, fontsize=8,
                          suptitle=f"{name}: {what} over time",
                          col_titles=[str(c) for c in range(n)] if linear else None,
                          row_titles=[f"step {snap_steps[i]}\n±{v:.2g}" for i, v in zip(idx, scales)],
                          **_row_scale_bar())


def _row_scale_bar() -> dict:
    """The colour bar of a steps x tiles mosaic: blue - white - red from minus to plus each row's own
    scale (the ±value in its label)."""
    ScalarMappable = require("matplotlib.cm", "render").ScalarMappable
    Normalize = require("matplotlib.colors", "render").Normalize

    return {"colorbar": ScalarMappable(Normalize(-1.0, 1.0), DIVERGING), "colorbar_label": "weight / the row's ±scale",
            "colorbar_ticks": {-1.0: "-1", 0.0: "0", 1.0: "+1"}}


def plot_similarity(history, steps: Sequence[int] | None = None, labels: Sequence[str] | None = None):
    """Cosine similarity between class weight vectors at chosen snapshots, and the largest
    off-diagonal similarity over time (classes still confused stay similar)."""
    import numpy as np

    sim = class_similarity(history)
    if sim is None:
        raise TrackerError("no classifier head among the snapshots")
    idx = list(steps) if steps is not None else pick_steps(history)
    k = sim.shape[-1]
    snap_steps = history.snapshot_steps.numpy()
    side = min(3.3, (PAGE_WIDTH - 3.6) / max(1, len(idx)))  # the square maps, all within the page column
    fig = _figure(side * len(idx) + 3.6, 3.3)
    fig.set_layout_engine("compressed")  # plain constrained layout clipped the square maps' row labels
    axes = fig.subplots(1, len(idx) + 1, width_ratios=[1] * len(idx) + [1.3])
    ticks = [_label(labels, c) for c in range(k)]
    short = max((len(t) for t in ticks), default=0) <= 3
    for j, (ax, i) in enumerate(zip(axes[:-1], idx)):
        im = ax.imshow(sim[i].numpy(), cmap=DIVERGING, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(f"step {snap_steps[i]}", fontsize=9)
        if k <= 20:  # class names on both axes; the rows' only on the first matrix (they are shared)
            ax.set_xticks(range(k), ticks, fontsize=8, rotation=0 if short else 90)
            ax.set_yticks(range(k), ticks if j == 0 else [], fontsize=8)
            ax.tick_params(length=2, pad=1)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(im, ax=list(axes[:-1]), shrink=0.8, label="cosine")
    off = sim.clone()
    off[:, torch.arange(k), torch.arange(k)] = float("nan")
    flat = off.reshape(len(off), -1).nan_to_num(-2.0)
    top, where = flat.max(dim=1)
    ax = axes[-1]
    ax.plot(snap_steps, top.numpy(), label="most similar pair", color="C3")
    ax.plot(snap_steps, np.nanmean(off.reshape(len(off), -1).numpy(), axis=1), label="mean pair", color="C0")
    a, b = divmod(int(where[-1]), k)
    ax.annotate(f"{ticks[a]}~{ticks[b]}", (snap_steps[-1], float(top[-1])), fontsize=8, ha="right", va="bottom")
    ax.set_xlabel("step")
    ax.set_ylabel("cosine similarity")
    ax.set_title("class similarity over time", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(True, alpha=0.3)
    return fig
