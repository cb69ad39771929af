"""Render core: normalisation, colormaps, overlays, grids, PNG encoding and the figures."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from torchloupe import render as R
from torchloupe.features import FeatureMaps, feature_maps


def test_normalize_per_sample_and_global():
    x = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [-2.0, 0.0, 2.0]])
    out = R.normalize(x)
    assert torch.equal(out, torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.0, 0.0], [0.0, 0.5, 1.0]]))
    glob = R.normalize(x, per_sample=False)
    assert torch.allclose(glob, (x + 2.0) / 7.0)
    assert torch.equal(x[1], torch.tensor([5.0, 5.0, 5.0]))  # input untouched


def test_normalize_never_nan():
    x = torch.tensor([[float("nan"), 1.0, 3.0], [0.0, 0.0, 0.0], [float("inf"), 1.0, 1.0]])
    out = R.normalize(x)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], torch.tensor([0.0, 0.0, 1.0]))  # NaN counts as the minimum
    assert torch.equal(out[1], torch.zeros(3))
    assert torch.equal(out[2], torch.tensor([1.0, 0.0, 0.0]))  # +inf at the top, finite rest constant
    assert R.normalize(torch.zeros(0, 4)).shape == (0, 4)
    assert R.normalize(torch.tensor([[0, 2, 4]])).dtype == torch.float32


def test_colorize_uses_matplotlib_colormaps():
    from matplotlib import colormaps

    m = torch.tensor([[[0.0, 1.0], [0.5, 2.0]]])  # 2.0 is clamped to 1
    rgb = R.colorize(m, "gray")
    assert rgb.shape == (1, 3, 2, 2)
    assert torch.allclose(rgb[0, :, 0, 0], torch.zeros(3))
    assert torch.allclose(rgb[0, :, 0, 1], torch.ones(3))
    assert torch.allclose(rgb[0, :, 1, 1], torch.ones(3))
    expected = torch.tensor(colormaps["viridis"](0.0)[:3], dtype=torch.float32)
    assert torch.allclose(R.colorize(torch.zeros(2, 2), "viridis")[:, 0, 0], expected, atol=1e-6)
    top = torch.tensor(colormaps["jet"](1.0)[:3], dtype=torch.float32)
    assert torch.allclose(R.colorize(torch.full((1, 1, 3, 3), 7.0), "jet", vmin=0, vmax=7)[0, :, 1, 1], top)
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        R.colorize(m, "nope")


def test_overlay_blends_resizes_and_broadcasts_gray():
    images = torch.full((2, 1, 8, 8), 0.2)  # gray images
    maps = torch.ones(2, 4, 4)  # resized to 8x8
    out = R.overlay(images, maps, cmap="gray", alpha=0.5)
    assert out.shape == (2, 3, 8, 8)
    assert torch.allclose(out, torch.full_like(out, 0.6))
    # alpha = 0 gives the image back (as RGB), alpha = 1 the coloured map at image size
    rgb = torch.rand(1, 3, 6, 6)
    small = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    assert torch.allclose(R.overlay(rgb, small, alpha=0.0), rgb)
    full = R.overlay(rgb, small, cmap="gray", alpha=1.0)
    assert full.shape == (1, 3, 6, 6)
    assert torch.all(full[0, :, :, 0] < 0.05) and torch.all(full[0, :, :, -1] > 0.95)
    # one image for several maps
    assert R.overlay(rgb[0], torch.rand(3, 6, 6)).shape == (3, 3, 6, 6)
    with pytest.raises(ValueError, match="2 maps for 3 images"):
        R.overlay(torch.rand(3, 3, 4, 4), torch.rand(2, 4, 4))
    assert torch.equal(images, torch.full((2, 1, 8, 8), 0.2))


def test_image_grid_places_tiles_row_by_row():
    tiles = torch.stack([torch.full((1, 2, 2), float(i)) for i in (1, 2, 3)])
    grid = R.image_grid(tiles, ncols=2, padding=1, pad_value=-1.0)
    assert grid.shape == (1, 7, 7)
    assert torch.equal(grid[0, 1:3, 1:3], torch.full((2, 2), 1.0))
    assert torch.equal(grid[0, 1:3, 4:6], torch.full((2, 2), 2.0))
    assert torch.equal(grid[0, 4:6, 1:3], torch.full((2, 2), 3.0))
    assert torch.equal(grid[0, 4:6, 4:6], torch.full((2, 2), -1.0))  # the empty slot
    assert grid[0, 0].eq(-1).all() and grid[0, :, 3].eq(-1).all()


def test_to_png_round_trips_tensors_and_renders_figures():
    from PIL import Image

    img = torch.tensor([[[0.0, 1.0], [0.5, 0.25]]]).expand(3, 2, 2)
    data = R.to_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB")))
    assert back[..., 0].tolist() == [[0, 255], [128, 64]]
    big = Image.open(io.BytesIO(R.to_png(img[0], scale=3)))
    assert big.size == (6, 6) and big.mode == "L"
    fig = R.new_figure(2, 1)
    fig.add_subplot().plot([0, 1], [1, 0])
    png = R.to_png(fig)
    assert Image.open(io.BytesIO(png)).size == (200, 100)
    # The picture of matplotlib's own savefig, also at an odd size and another dpi; dpi kept.
    # (savefig draws twice, so constrained layout may settle a pixel further; a few edges differ.)
    fig = R.new_figure(3.37, 2.11)
    ax = fig.add_subplot()
    im = ax.imshow(np.arange(12.0).reshape(3, 4))
    fig.colorbar(im, ax=ax, label="value")
    ax.set_title("title")
    for dpi in (100, 137):
        ours = np.array(Image.open(io.BytesIO(R.to_png(fig, dpi=dpi))).convert("RGBA"))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        theirs = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGBA"))
        assert ours.shape == theirs.shape
        differ = (ours != theirs).any(-1).mean()
        assert differ < 0.06, f"{differ:.1%} of the pixels differ from savefig at dpi {dpi}"
        assert fig.dpi == 100
    with pytest.raises(TypeError, match="Figure or an image tensor"):
        R.to_png("not an image")
    with pytest.raises(ValueError, match="batch of 2"):
        R.to_png(torch.rand(2, 3, 4, 4))


def _titles(fig):
    """Tile titles: drawn as text on the one mosaic axes."""
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _tile(fig, i):
    """Tile ``i`` of a mosaic figure as ``(C, h, w)`` at mosaic resolution."""
    ax = fig.axes[0]
    y, x, h, w = ax.tile_boxes[i]
    return torch.as_tensor(ax.images[0].get_array()[y : y + h, x : x + w]).permute(2, 0, 1)


def test_feature_map_figure_ranks_channels_and_labels_them():
    maps = torch.zeros(1, 3, 4, 4)
    maps[0, 0] = 1.0
    maps[0, 1] = 3.0
    maps[0, 2] = 2.0
    fm = FeatureMaps(maps=maps, layer="conv", order=torch.tensor([[1, 2, 0]]), channels=torch.tensor([5, 6, 7]),
                     stats={"mean": torch.tensor([[1.0, 3.0, 2.0]]), "max": torch.tensor([[1.0, 3.0, 2.0]])})
    fig = R.feature_map_figure(fm, 0, max_channels=2, image=torch.rand(3, 8, 8))
    titles = _titles(fig)
    assert titles[0] == "input"
    assert titles[1].startswith("ch 6\nmean 3") and titles[2].startswith("ch 7\nmean 2")
    assert len(titles) == 3
    assert "2 most active of 3 channels" in fig._suptitle.get_text()
    assert R.feature_map_figure(fm, 0)._suptitle.get_text().startswith("conv: all 3 channels, most active first (")
    with pytest.raises(IndexError, match="sample 1"):
        R.feature_map_figure(fm, 1)


def test_feature_map_figure_on_a_real_layer():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU())
    fm = feature_maps(model, torch.rand(2, 3, 10, 10), "1")
    fig = R.feature_map_figure(fm, 1, max_channels=4)
    assert len(_titles(fig)) == 4
    assert R.to_png(fig)[:4] == b"\x89PNG"


def test_kernel_figure_rgb_tiles_and_deep_rows():
    rgb = torch.randn(5, 3, 3, 3)
    fig = R.kernel_figure(rgb)
    assert len(fig.axes) == 1 and len(fig.axes[0].images) == 1  # one mosaic image, not one axes per tile
    assert _titles(fig) == ["0", "1", "2", "3", "4"]
    # symmetric scaling: 0 maps to mid-gray, the largest |w| of each kernel to 0 or 1
    big = _tile(fig, 0)
    up = big.shape[-1] // 3
    assert big.shape[-2:] == (3 * up, 3 * up)
    k0 = big[:, ::up, ::up]  # tiles are enlarged by pixel repetition
    assert torch.equal(big, k0.repeat_interleave(up, 1).repeat_interleave(up, 2))
    expected = rgb[0] / (2 * rgb[0].abs().max()) + 0.5
    assert torch.allclose(k0.float(), expected, atol=1e-6)
    deep = torch.randn(20, 10, 3, 3)
    fig = R.kernel_figure(deep, max_out=4, max_in=3)
    mosaic = torch.as_tensor(fig.axes[0].images[0].get_array().filled(float("nan")))
    assert mosaic.shape == (4 * 4 - 1, 3 * 4 - 1)  # 3x3 tiles with 1-pixel gaps
    assert torch.equal(mosaic[4:7, 8:11], deep[1, 2])  # tile (out 1, in 2)
    assert torch.isnan(mosaic[3]).all() and torch.isnan(mosaic[:, 7]).all()
    v = float(deep[:4, :3].abs().max())
    assert fig.axes[0].images[0].get_clim() == pytest.approx((-v, v))
    assert "first 4 of 20 outputs" in fig._suptitle.get_text()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2"]


def test_1x1_kernels_are_drawn_whole_as_a_matrix():
    w = torch.randn(40, 24, 1, 1)
    fig = R.kernel_figure(w, title="head")
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (40, 24)  # every output and input channel
    assert ax.get_xlabel() == "input channel (24)" and ax.get_ylabel() == "output channel (40)"
    assert ax.get_title() == "head"


def test_weight_matrix_figure_is_centred_with_colorbar_and_labels():
    W = torch.tensor([[1.0, -3.0, 0.5], [2.0, 0.0, -1.0]])
    fig = R.weight_matrix_figure(W, row_labels=["a", "b"], xlabel="feature", ylabel="class")
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == (-3.0, 3.0)
    assert ax.get_xlabel() == "feature (3)" and ax.get_ylabel() == "class (2)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert len(fig.axes) == 2  # the colour bar
    big = R.weight_matrix_figure(torch.randn(10, 3000), max_size=500)
    assert big.axes[0].images[0].get_array().shape == (10, 500)
    assert "averaged" in big.axes[0].get_title()
    # The axes keep the matrix's own columns (0..2999), not the 500 display columns.
    assert big.axes[0].get_xlim() == pytest.approx((-0.5, 2999.5))
    titled = R.weight_matrix_figure(torch.randn(4, 3000), max_size=500, title="fc")
    assert titled.axes[0].get_title() == "fc, shown averaged to 4x500"


def test_class_template_figure_layouts():
    t = torch.randn(3, 1, 8, 8)
    fig = R.class_template_figure(t, ["zero", "one", "two"])
    assert _titles(fig) == ["zero", "one", "two"]
    v = float(t.abs().max())
    assert fig.axes[1]._colorbar.mappable.get_clim() == pytest.approx((-v, v))  # one shared, centred scale
    flat_min = t.flatten().argmin()
    lo = R.colorize(t.flatten()[flat_min].reshape(1, 1), "RdBu_r", -v, v)[:, 0, 0]
    tile0 = _tile(fig, int(flat_min) // 64)
    up = tile0.shape[-1] // 8
    pos = int(flat_min) % 64
    assert torch.allclose(tile0[:, (pos // 8) * up, (pos % 8) * up].float(), lo, atol=1e-6)
    rgb = R.class_template_figure(torch.randn(2, 3, 4, 4), ["a", "b"])
    assert _titles(rgb) == ["a", "b"]
    flat = R.class_template_figure(torch.randn(4, 7), list("abcd"))
    assert flat.axes[0].images[0].get_array().shape == (4, 7)
    with pytest.raises(ValueError, match="2 labels for 3 templates"):
        R.class_template_figure(t, ["a", "b"])


def test_import_torchloupe_loads_no_matplotlib_or_jinja2():
    code = (
        "import sys, torchloupe as tl\n"
        "import torchloupe.render, torchloupe.features, torchloupe.weights.static, torchloupe.demo.shapes\n"
        "import torchloupe.demo.models, torchloupe.demo.cache\n"
        "tl.render.__doc__; tl.demo.SHAPE_CLASSES; tl.weights.kernels; tl.features.feature_maps\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'jinja2')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ})
    assert out.stdout.strip() == ""


def test_a_missing_extra_is_one_line_naming_the_pip_command(monkeypatch):
    from torchloupe.errors import MissingDependencyError
    from torchloupe.render import fusion  # noqa: F401  (imported now: its module-level import is checked below)

    for prefix in ("matplotlib", "PIL"):
        for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")] + [prefix]:
            monkeypatch.setitem(sys.modules, name, None)  # "not installed" for every import from here on
    with pytest.raises(MissingDependencyError) as info:
        R.kernel_figure(torch.rand(2, 1, 3, 3))
    assert str(info.value) == "matplotlib is needed for this; install it with: pip install 'torchloupe[render]'"
    with pytest.raises(MissingDependencyError) as info:
        R.to_png(torch.rand(3, 4, 4))
    assert str(info.value) == "pillow is needed for this; install it with: pip install 'torchloupe[render]'"
    monkeypatch.delitem(sys.modules, "torchloupe.render.recurrent", raising=False)
    with pytest.raises(MissingDependencyError, match=r"^matplotlib is needed for this; install it with: pip"):
        import torchloupe.render.recurrent  # noqa: F401


def test_render_errors_are_typed_and_keep_their_builtin_bases():
    from torchloupe.errors import InputShapeError, InputTypeError, UsageError

    with pytest.raises(InputTypeError, match="to_png takes a matplotlib Figure or an image tensor, got str") as info:
        R.to_png("x")
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    with pytest.raises(InputTypeError, match="x must be a torch.Tensor, got list"):
        R.normalize([1.0])
    with pytest.raises(InputShapeError, match=r"images must be \(N, 1 or 3, H, W\)"):
        R.to_rgb(torch.rand(2, 5, 4, 4))
    with pytest.raises(UsageError, match=r"alpha must be in \[0, 1\], got 2"):
        R.overlay(torch.rand(1, 3, 4, 4), torch.rand(1, 4, 4), alpha=2)
    with pytest.raises(UsageError, match="unknown colormap 'nope'"):
        R.colorize(torch.rand(1, 4, 4), "nope")
