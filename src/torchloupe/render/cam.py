"""Drawing CAM results: overlays on the input and a grid comparing methods.

Figures are ``matplotlib.figure.Figure`` objects (never pyplot state).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .plain import figure_class
from ..errors import require
from .colormaps import CAM, SIGNED
from .figures import PAGE_WIDTH  # widest a grid is drawn: the report's column less a margin
from .image import overlay

__all__ = ["overlay", "plot_cam", "method_grid", "saliency_image", "plot_saliency"]


CAM_SCALE = "relevance (each map scaled to 0-1)"
SALIENCY_SCALE = "gradient / 99th pct of |gradient|"


def _scale(cmap: str, lo: float = 0.0, hi: float = 1.0):
    """A colour-bar mappable for values in [lo, hi] drawn with ``cmap``."""
    cm = require("matplotlib.cm", "render")
    colors = require("matplotlib.colors", "render")
    return cm.ScalarMappable(norm=colors.Normalize(lo, hi), cmap=cmap)


def _to_hwc(img: Tensor) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] (1 or 3 channels) -> ``(H, W, 3)`` float numpy."""
    a = img.detach().float().cpu()
    if a.dim() == 2:
        a = a[None]
    if a.shape[0] == 1:
        a = a.expand(3, *a.shape[1:])
    a = a[:3].permute(1, 2, 0).numpy()
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.clip(a, 0, 1)


def plot_cam(result, images: Tensor | None = None, *, labels: Sequence[str] | None = None, cmap: str = CAM,
             alpha: float = 0.5, size: float = 2.4):
    """One row of panels: each sample's map over its image (or the map alone)."""
    Figure = figure_class()  # strings drawn without mathtext

    from ..cam import title_of

    n = result.maps.shape[0]
    size = min(size, (PAGE_WIDTH - 1.0) / max(n, 1))
    fig = Figure(figsize=(size * max(n, 1) + 1.0, size + 0.4), layout="constrained")
    axes = fig.subplots(1, max(n, 1), squeeze=False)[0]
    pics = overlay(images, result.maps, cmap, alpha) if images is not None else None
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        if pics is not None:
            ax.imshow(pics[i].permute(1, 2, 0).numpy())
        else:
            ax.imshow(result.maps[i].detach().float().cpu().numpy(), cmap=cmap, vmin=0, vmax=1)
        t = int(result.targets[i])
        name = labels[t] if labels is not None and 0 <= t < len(labels) else (str(t) if t >= 0 else "score")
        ax.set_title(f"{title_of(result.method)}: {name}", fontsize=9)
        ax.axis("off")
    bar = fig.colorbar(_scale(cmap), ax=list(axes), shrink=0.85, pad=0.02)
    bar.set_label(CAM_SCALE, fontsize=8)
    bar.ax.tick_params(labelsize=8)
    fig.suptitle(f"layer {result.layer}", fontsize=9)
    return fig


def method_grid(results: Mapping[str, object], images: Tensor, *, row_titles: Sequence[str] | None = None,
                cmap: str = CAM, alpha: float = 0.5, size: float = 1.9):
    """Rows = samples, columns = the image then one overlay per method (``{title: CAMResult}``)."""

    names = list(results)
    pics = {k: overlay(images, results[k].maps, cmap, alpha) for k in names}
    return _grid(images, names, pics, row_titles, size, _scale(cmap), CAM_SCALE)


def _grid(images: Tensor, names: list[str], pics: Mapping[str, Tensor], row_titles, size: float,
          scale=None, scale_label: str | None = None):
    """Rows = samples, columns = the input then ``pics[name]``: one composed image (no axes per panel),
    at most :data:`PAGE_WIDTH` wide (tiles shrink to fit, the text does not), with ``scale`` as a colour bar."""
    from .figures import mosaic_figure

    import re
    import textwrap

    n = images.shape[0]
    cols = len(names) + 1
    # "p = 0.80" and a parenthesis are kept on one line: their spaces do not break (textwrap splits ASCII
    # spaces only); a score is 8 characters, 0.6 in at 9 pt, within a tile of 12 columns
    titles = ([re.sub(r"\(([^()]*)\)", lambda m: "(" + m.group(1).replace(" ", "\u00a0") + ")",
                      re.sub(r" = ", "\u00a0=\u00a0", str(t))) for t in row_titles] if row_titles is not None else None)
    lines = 1
    for _ in range(2):  # the rotated row titles wrap to the tile's height; more lines, a wider margin
        extra = 0.12 + 0.25 * lines + (1.05 if scale is not None else 0.0)  # row titles and margins, the colour bar
        tile = max(0.6, min(size, (PAGE_WIDTH - extra) / cols - 0.1))
        if titles is None:
            break
        per_line = max(8, int(tile / 0.075))  # 9 pt text: about 0.075 in a character
        wrapped = [textwrap.fill(t, per_line, break_long_words=False) for t in titles]
        lines = max(t.count("\n") + 1 for t in wrapped) if wrapped else 1
    size = tile
    if titles is not None:
        titles = [textwrap.fill(t, max(8, int(size / 0.075)), break_long_words=False) for t in titles]
    tiles = []
    for i in range(n):
        tiles.append(torch.from_numpy(_to_hwc(images[i])).permute(2, 0, 1))
        tiles.extend(pics[k][i].detach().float().cpu() for k in names)
    return mosaic_figure(tiles, None, cols, tile_w=size, tile_h=size, title_h=0.06, fontsize=9,
                         col_titles=["input", *names],
                         row_titles=titles,
                         colorbar=scale, colorbar_label=scale_label)


def saliency_image(grad: Tensor) -> Tensor:
    """``(N, C, H, W)`` input gradients -> ``(N, 3, H, W)`` in [0, 1], each sample scaled by its 99th
    percentile of |value|: a one-channel gradient in the signed colormap (:data:`~.colormaps.SIGNED`,
    white = 0), several channels as colour (mid-gray = 0)."""
    g = grad.detach().float().cpu()
    flat = g.reshape(g.shape[0], -1).abs()
    q = torch.quantile(flat, 0.99, dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    if g.shape[1] == 1:
        from .colormaps import colorize

        return colorize((g / q)[:, 0], SIGNED, -1.0, 1.0)
    return (0.5 + 0.5 * (g / q)).clamp(0, 1)


def plot_saliency(images: Tensor, columns: Mapping[str, Tensor], *, row_titles: Sequence[str] | None = None,
                  size: float = 1.9):
    """Rows = samples, columns = the image then each ``{title: (N, C, H, W) gradient}``."""

    names = list(columns)
    pics = {k: saliency_image(v) for k, v in columns.items()}
    signed = all(v.shape[1] == 1 for v in columns.values())  # one channel: drawn in SIGNED, else RGB around gray
    return _grid(images, names, pics, row_titles, size, _scale(SIGNED if signed else "gray", -1.0, 1.0),
                 SALIENCY_SCALE)
