"""Pre-flight memory estimates: a size that cannot fit is refused in one line before anything is allocated.

Every entry point whose memory grows with a size the caller chooses (an input shape, an image size, a
batch, ``k``, a dataset size) first calls :func:`check_memory` with a rough estimate of the bytes the
work will hold at once; more than the memory available is a
:class:`~torchloupe.errors.ResourceLimitError` naming the size, the estimate and what is available.

The estimates are lower bounds (the bytes of the tensors the work must hold, times a small factor per
kind of work: optimizer state, activations, copies), so they refuse only what cannot fit; a size just
under the limit may still fail later.

The available memory is ``psutil.virtual_memory().available`` when psutil is installed, else
``MemAvailable`` of ``/proc/meminfo`` (Linux), else the free physical pages (``os.sysconf``), else
unknown (no limit). For a CUDA device, its free memory (``torch.cuda.mem_get_info``).

Overrides: the environment variable ``TORCHLOUPE_MEMORY_LIMIT`` sets the limit in bytes (``64G``,
``512M``, ``1.5T``, ``1000000``; ``0`` or ``off``: no limit). ``TORCHLOUPE_MAX_IMAGE_PIXELS``
sets the largest image file decoded (default :data:`MAX_IMAGE_PIXELS`; ``0`` or ``off``: no limit).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from .errors import ResourceLimitError

__all__ = ["available_memory", "memory_limit", "check_memory", "tensor_bytes", "check_image_pixels",
           "MAX_IMAGE_PIXELS", "format_bytes"]

#: The largest image (width x height) decoded by default: Pillow's own decompression-bomb warning
#: threshold (a 9459 x 9459 image; about 358 MB as 32-bit floats per channel of RGB).
MAX_IMAGE_PIXELS = 89_478_485

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def format_bytes(n: float) -> str:
    """``"4.8 GB"``, ``"512 MB"``: bytes for messages (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def _parse_size(text: str, var: str) -> int | None:
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    if t in ("0", "OFF", "NONE", "NO"):
        return None
    unit = t[-1:] if t[-1:] in _UNITS and not t[-1:].isdigit() else ""
    try:
        value = float(t[: len(t) - len(unit)] if unit else t)
    except ValueError:
        raise ResourceLimitError(f"{var}={text!r} is not a size; expected bytes like 16G, 512M or 0 (no limit)") from None
    if not math.isfinite(value) or value < 0:
        raise ResourceLimitError(f"{var}={text!r} is not a size; expected bytes like 16G, 512M or 0 (no limit)")
    return int(value * _UNITS[unit]) or None


def available_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes of memory available now on ``device`` (host memory for the CPU); ``None`` when unknown."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        import psutil  # optional: the most portable answer

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(device: torch.device | str | None = None) -> int | None:
    """The bytes a call may plan to hold: ``TORCHLOUPE_MEMORY_LIMIT`` when set, else :func:`available_memory`."""
    env = os.environ.get("TORCHLOUPE_MEMORY_LIMIT")
    if env is not None and env.strip():
        return _parse_size(env, "TORCHLOUPE_MEMORY_LIMIT")
    return available_memory(device)


def tensor_bytes(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> int:
    """Bytes of one tensor of ``shape`` and ``dtype`` (Python ints: no overflow)."""
    n = 1
    for s in shape:
        n *= max(int(s), 0)
    return n * dtype.itemsize


def check_memory(needed: int, what: str, *, device: torch.device | str | None = None, hint: str = "") -> None:
    """Raise :class:`ResourceLimitError` when ``needed`` bytes (an estimate) pass :func:`memory_limit`.

    ``what`` names the size that asks for it (``"maximize of 10000000 images of shape (3, 128, 128)"``),
    ``hint`` what to do instead."""
    limit = memory_limit(device)
    if limit is None or needed <= limit:
        return
    where = "set by TORCHLOUPE_MEMORY_LIMIT" if os.environ.get("TORCHLOUPE_MEMORY_LIMIT", "").strip() else "available"
    raise ResourceLimitError(
        f"{what} needs about {format_bytes(needed)} of memory, more than the {format_bytes(limit)} {where}"
        f"{'; ' + hint if hint else ''} (TORCHLOUPE_MEMORY_LIMIT overrides the limit)", needed, limit)


def max_image_pixels() -> int | None:
    """The largest image file decoded: ``TORCHLOUPE_MAX_IMAGE_PIXELS`` or :data:`MAX_IMAGE_PIXELS`."""
    env = os.environ.get("TORCHLOUPE_MAX_IMAGE_PIXELS")
    if env is not None and env.strip():
        t = env.strip().lower()
        if t in ("0", "off", "none", "no"):
            return None
        try:
            value = int(float(t))
        except ValueError:
            raise ResourceLimitError(f"TORCHLOUPE_MAX_IMAGE_PIXELS={env!r} is not a pixel count; expected e.g. "
                                     f"200000000 or 0 (no limit)") from None
        return value if value > 0 else None
    return MAX_IMAGE_PIXELS


def check_image_pixels(width: int, height: int, name: str) -> None:
    """Refuse an image file of more than :func:`max_image_pixels` pixels, from its header (before decoding)."""
    limit = max_image_pixels()
    if limit is not None and int(width) * int(height) > limit:
        raise ResourceLimitError(
            f"image '{name}' is {width} x {height} = {width * height / 1e6:.0f} megapixels, more than the "
            f"{limit / 1e6:.0f} decoded at most (a decompression bomb?); shrink it first, or set "
            f"TORCHLOUPE_MAX_IMAGE_PIXELS to allow it", int(width) * int(height) * 3, limit * 3)
