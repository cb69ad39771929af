"""Objectives for activation maximization: named, composable, maximized.

An :class:`Objective` maps what one forward saw (:class:`Context`: the layer
outputs it asked for, read *before* any in-place op of the next layer, and the
images in the input domain) to one score per image, shape ``(B,)``. Higher is
better: :func:`~torchloupe.synthesis.maximize` ascends it.

Objectives compose with ``+ - *`` (with numbers or other objectives) and carry
readable names; strings are parsed on the fly::

    "layer3:5"                    channel 5 of layer3, mean over positions
    "layer3:5@(3,4)"              the unit of channel 5 at position (3, 4)
    "fc:7"                        output 7 of fc (a class logit, pre-softmax)
    -parse("layer3:5")            what the channel is against
    "layer3:5" - 1e-3 * total_variation()

Channels are read through each layer's :class:`~torchloupe.layers.Layout` (:meth:`Context.view`):
on a ``(B, T, C)`` token layer or a channels-last ``(B, H, W, C)`` one, channel ``n`` is feature
``n`` (the last axis), averaged over every token / position, never token ``n``.

Penalties (:func:`total_variation`, :func:`l1`, :func:`l2`, :func:`diversity`)
return their positive size; subtract them. The *unit* of an objective is the
objective with its penalty terms dropped; it is what results report as the
activation reached and compare against random inputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

import torch
from torch import Tensor

from ..errors import ChannelError, ObjectiveSpecError
from ..layers import Layout


@dataclass
class Context:
    """What one forward saw. ``acts[layer]``: output of each layer an objective named, as the
    layer returns it; ``images``: ``(B, *input_shape)`` in the input domain; ``groups``: ``(B,)``
    index of the objective each image belongs to; ``layouts[layer]``: the layer's
    :class:`~torchloupe.layers.Layout` (where its channels are), read by :meth:`view`."""

    acts: dict[str, Tensor]
    images: Tensor
    groups: Tensor
    layouts: dict[str, Layout] = field(default_factory=dict)

    def view(self, layer: str) -> Tensor:
        """The output of ``layer`` as ``(B, C, *S)``: channels on axis 1 whatever the layer's layout
        (the features of a ``(B, T, C)`` token layer, every token a position); as returned when
        no layout is known."""
        a = self.acts[layer]
        lay = self.layouts.get(layer)
        return a if lay is None else lay.to_bcs(a, grid=False)


ObjectiveLike = Union["Objective", str]


class Objective:
    """A named scalar-per-image function of a forward. Build with the helpers of this module."""

    def __init__(
        self,
        fn: Callable[[Context], Tensor],
        name: str,
        layers: Sequence[str] = (),
        *,
        penalty: bool = False,
        unit: "Objective | None | bool" = True,
        channel: tuple[str, int] | None = None,
    ):
        self.fn = fn
        self.name = name
        self.layers = tuple(dict.fromkeys(layers))
        self.penalty = penalty
        # The unit part (penalties dropped); True = this objective itself.
        self._unit = (None if penalty else self) if unit is True else unit
        if penalty:
            self._unit = None
        self.channel = channel  # (layer, index) when this is a plain channel objective

    def __call__(self, ctx: Context) -> Tensor:
        return self.fn(ctx)

    @property
    def unit(self) -> "Objective | None":
        """This objective without its penalty terms (``None`` for a pure penalty)."""
        return self._unit

    def __repr__(self) -> str:
        return f"Objective({self.name!r})"

    # composition -------------------------------------------------------------------------
    def _pure(self) -> bool:
        return self._unit is self

    def __add__(self, other):
        other = _coerce(other)
        if isinstance(other, (int, float)):
            unit = True if self._pure() else _lin(self.unit, lambda u: u + other)
            return Objective(lambda c: self(c) + other, f"{self.name} + {other:g}", self.layers,
                             unit=unit, penalty=self.unit is None)
        a, b = self.unit, other.unit
        if self._pure() and other._pure():
            unit = True
        elif a is not None and b is not None:
            unit = a + b
        else:
            unit = a if b is None else b
        return Objective(lambda c: self(c) + other(c), f"{self.name} + {_wrap(other.name)}",
                         self.layers + other.layers, unit=unit, penalty=unit is None)

    def __radd__(self, other):
        return _coerce(other) + self if not isinstance(other, (int, float)) else self + other

    def __neg__(self):
        unit = True if self._pure() else _lin(self.unit, lambda u: -u)
        return Objective(lambda c: -self(c), f"-{_wrap(self.name)}", self.layers,
                         unit=unit, penalty=self.unit is None)

    def __sub__(self, other):
        other = _coerce(other)
        if isinstance(other, (int, float)):
            out = self + (-other)
            out.name = f"{self.name} - {other:g}"
        else:
            out = self + (-other)
            out.name = f"{self.name} - {_wrap(other.name)}"
        return out

    def __rsub__(self, other):
        out = (-self) + other
        out.name = f"{_coerce(other).name if isinstance(other, str) else format(other, 'g')} - {_wrap(self.name)}"
        return out

    def __mul__(self, other):
        other = _coerce(other)
        if isinstance(other, (int, float)):
            unit = True if self._pure() else _lin(self.unit, lambda u: u * other)
            return Objective(lambda c: self(c) * other, f"{other:g}·{_wrap(self.name)}", self.layers,
                             unit=unit, penalty=self.unit is None)
        return Objective(lambda c: self(c) * other(c), f"{_wrap(self.name)}·{_wrap(other.name)}",
                         self.layers + other.layers)

    __rmul__ = __mul__

    def __truediv__(self, other: float):
        if not isinstance(other, (int, float)):
            raise ObjectiveSpecError(f"an objective divides by a number, got {type(other).__name__}")
        return self * (1.0 / other)


def _lin(unit, f):
    return None if unit is None else f(unit)


def _wrap(name: str) -> str:
    return f"({name})" if (" + " in name or " - " in name) else name


def _coerce(x):
    if isinstance(x, Objective) or (isinstance(x, (int, float)) and not isinstance(x, bool)):
        return x
    if isinstance(x, str):
        return parse(x)
    raise ObjectiveSpecError(f"cannot combine an objective with {type(x).__name__} {x!r}")


def as_objective(x: ObjectiveLike) -> Objective:
    """An :class:`Objective` from an objective or a spec string."""
    if isinstance(x, Objective):
        return x
    if isinstance(x, str):
        return parse(x)
    raise ObjectiveSpecError(f"objective must be an Objective or a string like 'layer3:5', got {type(x).__name__}")


# leaves ------------------------------------------------------------------------------------
def check_channel(acts: Tensor, layer: str, n: int) -> None:
    """``acts`` is ``(B, C, ...)`` and ``n`` one of its channels; else :class:`ChannelError`."""
    if acts.dim() < 2:
        raise ChannelError(f"layer {layer!r} output has shape {tuple(acts.shape)}; expected (B, C, ...)")
    if not -acts.shape[1] <= n < acts.shape[1]:
        raise ChannelError(
            f"channel {n} is out of range for layer {layer!r} with {acts.shape[1]} channels (0..{acts.shape[1] - 1})"
        )


def _index(n: object, layer: str) -> int:
    """``n`` as a channel index: an int of at least 0 (``-1`` is not read as "the last")."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ChannelError(f"channel {n!r} of layer {layer!r}: expected an int of at least 0")
    return n


