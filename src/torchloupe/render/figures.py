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

from .colormaps import MAGNITUDE, SIGNED
from .image import to_rgb
from .plain import figure_class
from ..errors import InputShapeError, UsageError, require

__all__ = [
    "new_figure",
    "mosaic_figure",
    "grid_figure",
    "feature_map_figure",
    "kernel_figure",
    "weight_matrix_figure",
    "class_template_figure",
    "tile_titles",
]

_TILE = 1.35  # inches per grid tile
_DIVERGING = SIGNED

#: Widest a figure is drawn, in inches at 100 dpi: the report's content column at a 1,400 px window
#: (1,083 px) less a margin, so a figure shows at the size it was drawn for and its smallest text
#: (:data:`SMALL`, 10.4 px) is not shrunk below 10 px.
PAGE_WIDTH = 10.8
#: The smallest text in a figure, in points: 10.4 px when the figure shows at 100 dpi unshrunk.
SMALL = 7.5


def new_figure(width: float, height: float, dpi: int = 100, layout: str | None = "constrained") -> Any:
    """A pyplot-free ``Figure`` of ``width`` x ``height`` inches with the Agg canvas attached.

    ``layout=None`` skips the (slow) constrained layout for figures placed by hand.
    """
    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "render").FigureCanvasAgg
    Figure = figure_class()  # strings drawn without mathtext

    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
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
    return ax.imshow(t.numpy(), cmap=cmap or MAGNITUDE, vmin=vmin, vmax=vmax, interpolation="nearest")


