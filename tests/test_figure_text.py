"""Every figure the report draws is readable as the report shows it: text at least 10 CSS px at
1400 px wide, and every heat map with a colour bar or a stated scale.

How the report shows a figure (``reporting/blocks.py``): it is rasterized at twice ``fig.dpi`` for
the lightbox, shown at the size it was drawn for (``fig.dpi`` px per inch), and shrunk to the page's
content column, 1,083 px at a 1,400 px window. A ``P`` pt text therefore shows at
``P / 72 * dpi * min(1, 1083 / shown width)`` px (the raster's extra pixels sharpen, not enlarge). The sizes measured are those of the
text the Agg renderer actually draws (tick labels included, hidden axes excluded).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("matplotlib")

import torchloupe as tl  # noqa: E402
from torchloupe.render import colormaps as cmaps  # noqa: E402
from torchloupe.render.figures import PAGE_WIDTH  # noqa: E402

CELL = 1083.0  # the content column at a 1,400 px window (measured in Chromium)
MAX_WIDTH = 1800.0  # the report's widest rendered figure, in pixels
MIN_PX = 10.0


def displayed(fig) -> tuple[float, float]:
    """(the dpi the report renders ``fig`` at, CSS px per rendered px)."""
    dpi = float(fig.dpi)
    width_in = float(fig.get_figwidth())
    if width_in * dpi > MAX_WIDTH:
        dpi = MAX_WIDTH / width_in
    scale = 100.0 / dpi if dpi > 105.0 else 1.0
    shown = width_in * dpi * scale
    return dpi, scale * min(1.0, CELL / shown)


def drawn_texts(fig, monkeypatch) -> list[tuple[str, float]]:
    """``(text, CSS px)`` of every string Agg draws inside the canvas when the report renders ``fig``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg

    dpi, css = displayed(fig)
    out: list[tuple[str, float]] = []
    original = RendererAgg.draw_text

    def spy(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        w, h = self.width, self.height
        if s.strip() and -2 <= x <= w + 2 and -2 <= y <= h + 2:
            out.append((s, prop.get_size_in_points() / 72.0 * dpi * css))
        return original(self, gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    monkeypatch.setattr(RendererAgg, "draw_text", spy)
    if not isinstance(getattr(fig, "canvas", None), FigureCanvasAgg):
        FigureCanvasAgg(fig)
    old = fig.dpi
    fig.set_dpi(dpi)
    try:
        fig.canvas.draw()
    finally:
        fig.set_dpi(old)
    return out


def colour_bars(fig) -> list:
    return [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def scalar_images(fig) -> list:
    """Images and meshes drawn from scalar values through a colormap, colour bars excluded; neither RGB
    pictures nor gray pictures of a one-channel input (``gray`` over the input's range [0, 1])."""
    from matplotlib.collections import QuadMesh
    from matplotlib.image import AxesImage

    out = []
    for ax in fig.axes:
        if getattr(ax, "_colorbar", None) is not None:
            continue
        for im in ax.get_children():
            if isinstance(im, (AxesImage, QuadMesh)) and im.get_visible():
                a = im.get_array()
                picture = im.get_cmap().name == "gray" and tuple(im.get_clim()) == (0.0, 1.0)
                if a is not None and not picture and (a.ndim == 2 or not isinstance(im, AxesImage)):
                    out.append(im)
    return out


# -- the subjects: tiny models and the results the report sections compute -------------------------


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 24, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 5)).eval()


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rgb = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.depth = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, a, b):
        return self.head(torch.cat([self.rgb(a), self.depth(b)], 1))


def _images(n=4, size=16, c=3):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(1))


def f_method_grid():
    x = _images()
    model = _cnn()
    res = {tl.cam.title_of(k): tl.cam.METHODS[k](model, layer="2")(x) for k in ("gradcam", "gradcam++", "layercam")}
    return tl.render.method_grid(res, x, row_titles=["cat", "dog", "car", "boat"])


