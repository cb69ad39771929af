"""Drawing CAM results: overlays on the input and a grid comparing methods.

Figures are ``matplotlib.figure.Figure`` objects (never pyplot state).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .image import overlay

__all__ = ["overlay", "plot_cam", "method_grid", "saliency_image", "plot_saliency"]


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


def plot_cam(result, images: Tensor | None = None, *, labels: Sequence[str] | None = None, cmap: str = "jet",
             alpha: float = 0.5, size: float = 2.4):
    """One row of panels: each sample's map over its image (or the map alone)."""
    from matplotlib.figure import Figure

    n = result.maps.shape[0]
    fig = Figure(figsize=(size * max(n, 1), size + 0.4), layout="constrained")
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
        ax.set_title(f"{result.method}: {name}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"layer {result.layer}", fontsize=9)
    return fig


def method_grid(results: Mapping[str, object], images: Tensor, *, row_titles: Sequence[str] | None = None,
                cmap: str = "jet", alpha: float = 0.5, size: float = 1.9):
    """Rows = samples, columns = the image then one overlay per method (``{title: CAMResult}``)."""
    from matplotlib.figure import Figure

    names = list(results)
    n = images.shape[0]
    cols = len(names) + 1
    fig = Figure(figsize=(size * cols, size * n + 0.3), layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    pics = {k: overlay(images, results[k].maps, cmap, alpha) for k in names}
    for i in range(n):
        axes[i, 0].imshow(_to_hwc(images[i]))
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        for j, k in enumerate(names, start=1):
            axes[i, j].imshow(pics[k][i].permute(1, 2, 0).numpy())
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(k, fontsize=9)
    axes[0, 0].set_title("input", fontsize=9)
    return fig


def saliency_image(grad: Tensor) -> Tensor:
    """``(N, C, H, W)`` input gradients -> ``(N, 3, H, W)`` in [0, 1]: each sample centred on 0.5,
    scaled by its 99th percentile of |value|."""
    g = grad.detach().float().cpu()
    if g.shape[1] == 1:
        g = g.expand(-1, 3, -1, -1)
    flat = g.reshape(g.shape[0], -1).abs()
    q = torch.quantile(flat, 0.99, dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (0.5 + 0.5 * (g / q)).clamp(0, 1)


def plot_saliency(images: Tensor, columns: Mapping[str, Tensor], *, row_titles: Sequence[str] | None = None,
                  size: float = 1.9):
    """Rows = samples, columns = the image then each ``{title: (N, C, H, W) gradient}``."""
    from matplotlib.figure import Figure

    names = list(columns)
    n = images.shape[0]
    fig = Figure(figsize=(size * (len(names) + 1), size * n + 0.3), layout="constrained")
    axes = fig.subplots(n, len(names) + 1, squeeze=False)
    pics = {k: saliency_image(v) for k, v in columns.items()}
    for i in range(n):
        axes[i, 0].imshow(_to_hwc(images[i]))
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
        for j, k in enumerate(names, start=1):
            axes[i, j].imshow(pics[k][i].permute(1, 2, 0).numpy())
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(k, fontsize=9)
    axes[0, 0].set_title("input", fontsize=9)
    return fig