def mosaic_figure(
    tiles: list[Tensor],
    titles: Sequence[str] | None,
    cols: int,
    *,
    tile_w: float,
    tile_h: float,
    title_h: float,
    fontsize: float,
    suptitle: str | None = None,
    suptitle_size: float = 10,
    colorbar: Any = None,
    col_titles: Sequence[str] | None = None,
    row_titles: Sequence[str] | None = None,
    row_colors: Sequence[Any] | None = None,
    colorbar_label: str | None = None,
    colorbar_ticks: dict[float, str] | None = None,
) -> Any:
    """Tiles drawn as ONE composed image on one axes (fast: one ``imshow``, no per-tile axes).

    ``tiles``: ``(3, H, W)`` RGB in [0, 1] (any sizes: each is resized to the largest with
    nearest neighbours); ``titles`` are drawn as text above their tiles; ``tile_w`` x
    ``tile_h`` inches per tile plus ``title_h`` inches of title band. ``colorbar``: a
    ``ScalarMappable`` drawn as a colour bar on the right (``colorbar_label`` beside it). ``col_titles`` head the columns
    (above the first row), ``row_titles`` label the rows on the left (rotated; in ``row_colors`` when given).
    ``colorbar_ticks``: ``{value: label}`` in place of the bar's numbers (a stated scale such as "max").
    A grid wider than :data:`PAGE_WIDTH` is drawn with smaller tiles (the text keeps its size).
    """
    import torch.nn.functional as F

    n = len(tiles)
    rows = math.ceil(n / cols)
    top = (0.32 if suptitle else 0.02) + (0.25 if col_titles else 0.0)
    bottom = side = 0.06
    left = side + (0.25 * max(1, max((str(t).count("\n") + 1 for t in row_titles), default=1)) if row_titles
                   else 0.0)
    cbar = (1.05 if colorbar_label else 0.8) if colorbar is not None else 0.0
    fit = (PAGE_WIDTH - left - side - cbar) / cols - 0.1
    if tile_w > fit:  # shrink the tiles, never the text, to keep the figure within the page column
        tile_h, tile_w = tile_h * max(fit, 0.3) / tile_w, max(fit, 0.3)
    h = max(int(t.shape[-2]) for t in tiles)
    w = max(int(t.shape[-1]) for t in tiles)
    # Small tiles (kernels) are enlarged by an integer factor so gaps and title bands come out at the right size.
    up = max(1, math.ceil(48 / max(h, w)))
    h, w = h * up, w * up
    gx = max(1, round(w * 0.1 / tile_w))
    gy = max(1, round(h * title_h / tile_h))
    cell_w, cell_h = w + gx, h + gy
    mosaic = torch.ones(3, rows * cell_h, cols * cell_w)
    for i, t in enumerate(tiles):
        t = t.detach().float().cpu()
        if tuple(t.shape[-2:]) != (h, w):
            t = F.interpolate(t[None], size=(h, w), mode="nearest-exact")[0]
        r, c = divmod(i, cols)
        y, x = r * cell_h + gy, c * cell_w + gx // 2
        mosaic[:, y : y + h, x : x + w] = t.clamp(0, 1)
    grid_w = cols * (tile_w + 0.1)
    grid_h = rows * (tile_h + title_h)
    width, height = grid_w + left + side + cbar, grid_h + top + bottom
    fig = new_figure(width, height, layout=None)
    ax = fig.add_axes((left / width, bottom / height, grid_w / width, grid_h / height))
    screen_px = tile_w * fig.dpi
    ax.imshow(
        mosaic.permute(1, 2, 0).numpy(),
        aspect="auto",
        interpolation="nearest" if w <= screen_px else "antialiased",
        extent=(0, cols * cell_w, rows * cell_h, 0),
    )
    ax.set_axis_off()
    ax.tile_boxes = [  # (y, x, h, w) of each tile in the mosaic, for tests and callers adding marks
        ((i // cols) * cell_h + gy, (i % cols) * cell_w + gx // 2, h, w) for i in range(n)
    ]
    if titles is not None:
        for i, title in enumerate(titles[:n]):
            r, c = divmod(i, cols)
            ax.text(c * cell_w + cell_w / 2, r * cell_h + gy * 0.92, str(title), ha="center", va="bottom",
                    fontsize=fontsize)
    for c, title in enumerate((col_titles or [])[:cols]):
        ax.text(c * cell_w + cell_w / 2, -0.04 * cell_h, str(title), ha="center", va="bottom", fontsize=fontsize,
                clip_on=False)
    for r, title in enumerate((row_titles or [])[:rows]):
        ax.text(-0.04 * cell_w, r * cell_h + gy + h / 2, str(title), ha="right", va="center", rotation=90,
                fontsize=fontsize, clip_on=False, color=row_colors[r] if row_colors is not None else None)
    if colorbar is not None:
        cax = fig.add_axes(((grid_w + left + side + 0.05) / width, (bottom + 0.12 * grid_h) / height, 0.14 / width,
                            0.76 * grid_h / height))
        bar = fig.colorbar(colorbar, cax=cax)
        bar.ax.tick_params(labelsize=fontsize)
        if colorbar_ticks:
            bar.set_ticks(list(colorbar_ticks), labels=list(colorbar_ticks.values()))
        if colorbar_label:
            bar.set_label(colorbar_label, fontsize=fontsize)
    if suptitle:
        fig.suptitle(suptitle, fontsize=suptitle_size, y=1 - 0.06 / height, va="top")
    return fig


def tile_titles(fig: Any) -> list[str]:
    """The tile titles of a figure drawn by :func:`grid_figure` / :func:`feature_map_figure` (for tests)."""
    return [t.get_text() for ax in fig.axes for t in ax.texts]


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
    colorbar_label: str | None = None,
) -> Any:
    """A grid of images with a title each.

    ``images``: ``(N, 3, H, W)`` RGB in [0, 1], or ``(N, H, W)`` / ``(N, 1, H, W)`` scalar
    maps drawn with ``cmap`` (shared ``vmin``/``vmax`` when given; ``colorbar`` adds one, titled
    ``colorbar_label``).
    """
    n = int(images.shape[0])
    if n == 0:
        fig = new_figure(4, 1)
        fig.text(0.5, 0.5, "(no images)", ha="center", va="center")
        return fig
    rows, cols = _grid_shape(n, ncols)
    x = images.detach().float().cpu()
    if x.dim() == 4 and x.shape[1] == 3:
        tiles = list(x.clamp(0, 1))
        mappable = None
    else:
        if x.dim() == 4:
            x = x[:, 0]
        from .colormaps import colorize

        name = cmap or MAGNITUDE
        tiles = []
        for m in x:
            lo = float(torch.nan_to_num(m, nan=0.0).min()) if vmin is None else vmin
            hi = float(torch.nan_to_num(m, nan=0.0).max()) if vmax is None else vmax
            tiles.append(colorize(m, name, lo, hi))
        mappable = None
        if colorbar:
            ScalarMappable = require("matplotlib.cm", "render").ScalarMappable
            Normalize = require("matplotlib.colors", "render").Normalize

            lo = float(x.min()) if vmin is None else vmin
            hi = float(x.max()) if vmax is None else vmax
            mappable = ScalarMappable(Normalize(lo, hi), name)
    return mosaic_figure(
        tiles,
        titles,
        cols,
        tile_w=tile,
        tile_h=tile,
        title_h=0.25 if titles is not None else 0.05,
        fontsize=fontsize,
        suptitle=suptitle,
        suptitle_size=fontsize + 2,
        colorbar=mappable,
        colorbar_label=colorbar_label if mappable is not None else None,
    )


def feature_map_figure(
    fm: Any,
    sample: int = 0,
    max_channels: int = 16,
    *,
    image: Tensor | None = None,
    cmap: str = MAGNITUDE,
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
    h, w = maps.shape[-2:]
    aspect = max(0.35, min(1.0, h / max(w, 1)))
    cols = ncols or _full_columns(n, aspect)
    from .colormaps import colorize

    rgb = []
    for t in tiles:
        if t.dim() == 3:
            rgb.append(t)
        else:
            lo, hi = float(torch.nan_to_num(t).min()), float(torch.nan_to_num(t).max())
            rgb.append(colorize(t if t.dim() == 2 else t.reshape(1, -1), cmap, lo, hi))
    if h == 1 and w > 1:  # 1-D sequences: stretch each strip to the tile's shape
        rgb = [t.repeat_interleave(max(1, round(w * aspect)), dim=1) if t.shape[1] == 1 else t for t in rgb]
    kind = "" if fm.kind == "spatial" else f", {fm.kind}"
    return mosaic_figure(
        rgb,
        titles,
        cols,
        tile_w=_TILE,
        tile_h=_TILE * aspect,
        title_h=0.42,
        fontsize=8,
        suptitle=(f"{fm.layer}: {k} most active of {maps.shape[1]} channels" if k < maps.shape[1]
                  else f"{fm.layer}: all {k} channels, most active first") + f" ({h}x{w}{kind}), sample {sample}",
        suptitle_size=10,
        colorbar=_scale(cmap, 0.0, 1.0),
        colorbar_label="each tile on its own scale",
        colorbar_ticks={0.0: "min", 1.0: "max"},
    )


def _full_columns(n: int, aspect: float, widest: int = 8) -> int:
    """Columns for ``n`` tiles of height/width ``aspect`` (each cell also holds a two-line title):
    among the grids whose last row lacks at most ``max(1, n // 6)`` tiles (else the fewest), the one
    closest to 3:1 (wide and short, as the page is; each blank counts against), at most ``widest``
    columns. 9 tiles: 5 + 4; 12: 6 + 6; 13: 7 + 6; 16: 8 + 8."""
    if n <= widest:
        return max(1, n)
    cell = (aspect * _TILE + 0.42) / (_TILE + 0.1)  # height / width of a tile with its title band
    options = range(max(2, math.ceil(math.sqrt(n))), widest + 1)
    blanks = {c: math.ceil(n / c) * c - n for c in options}
    allowed = [c for c in options if blanks[c] <= max(1, n // 6)] or [min(options, key=blanks.__getitem__)]
    return min(allowed, key=lambda c: abs(math.log(c / (math.ceil(n / c) * cell) / 3.0)) + 0.15 * blanks[c])


def _scale(cmap: str, lo: float, hi: float) -> Any:
    """A colour-bar mappable for values in [lo, hi] drawn with ``cmap``."""
    ScalarMappable = require("matplotlib.cm", "render").ScalarMappable
    Normalize = require("matplotlib.colors", "render").Normalize

    return ScalarMappable(Normalize(lo, hi), cmap)


def sequence_map_figure(
    values: Tensor,
    *,
    title: str | None = None,
    ylabel: str = "channel",
    xlabel: str = "step",
    diverging: bool | None = None,
    max_rows: int = 64,
    row_labels: Sequence[str] | None = None,
) -> Any:
    """A ``(rows, steps)`` map over a sequence (a Conv1d's channels, a gradient's features) as one heat
    map: rows top to bottom, steps left to right, a colour bar. ``diverging`` (default: when values of
    both signs occur) centres a blue-white-red scale at 0, else viridis from the minimum. More than
    ``max_rows`` rows: the ``max_rows`` with the largest mean ``|value|`` are shown, in their order,
    labelled with their numbers (said in the title)."""
    v = values.detach().float().cpu()
    if v.dim() == 1:
        v = v[None]
    if v.dim() != 2:
        raise InputShapeError(f"a sequence map is (rows, steps), got shape {tuple(values.shape)}")
    rows = list(range(v.shape[0]))
    note = ""
    if len(rows) > max_rows:
        keep = v.abs().mean(1).topk(max_rows).indices.sort().values
        rows = keep.tolist()
        v = v[keep]
        note = f" ({max_rows} of {values.shape[0]} {ylabel}s with the largest mean |value|)"
    labels = list(row_labels) if row_labels is not None else [str(r) for r in rows]
    if diverging is None:
        diverging = bool((v < 0).any()) and bool((v > 0).any())
    fig = new_figure(min(11.0, max(5.0, 2.5 + v.shape[1] * 0.03)), min(7.0, max(2.0, 1.2 + v.shape[0] * 0.14)))
    ax = fig.add_subplot()
    if diverging:
        top = _sym(v)
        im = ax.imshow(v.numpy(), cmap=_DIVERGING, vmin=-top, vmax=top, aspect="auto", interpolation="nearest")
    else:
        im = ax.imshow(v.numpy(), cmap=MAGNITUDE, aspect="auto", interpolation="nearest")
    if len(labels) <= 32:
        ax.set_yticks(range(len(labels)), labels, fontsize=SMALL if len(labels) > 16 else 8)
    ax.set_xlabel(f"{xlabel} ({v.shape[1]})")
    ax.set_ylabel(f"{ylabel} ({values.shape[0]})")
    fig.colorbar(im, ax=ax, shrink=0.9)
    ax.set_title(f"{title or ''}{note}", fontsize=10)
    return fig


def sequence_panels_figure(
    panels: dict[str, Tensor], *, ylabel: str = "feature", xlabel: str = "step", title: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Any:
    """Several ``(rows, steps)`` maps of one sample stacked top to bottom (e.g. the gradient, guided
    backprop and deconvnet of a sequence input), each with its own symmetric blue-white-red scale
    around 0 and colour bar, titled with its name and scale."""
    if not panels:
        raise UsageError("sequence_panels_figure needs at least one panel")
    vs = {k: (v.detach().float().cpu()[None] if v.dim() == 1 else v.detach().float().cpu()) for k, v in panels.items()}
    for k, v in vs.items():
        if v.dim() != 2:
            raise InputShapeError(f"panel {k!r}: a sequence map is (rows, steps), got shape {tuple(v.shape)}")
    r, t = next(iter(vs.values())).shape
    h = min(3.2, max(1.3, 0.6 + r * 0.09))
    fig = new_figure(min(11.0, max(6.0, 2.5 + t * 0.03)), h * len(vs) + (0.4 if title else 0.1))
    axes = fig.subplots(len(vs), 1, squeeze=False)[:, 0]
    for ax, (name, v) in zip(axes, vs.items()):
        top = _sym(v)
        im = ax.imshow(v.numpy(), cmap=_DIVERGING, vmin=-top, vmax=top, aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01)
        ax.set_title(f"{name} (±{top:.2g})", fontsize=9)
        ax.set_ylabel(f"{ylabel} ({v.shape[0]})", fontsize=8)
        labels = list(row_labels) if row_labels is not None else None
        if labels is not None and len(labels) == v.shape[0] and v.shape[0] <= 24:
            ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel(f"{xlabel} ({t})", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
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
    as one mosaic image. ``max_out`` defaults to 32 colour tiles or 12 rows. 1x1 kernels (a
    linear map over channels) are drawn whole, as a weight matrix.
    """
    w = weight.detach().float().cpu()
    if w.dim() == 3:
        w = w.unsqueeze(2)  # Conv1d: (out, in, 1, k)
    if w.dim() != 4:
        raise InputShapeError(f"kernels must be (out, in, kh, kw) or (out, in, k), got shape {tuple(weight.shape)}")
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
    if kh == kw == 1:  # a 1x1 convolution is a linear map over channels: all of it, as a matrix
        return weight_matrix_figure(w[:, :, 0, 0], title=title or f"1x1 kernels {out_c}x{in_c}",
                                    xlabel="input channel", ylabel="output channel")
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
    colormaps = require("matplotlib", "render").colormaps

    cmap = colormaps[_DIVERGING].with_extremes(bad="white")
    im = ax.imshow(mosaic.numpy(), cmap=cmap, vmin=-v, vmax=v, interpolation="nearest")
    ax.set_xticks([c * (kw + gap) + (kw - 1) / 2 for c in range(cols)], [str(c) for c in range(cols)], fontsize=8)
    ax.set_yticks([r * (kh + gap) + (kh - 1) / 2 for r in range(rows)], [str(r) for r in range(rows)], fontsize=8)
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
    max_size: int = 256,
) -> Any:
    """A weight matrix ``(out, in)`` as a heat map: diverging colormap centred at 0, colour bar.

    Larger matrices are averaged down to ``max_size`` per side for display (noted in the title): at
    most 11 in wide, a 256-cell side gives each shown value about 3 px, a pattern the eye can follow,
    where a 1,000 x 1,280 matrix drawn whole is one pixel of noise per weight (and a 1.5 MB PNG).
    ``row_labels`` (e.g. class names) label the rows when there are at most 40.
    """
    m = W.detach().float().cpu()
    if m.dim() == 1:
        m = m.unsqueeze(0)
    if m.dim() != 2:
        raise InputShapeError(f"a weight matrix must be 2-D (out, in), got shape {tuple(W.shape)}")
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
    # The extent keeps the axes in the matrix's own indices when it is shown averaged down.
    im = ax.imshow(m.numpy(), cmap=_DIVERGING, vmin=-v, vmax=v, aspect="auto", interpolation="nearest",
                   extent=(-0.5, in_f - 0.5, out_f - 0.5, -0.5))
    ax.set_xlabel(f"{xlabel} ({in_f})")
    ax.set_ylabel(f"{ylabel} ({out_f})")
    if row_labels is not None and len(row_labels) == out_f and out_f <= 40:
        ax.set_yticks(range(out_f))
        ax.set_yticklabels([str(s) for s in row_labels], fontsize=8)
    fig.colorbar(im, ax=ax, label="weight", shrink=0.9)
    ax.set_title(f"{title}{note}" if title else f"weights {out_f}x{in_f}{note}", fontsize=10)
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
        raise UsageError(f"{len(names)} labels for {k} templates; expected one label per template")
    if t.dim() == 2:
        return weight_matrix_figure(t, title=title or "class templates", xlabel="input feature", ylabel="class",
                                    row_labels=names)
    if t.dim() == 4 and t.shape[1] == 3:
        scale = t.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        return grid_figure(t / (2 * scale) + 0.5, names, ncols=ncols or min(k, 10),
                           suptitle=(title or "class templates") + " (each on its own scale, mid-gray = 0)")
    if t.dim() == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 3:
        raise InputShapeError(f"templates must be (K, D), (K, H, W), (K, 1, H, W) or (K, 3, H, W); got {tuple(t.shape)}")
    v = _sym(t)
    return grid_figure(
        t,
        names,
        ncols=ncols or min(k, 10),
        cmap=_DIVERGING,
        vmin=-v,
        vmax=v,
        colorbar=True,
        colorbar_label="weight",
        suptitle=title or "class templates (red: evidence for the class, blue: against)",
        tile=1.1,
    )


def matrix_summary_figure(W: Tensor, *, title: str | None = None, xlabel: str = "input feature",
                          ylabel: str = "output unit", crop: tuple[int, int] = (24, 48)) -> Any:
    """A weight matrix ``(out, in)`` too large to read cell by cell, summarised in three panels:
    its top-left ``crop`` (rows x columns) at a readable size, the L2 norm of every row, and the
    histogram of its values (the same diverging colormap and symmetric scale as
    :func:`weight_matrix_figure`)."""
    m = W.detach().float().cpu()
    if m.dim() != 2:
        raise InputShapeError(f"a weight matrix must be 2-D (out, in), got shape {tuple(W.shape)}")
    out_f, in_f = m.shape
    r, c = min(crop[0], out_f), min(crop[1], in_f)
    v = _sym(m)
    fig = new_figure(11.0, 3.4)
    grid = fig.add_gridspec(1, 3, width_ratios=[1.6, 1.0, 1.0])
    ax = fig.add_subplot(grid[0])
    im = ax.imshow(m[:r, :c].numpy(), cmap=_DIVERGING, vmin=-v, vmax=v, interpolation="nearest", aspect="auto")
    ax.set_title(f"rows 0-{r - 1}, columns 0-{c - 1} of {out_f} x {in_f}", fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    ax = fig.add_subplot(grid[1])
    norms = m.norm(dim=1)
    ax.plot(range(out_f), norms.numpy(), lw=0.8, color="#2f55d4")
    ax.set_title(f"L2 norm of each row (mean {float(norms.mean()):.3g})", fontsize=10)
    ax.set_xlabel(ylabel)
    ax.set_ylabel("norm")
    ax = fig.add_subplot(grid[2])
    ax.hist(m.flatten().numpy(), bins=80, color="#5b6474")
    ax.set_title(f"values: mean {float(m.mean()):.2g}, std {float(m.std()):.2g}", fontsize=10)
    ax.set_xlabel("weight")
    ax.set_ylabel("count")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
