"""Matplotlib figures of results: labelled image grids, feature maps, kernels, weight matrices, templates.

Every function returns a ``matplotlib.figure.Figure`` drawn without pyplot (no global state);
turn it into bytes with :func:`torchloupe.render.to_png`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .image import normalize, to_rgb

__all__ = [
    "new_figure",
    "grid_figure",
    "feature_map_figure",
    "kernel_figure",
    "weight_matrix_figure",
    "class_template_figure",
]

_TILE = 1.35  # inches per grid tile
_DIVERGING = "RdBu_r"


def new_figure(width: float, height: float, dpi: int = 100) -> Any:
    """A pyplot-free ``Figure`` of ``width`` x ``height`` inches with the Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _hide(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    cols = ncols or min(n, max(1, math.ceil(math.sqrt(n * 1.6))))
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _show(ax, tile: Tensor, cmap: str | None, vmin=None, vmax=None):
    """Draw one tile: ``(3, H, W)`` RGB as is, ``(1, H, W)`` / ``(H, W)`` with ``cmap``."""
    t = tile.detach().float().cpu()
    if t.dim() == 3 and t.shape[0] == 3:
        return ax.imshow(t.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    if t.dim() == 3:
        t = t[0]
    return ax.imshow(t.numpy(), cmap=cmap or "viridis", vmin=vmin, vmax=vmax, interpolation="nearest")


def grid_figure(
    images: Tensor,
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    cmap: str | None = None,
    suptitle: str | None = None,
    tile: float = _TILE,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = False,
    fontsize: float = 8,
) -> Any:
    """A grid of images with a title each.

    ``images``: ``(N, 3, H, W)`` RGB in [0, 1], or ``(N, H, W)`` / ``(N, 1, H, W)`` scalar
    maps drawn with ``cmap`` (shared ``vmin``/``vmax`` when given; ``colorbar`` adds one).
    """
    n = int(images.shape[0])
    if n == 0:
        fig = new_figure(4, 1)
        fig.text(0.5, 0.5, "(no images)", ha="center", va="center")
        return fig
    rows, cols = _grid_shape(n, ncols)
    extra = 0.3 if suptitle else 0.0
    fig = new_figure(cols * tile + (0.6 if colorbar else 0), rows * (tile + 0.25) + extra)
    axes = fig.subplots(rows, cols, squeeze=False)
    im = None
    for i, ax in enumerate(axes.flat):
        _hide(ax)
        if i >= n:
            ax.set_visible(False)
            continue
        im = _show(ax, images[i], cmap, vmin, vmax)
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=fontsize)
    if colorbar and im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=fontsize + 2)
    return fig


def feature_map_figure(
    fm: Any,
    sample: int = 0,
    max_channels: int = 16,
    *,
    image: Tensor | None = None,
    cmap: str = "viridis",
    ncols: int | None = None,
) -> Any:
    """The ``max_channels`` most active channels of one sample of a :class:`~torchloupe.features.FeatureMaps`.

    Tiles are ranked by mean activation (most active first), each titled with its channel
    number and mean; every tile has its own colour scale (shown by its max). ``image``
    (``(C, H, W)`` in [0, 1]) is drawn first as the input.
    """
    maps = fm.maps
    if not 0 <= sample < maps.shape[0]:
        raise IndexError(f"sample {sample} is out of range for a batch of {maps.shape[0]}")
    order = fm.order[sample, :max_channels].cpu()
    k = len(order)
    tiles: list[Tensor] = []
    titles: list[str] = []
    if image is not None:
        tiles.append(to_rgb(image)[0].cpu())
        titles.append("input")
    mean = fm.stats["mean"][sample].cpu()
    peak = fm.stats["max"][sample].cpu()
    for pos in order.tolist():
        m = maps[sample, pos].float().cpu()
        tiles.append(m)
        titles.append(f"ch {int(fm.channels[pos])}\nmean {float(mean[pos]):.2g} max {float(peak[pos]):.2g}")
    n = len(tiles)
    rows, cols = _grid_shape(n, ncols or min(8, max(4, math.ceil(math.sqrt(n)))))
    h, w = maps.shape[-2:]
    aspect = max(0.35, min(1.0, h / max(w, 1)))
    fig = new_figure(cols * _TILE, rows * (_TILE * aspect + 0.45) + 0.35)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        _hide(ax)
        if i >= n:
            ax.set_visible(False)
            continue
        _show(ax, tiles[i], cmap)
        if h == 1 and w > 1:
            ax.set_aspect("auto")
        ax.set_title(titles[i], fontsize=7)
    kind = "" if fm.kind == "spatial" else f", {fm.kind}"
    fig.suptitle(
        f"{fm.layer}: {k} most active of {maps.shape[1]} channels ({h}x{w}{kind}), sample {sample}", fontsize=10
    )
    return fig


def _sym(x: Tensor) -> float:
    m = float(x.detach().abs().max()) if x.numel() else 0.0
    return m if m > 0 else 1.0


