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


def test_weights_animation_uses_the_still_figures_colormap_and_states_its_scale(tmp_path):
    import numpy as np
    from PIL import Image
    from torch import nn

    import torchloupe as tl
    from torchloupe.render.colormaps import colorize
    from torchloupe.render.weight_learning import DIVERGING, frame_images

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():  # class 0's template: +2 top-left, -2 bottom-right, 0 elsewhere
        model[1].weight.zero_()
        model[1].weight[0, 0], model[1].weight[0, 3] = 2.0, -2.0
    tracker = tl.weights.WeightTracker(model, every=1, input_shape=(1, 2, 2), snapshots=["1"])
    tracker.step()
    frames, what = frame_images(tracker.history, min_tile=8)
    assert what == "templates"
    top = colorize(torch.tensor([[1.0, -1.0, 0.0]]), DIVERGING, -1, 1)[:, 0]  # (3, 3): +max, -max, 0
    tile = frames[0][:, 2:10, 2:10]  # the first template: 4 px per weight after a 2 px margin
    assert torch.allclose(tile[:, 0, 0], top[:, 0], atol=1e-6)  # +2 -> the colormap's red end
    assert torch.allclose(tile[:, 7, 7], top[:, 1], atol=1e-6)  # -2 -> its blue end
    assert torch.allclose(tile[:, 0, 7], top[:, 2], atol=1e-6)  # 0 -> its middle
    path = tracker.animate(tmp_path / "w.gif", min_tile=8)
    with Image.open(path) as im:
        frame = np.asarray(im.convert("RGB"), dtype=float) / 255
    strip = frame[25:35, :, :]  # the key: a colour strip from -max to +max under the title
    reds = np.abs(strip - top[:, 0].numpy()).sum(-1).min()
    blues = np.abs(strip - top[:, 1].numpy()).sum(-1).min()
    assert reds < 0.06 and blues < 0.06


@pytest.mark.parametrize("methods", [7, 11])
def test_row_titles_wrap_within_their_row_and_keep_a_score_whole(methods):
    """EfficientNet's grid at the report's width: 'Egyptian cat (p = 0.80)' rotated was taller than its
    tile and ran into the next row's title. Each title now wraps to its row's height, 'p = 0.80' whole."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    titles = ["Egyptian cat, p = 0.80", "barbell, p = 0.14", "a very long class name like African hunting dog, p = 0.86"]
    fig = method_grid({f"m{i}": result(3) for i in range(methods)}, torch.rand(3, 3, 16, 16), row_titles=titles)
    assert fig.get_size_inches()[0] <= PAGE_WIDTH + 1e-6
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    rows = [t for t in texts(fig) if t.get_rotation() == 90 and "relevance" not in t.get_text()]
    assert len(rows) == 3
    boxes = sorted((t.get_window_extent(renderer) for t in rows), key=lambda b: -b.y1)
    pitch = fig.get_size_inches()[1] * fig.dpi / 3.5  # at least the height of a row less its share of titles
    for upper, lower in zip(boxes, boxes[1:]):
        assert upper.y0 > lower.y1, (upper, lower)  # no title runs into the next
    for t in rows:
        assert "p\u00a0=\u00a00." in t.get_text() and t.get_window_extent(renderer).height < pitch