def f_plot_saliency():
    x = _images(3)
    g = torch.randn(3, 3, 16, 16)
    return tl.render.plot_saliency(x, {"Gradient": g, "Guided backprop": g.relu(), "Deconvnet": -g})


def f_plot_saliency_gray():  # one-channel inputs (digits): the signed colormap, white = 0
    x = _images(2, c=1)
    g = torch.randn(2, 1, 16, 16)
    return tl.render.plot_saliency(x, {"Gradient": g, "Guided backprop": g.relu()})


def f_sequence_panels():
    g = torch.randn(12, 40)
    from torchloupe.render.figures import sequence_panels_figure

    return sequence_panels_figure({"gradient": g, "guided backprop": g.relu()}, ylabel="feature",
                                  title="saliency of a sequence", row_labels=[f"f{i}" for i in range(12)])


def f_feature_maps(channels=12, size=14):
    fm = tl.features.feature_maps(_cnn(), _images(1, size), "2")
    return tl.render.feature_map_figure(fm, 0, channels, image=_images(1, size)[0])


def f_feature_maps_wide():  # a wide map (a spectrogram): 6 x 40
    model = nn.Sequential(nn.Conv2d(1, 10, 3, padding=1)).eval()
    fm = tl.features.feature_maps(model, torch.rand(1, 1, 6, 40, generator=torch.Generator().manual_seed(2)), "0")
    return tl.render.feature_map_figure(fm, 0, 12)


def f_sequence_map():
    from torchloupe.render.figures import sequence_map_figure

    v = torch.randn(40, 64, generator=torch.Generator().manual_seed(3))
    return sequence_map_figure(v, title="conv1d: channels over steps, sample 0")


def f_kernels_rgb():
    return tl.render.kernel_figure(torch.randn(32, 3, 5, 5), title="conv1: kernels 32x3x5x5")


def f_kernels_deep():
    return tl.render.kernel_figure(torch.randn(64, 32, 3, 3), title="layer4.conv2: kernels 64x32x3x3")


def f_kernels_1x1():
    return tl.render.kernel_figure(torch.randn(24, 16, 1, 1), title="proj: kernels 24x16x1x1")


def f_weight_matrix_head():
    labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return tl.render.weight_matrix_figure(torch.randn(10, 128), title="fc: 10x128", ylabel="class", row_labels=labels)


def f_weight_matrix_large():
    return tl.render.weight_matrix_figure(torch.randn(1000, 1280), title="classifier.1: 1000x1280")


def f_weight_matrix_small():
    return tl.render.weight_matrix_figure(torch.randn(3, 8), title="head: 3x8")


def f_class_templates_gray():
    return tl.render.class_template_figure(torch.randn(10, 1, 28, 28), [str(i) for i in range(10)],
                                           title="fc: class templates")


def f_class_templates_rgb():
    return tl.render.class_template_figure(torch.randn(10, 3, 32, 32), [f"class {i}" for i in range(10)],
                                           title="fc: class templates")


def f_class_templates_flat():
    return tl.render.class_template_figure(torch.randn(4, 20), ["a", "b", "c", "d"])


def _synthesis(shape=(3, 16, 16), with_exemplars=True):
    from torch.utils.data import TensorDataset

    model = _cnn()
    data = TensorDataset(_images(24, 16))
    ex = tl.synthesis.exemplars(model, data, "2", k=5, channels=[0, 1, 2]) if with_exemplars else None
    res = tl.synthesis.maximize(model, ["2:0", "2:1", "2:2"], steps=3, input_shape=shape, seed=0, exemplars=ex,
                                baseline_samples=4, transforms=None)
    return res, ex


def f_units_with_exemplars():
    from torchloupe.render.synthesis import units_figure

    res, ex = _synthesis()
    return units_figure(res, ex, title="2: channels 0..2")


def f_units_alone():
    from torchloupe.render.synthesis import units_figure

    res, _ = _synthesis(with_exemplars=False)
    return units_figure(res, None)


