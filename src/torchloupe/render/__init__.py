"""Drawing: colormaps, normalisation, overlays, grids and matplotlib figures of results.

The building blocks every view reuses::

    tl.render.normalize(x)                      # min-max per sample, constant -> zeros, never NaN
    tl.render.colorize(maps, "viridis")         # (N, H, W) in [0, 1] -> (N, 3, H, W) RGB
    tl.render.overlay(images, maps, "jet", 0.5) # heat maps blended on images at image size
    tl.render.image_grid(images, ncols=8)       # (N, C, H, W) -> (C, H', W') tiled tensor
    tl.render.grid_figure(images, titles)       # a labelled grid as a matplotlib Figure
    tl.render.to_png(fig_or_tensor)             # PNG bytes

Figures of results: :func:`feature_map_figure`, :func:`kernel_figure`,
:func:`weight_matrix_figure`, :func:`class_template_figure`. All figures are
``matplotlib.figure.Figure`` objects drawn without pyplot. Names resolve lazily
(matplotlib is imported only by the functions that draw).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # tensors in, tensors out (torch only; matplotlib only for colormap tables)
    "normalize": "image",
    "colorize": "colormaps",
    "colormap_table": "colormaps",
    "overlay": "image",
    "image_grid": "image",
    "to_rgb": "image",
    # encoding
    "to_png": "png",
    "figure_to_png": "png",
    # matplotlib figures
    "new_figure": "figures",
    "grid_figure": "figures",
    "feature_map_figure": "figures",
    "kernel_figure": "figures",
    "weight_matrix_figure": "figures",
    "class_template_figure": "figures",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    # Per-area drawing modules (tl.render.cam, tl.render.quality, ...) load on first use too.
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'torchloupe.render' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
