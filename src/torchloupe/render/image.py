"""Tensor-to-tensor drawing helpers: normalisation, RGB conversion, heat-map overlays, tiled grids.

No matplotlib here except the colormap tables (:mod:`.colormaps`); everything works on
batches and on the tensors' device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .colormaps import colorize
from ..errors import InputShapeError, InputTypeError, UsageError

__all__ = ["normalize", "to_rgb", "overlay", "image_grid", "image_shape"]


def normalize(x: Tensor, per_sample: bool = True, eps: float = 1e-12) -> Tensor:
    """Min-max scale to [0, 1]: per sample (over every dimension but the first) or globally.

    A constant sample becomes zeros; NaN never comes out (NaN inputs count as the minimum).
    The input is not modified; the result is float (float32 for integer inputs).
    """
    if not isinstance(x, Tensor):
        raise InputTypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    x = x.detach()
    if not x.is_floating_point():
        x = x.float()
    if x.numel() == 0:
        return x.clone()
    finite = torch.isfinite(x)
    if per_sample and x.dim() >= 1:
        flat = x.reshape(x.shape[0], -1)
        fin = finite.reshape(x.shape[0], -1)
        lo = torch.where(fin, flat, torch.full_like(flat, math.inf)).amin(1, keepdim=True)
        hi = torch.where(fin, flat, torch.full_like(flat, -math.inf)).amax(1, keepdim=True)
    else:
        flat = x.reshape(1, -1)
        fin = finite.reshape(1, -1)
        lo = torch.where(fin, flat, torch.full_like(flat, math.inf)).amin(1, keepdim=True)
        hi = torch.where(fin, flat, torch.full_like(flat, -math.inf)).amax(1, keepdim=True)
    span = hi - lo
    ok = torch.isfinite(span) & (span > eps)
    out = torch.where(ok, (flat - lo) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(flat))
    out = torch.where(fin, out, torch.where(flat == math.inf, torch.ones_like(out), torch.zeros_like(out)))
    return out.clamp_(0.0, 1.0).reshape(x.shape)


def to_rgb(images: Tensor) -> Tensor:
    """``(N, 1|3, H, W)`` / ``(1|3, H, W)`` / ``(H, W)`` images as ``(N, 3, H, W)`` float (gray broadcast)."""
    if images.dim() == 2:
        images = images.unsqueeze(0)
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise InputShapeError(f"images must be (N, 1 or 3, H, W), (C, H, W) or (H, W), got shape {tuple(images.shape)}")
    images = images.detach()
    if not images.is_floating_point():
        images = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def overlay(images: Tensor, maps: Tensor, cmap: str = "jet", alpha: float = 0.5) -> Tensor:
    """Blend heat maps onto images: ``(1 - alpha) * image + alpha * colormap(map)``.

    ``images``: ``(N, 1|3, H, W)`` (or one ``(C, H, W)`` image for every map), values in
    [0, 1]; gray images are broadcast to RGB. ``maps``: ``(N, h, w)`` or ``(N, 1, h, w)``
    in [0, 1] (clamped), resized to ``(H, W)`` bilinearly. Returns ``(N, 3, H, W)`` in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"alpha must be in [0, 1], got {alpha}")
    rgb = to_rgb(images).float()
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise InputShapeError(f"maps must be (N, h, w) or (N, 1, h, w), got shape {tuple(maps.shape)}")
    if rgb.shape[0] == 1 and maps.shape[0] > 1:
        rgb = rgb.expand(maps.shape[0], -1, -1, -1)
    if maps.shape[0] != rgb.shape[0]:
        raise InputShapeError(f"{maps.shape[0]} maps for {rgb.shape[0]} images; expected one map per image")
    maps = maps.detach().float().to(rgb.device)
    size = tuple(rgb.shape[-2:])
    if tuple(maps.shape[-2:]) != size and maps.shape[0]:
        maps = F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
    heat = colorize(maps.clamp(0.0, 1.0), cmap)
    return ((1.0 - alpha) * rgb.clamp(0.0, 1.0) + alpha * heat).clamp(0.0, 1.0)


def image_grid(images: Tensor, ncols: int = 8, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile ``(N, C, H, W)`` images into one ``(C, H', W')`` image, row by row."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise InputShapeError(f"images must be (N, C, H, W) or (N, H, W), got shape {tuple(images.shape)}")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise UsageError(f"ncols must be an int of at least 1, got {ncols!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise UsageError(f"padding must be an int of at least 0, got {padding!r}")
    n, c, h, w = images.shape
    if n == 0:
        return images.new_full((c, 0, 0), pad_value)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    out = images.new_full((c, nrows * (h + padding) + padding, ncols * (w + padding) + padding), pad_value)
    for i in range(n):
        r, k = divmod(i, ncols)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        out[:, y : y + h, x : x + w] = images[i]
    return out


def image_shape(features: int, hint: tuple[int, ...] | None = None) -> tuple[int, int, int] | None:
    """The ``(C, H, W)`` image a flat vector of ``features`` values draws as, or ``None``.

    ``hint``: a known ``(C, H, W)`` image shape (C 1 or 3) holding ``features`` values (the input
    the vector came from), taken first. Else a square: ``s * s`` values are one gray ``(1, s, s)``
    image (784 -> 1 x 28 x 28, sides from 8), ``3 * s * s`` one colour image (sides from 16: 300
    values are no 3 x 10 x 10 image).
    """
    features = int(features)
    if hint is not None and len(hint) == 3 and hint[0] in (1, 3) and math.prod(hint) == features:
        return int(hint[0]), int(hint[1]), int(hint[2])
    for c, smallest in ((1, 8), (3, 16)):  # 8x8 digits; colour from CIFAR's 32x32 down to 16x16
        side = math.isqrt(features // c)
        if features % c == 0 and side * side * c == features and side >= smallest:
            return (c, side, side)
    return None