def f_units_gray():  # digits: one-channel synthesized inputs are pictures, drawn in gray
    from torchloupe.render.synthesis import units_figure

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    res = tl.synthesis.maximize(model, ["3:0", "3:1", "3:2"], steps=3, input_shape=(1, 8, 8), seed=0,
                                param="pixel", baseline_samples=4, transforms=None)
    return units_figure(res)


def f_units_sequence():
    from torchloupe.render.synthesis import units_figure

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(60, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    res = tl.synthesis.maximize(model, ["3:0", "3:1", "3:2", "3:3"], steps=3, input_shape=(12, 5), seed=0,
                                param="pixel", baseline_samples=4, transforms=None)
    return units_figure(res)


def f_synthesis_curves():
    from torchloupe.render.synthesis import curves_figure

    return curves_figure(_synthesis(with_exemplars=False)[0])


def f_exemplars():
    from torchloupe.render.synthesis import exemplars_figure

    _, ex = _synthesis()
    return exemplars_figure(ex, rows=3, k=5)


def f_exemplars_named():
    from torchloupe.render.synthesis import exemplars_figure

    _, ex = _synthesis()
    return exemplars_figure(ex, rows=3, k=5, names=lambda i: f"images/train/class_{i % 3}/sample_{i:05d}.png")


def _fusion():
    model = TwoBranch()
    g = torch.Generator().manual_seed(4)
    xs = (torch.rand(8, 3, 12, 12, generator=g), torch.rand(8, 1, 12, 12, generator=g))
    branches = {"rgb": "rgb", "depth": "depth"}
    return model, xs, branches


def f_fusion_points():
    from torchloupe.render.fusion import points_figure

    model, xs, _ = _fusion()
    pts = tl.fusion.find(model, *xs)
    return points_figure(pts, title=f"{len(pts)} fusion point(s)")


def _fusion_results():
    import warnings

    model, xs, branches = _fusion()
    with warnings.catch_warnings():  # "explaining input 0": integrated gradients of a two-input model, as the report
        warnings.simplefilter("ignore", UserWarning)
        return {m: tl.fusion.contributions(model, xs, branches, method=m) for m in ("exact", "integrated_gradients")}


def f_fusion_shares():
    from torchloupe.render.fusion import shares_figure

    res = _fusion_results()
    labels = next(iter(res.values())).targets
    return shares_figure(res, labels, ["left", "straight", "right"])


def f_fusion_sample_shares():
    from torchloupe.render.fusion import sample_shares_figure

    res = _fusion_results()
    return sample_shares_figure(res, n=8, names=[str(int(t)) for t in next(iter(res.values())).targets])


def f_fusion_branch_maps():
    from torchloupe.render.fusion import branch_maps_figure

    model, xs, branches = _fusion()
    small = (xs[0][:4], xs[1][:4])
    bm = tl.fusion.branch_maps(model, small, branches)
    return branch_maps_figure({"rgb": small[0], "depth": small[1]}, bm.maps, n=4, row_names=["a", "b", "c", "d"])


def f_fusion_provenance():
    from torchloupe.render.fusion import provenance_figure

    model, xs, branches = _fusion()
    point, fused = tl.fusion.fused_features(model, xs, branches)
    return provenance_figure(fused[0], {"rgb": (0, 4), "depth": (4, 8)}, title=f"channels of {point.name} (sample 0)")


def f_fusion_cka():
    from torchloupe.render.fusion import cka_figure

    model, xs, branches = _fusion()
    return cka_figure(tl.fusion.similarity(model, xs, branches))


def f_fusion_share_curves():
    from torchloupe.render.fusion import share_curves_figure

    model, xs, branches = _fusion()
    tracker = tl.fusion.ShareTracker(model, xs, branches, every=1)
    for _ in range(3):
        tracker.step()
    return share_curves_figure(tracker.history, {"all": None, "class 0": tracker.history.targets == 0},
                               title="shares over training")


def _trace():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 20, batch_first=True)
    x = torch.randn(2, 30, 3)
    return tl.recurrent.trace(lstm, x), x[..., 0]


