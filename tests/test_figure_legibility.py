"""Figures are drawn at the size the report shows them: no wider than the page column, so their text
is not shrunk below its drawn size, and every heat map says its scale."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("matplotlib")

from torchloupe.cam.base import CAMResult
from torchloupe.render.cam import CAM_SCALE, PAGE_WIDTH, SALIENCY_SCALE, method_grid, plot_cam, plot_saliency


def result(n: int, method: str = "gradcam") -> CAMResult:
    maps = torch.linspace(0, 1, 16 * 16).reshape(1, 16, 16).repeat(n, 1, 1)
    return CAMResult(maps=maps, raw=maps, targets=torch.arange(n), layer="features", method=method)


def colorbars(fig):
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def texts(fig):
    return [t for ax in fig.axes for t in [*ax.texts, ax.title, ax.xaxis.label, ax.yaxis.label,
                                            *ax.get_xticklabels(), *ax.get_yticklabels()] if t.get_text()]


@pytest.mark.parametrize("methods", [2, 7, 11])
def test_method_grid_fits_the_page_and_keeps_its_text_size(methods):
    images = torch.rand(3, 3, 16, 16)
    fig = method_grid({f"m{i}": result(3) for i in range(methods)}, images, row_titles=["a", "b", "c"])
    width, _ = fig.get_size_inches()
    assert width <= PAGE_WIDTH + 1e-6
    sizes = {t.get_fontsize() for t in texts(fig)}
    assert min(sizes) >= 9  # 12.5 px at 100 dpi, shown 1:1
    bars = colorbars(fig)
    assert len(bars) == 1 and bars[0].get_ylabel() == CAM_SCALE
    assert bars[0].get_ylim() == (0.0, 1.0)
    if methods == 2:  # a small grid keeps its full tile size (1.9 in)
        assert width > 3 * 1.9


def test_plot_cam_and_saliency_say_their_scale():
    fig = plot_cam(result(12), torch.rand(12, 3, 16, 16))
    assert fig.get_size_inches()[0] <= PAGE_WIDTH + 1e-6
    bar = colorbars(fig)
    assert len(bar) == 1 and bar[0].get_ylabel() == CAM_SCALE
    fig = plot_saliency(torch.rand(2, 3, 16, 16), {"gradient": torch.randn(2, 3, 16, 16)})
    bar = colorbars(fig)
    assert len(bar) == 1 and bar[0].get_ylabel() == SALIENCY_SCALE and bar[0].get_ylim() == (-1.0, 1.0)