def kernel_figure(weight: Tensor, *, max_out: int | None = None, max_in: int = 8, title: str | None = None) -> Any:
    """Convolution kernels ``(out, in, kh, kw)``.

    Three input channels (a first layer on RGB images): one colour tile per output
    channel, each kernel scaled symmetrically so 0 is mid-gray. Otherwise one row per
    output channel (up to ``max_out``) and a column per input channel (up to ``max_in``)
    in a diverging colormap with one shared scale, red positive and blue negative, drawn
    as one mosaic image. ``max_out`` defaults to 32 colour tiles or 12 rows.
    """
    w = weight.detach().float().cpu()
    if w.dim() == 3:
        w = w.unsqueeze(2)  # Conv1d: (out, in, 1, k)
    if w.dim() != 4:
        raise ValueError(f"kernels must be (out, in, kh, kw) or (out, in, k), got shape {tuple(weight.shape)}")
    out_c, in_c, kh, kw = w.shape
    if in_c == 3:
        shown = w[: max_out or 32]
        scale = shown.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        tiles = shown / (2 * scale) + 0.5
        return grid_figure(
            tiles,
            [f"{i}" for i in range(len(tiles))],
            ncols=min(8, len(tiles)),
            tile=0.8,
            suptitle=title or f"{out_c} RGB kernels {kh}x{kw} (gray = 0)",
        )
    rows, cols = min(out_c, max_out or 12), min(in_c, max_in)
    v = _sym(w[:rows, :cols])
    # One mosaic image (one imshow, fast to draw): tile (r, c) is kernel w[r, c], separated by gaps.
    gap = 1
    mosaic = torch.full((rows * (kh + gap) - gap, cols * (kw + gap) - gap), float("nan"))
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (kh + gap) : r * (kh + gap) + kh, c * (kw + gap) : c * (kw + gap) + kw] = w[r, c]
    scale = 0.42 if kh <= 5 else 0.6
    fig = new_figure(max(5.0, cols * scale * kw / 3 + 1.8), rows * scale * kh / 3 + 1.1)
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps[_DIVERGING].with_extremes(bad="white")
    im = ax.imshow(mosaic.numpy(), cmap=cmap, vmin=-v, vmax=v, interpolation="nearest")
    ax.set_xticks([c * (kw + gap) + (kw - 1) / 2 for c in range(cols)], [str(c) for c in range(cols)], fontsize=7)
    ax.set_yticks([r * (kh + gap) + (kh - 1) / 2 for r in range(rows)], [str(r) for r in range(rows)], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("input channel", fontsize=8)
    ax.set_ylabel("output channel", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, aspect=20, label="weight")
    more = []
    if rows < out_c:
        more.append(f"first {rows} of {out_c} outputs")
    if cols < in_c:
        more.append(f"first {cols} of {in_c} inputs")
    note = f"\n({', '.join(more)})" if more else ""
    fig.suptitle((title or f"kernels {out_c}x{in_c}x{kh}x{kw}") + note, fontsize=10)
    return fig


def weight_matrix_figure(
    W: Tensor,
    *,
    title: str | None = None,
    xlabel: str = "input feature",
    ylabel: str = "output unit",
    row_labels: Sequence[str] | None = None,
    max_size: int = 1024,
) -> Any:
    """A weight matrix ``(out, in)`` as a heat map: diverging colormap centred at 0, colour bar.

    Larger matrices are averaged down to ``max_size`` per side for display (noted in the title).
    ``row_labels`` (e.g. class names) label the rows when there are at most 40.
    """
    m = W.detach().float().cpu()
    if m.dim() == 1:
        m = m.unsqueeze(0)
    if m.dim() != 2:
        raise ValueError(f"a weight matrix must be 2-D (out, in), got shape {tuple(W.shape)}")
    out_f, in_f = m.shape
    note = ""
    if out_f > max_size or in_f > max_size:
        sh = (min(out_f, max_size), min(in_f, max_size))
        m = torch.nn.functional.adaptive_avg_pool2d(m[None, None], sh)[0, 0]
        note = f", shown averaged to {sh[0]}x{sh[1]}"
    v = _sym(m)
    width = min(11.0, max(4.0, 2.2 + m.shape[1] * 0.09))
    height = min(8.0, max(2.2, 1.4 + m.shape[0] * 0.22))
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    im = ax.imshow(m.numpy(), cmap=_DIVERGING, vmin=-v, vmax=v, aspect="auto", interpolation="nearest")
    ax.set_xlabel(f"{xlabel} ({in_f})")
    ax.set_ylabel(f"{ylabel} ({out_f})")
    if row_labels is not None and len(row_labels) == out_f and out_f <= 40:
        ax.set_yticks(range(out_f))
        ax.set_yticklabels([str(s) for s in row_labels], fontsize=8)
    fig.colorbar(im, ax=ax, label="weight", shrink=0.9)
    ax.set_title(title or f"weights {out_f}x{in_f}{note}", fontsize=10)
    return fig


def class_template_figure(
    templates: Tensor, labels: Sequence[str] | None = None, *, title: str | None = None, ncols: int | None = None
) -> Any:
    """Per-class weight templates ``(K, *input_shape)`` (from :func:`torchloupe.weights.class_templates`).

    ``(K, 3, H, W)``: colour images, each scaled symmetrically around mid-gray.
    ``(K, H, W)`` / ``(K, 1, H, W)``: diverging colormap with one shared scale (red
    pushes towards the class, blue away). ``(K, D)``: one heat-map row per class.
    """
    t = templates.detach().float().cpu()
    k = t.shape[0]
    names = [str(s) for s in labels] if labels is not None else [f"class {i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} labels for {k} templates; expected one label per template")
    if t.dim() == 2:
        return weight_matrix_figure(t, title=title or "class templates", xlabel="input feature", ylabel="class",
                                    row_labels=names)
    if t.dim() == 4 and t.shape[1] == 3:
        scale = t.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        return grid_figure(t / (2 * scale) + 0.5, names, ncols=ncols or min(k, 10), suptitle=title or "class templates")
    if t.dim() == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 3:
        raise ValueError(f"templates must be (K, D), (K, H, W), (K, 1, H, W) or (K, 3, H, W); got {tuple(t.shape)}")
    v = _sym(t)
    return grid_figure(
        t,
        names,
        ncols=ncols or min(k, 10),
        cmap=_DIVERGING,
        vmin=-v,
        vmax=v,
        colorbar=True,
        suptitle=title or "class templates (red: evidence for the class, blue: against)",
        tile=1.1,
    )