def f_recurrent_states():
    from torchloupe.render.recurrent import states_figure

    tr, sig = _trace()
    return states_figure(tr, signal=sig)


def f_recurrent_saturation():
    from torchloupe.render.recurrent import saturation_figure

    tr, _ = _trace()
    return saturation_figure(tl.recurrent.saturation(tr))


def f_recurrent_units():
    from torchloupe.render.recurrent import units_figure

    tr, sig = _trace()
    return units_figure(tr, sig, tl.recurrent.correlate(tr, sig, state="c"), state="c")


def _quality():
    model = _cnn()
    x = _images(2)
    maps = {tl.cam.title_of(k): tl.cam.METHODS[k](model, layer="2")(x).maps for k in ("gradcam", "scorecam")}
    maps["Random maps"] = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(5))
    return model, x, maps


def f_quality_curves():
    from torchloupe.render.quality import curves_figure

    model, x, maps = _quality()
    dele = {k: tl.evaluate.deletion_curve(model, x, m, steps=6) for k, m in maps.items()}
    ins = {k: tl.evaluate.insertion_curve(model, x, m, steps=6) for k, m in maps.items()}
    return curves_figure(dele, ins)


def f_quality_randomization():
    from torchloupe.render.quality import randomization_figure

    model, x, maps = _quality()
    fn = {"Grad-CAM": lambda m, xx, t: tl.cam.GradCAM(m, layer="2")(xx, target=t).maps}
    return randomization_figure(tl.evaluate.randomization_check(model, x, fn))


def _history(conv: bool):
    torch.manual_seed(0)
    if conv:
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        tracker = tl.weights.WeightTracker(model, every=1, snapshots=["0", "4"])
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))
        tracker = tl.weights.WeightTracker(model, every=1, input_shape=(1, 8, 8), snapshots=["1", "3"])
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        tracker.step()
    tracker.close()
    return tracker.history


def f_wl_norms():
    from torchloupe.render.weight_learning import plot_norms

    return plot_norms(_history(False))


def f_wl_histograms():
    from torchloupe.render.weight_learning import plot_histograms

    return plot_histograms(_history(False))


def f_wl_templates():
    from torchloupe.render.weight_learning import plot_templates

    return plot_templates(_history(False), labels=[str(i) for i in range(10)])


def f_wl_head_matrix():
    from torchloupe.render.weight_learning import plot_templates

    return plot_templates(_history(True), labels=["a", "b", "c", "d"])


def f_wl_kernels():
    from torchloupe.render.weight_learning import plot_kernels

    return plot_kernels(_history(True))


def f_wl_units():
    from torchloupe.render.weight_learning import plot_kernels

    return plot_kernels(_history(False))


def f_wl_similarity():
    from torchloupe.render.weight_learning import plot_similarity

    return plot_similarity(_history(False), labels=[f"class {i}" for i in range(10)])


