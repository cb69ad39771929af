"""Synthetic shapes: RGB images of one coloured shape on a cluttered, noisy background.

Every image holds exactly one object of a class in :data:`SHAPE_CLASSES`, drawn
with a random colour, size, position and rotation on top of a background colour
gradient crossed by a few thin clutter lines, plus Gaussian pixel noise. The mask
of an item marks exactly the object's pixels (the object is drawn last, so clutter
never covers it), which makes the set a ground truth for localisation checks
(pointing game, CAM overlap).

Generation is deterministic per ``(seed, index)`` and vectorised over the batch:
one image is the same whether it is made alone or with thousands of others.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset


SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

# Object area in units of radius**2, per class (analytic, for tests and docs).
SHAPE_AREA: dict[str, float] = {
    "circle": math.pi,
    "square": 1.6**2,  # half side 0.8
    "triangle": 3 * math.sqrt(3) / 4 * 1.2**2,  # equilateral, circumradius 1.2
    "star": 5 * 1.25 * 0.55 * math.sin(math.pi / 5),  # 5 points, outer 1.25, inner 0.55
    "cross": 2 * (2.1 * 0.7) - 0.7**2,  # two bars 2.1 x 0.7
}

_EXTENT = 1.25  # farthest object pixel from the centre, in radii (star tips)
_RADIUS = (0.19, 0.29)  # object radius as a fraction of the image size
_LINES = 3  # clutter lines per image
_PARAMS = 16 + 7 * _LINES  # uniforms drawn per image


class ShapesTensors(NamedTuple):
    """A whole shapes set as tensors: ``images (N,3,H,W)`` float in [0,1], ``labels (N,)`` long,
    ``masks (N,H,W)`` bool."""

    images: Tensor
    labels: Tensor
    masks: Tensor


def _generator(seed: int, index: int, stream: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 0x9E3779B1 + index * 0x85EBCA77 + stream * 0xC2B2AE3D) % (2**63 - 1))
    return g


def _labels(seed: int, indices: Tensor, classes: int) -> Tensor:
    """Labels balanced per block of ``classes`` consecutive indices (a seeded permutation per block)."""
    out = torch.empty(len(indices), dtype=torch.long)
    perms: dict[int, Tensor] = {}
    for j, i in enumerate(indices.tolist()):
        block = i // classes
        if block not in perms:
            perms[block] = torch.randperm(classes, generator=_generator(seed, block, 1))
        out[j] = perms[block][i % classes]
    return out


def _draws(seed: int, indices: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Per-image uniforms ``(N, _PARAMS)`` and noise ``(N, 3, size, size)``, each from its own seed."""
    params = torch.empty(len(indices), _PARAMS)
    noise = torch.empty(len(indices), 3, size, size)
    for j, i in enumerate(indices.tolist()):
        g = _generator(seed, i, 0)
        params[j] = torch.rand(_PARAMS, generator=g)
        noise[j] = torch.randn(3, size, size, generator=g)
    return params, noise


