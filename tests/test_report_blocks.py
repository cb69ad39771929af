"""How blocks go into the page: WebP by content, one copy of each block script and style, alt text
read off the figure, findings linked to their blocks, a failing block that keeps the others."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from torchloupe.errors import InputTypeError
from torchloupe.render.png import PHOTO_QUALITY, web_image
from torchloupe.reporting import Figure, Finding, Section, Subject, Table, Text, build_report
from torchloupe.reporting.blocks import figure_alt, hoist_assets


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _line_art() -> np.ndarray:
    """White with black and blue lines: flat areas, sharp edges (a plot)."""
    a = np.full((300, 400, 3), 255, np.uint8)
    a[::25, :, :] = 0
    a[:, ::40, 2] = 0
    a[100:110, 50:350] = (30, 60, 200)
    return a


def _photo() -> np.ndarray:
    """A smooth gradient under noise: continuous tone everywhere (a photo, a heat map over one)."""
    g = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:400]
    base = np.stack([x * 255 / 400, y * 255 / 300, (x + y) * 255 / 700], axis=2)
    return np.clip(base + g.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def test_line_art_goes_lossless_and_exact():
    png = _png(_line_art())
    data, mime, how = web_image(png)
    assert (mime, how) == ("image/webp", "webp-lossless")
    assert np.array_equal(_pixels(data), _line_art().astype(int))  # not a pixel changed
    assert len(data) < len(png)


def test_photo_goes_lossy_at_the_stated_quality_and_stays_close():
    png = _png(_photo())
    data, mime, how = web_image(png)
    assert (mime, how) == ("image/webp", f"webp-q{PHOTO_QUALITY}")
    assert len(data) * 3 < len(png)
    err = np.abs(_pixels(data) - _photo().astype(int)).mean()
    assert 0 < err < 12  # lossy, but the picture is the same (the noise itself is sigma 12)
    forced, _, how = web_image(_png(_photo()), "lineart")  # the block can say otherwise
    assert how in ("webp-lossless", "unchanged")  # unchanged: the PNG was smaller than lossless WebP
    assert np.array_equal(_pixels(forced), _photo().astype(int))
    low, _, how = web_image(png, "photo", quality=50)
    assert how == "webp-q50" and len(low) < len(data)


def test_palette_for_drawn_line_art_and_resized_photos():
    # a figure's line art of many colours (anti-aliased edges): 256 colours, close to the original
    from PIL import Image, ImageDraw

    big = Image.new("RGB", (1600, 1200), "white")  # drawn at 4x and shrunk: anti-aliased, > 256 colours
    draw = ImageDraw.Draw(big)
    for i, colour in enumerate(((200, 30, 30), (30, 60, 200), (20, 140, 60), (0, 0, 0))):
        draw.line([(40, 100 + 250 * i), (1560, 1100 - 230 * i)], fill=colour, width=9)
        draw.ellipse([200 + 300 * i, 300, 420 + 300 * i, 520], outline=colour, width=7)
    art = np.asarray(big.resize((400, 300), Image.LANCZOS))
    assert len(np.unique(art.reshape(-1, 3), axis=0)) > 256
    data, mime, how = web_image(_png(art), palette=True)
    assert (mime, how) == ("image/webp", "webp-palette")
    assert np.abs(_pixels(data) - art.astype(int)).mean() < 2
    assert web_image(_png(_line_art()), palette=True)[2] == "webp-lossless"  # few colours: exact as before
    # photo-like pixels: lossy, resized by photo_scale
    data, _, how = web_image(_png(_photo()), palette=True, photo_scale=0.75)
    assert how == f"webp-q{PHOTO_QUALITY}" and _pixels(data).shape == (225, 300, 3)
    with pytest.raises(InputTypeError, match="photo_scale"):
        web_image(_png(_photo()), photo_scale=1.5)


def test_what_is_left_alone_and_what_is_refused():
    from PIL import Image

    frames = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    gif = buf.getvalue()
    assert web_image(gif) == (gif, "image/gif", "unchanged")
    small = _png(_photo()[:64, :64])  # small images (thumbnails, digits) stay lossless
    assert web_image(small)[2] in ("webp-lossless", "unchanged")
    with pytest.raises(InputTypeError, match="'jpeg'"):
        web_image(small, "jpeg")
    with pytest.raises(InputTypeError, match="quality must be an int from 1 to 100, got 0"):
        web_image(small, "photo", quality=0)


def test_block_scripts_and_styles_are_hoisted_once():
    markup = ('<div class="g"><style>.g{color:red}</style><script type="application/json" class="d">{"a":1}</script>'
              '<script>run()</script></div>')
    out, assets = hoist_assets(markup)
    assert len(assets) == 2
    (k1, (kind1, css)), (k2, (kind2, js)) = assets.items()
    assert (kind1, css, kind2, js) == ("style", ".g{color:red}", "script", "run()")
    # the data island stays; the script leaves an inert placeholder naming its one shared copy
    assert out == (f'<div class="g"><script type="application/json" class="d">{{"a":1}}</script>'
                   f'<script type="text/x-tl-run" data-asset="{k2}"></script></div>')
    assert hoist_assets(markup)[1] == assets  # the same text, the same key: one copy per page


def test_alt_text_says_what_the_figure_plots():
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure()
    a, b = fig.subplots(1, 2)
    a.plot([3, 2, 1])
    a.set_title("loss")
    a.set_xlabel("step")
    im = b.imshow(np.zeros((2, 2)))
    b.set_title("weights")
    fig.colorbar(im, ax=b)
    fig.suptitle("training")
    assert figure_alt(fig) == "training: 1 line plot, 1 image (loss; weights), axes: step, with a colour bar"


def _tiny_subject() -> Subject:
    return Subject("tiny", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)), torch.rand(2, 1, 2, 2))


class _Unrenderable:
    def savefig(self, *a, **k):
        raise RuntimeError("the canvas broke")

    def get_axes(self):
        return []

    dpi = 100

    def get_figwidth(self):
        raise RuntimeError("the canvas broke")


def test_a_block_that_fails_to_draw_keeps_the_others(tmp_path):
    def build(subject, options):
        table = Table(["a"], [[1]])
        return [Text("computed: 42"), Figure(_Unrenderable(), caption="broken plot"), table,
                Finding("It is 42.", table)]

    info = build_report([_tiny_subject()], tmp_path / "r.html", sections=[Section("s", "S", "b", 1, build)],
                        progress=False)
    html = info.path.read_text()
    assert [r.status for r in info.runs] == ["ok"]
    assert "computed: 42" in html and "This figure could not be drawn (broken plot): RuntimeError: the canvas broke" in html
    assert 'id="fig-s--tiny-2"' in html and 'href="#fig-s--tiny-2"' in html  # the finding links to the table


def test_feature_map_mosaics_fill_their_rows():
    from torchloupe.reporting.sections.feature_maps import mosaic_columns

    assert mosaic_columns(13) == 7  # 12 channels and the input: 7 + 6, not 4 + 4 + 4 + 1
    assert mosaic_columns(17) == 6 and mosaic_columns(8) == 4 and mosaic_columns(3) == 3
    for n in range(5, 40):  # no choice from 4 to 7 columns leaves fewer empty places
        c = mosaic_columns(n)
        assert (-n) % c == min((-n) % k for k in range(4, 8))


def test_scripts_inside_details_are_written_once_too(tmp_path):
    from torchloupe.reporting import Details, Html

    markup = "<div><script>window.ran = (window.ran || 0) + 1;</script></div>"

    def build(subject, options):
        return [Html(markup), Details("more", [Html(markup)])]

    info = build_report([_tiny_subject()], tmp_path / "r.html", sections=[Section("s", "S", "b", 1, build)],
                        progress=False)
    html = info.path.read_text()
    assert html.count("window.ran = (window.ran || 0) + 1;") == 1
    assert html.count('<script type="text/x-tl-run"') == 2 and html.count('<script type="text/plain" id="tl-asset-') == 1