def channel(layer: str, n: int) -> Objective:
    """Mean over positions of channel ``n`` of ``layer`` (its value for a ``(B, C)`` layer)."""
    n = _index(n, layer)

    def fn(ctx: Context) -> Tensor:
        a = ctx.view(layer)
        check_channel(a, layer, n)
        a = a[:, n]
        return a.reshape(a.shape[0], -1).mean(1)

    return Objective(fn, f"{layer}:{n}", [layer], channel=(layer, n))


def neuron(layer: str, n: int, at: Sequence[int] | None = None) -> Objective:
    """Channel ``n`` of ``layer`` at one position ``at`` (the centre when ``None``)."""
    n = _index(n, layer)

    def fn(ctx: Context) -> Tensor:
        a = ctx.view(layer)
        check_channel(a, layer, n)
        spatial = a.shape[2:]
        pos = tuple(s // 2 for s in spatial) if at is None else tuple(at)
        if len(pos) != len(spatial) or any(not 0 <= p < s for p, s in zip(pos, spatial)):
            raise ChannelError(
                f"position {pos} is outside layer {layer!r} positions {tuple(spatial)}"
            )
        return a[(slice(None), n, *pos)]

    where = "" if at is None else "@(" + ",".join(str(int(p)) for p in at) + ")"
    return Objective(fn, f"{layer}:{n}{where or '@centre'}", [layer])


def direction(layer: str, vector: Tensor, name: str | None = None) -> Objective:
    """Dot product of each position's channel vector with the unit vector along ``vector``, averaged."""
    v = torch.as_tensor(vector, dtype=torch.float32).reshape(-1)
    v = v / v.norm().clamp_min(1e-12)

    def fn(ctx: Context) -> Tensor:
        a = ctx.view(layer)
        if a.shape[1] != v.numel():
            raise ChannelError(f"direction has {v.numel()} entries but layer {layer!r} has {a.shape[1]} channels")
        w = v.to(a).reshape(1, -1, *([1] * (a.dim() - 2)))
        s = (a * w).sum(1)
        return s.reshape(s.shape[0], -1).mean(1)

    return Objective(fn, name or f"{layer}·direction", [layer])


def layer_l2(layer: str) -> Objective:
    """Mean square of the whole layer output ("DeepDream")."""

    def fn(ctx: Context) -> Tensor:
        a = ctx.acts[layer]
        return a.reshape(a.shape[0], -1).pow(2).mean(1)

    return Objective(fn, f"deepdream({layer})", [layer])


def diversity(layer: str) -> Objective:
    """Penalty: mean cosine similarity of each image's Gram matrix at ``layer`` with the other
    images of the same objective (Olah et al. 2017). Subtract it: ``obj - 10 * diversity(l)``."""

    def fn(ctx: Context) -> Tensor:
        a = ctx.view(layer)
        b, c = a.shape[:2]
        flat = a.reshape(b, c, -1)
        gram = torch.bmm(flat, flat.transpose(1, 2)).reshape(b, -1)
        gram = gram / gram.norm(dim=1, keepdim=True).clamp_min(1e-12)
        sim = gram @ gram.T
        same = (ctx.groups[:, None] == ctx.groups[None, :]) & ~torch.eye(b, dtype=torch.bool, device=a.device)
        count = same.sum(1).clamp_min(1)
        return (sim * same).sum(1) / count

    return Objective(fn, f"diversity({layer})", [layer], penalty=True)


def total_variation() -> Objective:
    """Penalty: mean absolute difference of neighbouring values of each image (last two dims)."""

    def fn(ctx: Context) -> Tensor:
        x = ctx.images
        parts = []
        if x.dim() >= 3:
            parts.append((x[..., 1:, :] - x[..., :-1, :]).abs().reshape(x.shape[0], -1).mean(1))
        parts.append((x[..., 1:] - x[..., :-1]).abs().reshape(x.shape[0], -1).mean(1))
        return sum(parts)

    return Objective(fn, "tv", penalty=True)


def l1(center: float = 0.0) -> Objective:
    """Penalty: mean ``|x - center|`` of each image."""
    return Objective(lambda c: (c.images - center).abs().reshape(c.images.shape[0], -1).mean(1),
                     "l1" if center == 0 else f"l1(c={center:g})", penalty=True)


def l2(center: float = 0.0) -> Objective:
    """Penalty: root mean square of ``x - center`` of each image."""
    return Objective(lambda c: (c.images - center).pow(2).reshape(c.images.shape[0], -1).mean(1).sqrt(),
                     "l2" if center == 0 else f"l2(c={center:g})", penalty=True)


# parsing -----------------------------------------------------------------------------------
_SPEC = re.compile(r"^\s*(?P<layer>[^:@\s]*)\s*:\s*(?P<n>-?\d+)\s*(?:@\s*\(?(?P<at>[\d,\s]+)\)?)?\s*$")


def parse(spec: str) -> Objective:
    """``"layer:n"`` -> :func:`channel`, ``"layer:n@(i,j)"`` -> :func:`neuron`."""
    if not isinstance(spec, str):
        raise ObjectiveSpecError(f"objective spec must be a string, got {type(spec).__name__}")
    m = _SPEC.match(spec)
    if not m or not m.group("layer"):
        raise ObjectiveSpecError(
            f"objective {spec!r} does not parse; expected 'layer:channel' (e.g. 'layer3:5'), "
            f"'layer:channel@(i,j)' or 'fc:7'"
        )
    layer, n = m.group("layer"), int(m.group("n"))
    if n < 0:
        raise ObjectiveSpecError(f"objective {spec!r}: channel {n} is negative; channels count from 0 "
                                 f"(e.g. '{layer}:0')")
    if m.group("at") is not None:
        at = [int(p) for p in m.group("at").replace(" ", "").split(",") if p]
        if not at:
            raise ObjectiveSpecError(f"objective {spec!r}: empty position after '@'")
        return neuron(layer, n, at)
    return channel(layer, n)


def channels(layer: str, indices: Sequence[int] | range) -> list[Objective]:
    """One :func:`channel` objective per index: pass the list to ``maximize`` for one image each."""
    return [channel(layer, int(i)) for i in indices]