# name -> (builder, the colormap its heat maps use: None for a figure without one)
FIGURES = {
    "cam method grid": (f_method_grid, cmaps.CAM),
    "saliency grid": (f_plot_saliency, "gray"),
    "saliency grid, one channel": (f_plot_saliency_gray, cmaps.SIGNED),
    "saliency of a sequence": (f_sequence_panels, cmaps.SIGNED),
    "feature maps": (f_feature_maps, cmaps.MAGNITUDE),
    "feature maps, 3 channels": (lambda: f_feature_maps(3), cmaps.MAGNITUDE),
    "feature maps, wide": (f_feature_maps_wide, cmaps.MAGNITUDE),
    "sequence feature map": (f_sequence_map, cmaps.SIGNED),
    "RGB kernels": (f_kernels_rgb, None),
    "kernels": (f_kernels_deep, cmaps.SIGNED),
    "1x1 kernels": (f_kernels_1x1, cmaps.SIGNED),
    "head matrix": (f_weight_matrix_head, cmaps.SIGNED),
    "large matrix": (f_weight_matrix_large, cmaps.SIGNED),
    "small matrix": (f_weight_matrix_small, cmaps.SIGNED),
    "class templates": (f_class_templates_gray, cmaps.SIGNED),
    "RGB class templates": (f_class_templates_rgb, None),
    "class templates of vectors": (f_class_templates_flat, cmaps.SIGNED),
    "synthesis with exemplars": (f_units_with_exemplars, None),
    "synthesis alone": (f_units_alone, None),
    "synthesis of sequences": (f_units_sequence, cmaps.SIGNED),
    "synthesis of gray images": (f_units_gray, None),
    "synthesis curves": (f_synthesis_curves, None),
    "exemplars": (f_exemplars, None),
    "exemplars with names": (f_exemplars_named, None),
    "fusion points": (f_fusion_points, None),
    "fusion shares": (f_fusion_shares, None),
    "fusion sample shares": (f_fusion_sample_shares, None),
    "fusion branch maps": (f_fusion_branch_maps, cmaps.CAM),
    "fusion provenance": (f_fusion_provenance, cmaps.MAGNITUDE),
    "fusion CKA": (f_fusion_cka, cmaps.MAGNITUDE),
    "fusion share curves": (f_fusion_share_curves, None),
    "recurrent states": (f_recurrent_states, cmaps.SIGNED),
    "recurrent saturation": (f_recurrent_saturation, None),
    "recurrent units": (f_recurrent_units, None),
    "quality curves": (f_quality_curves, None),
    "quality randomization": (f_quality_randomization, None),
    "weights over time: norms": (f_wl_norms, None),
    "weights over time: histograms": (f_wl_histograms, cmaps.MAGNITUDE),
    "weights over time: templates": (f_wl_templates, cmaps.SIGNED),
    "weights over time: head matrix": (f_wl_head_matrix, cmaps.SIGNED),
    "weights over time: kernels": (f_wl_kernels, cmaps.SIGNED),
    "weights over time: hidden units": (f_wl_units, cmaps.SIGNED),
    "weights over time: similarity": (f_wl_similarity, cmaps.SIGNED),
}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_text_is_readable_and_heat_maps_state_their_scale(name, monkeypatch):
    build, cmap = FIGURES[name]
    fig = build()
    texts = drawn_texts(fig, monkeypatch)
    assert texts, f"{name}: no text drawn"
    small = sorted({(round(px, 1), s[:40]) for s, px in texts if px < MIN_PX - 1e-6})
    assert not small, f"{name}: text below {MIN_PX} px at 1400 px wide: {small[:8]}"
    bars = colour_bars(fig)
    bar_maps = {b.cmap.name for b in bars}
    for im in scalar_images(fig):  # a scalar heat map drawn through a colormap has that colormap's bar
        assert im.get_cmap().name in bar_maps, f"{name}: a {im.get_cmap().name} heat map without its colour bar"
    if cmap is not None:  # one colormap per kind of quantity, and its bar says the scale
        assert bar_maps == {cmap}, f"{name}: colour bars in {bar_maps}, expected {cmap}"
        for b in bars:
            ticks = [t.get_text() for t in b.ax.get_yticklabels() + b.ax.get_xticklabels() if t.get_text()]
            assert len(ticks) >= 2, f"{name}: a colour bar without values"


def test_the_rule_by_hand(monkeypatch):
    """The measure itself: 9 pt at 100 dpi in a figure 6 in wide shows at 12.5 px; the same figure
    20 in wide is rendered at 90 dpi (1,800 px) and shrunk to 1,083 px: 9 / 72 * 90 * 0.6017 = 6.77 px;
    at 200 dpi a 6 in figure shows at 600 px, its 9 pt text at 12.5 px."""
    from torchloupe.render.figures import new_figure

    for width, dpi, want in ((6, 100, 12.5), (20, 100, 9 / 72 * 90 * CELL / 1800), (6, 200, 12.5)):
        fig = new_figure(width, 2, dpi=dpi, layout=None)
        fig.text(0.5, 0.5, "label", fontsize=9)
        fig.text(5.0, 0.5, "outside the canvas", fontsize=2)
        (text, px), = drawn_texts(fig, monkeypatch)
        assert text == "label" and px == pytest.approx(want)


