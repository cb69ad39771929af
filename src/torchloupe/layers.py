"""Find layers of a model by dotted name, glob pattern, type or module object.

A *layer spec* is one of:

- a dotted module name, ``"layer4.1.conv2"`` (``""`` is the model itself), looked up exactly first;
- a glob over dotted names, ``"layer*.0.conv?"`` (:mod:`fnmatch` rules), when no name is exactly it;
- a module class, ``nn.Conv2d`` (every module of that type, in registration order);
- a module object that is part of the model.

:func:`layout_of` tells, for a layer's output, its batch, channel and position axes
(:class:`Layout`): ``(B, C, *S)`` convolutions of any rank, ``(B, T, C)`` tokens (with their
class / register tokens and patch grid on an image input), ``(B, *S, C)`` channels-last.

A wrong name raises :class:`~torchloupe.errors.LayerNotFoundError` naming the
closest real names.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Union

from torch import Tensor, nn

from .errors import LayerNotFoundError, UsageError

__all__ = ["LayerSpec", "find_layer", "find_layers", "layer_names", "name_of", "closest_names",
           "Layout", "layout_of", "token_grid"]

LayerSpec = Union[str, nn.Module, type]

_GLOB_CHARS = set("*?[")


def layer_names(model: nn.Module, leaves_only: bool = False) -> list[str]:
    """Dotted names of every submodule (the model itself excluded), in registration order."""
    names = []
    for name, module in model.named_modules():
        if not name:
            continue
        if leaves_only and next(module.children(), None) is not None:
            continue
        names.append(name)
    return names


def closest_names(model: nn.Module, name: str, n: int = 3) -> list[str]:
    """Up to ``n`` real layer names closest to ``name`` (edit similarity, then shared prefix)."""
    names = layer_names(model)
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if len(close) < n:
        # Names that share the longest dotted prefix help with deep paths ("layer4.3" on resnet18).
        parts = name.split(".")
        for depth in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:depth]) + "."
            for candidate in names:
                if candidate.startswith(prefix) and candidate not in close:
                    close.append(candidate)
                if len(close) >= n:
                    break
            if len(close) >= n:
                break
    return close[:n]


def _not_found(model: nn.Module, spec: object) -> LayerNotFoundError:
    kind = type(model).__name__
    if isinstance(spec, str):
        close = closest_names(model, spec)
        hint = f"; closest: {', '.join(repr(c) for c in close)}" if close else ""
        return LayerNotFoundError(f"{spec!r} is not a module of {kind}{hint}", spec, tuple(close))
    if isinstance(spec, type):
        present = sorted({type(m).__name__ for m in model.modules()})
        return LayerNotFoundError(
            f"{kind} has no module of type {spec.__name__}; types present: {', '.join(present[:12])}",
            spec,
        )
    if isinstance(spec, nn.Module):
        return LayerNotFoundError(
            f"the given {type(spec).__name__} module is not part of {kind}", spec
        )
    return LayerNotFoundError(
        f"layer spec {spec!r} ({type(spec).__name__}) is not a name, glob, module type or module; "
        f"expected e.g. 'layer4.1', 'layer*.conv1', nn.Conv2d or a module of the model",
        spec,
    )


def find_layers(model: nn.Module, spec: LayerSpec | Sequence[LayerSpec], *,
                exact: bool | None = None) -> list[tuple[str, nn.Module]]:
    """Every ``(name, module)`` matching ``spec`` (or a list of specs), in model order, no duplicates.

    A string is looked up as an exact name first: ``nn.ModuleDict`` keys may hold ``[``, ``]``,
    ``*`` or ``?`` (``"blocks.a[0]"``), and such a name finds its module. Only a string that names
    no module and holds one of those characters is read as a glob. ``exact=True``: names only,
    never globs; ``exact=False``: always a glob (``"a[0]"`` then matches ``"a0"``).

    Raises :class:`LayerNotFoundError` when any spec matches nothing.
    """
    from .probe import require_module  # probe finds layers with this module: imported on use

    require_module(model)
    specs: Iterable[LayerSpec]
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise LayerNotFoundError(f"no layer given (an empty {type(spec).__name__}); expected a name, glob, "
                                     f"module type or module, or a list of them", spec)
        specs = spec
    else:
        specs = [spec]
    named = list(model.named_modules())
    found: dict[str, nn.Module] = {}
    for s in specs:
        hits: list[tuple[str, nn.Module]]
        if isinstance(s, str):
            hits = [] if exact is False else [(n, m) for n, m in named if n == s]
            if not hits and exact is not True and any(c in _GLOB_CHARS for c in s):
                hits = [(n, m) for n, m in named if n and fnmatch.fnmatchcase(n, s)]
        elif isinstance(s, type) and issubclass(s, nn.Module):
            hits = [(n, m) for n, m in named if isinstance(m, s)]
        elif isinstance(s, nn.Module):
            hits = [(n, m) for n, m in named if m is s][:1]
        else:
            raise _not_found(model, s)
        if not hits:
            raise _not_found(model, s)
        for n, m in hits:
            found.setdefault(n, m)
    order = {n: i for i, (n, _) in enumerate(named)}
    return sorted(found.items(), key=lambda item: order[item[0]])


def find_layer(model: nn.Module, spec: LayerSpec, *, exact: bool | None = None) -> nn.Module:
    """The one module named by ``spec`` (an exact name first, then a glob; ``exact``: see
    :func:`find_layers`).

    A glob or type that matches several modules returns the first one in model order.
    """
    from .probe import require_module  # probe finds layers with this module: imported on use

    return find_layers(require_module(model), spec, exact=exact)[0][1]


def name_of(model: nn.Module, module: nn.Module) -> str:
    """Dotted name of ``module`` inside ``model`` (``""`` for the model itself)."""
    for n, m in model.named_modules():
        if m is module:
            return n
    raise _not_found(model, module)


# --- layouts of layer outputs ---------------------------------------------------------------
#: Modules whose output keeps the channel on axis 1 (convolutions, batch / instance / group norms,
#: pools): a 3-D output of one is ``(B, C, L)``, a 4-D one ``(B, C, H, W)``.
_CHANNEL_FIRST = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Upsample,
)
#: Modules acting on the last axis (features): a 3-D output of one is ``(B, T, C)`` tokens, a 4-D
#: one ``(B, H, W, C)`` channels-last (the LayerNorm / Linear inside Swin and ConvNeXt blocks).
_CHANNEL_LAST = (
    nn.Linear,
    nn.LayerNorm,
    nn.Embedding,
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
)

_WARNED: set[str] = set()


@dataclass(frozen=True)
class Layout:
    """Where batch, channels and positions are in a layer's output.

    ``kind``: ``"conv"`` ``(B, C, *S)`` (Conv1d ``(B, C, L)``, Conv2d, Conv3d ``(B, C, D, H, W)``),
    ``"tokens"`` ``(B, T, C)``, ``"channels_last"`` ``(B, *S, C)`` (Swin, ConvNeXt blocks) or
    ``"vector"`` ``(B, C)``. ``batch`` / ``channel`` the axes; ``positions`` the position axes in
    order. Tokens: ``extra`` leading tokens (class, registers) that are not patches and ``grid``
    the patch grid ``(h, w)`` when the input is an image (else ``None``: the tokens are the
    positions). ``guessed``: the shapes allowed another reading (said in a warning once);
    ``reason``: how the layout was decided.
    """

    kind: str
    shape: tuple[int, ...]
    channel: int
    positions: tuple[int, ...]
    batch: int = 0
    extra: int = 0
    grid: tuple[int, ...] | None = None
    guessed: bool = False
    reason: str = ""

    @property
    def channels(self) -> int:
        """The number of channels (features of a token)."""
        return int(self.shape[self.channel])

    @property
    def spatial(self) -> tuple[int, ...]:
        """The position sizes of :meth:`to_bcs` (with ``grid=True``)."""
        if self.kind == "tokens" and self.grid is not None:
            return tuple(self.grid)
        return tuple(int(self.shape[a]) for a in self.positions)

    def to_bcs(self, t: Tensor, grid: bool = True) -> Tensor:
        """``t`` (shaped like the layer output) as ``(B, C, *S)``. Tokens on an image's patch grid
        drop their ``extra`` leading tokens and become ``(B, C, h, w)`` (``grid=False``, or another
        token count: every token, ``(B, C, T)``). Position sizes may differ from the layout's (an
        input of another size); the channel count may not."""
        if t.dim() != len(self.shape) or t.shape[self.channel] != self.shape[self.channel]:
            raise UsageError(f"a tensor of shape {tuple(t.shape)} does not have this layout's shape "
                             f"{tuple(self.shape)} (positions may differ, the channels not)")
        if self.kind == "tokens" and self.grid is not None and grid and t.shape[1] == self.shape[1]:
            return t[:, self.extra:].reshape(t.shape[0], *self.grid, t.shape[2]).movedim(-1, 1)
        if self.channel == 1:
            return t
        return t.movedim(self.channel, 1)

    def describe(self) -> str:
        """``"(B, C, S0, S1)"``, ``"(B, T, C) tokens (1 extra, 4x4 patches)"``..."""
        s = ", ".join(f"S{i}" for i in range(len(self.positions)))
        if self.kind == "tokens":
            what = "(B, T, C) tokens"
            if self.grid is not None:
                what += f" ({self.extra} extra, {self.grid[0]}x{self.grid[1]} patches)"
            return what
        if self.kind == "channels_last":
            return f"(B, {s}, C) channels-last"
        if self.kind == "vector":
            return "(B, C)"
        return f"(B, C, {s})"


def token_grid(tokens: int, size: Sequence[int]) -> tuple[int, int, int] | None:
    """``(extra, h, w)``: the fewest leading extra tokens (class, registers) leaving an ``h x w``
    grid of the aspect of an image of spatial ``size`` ``(H, W)``; ``None`` when none does."""
    H, W = size
    for extra in range(0, 9):
        n = tokens - extra
        if n < 1:
            return None
        h = max(1, round(math.sqrt(n * H / W)))
        for hh in (h - 1, h, h + 1):
            if hh >= 1 and n % hh == 0:
                ww = n // hh
                if abs(hh * W - ww * H) <= max(H, W) / max(hh, ww) and (hh > 1 or ww > 1):
                    return extra, hh, ww
    return None


def _fits(out: Sequence[int], size: Sequence[int]) -> bool:
    """Positions ``out`` have the aspect of input positions ``size`` (up to rounding)."""
    if len(out) != len(size):
        return False
    return all(abs(out[0] * size[i] - out[i] * size[0]) <= max(size[0], size[i]) / max(out[0], out[i], 1)
               for i in range(1, len(size)))


def _hint(module: nn.Module | None, shape: tuple[int, ...] | None = None) -> str | None:
    """``"first"`` / ``"last"``: the channel axis a module's type says; ``None`` when it does not.

    A LayerNorm is read from its ``normalized_shape`` against the output ``shape`` when they tell:
    torchvision's ``LayerNorm2d`` (ConvNeXt's stem and head) subclasses ``nn.LayerNorm`` but
    normalizes axis 1 of a ``(B, C, H, W)`` map."""
    if module is None:
        return None
    if isinstance(module, _CHANNEL_FIRST):
        return "first"
    if isinstance(module, nn.LayerNorm) and shape is not None and len(shape) >= 3 and module.normalized_shape:
        features = module.normalized_shape[-1]
        if shape[-1] != features and shape[1] == features:
            return "first"
    if isinstance(module, _CHANNEL_LAST):
        return "last"
    return None


def _hint_within(module: nn.Module | None) -> tuple[str | None, str]:
    """The hint of ``module``, else of its last submodule that gives one (a block ending in a norm)."""
    h = _hint(module)
    if h is not None or module is None:
        return h, type(module).__name__ if module is not None else ""
    for m in reversed(list(module.modules())):
        h = _hint(m)
        if h is not None:
            return h, f"{type(module).__name__} ending in {type(m).__name__}"
    return None, ""


def layout_of(
    output: Tensor | Sequence[int],
    input_shape: Sequence[int] | None = None,
    channel_dim: int | None = None,
    *,
    module: nn.Module | None = None,
    warn: bool = True,
) -> Layout:
    """The :class:`Layout` of a layer output (a tensor or its shape, batch first).

    ``input_shape``: the full shape of the model input the output comes from (``(B, 3, H, W)``
    for an image, ``(B, T, F)`` or ``(B, T)`` token ids for a sequence); ``module``: the layer
    (its type tells convolutions from token layers); ``channel_dim``: the channel axis, which
    settles the question. Rules, in order: ``channel_dim``; ``(B, C)`` vectors; a 4-D or 5-D output
    is ``(B, C, *S)`` unless its axes 1.. have the input's aspect and axes 2.. do not (or the layer
    is a LayerNorm / Linear): then ``(B, *S, C)``; a 3-D output is ``(B, C, L)`` for convolutions,
    norms over channels and pools, ``(B, T, C)`` for linear / norm / attention / transformer layers,
    else read from the input: tokens on an image's patch grid, tokens when axis 1 keeps a sequence
    input's length (for a non-image input the tokens are the positions), ``(B, C, L)`` when the last
    axis keeps it. A layout the shapes leave open is ``guessed`` and said once in a warning.
    """
    shape = tuple(int(s) for s in (output.shape if isinstance(output, Tensor) else output))
    d = len(shape)
    if d < 2:
        raise UsageError(f"a layer output of shape {shape} has no channel axis; expected (B, C, ...)")
    insp = tuple(int(s) for s in input_shape) if input_shape is not None else None
    image = insp is not None and len(insp) == 4

    def make(kind, channel, positions, **kw) -> Layout:
        lay = Layout(kind, shape, channel, tuple(positions), **kw)
        if lay.guessed and warn:
            msg = (f"layer output {shape}: read as {lay.describe()} ({lay.reason}); "
                   f"pass channel_dim= to say otherwise")
            if msg not in _WARNED:
                _WARNED.add(msg)
                warnings.warn(msg, stacklevel=3)
        return lay

    if channel_dim is not None:
        if isinstance(channel_dim, bool) or not isinstance(channel_dim, int) or not -d < channel_dim < d \
                or channel_dim % d == 0:
            raise UsageError(f"channel_dim={channel_dim!r} is not an axis of an output of shape {shape} "
                             f"other than the batch; expected 1..{d - 1} or -1..-{d - 1}")
        c = channel_dim % d
        pos = [a for a in range(1, d) if a != c]
        if c == 1:
            return make("conv" if d != 2 else "vector", 1, pos, reason="channel_dim=1")
        if d == 3:
            lay = make("tokens", 2, pos, reason=f"channel_dim={channel_dim}")
            return _with_grid(lay, insp) if image else lay
        return make("channels_last", c, pos, reason=f"channel_dim={channel_dim}")
    if d == 2:
        return make("vector", 1, (), reason="(B, C) output")
    hint, hint_what = _hint_within(module) if d == 3 else (_hint(module, shape), type(module).__name__)
    if d >= 4:
        nd = d - 2
        if hint == "first":
            return make("conv", 1, range(2, d), reason=f"{hint_what} output")
        if hint == "last":
            return make("channels_last", d - 1, range(1, d - 1), reason=f"{hint_what} acts on the last axis")
        if insp is not None and len(insp) == nd + 2:
            size = insp[2:]
            first = _fits(shape[2:], size)
            last = _fits(shape[1:-1], size)
            if last and not first:
                return make("channels_last", d - 1, range(1, d - 1), reason="axes 1.. have the input's aspect")
            if first and last and shape[1] != shape[-1]:
                within, what = _hint_within(module)
                if within == "last":
                    return make("channels_last", d - 1, range(1, d - 1), guessed=True,
                                reason=f"both readings fit the input's aspect; {what}")
                return make("conv", 1, range(2, d), guessed=within is None,
                            reason="both readings fit the input's aspect" + (f"; {what}" if within else ""))
            return make("conv", 1, range(2, d), reason="axes 2.. have the input's aspect")
        return make("conv", 1, range(2, d), reason="(B, C, *S) by default")
    # d == 3: (B, C, L) or (B, T, C)
    if hint == "first":
        return make("conv", 1, (2,), reason=f"{hint_what} output")
    if hint == "last":
        lay = make("tokens", 2, (1,), reason=f"{hint_what} acts on the last axis")
        return _with_grid(lay, insp) if image else lay
    if image:
        g = token_grid(shape[1], insp[2:])
        if g is not None:
            return _with_grid(make("tokens", 2, (1,), reason="axis 1 forms the image's patch grid"), insp)
        return make("conv", 1, (2,), guessed=True, reason="no patch grid on axis 1")
    if insp is not None and len(insp) == 3:
        keeps_t, keeps_l = shape[1] == insp[1], shape[2] == insp[2]
        if keeps_t and not keeps_l:
            return make("tokens", 2, (1,), reason="axis 1 keeps the input's sequence length")
        if keeps_l and not keeps_t:
            return make("conv", 1, (2,), reason="axis 2 keeps the input's length")
        if keeps_t:
            return make("tokens", 2, (1,), guessed=True,
                        reason="same shape as the (B, T, F) input: its tokens are the positions")
        return make("conv", 1, (2,), guessed=True, reason="neither axis keeps the input's length")
    if insp is not None and len(insp) == 2 and shape[1] == insp[1]:
        return make("tokens", 2, (1,), reason="axis 1 keeps the input's sequence length")
    return make("conv", 1, (2,), guessed=True, reason="(B, C, L) by default")


def _with_grid(lay: Layout, insp: tuple[int, ...] | None) -> Layout:
    if insp is None or len(insp) != 4:
        return lay
    g = token_grid(lay.shape[1], insp[2:])
    if g is None:
        return lay
    extra, h, w = g
    return replace(lay, extra=extra, grid=(h, w))