def _inside(label: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Whether object-frame points ``u, v (N, H, W)`` (unit = radius) lie inside image n's shape ``label[n]``."""
    inside = torch.zeros_like(u, dtype=torch.bool)
    for cls in range(len(SHAPE_CLASSES)):
        rows = (label == cls).nonzero().flatten()
        if len(rows):
            inside[rows] = _SHAPE_TESTS[cls](u[rows], v[rows])
    return inside


def _circle(u: Tensor, v: Tensor) -> Tensor:
    return u * u + v * v <= 1.0


def _square(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.8


def _triangle(u: Tensor, v: Tensor) -> Tensor:
    # Three half-planes at distance 0.6 from the centre (the inradius of circumradius 1.2).
    ok = v >= -0.6
    for a in (math.pi / 6, 5 * math.pi / 6):
        ok &= u * math.cos(a) + v * math.sin(a) <= 0.6
    return ok


def _star(u: Tensor, v: Tensor) -> Tensor:
    # Fold the angle into half a spike (tip at phi = 0) and test against the tip-to-notch edge.
    rho = torch.sqrt(u * u + v * v)
    step = 2 * math.pi / 5
    phi = (torch.remainder(torch.atan2(v, u) + math.pi / 2, step) - step / 2).abs()
    px, py = rho * torch.cos(phi), rho * torch.sin(phi)
    ax = 1.25  # tip (ax, 0)
    bx, by = 0.55 * math.cos(step / 2), 0.55 * math.sin(step / 2)  # notch
    return (bx - ax) * py - by * (px - ax) >= 0


def _cross(u: Tensor, v: Tensor) -> Tensor:
    au, av = u.abs(), v.abs()
    return ((au <= 1.05) & (av <= 0.35)) | ((av <= 1.05) & (au <= 0.35))


_SHAPE_TESTS = (_circle, _square, _triangle, _star, _cross)


def _geometry(p: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Centre x, y, radius (pixels) and angle (radians) from the per-image uniforms."""
    radius = size * (_RADIUS[0] + (_RADIUS[1] - _RADIUS[0]) * p[:, 7])
    margin = _EXTENT * radius + 1.0
    cx = margin + (size - 2 * margin) * p[:, 8]
    cy = margin + (size - 2 * margin) * p[:, 9]
    return cx, cy, radius, 2 * math.pi * p[:, 10]


def shape_geometry(seed: int, indices: Sequence[int] | Tensor, size: int = 64) -> dict[str, Tensor]:
    """Where the objects of the given items are: ``center (N, 2)`` as (x, y) pixels (pixel
    centres at k + 0.5), ``radius (N,)`` in pixels, ``angle (N,)`` in radians, ``label (N,)``."""
    indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    p = torch.empty(len(indices), _PARAMS)
    for j, i in enumerate(indices.tolist()):
        p[j] = torch.rand(_PARAMS, generator=_generator(seed, i, 0))
    cx, cy, radius, angle = _geometry(p, size)
    return {"center": torch.stack([cx, cy], 1), "radius": radius, "angle": angle,
            "label": _labels(seed, indices, len(SHAPE_CLASSES))}


@contextlib.contextmanager
def _one_thread():
    """Elementwise work on small chunks runs best on one thread (and does not thrash a busy machine)."""
    old = torch.get_num_threads()
    if old != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if old != 1:
            torch.set_num_threads(old)


def render_shapes(seed: int, indices: Sequence[int] | Tensor, size: int = 64) -> ShapesTensors:
    """Images, labels and masks of the given indices of the shapes set ``seed`` (vectorised)."""
    with _one_thread():
        return _render(seed, indices, size)


def _render(seed: int, indices: Sequence[int] | Tensor, size: int) -> ShapesTensors:
    indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    n = len(indices)
    labels = _labels(seed, indices, len(SHAPE_CLASSES))
    p, noise = _draws(seed, indices, size)
    if n == 0:
        return ShapesTensors(torch.zeros(0, 3, size, size), labels, torch.zeros(0, size, size, dtype=torch.bool))

    # Colours: background and object differ by at least 0.5 in some channel.
    bg = p[:, 0:3]
    fg = p[:, 3:6].clone()
    diff = fg - bg
    k = diff.abs().argmax(1)
    low = diff.abs().amax(1) < 0.5
    rows = torch.arange(n)
    bgk = bg[rows, k]
    pushed = torch.where(bgk < 0.5, bgk + 0.5 + 0.5 * p[:, 6] * (0.5 - bgk), bgk - 0.5 - 0.5 * p[:, 6] * (bgk - 0.5))
    fg[rows[low], k[low]] = pushed[low]

    cx, cy, radius, angle = _geometry(p, size)

    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy = coords.view(1, size, 1)
    xx = coords.view(1, 1, size)
    dx = xx - cx.view(n, 1, 1)
    dy = yy - cy.view(n, 1, 1)
    cos, sin = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
    r = radius.view(n, 1, 1)
    u = (cos * dx + sin * dy) / r
    v = (-sin * dx + cos * dy) / r
    masks = _inside(labels, u, v)

    # Background: colour with a linear gradient of random direction and strength.
    g_angle = 2 * math.pi * p[:, 11]
    g_amp = 0.25 * p[:, 12]
    ramp = (torch.cos(g_angle).view(n, 1, 1) * (xx / size - 0.5) + torch.sin(g_angle).view(n, 1, 1) * (yy / size - 0.5))
    images = bg.view(n, 3, 1, 1) + (g_amp.view(n, 1, 1) * ramp).unsqueeze(1)

    # Clutter: thin line segments in random colours, half transparent.
    for line in range(_LINES):
        q = p[:, 16 + 7 * line : 16 + 7 * (line + 1)]
        x0, y0, x1, y1 = (q[:, j].view(n, 1, 1) * size for j in range(4))
        colour = q[:, 4:7].view(n, 3, 1, 1)
        ex, ey = x1 - x0, y1 - y0
        t = (((xx - x0) * ex + (yy - y0) * ey) / (ex**2 + ey**2 + 1e-6)).clamp(0, 1)
        dist2 = (xx - x0 - t * ex) ** 2 + (yy - y0 - t * ey) ** 2
        on = (dist2 <= 0.75).unsqueeze(1)
        images = torch.where(on, 0.4 * images + 0.6 * colour, images)

    # The object, on top, with slight shading so it is not a flat colour.
    shade = 1.0 + 0.15 * (p[:, 13].view(n, 1, 1) - 0.5) * (u + v).clamp(-1.5, 1.5)
    obj = (fg.view(n, 3, 1, 1) * shade.unsqueeze(1)).clamp(0, 1)
    images = torch.where(masks.unsqueeze(1), obj, images)

    sigma = 0.02 + 0.04 * p[:, 14]
    images = (images + sigma.view(n, 1, 1, 1) * noise).clamp_(0.0, 1.0)
    return ShapesTensors(images.contiguous(), labels, masks)


class ShapesDataset(Dataset):
    """``n`` synthetic shape images; item ``i`` is ``(image (3,H,W) float32 in [0,1], label, mask (H,W) bool)``.

    Items are generated on access (deterministic per ``(seed, i)``); :meth:`tensors`
    makes the whole set in one vectorised pass. Labels are balanced: every block of
    ``len(SHAPE_CLASSES)`` consecutive indices holds each class once.
    """

    classes = SHAPE_CLASSES

    def __init__(self, n: int, size: int = 64, seed: int = 0):
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if not isinstance(size, int) or size < 16:
            raise ValueError(f"size must be an int >= 16 (pixels), got {size!r}")
        self.n, self.size, self.seed = n, size, int(seed)

    def __len__(self) -> int:
        return self.n

    def _check(self, index: int) -> int:
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} is out of range for a ShapesDataset of {self.n} items")
        return index

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor]:
        index = self._check(int(index))
        t = render_shapes(self.seed, [index], self.size)
        return t.images[0], int(t.labels[0]), t.masks[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, int, Tensor]]:
        """Batched access used by ``DataLoader``: one vectorised pass per batch."""
        t = render_shapes(self.seed, [self._check(int(i)) for i in indices], self.size)
        return [(t.images[j], int(t.labels[j]), t.masks[j]) for j in range(len(t.labels))]

    def tensors(self, chunk: int = 64) -> ShapesTensors:
        """The whole set: ``images (N,3,H,W)``, ``labels (N,)``, ``masks (N,H,W)``."""
        with _one_thread():
            parts = [
                _render(self.seed, range(start, min(start + chunk, self.n)), self.size)
                for start in range(0, self.n, chunk)
            ]
        if not parts:
            return render_shapes(self.seed, [], self.size)
        return ShapesTensors(*(torch.cat(x) for x in zip(*parts)))

    def __repr__(self) -> str:
        return f"ShapesDataset(n={self.n}, size={self.size}, seed={self.seed}, classes={SHAPE_CLASSES})"


def shapes_dataset(n: int, size: int = 64, seed: int = 0) -> ShapesDataset:
    """A :class:`ShapesDataset` of ``n`` images of ``size`` x ``size`` pixels."""
    return ShapesDataset(n, size=size, seed=seed)


def shapes_tensors(n: int, size: int = 64, seed: int = 0) -> ShapesTensors:
    """The shapes set as tensors ``(images, labels, masks)`` in one vectorised pass."""
    return ShapesDataset(n, size=size, seed=seed).tensors()
