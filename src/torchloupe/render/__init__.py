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

from .._lazy import lazy_exports

_EXPORTS = {
    # tensors in, tensors out (torch only; matplotlib only for colormap tables)
    "normalize": "image",
    "colorize": "colormaps",
    "colormap_table": "colormaps",
    "overlay": "image",
    "image_grid": "image",
    "to_rgb": "image",
    "image_shape": "image",
    # encoding
    "to_png": "png",
    "figure_to_png": "png",
    "web_image": "png",
    # matplotlib figures
    "new_figure": "figures",
    "grid_figure": "figures",
    "feature_map_figure": "figures",
    "sequence_map_figure": "figures",
    "sequence_panels_figure": "figures",
    "kernel_figure": "figures",
    "weight_matrix_figure": "figures",
    "matrix_summary_figure": "figures",
    "class_template_figure": "figures",
    # class activation maps and saliency
    "plot_cam": "cam",
    "method_grid": "cam",
    "plot_saliency": "cam",
    "saliency_image": "cam",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), submodules=True)