def test_the_heat_map_check_by_hand():
    """A viridis heat map is found and has no bar until one is added; a gray picture in [0, 1] and an
    RGB picture are not heat maps."""
    from torchloupe.render.figures import new_figure

    fig = new_figure(6, 2)
    a, b, c = fig.subplots(1, 3)
    im = a.imshow(torch.rand(4, 4).numpy(), cmap=cmaps.MAGNITUDE)
    b.imshow(torch.rand(4, 4).numpy(), cmap="gray", vmin=0, vmax=1)
    c.imshow(torch.rand(4, 4, 3).numpy())
    assert scalar_images(fig) == [im] and colour_bars(fig) == []
    fig.colorbar(im, ax=a)
    assert [bar.cmap.name for bar in colour_bars(fig)] == [cmaps.MAGNITUDE] and scalar_images(fig) == [im]


def test_feature_map_mosaics_fill_their_grid():
    """Columns are chosen from the tile count and aspect: the last row lacks at most max(1, n // 6)
    tiles, and the grid is wide and short (about 3:1) as the page is. With the input tile: 4 tiles in
    one row, 9 as 5 + 4, 13 as 7 + 6, 17 as 6 + 6 + 5 (8 columns would leave 7 blanks)."""
    for channels, (want_cols, want_rows) in ((3, (4, 1)), (8, (5, 2)), (12, (7, 2)), (16, (6, 3))):
        fig = f_feature_maps(channels)
        boxes = fig.axes[0].tile_boxes
        n = len(boxes)
        cols = len({x for _, x, _, _ in boxes})
        rows = len({y for y, _, _, _ in boxes})
        assert (cols, rows) == (want_cols, want_rows), channels
        assert rows * cols - n <= max(1, n // 6)
        assert fig.get_figwidth() <= PAGE_WIDTH + 1e-6


def test_one_channel_saliency_in_the_signed_colormap():
    """+q (the 99th percentile of |g|) and beyond -> the map's red end, -q -> blue, 0 -> its middle."""
    from torchloupe.render.cam import saliency_image
    from torchloupe.render.colormaps import colorize

    g = torch.zeros(1, 1, 10, 10)
    g[0, 0, 0, 0], g[0, 0, 0, 1] = 2.0, -2.0
    ends = colorize(torch.tensor([[1.0, -1.0, 0.0]]), cmaps.SIGNED, -1, 1)[:, 0]
    img = saliency_image(g)[0]
    assert torch.allclose(img[:, 0, 0], ends[:, 0]) and torch.allclose(img[:, 0, 1], ends[:, 1])
    assert torch.allclose(img[:, 5, 5], ends[:, 2])


def test_colormap_names_are_matplotlib_maps():
    from matplotlib import colormaps

    for name in (cmaps.SIGNED, cmaps.MAGNITUDE, cmaps.CAM):
        assert name in colormaps
    assert cmaps.SIGNED == "RdBu_r" and cmaps.CAM == "jet"


def test_figure_file_sizes_stay_small():
    """A figure's PNG stays small enough for the report's 5 MB: the largest here under 400 kB."""
    from torchloupe.render.png import figure_to_png

    for name in ("feature maps", "large matrix", "class templates", "kernels", "cam method grid"):
        fig = FIGURES[name][0]()
        dpi = min(float(fig.dpi), MAX_WIDTH / fig.get_figwidth())
        assert len(figure_to_png(fig, dpi=dpi)) < 400_000, name


def test_provenance_leaves_no_blank_column():
    """Branches of 4 channels each: 4 columns (not the 8 asked for), every tile a channel."""
    fig = f_fusion_provenance()
    boxes = fig.axes[0].tile_boxes
    assert len({x for _, x, _, _ in boxes}) == 4 and len(boxes) == 8
