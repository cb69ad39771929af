"""Images and class labels named on the command line: Pillow files into one float batch, named
normalizations, label files (text or ImageNet-style JSON).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import data as _data
from ..inputs import standard_layout
from .._limits import check_image_pixels, check_memory, tensor_bytes
from ..errors import InputFileError, TorchLoupeError, UsageError, require


# The pixel rules live in the compute core (:mod:`torchloupe.data`), shared with datasets from disk.
NORMALIZATIONS = _data.NORMALIZATIONS
normalize_images = _data.normalize_images


#: Bytes held per byte of the loaded image batch, at least, by the work done on it (copies, maps at
#: input size, gradients, perturbed batches): the pre-flight estimate of :func:`load_images`.
IMAGE_WORK_FACTOR = 16


def load_images(
    paths: Sequence[str | Path],
    size: int | None = None,
    normalize: str | tuple | None = None,
    mode: str = "RGB",
) -> Tensor:
    """Read images with Pillow into one ``(N, 3, H, W)`` float batch in [0, 1] (before ``normalize``).

    ``mode="L"`` reads them as gray, ``(N, 1, H, W)``. ``size``: resize the shorter side to ``size`` and center-crop to ``size x size``.
    Without it, images keep their size when all agree; otherwise each is center-cropped
    to a square of the smallest side among them. Unreadable files raise
    :class:`InputFileError` naming the file.
    """
    pil = require("PIL.Image", "render", package="pillow")
    if mode not in ("RGB", "L"):
        raise UsageError(f"image mode must be 'RGB' or 'L', got {mode!r}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise UsageError("no input images given; expected at least one image file")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise UsageError(f"image size must be a positive integer, got {size!r}")
    if size is not None:  # before any file is decoded: the batch and what a report or explanation holds of it
        check_memory(tensor_bytes((len(paths), 3 if mode == "RGB" else 1, size, size)) * IMAGE_WORK_FACTOR,
                     f"{len(paths)} image(s) at --size {size}", hint="use a smaller --size")
    images = [read_image(p, lambda im: im.convert(mode)) for p in paths]
    sizes = {im.size for im in images}
    if size is None and len(sizes) > 1:
        size = min(min(im.size) for im in images)
    if size is not None:
        images = [_data.resize_crop(im, size) for im in images]
    import numpy as np

    arrays = np.stack([np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], -1) for im in images])
    # (N, C, H, W) in the standard layout. Not permute(...).contiguous(): for one channel that is a
    # no-op whose strides read as channels-last, so convolutions answer channels-last and a model's
    # own x.view(-1, ...) fails.
    x = torch.from_numpy(np.ascontiguousarray(arrays.transpose(0, 3, 1, 2))).float().div_(255.0)
    return standard_layout(normalize_images(x, normalize))




def load_labels(path: str | Path) -> list[str]:
    """Class names from a text file (one per line) or JSON (a list, or ``{"0": name}`` /
    ``{"0": [wnid, name]}`` as in ImageNet's class index file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputFileError(f"cannot read labels '{path}': no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read labels '{path}': {exc}") from exc
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"cannot read labels '{path}': invalid JSON ({exc})") from exc
        if isinstance(data, dict):
            try:
                items = sorted(((int(k), v) for k, v in data.items()), key=lambda kv: kv[0])
            except ValueError as exc:
                raise InputFileError(f"cannot read labels '{path}': JSON object keys must be class indices") from exc
            if [k for k, _ in items] != list(range(len(items))):
                raise InputFileError(f"cannot read labels '{path}': class indices must run 0..{len(items) - 1}")
            data = [v[-1] if isinstance(v, list) and v else v for _, v in items]
        if not isinstance(data, list) or not all(isinstance(v, (str, int, float)) for v in data):
            raise InputFileError(f"cannot read labels '{path}': expected a JSON list of class names")
        labels = [str(v) for v in data]
    else:
        labels = [line.strip() for line in text.splitlines()]
        while labels and not labels[-1]:
            labels.pop()
    if not labels:
        raise InputFileError(f"cannot read labels '{path}': the file holds no class names")
    return labels


def read_image(path: str | Path, read: Any) -> Any:
    """``read(im)`` of the Pillow image at ``path``; a missing or unreadable file is one
    :class:`InputFileError` naming it."""
    pil = require("PIL.Image", "render", package="pillow")
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"cannot read image '{p}': no such file")
    try:
        with pil.open(p) as im:  # reads the header only: the size is known before any pixel is decoded
            check_image_pixels(im.size[0], im.size[1], str(p))
            return read(im)
    except TorchLoupeError:
        raise
    except Exception as exc:
        reason = "not an image Pillow can read" if isinstance(exc, pil.UnidentifiedImageError) else str(exc)
        raise InputFileError(f"cannot read image '{p}': {reason}") from exc
