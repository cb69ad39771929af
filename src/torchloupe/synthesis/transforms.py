"""Robustness transforms applied to the images before each forward.

Each transform is a callable ``t(x, generator) -> x`` on a batch ``(N, C, H, W)``:
plain torch ops, differentiable, on the batch's device, one random draw *per image*
from the explicit ``torch.Generator`` (never the global RNG). :class:`Compose`
runs a list and fuses neighbouring affine transforms (scale, rotate) into one
``grid_sample``.

``standard(...)`` is Lucid's recipe: pad 12 (constant mid-range value),
jitter 8, scale 0.9..1.1, rotate -10..10 degrees, jitter 4, with pad and jitter
scaled to the image size (Lucid's numbers are for 128 px and larger).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UsageError


class Pad:
    """Pad the last two dims by ``width`` with ``value`` (``mode='constant'``) or ``'reflect'``/``'replicate'``."""

    def __init__(self, width: int, value: float = 0.5, mode: str = "constant"):
        self.width, self.value, self.mode = int(width), float(value), mode

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        w = [self.width] * 4
        return F.pad(x, w, mode=self.mode, value=self.value) if self.mode == "constant" else F.pad(x, w, mode=self.mode)

    def __repr__(self) -> str:
        return f"Pad({self.width})"


class Jitter:
    """Random crop losing ``d`` rows and columns: each image shifted by its own (dy, dx) in ``0..d``."""

    def __init__(self, d: int):
        if d < 1:
            raise UsageError(f"jitter must be at least 1 pixel, got {d}")
        self.d = int(d)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        d = self.d
        off = torch.randint(0, d + 1, (2, n), generator=generator, device=x.device)
        rows = off[0][:, None] + torch.arange(h - d, device=x.device)  # (N, h-d)
        cols = off[1][:, None] + torch.arange(w - d, device=x.device)  # (N, w-d)
        batch = torch.arange(n, device=x.device)[:, None, None]
        out = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, h-d, w-d, C)
        return out.permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"Jitter({self.d})"


class Resize:
    """Bilinear resize of the last two dims to ``size`` (h, w): after transforms that change the
    size, for a model that takes one input size only."""

    def __init__(self, size: Sequence[int]):
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)

    def __repr__(self) -> str:
        return f"Resize({self.size[0]}x{self.size[1]})"


class _Affine:
    """Transforms that are a per-image 2x2 matrix about the centre; fused by :class:`Compose`."""

    def matrices(self, n: int, generator: torch.Generator, device) -> Tensor:  # (N, 2, 2)
        raise NotImplementedError

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return _warp(x, self.matrices(x.shape[0], generator, x.device))


def _choice(values: Tensor, n: int, generator: torch.Generator) -> Tensor:
    idx = torch.randint(0, values.numel(), (n,), generator=generator, device=values.device)
    return values[idx]


class RandomScale(_Affine):
    """Zoom each image by a factor drawn from ``scales`` (same size out; borders replicated)."""

    def __init__(self, scales: Sequence[float]):
        self.scales = torch.tensor([float(s) for s in scales])

    def matrices(self, n, generator, device):
        s = _choice(self.scales.to(device), n, generator)
        eye = torch.eye(2, device=device).expand(n, 2, 2)
        return eye / s[:, None, None]  # sampling grid shrinks -> content grows

    def __repr__(self) -> str:
        return f"RandomScale({self.scales.min():.2f}..{self.scales.max():.2f})"


class RandomRotate(_Affine):
    """Rotate each image by an angle (degrees) drawn from ``angles``."""

    def __init__(self, angles: Sequence[float]):
        self.angles = torch.tensor([float(a) for a in angles])

    def matrices(self, n, generator, device):
        a = _choice(self.angles.to(device), n, generator) * (math.pi / 180.0)
        cos, sin = a.cos(), a.sin()
        return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)

    def __repr__(self) -> str:
        return f"RandomRotate({self.angles.min():g}..{self.angles.max():g})"


def _warp(x: Tensor, m: Tensor) -> Tensor:
    n = x.shape[0]
    theta = torch.cat([m, torch.zeros(n, 2, 1, device=x.device, dtype=m.dtype)], 2).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Compose:
    """Run transforms in order; consecutive affine ones become one matrix and one ``grid_sample``."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        pending: Tensor | None = None
        for t in self.transforms:
            if isinstance(t, _Affine):
                m = t.matrices(x.shape[0], generator, x.device)
                pending = m if pending is None else torch.bmm(pending, m)
                continue
            if pending is not None:
                x, pending = _warp(x, pending), None
            x = t(x, generator)
        if pending is not None:
            x = _warp(x, pending)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def standard(pad_value: float = 0.5, size: int = 128) -> Compose:
    """Lucid's standard transforms, with pad and jitter in proportion to ``size`` (Lucid's values at
    128 px: pad 12, jitter 8, scale 0.9..1.1, rotate -10..10 degrees, jitter 4). The output is
    ``size + 2*pad - j1 - j2`` pixels: 140 at 128 px, 70 at 64 px."""
    f = size / 128.0
    pad, j1, j2 = max(1, round(12 * f)), max(1, round(8 * f)), max(1, round(4 * f))
    return Compose([
        Pad(pad, value=pad_value),
        Jitter(j1),
        RandomScale([1 + (i - 5) / 50.0 for i in range(11)]),
        RandomRotate(list(range(-10, 11)) + 5 * [0]),
        Jitter(j2),
    ])


def lucid(pad_value: float = 0.5) -> Compose:
    """Lucid's standard transforms with its fixed pixel values (pad 12, jitter 8 and 4)."""
    return standard(pad_value, size=128)


def resolve(spec, input_shape: Sequence[int], pad_value: float) -> Compose:
    """``'standard'`` / ``None`` / a list of transforms -> :class:`Compose` (nothing for non-images)."""
    if spec is None or spec == "none":
        return Compose([])
    if spec == "lucid":
        return lucid(pad_value) if len(input_shape) == 3 else Compose([])
    if isinstance(spec, str):
        if spec not in ("standard", "standard-resized"):
            raise UsageError(f"transforms={spec!r} is not known; expected 'standard', 'standard-resized', None "
                             f"or a list of transforms")
        if len(input_shape) != 3:
            return Compose([])
        out = standard(pad_value, size=min(input_shape[-2:]))
        if spec == "standard-resized":  # back to the input size, for models that take one size only
            out = Compose(list(out.transforms) + [Resize(input_shape[-2:])])
        return out
    if isinstance(spec, Compose):
        return spec
    if callable(spec):
        return Compose([spec])
    return Compose(list(spec))
