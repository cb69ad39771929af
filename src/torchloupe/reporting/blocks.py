"""Blocks -> view data for the template: images become base64 data URIs, tables formatted strings.

Figures are rendered to PNG by the render core (or SVG when asked) at :data:`FIGURE_ZOOM`
times their dpi (at most :data:`FIGURE_MAX_WIDTH` pixels wide), so the page shows them at
the size they were drawn for and the enlarged view (the lightbox, at the image's own pixel
size) twice as large and as sharp; other images wider than :data:`MAX_WIDTH` pixels are
downscaled so the file stays small. The display width honours the image's DPI. Pixels go
into the page as WebP (:func:`torchloupe.render.png.web_image`: lossy at a stated quality
for photo-like images, lossless for the rest; a figure's line art as a 256-colour palette
when that is within 42 dB PSNR of it, its photo-like pixels at :data:`FIGURE_PHOTO_SCALE` of
the rendered size and quality :data:`FIGURE_PHOTO_QUALITY`); an animated GIF as its first
frame, with the animation (as lossless animated WebP) behind a play button.

Scripts and styles inside :class:`Html` blocks are kept once per page: each plain
``<style>`` and ``<script>`` element becomes an *asset* (keyed by a hash of its text)
that the page writes once; in the block a script is replaced by an inert placeholder
the page script runs, where it stood, when the block nears the window (so
``document.currentScript.parentElement`` is still the block's root). Data islands
(``<script type="application/json">``) stay where they are.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import re
from numbers import Integral, Real
from typing import Any

from torch import Tensor

from ..errors import UsageError, require
from .base import Details, Figure, Finding, Html, Image, Table, Text


MAX_WIDTH = 1800  # pixels; wider images are downscaled
_BASE_DPI = 100.0  # the dpi at which a figure shows at its pixel size
_TINY, _TINY_DISPLAY = 96, 192  # images up to _TINY px wide show about _TINY_DISPLAY px wide, pixelated
# Figures are rendered at FIGURE_ZOOM x their dpi and shown at their drawn size: the enlarged view
# shows them twice as large. Widest rendering: twice the report's content column (1,260 px) and a bit.
FIGURE_ZOOM = 2.0
FIGURE_MAX_WIDTH = 2600
# Photo-like figure pixels (CAMs over photos, synthesized images) are lossy at 1.5x the drawn size
# and quality 50 (sharper than 1x at 80, about as many bytes): 2x at quality 80 would add 1.4 MB to the demo report.
FIGURE_PHOTO_SCALE = 0.75
FIGURE_PHOTO_QUALITY = 50


def figure_png(fig: Any, zoom: float = 1.0) -> bytes:
    """PNG bytes of a matplotlib ``Figure`` via the render core, at ``zoom`` x its dpi, lowered to keep
    it within :data:`FIGURE_MAX_WIDTH` pixels (``zoom=1``: :data:`MAX_WIDTH`); the dpi is recorded."""
    dpi = float(fig.dpi) * zoom
    width_in = float(fig.get_figwidth())
    widest = MAX_WIDTH if zoom == 1.0 else FIGURE_MAX_WIDTH
    if width_in * dpi > widest:
        dpi = widest / width_in
    from ..render import to_png

    return to_png(fig, dpi=dpi)


def _figure_svg(fig: Any) -> bytes:
    """SVG bytes; a fixed id salt makes them the same in every process (matplotlib's default is random)."""
    matplotlib = require("matplotlib", "render")

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "torchloupe"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _raster_info(data: bytes, mime: str, widest: int = MAX_WIDTH) -> tuple[bytes, int, int, float]:
    """(bytes, pixel width, pixel height, display scale); PNGs wider than ``widest`` are downscaled."""
    PILImage = require("PIL.Image", "render", package="pillow")

    with PILImage.open(io.BytesIO(data)) as im:
        w, h = im.size
        dpi = im.info.get("dpi", (_BASE_DPI, _BASE_DPI))[0] or _BASE_DPI
        scale = _BASE_DPI / dpi if dpi > _BASE_DPI * 1.05 else 1.0
        animated = getattr(im, "is_animated", False)
        if w > widest and mime == "image/png" and not animated:
            nh = max(1, round(h * widest / w))
            small = im.convert("RGBA" if "A" in im.getbands() else "RGB").resize((widest, nh), PILImage.LANCZOS)
            buf = io.BytesIO()
            small.save(buf, format="PNG")
            scale *= w / widest
            data, w, h = buf.getvalue(), widest, nh
    return data, w, h, scale


_SVG_SIZE = re.compile(rb'<svg[^>]*?\bwidth="([\d.]+)(pt|px)?"[^>]*?\bheight="([\d.]+)(pt|px)?"', re.S)


def _svg_size(data: bytes) -> tuple[int, int]:
    m = _SVG_SIZE.search(data[:4000])
    if not m:
        return 0, 0
    factor = 4 / 3 if m.group(2) == b"pt" else 1.0
    return round(float(m.group(1)) * factor), round(float(m.group(3)) * factor)


def _image_view(data: bytes, mime: str, caption: str, alt: str, kind: str = "auto",
                quality: int | None = None, figure: bool = False) -> dict[str, Any]:
    """``figure``: a figure rendered at :data:`FIGURE_ZOOM` (see the module doc)."""
    from ..render.png import web_image

    anim = None
    if mime == "image/svg+xml":
        w, h = _svg_size(data)
        display_w = w
    else:
        data, w, h, scale = _raster_info(data, mime, FIGURE_MAX_WIDTH if figure else MAX_WIDTH)
        display_w = round(w * scale)
        if 0 < w <= _TINY:  # a few pixels wide (an 8x8 digit): show it larger, pixels crisp
            display_w = w * max(1, _TINY_DISPLAY // w)
        if mime == "image/gif" and _animated(data):  # a still first frame; the animation on demand
            anim = data_uri(*_animation(data))
            data, mime = _first_frame(data), "image/png"
        if mime == "image/png" and figure:
            data, mime, how = web_image(data, kind, quality or FIGURE_PHOTO_QUALITY, palette=True,
                                        photo_scale=FIGURE_PHOTO_SCALE)
            if how.startswith("webp-q"):  # resized: the lossy pixels are FIGURE_PHOTO_SCALE of the rendering
                w, h = max(1, round(w * FIGURE_PHOTO_SCALE)), max(1, round(h * FIGURE_PHOTO_SCALE))
        elif mime == "image/png":
            data, mime, _ = web_image(data, kind, quality)
    nbytes = len(data) * 4 // 3 + (len(anim) if anim else 0)
    return {
        "kind": "image",
        "src": data_uri(data, mime),
        "anim": anim,
        "width": display_w or None,
        "pixel_size": (w, h),
        "caption": caption,
        "alt": alt or caption or "figure",
        "small": 0 < w <= _TINY and mime != "image/svg+xml",
        "bytes": nbytes,
    }


def _animated(data: bytes) -> bool:
    PILImage = require("PIL.Image", "render", package="pillow")
    with PILImage.open(io.BytesIO(data)) as im:
        return getattr(im, "n_frames", 1) > 1


def _animation(data: bytes) -> tuple[bytes, str]:
    """``(bytes, mime)``: an animated GIF as lossless animated WebP (same frames, timing and loop;
    the demo's two 20-frame GIFs: 210 kB -> 40 kB each), or the GIF when that is not smaller."""
    PILImage = require("PIL.Image", "render", package="pillow")
    with PILImage.open(io.BytesIO(data)) as im:
        frames, durations = [], []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(im.convert("RGBA"))
            durations.append(int(im.info.get("duration", 100)))
        loop = im.info.get("loop", 0)
    if all(f.getextrema()[3][0] == 255 for f in frames):
        frames = [f.convert("RGB") for f in frames]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=durations,
                   loop=loop, lossless=True, quality=10, method=3)
    webp = buf.getvalue()
    return (webp, "image/webp") if len(webp) < len(data) else (data, "image/gif")


def _first_frame(data: bytes) -> bytes:
    PILImage = require("PIL.Image", "render", package="pillow")
    with PILImage.open(io.BytesIO(data)) as im:
        im.seek(0)
        frame = im.convert("RGBA")
    buf = io.BytesIO()
    frame.save(buf, format="PNG")
    return buf.getvalue()


def figure_alt(fig: Any) -> str:
    """What a matplotlib figure shows, read off it: its title and its panels' titles and axis
    labels (a reader who cannot see the figure learns what it plots; the caption says why)."""
    title = getattr(getattr(fig, "_suptitle", None), "get_text", lambda: "")()
    axes = [ax for ax in fig.get_axes() if ax.get_visible() and ax.get_label() != "<colorbar>"]
    titles = [t for t in (ax.get_title() or ax.get_title("left") for ax in axes) if t]
    labels = sorted({lbl for ax in axes for lbl in (ax.get_xlabel(), ax.get_ylabel()) if lbl})
    bars = sum(1 for ax in fig.get_axes() if ax.get_label() == "<colorbar>")
    if not title and not titles:  # a figure titled in free text (a mosaic's heading)
        title = "; ".join(t.get_text() for t in fig.texts if t.get_text().strip())[:200]
    kinds: dict[str, int] = {}
    for ax in axes:
        kind = ("image" if ax.images else "bar chart" if ax.patches else "line plot" if ax.lines
                else "scatter plot" if ax.collections else "panel")
        kinds[kind] = kinds.get(kind, 0) + 1
    parts = [f"{title}: " if title else ""]
    parts.append(", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in kinds.items()) or "an empty figure")
    if titles:
        shown = titles[:12]
        parts.append(" (" + "; ".join(shown) + ("; ..." if len(titles) > len(shown) else "") + ")")
    if labels:
        parts.append(", axes: " + ", ".join(labels[:6]))
    if bars:
        parts.append(f", with {'a colour bar' if bars == 1 else f'{bars} colour bars'}")
    return "".join(parts)


_ASSET = re.compile(r"<(style|script)>(.*?)</\1>", re.S)


def hoist_assets(markup: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """``(markup, {id: (kind, text)})``: plain ``<style>`` / ``<script>`` elements taken out of
    ``markup`` (see the module doc); a script leaves ``<script type="text/x-tl-run" data-asset=id>``."""
    assets: dict[str, tuple[str, str]] = {}

    def take(m: re.Match) -> str:
        kind, text = m.group(1), m.group(2)
        key = "tl-asset-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
        assets[key] = (kind, text)
        return "" if kind == "style" else f'<script type="text/x-tl-run" data-asset="{key}"></script>'

    return _ASSET.sub(take, markup), assets


def format_cell(value: Any) -> tuple[str, bool]:
    """(text, is_number) for one table cell."""
    if isinstance(value, Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, Integral):
        return f"{int(value):,}", True
    if isinstance(value, Real):
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            return str(f), True
        if f != 0 and (abs(f) >= 1e5 or abs(f) < 1e-3):
            return f"{f:.3g}", True
        return f"{f:.4g}", True
    if value is None:
        return "", False
    return str(value), False


def block_view(block: Any, options: dict | None = None) -> dict[str, Any]:
    """The template's view of one block (raises TypeError for anything that is not a block)."""
    if isinstance(block, Figure):
        fmt = (block.format or "png").lower()
        if fmt not in ("png", "svg"):
            raise UsageError(f"figure format {block.format!r} is not supported; expected 'png' or 'svg'")
        # drawn first: the alt reads it
        data = _figure_svg(block.figure) if fmt == "svg" else figure_png(block.figure, FIGURE_ZOOM)
        alt = block.alt or figure_alt(block.figure)
        if fmt == "svg":
            return _image_view(data, "image/svg+xml", block.caption, alt)
        return _image_view(data, "image/png", block.caption, alt, block.kind, block.quality, figure=True)
    if isinstance(block, Image):
        mime = block.mime.lower()
        if mime not in ("image/png", "image/gif", "image/svg+xml", "image/jpeg", "image/webp"):
            raise UsageError(f"image type {block.mime!r} is not supported; expected PNG, GIF, SVG, JPEG or WebP")
        alt = block.alt
        if not alt:
            what = {"image/gif": "animation", "image/svg+xml": "drawing"}.get(mime, "image")
            alt = f"{what}: {block.caption}" if block.caption else what
        return _image_view(bytes(block.data), mime, block.caption, alt, block.kind, block.quality)
    if isinstance(block, Finding):
        return {"kind": "finding", "text": str(block.text), "ref": None, "bytes": len(str(block.text))}
    if isinstance(block, Details):
        inner = [block_view(b, options) for b in block.blocks]
        return {"kind": "details", "summary": str(block.summary), "blocks": inner,
                "bytes": sum(v.get("bytes", 0) for v in inner)}
    if isinstance(block, Table):
        highlight = {(int(r), int(c)) for r, c in block.highlight}
        rows = []
        numeric_cols: list[bool] = [True] * len(block.columns)
        for r, row in enumerate(block.rows):
            cells = []
            for c, value in enumerate(row):
                text, is_num = format_cell(value)
                if c < len(numeric_cols) and not is_num and text:
                    numeric_cols[c] = False
                cells.append({"text": text, "hl": (r, c) in highlight})
            rows.append(cells)
        for row in rows:
            for c, cell in enumerate(row):
                cell["num"] = c < len(numeric_cols) and numeric_cols[c]
        nbytes = sum(len(c["text"]) + 9 for row in rows for c in row)
        # about 8 px a character at 13.5 px, 24 px of padding a cell: how wide the table lays out
        chars = [max([len(str(c))] + [len(row[i]["text"]) for row in rows if i < len(row)])
                 for i, c in enumerate(block.columns)]
        width = sum(8 * min(n, 60) + 24 for n in chars)
        return {"kind": "table", "columns": [str(c) for c in block.columns], "rows": rows,
                "caption": block.caption, "numeric": numeric_cols, "bytes": nbytes, "width": width}
    if isinstance(block, Text):
        return {"kind": "text", "text": str(block.text), "bytes": len(str(block.text))}
    if isinstance(block, Html):
        markup, assets = hoist_assets(str(block.markup))
        return {"kind": "html", "markup": markup, "assets": assets, "bytes": len(markup)}
    raise TypeError(f"a section returned a {type(block).__name__}; expected Figure, Image, Table, Text, Html, "
                    f"Details or Finding blocks")
