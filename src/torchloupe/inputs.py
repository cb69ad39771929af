"""What the model takes: :class:`Inputs`, and the checks done on it before any expensive work.

``Inputs.of(x)`` reads everything ``model(...)`` accepts: a tensor, a tuple of positional
tensors (``forward(self, x1, x2)``), a dict of keyword tensors (token ids, attention masks), or
an ``Inputs`` with both. It knows the batch size, device and dtype, slices and chunks the batch,
moves it, calls the model, and picks the input an attribution explains (``wrt=None`` by default: the first floating-point tensor; a
name for a keyword input). :func:`check_input` turns an unbatched tensor into a batch of one,
rejects NaN and infinite values, and checks the channel / feature count against the model's
first layer where it can be read off the model. Targets are :mod:`torchloupe.targets`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import Tensor, nn

from ._limits import check_memory
from .errors import InputDtypeError, InputError, InputShapeError, InputTypeError, NonFiniteInputError, UnsupportedModelError

__all__ = ["Inputs", "InputsLike", "first_layer", "check_input", "check_inputs", "check_finite", "expected_input",
           "trial_forward", "takes_shape", "flattens_first", "standard_layout"]

_SAID: set[str] = set()  # guesses already said in a warning (once each per process)

InputsLike = Union[Tensor, Sequence[Tensor], Mapping[str, Any], "Inputs"]


def _map(value: Any, fn: Callable[[Tensor], Any]) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_map(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    return value


def _leaves(value: Any, key: str) -> Iterator[tuple[str, Tensor]]:
    if isinstance(value, Tensor):
        yield key, value
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{key}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{key}[{k!r}]")


def _what(x: Any) -> str:
    """A short description of a wrong input for messages: its type, a string's start, an array's shape."""
    if isinstance(x, str):
        return f"the str {x[:40]!r}"
    shape = getattr(x, "shape", None)
    if shape is not None and not isinstance(x, Tensor):
        return f"a {type(x).__module__.split('.')[0]}.{type(x).__name__} of shape {tuple(shape)}"
    return "None" if x is None else f"a {type(x).__name__}"


def _hint_for(x: Any) -> str:
    if type(x).__module__.split(".")[0] == "numpy":
        return "; convert it with torch.from_numpy(a)"
    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
        return "; read the file into a tensor first (an image: torchvision.io.read_image(path).float() / 255)"
    return ""


def dtype_hint(x: Tensor) -> str:
    """How to make a non-floating image tensor what a model's first layer takes."""
    if x.dtype == torch.uint8:
        return "convert with x.float() / 255 (uint8 images hold 0..255)"
    if x.dtype == torch.bool:
        return "convert with x.float()"
    return "convert with x.float() (scaled as the model was trained, e.g. / 255 for 8-bit values)"


@dataclass(frozen=True, eq=False)
class Inputs:
    """What one call ``model(*args, **kwargs)`` takes, as one value.

    Tensors whose first dimension is the batch are sliced with it; other arguments (a shared
    mask without a batch dimension, Python scalars, ``None``) pass through unchanged.
    """

    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, x: InputsLike) -> Inputs:
        """``x`` as :class:`Inputs`: a tensor is one positional argument, a tuple or list several, a
        dict (or Hugging Face ``BatchEncoding``) keyword arguments."""
        if isinstance(x, Inputs):
            return x
        if isinstance(x, Tensor):
            return cls((x,), {})
        if isinstance(x, Mapping):
            bad = [k for k in x if not isinstance(k, str)]
            if bad:
                raise InputError(f"keyword inputs need str keys, got {bad[0]!r}")
            return cls((), dict(x))
        if isinstance(x, (tuple, list)):
            if not x:
                raise InputError("inputs are an empty tuple; expected a tensor, a tuple of tensors or a dict")
            if not any(True for _ in _leaves(list(x), "")):
                raise InputTypeError(f"inputs are {_what(x)} holding no tensor; expected a "
                                     f"tensor, a tuple of tensors (positional) or a dict (keywords): make it one "
                                     f"with torch.tensor(...) or torch.stack([...])")
            return cls(tuple(x), {})
        raise InputTypeError(f"inputs are {_what(x)}; expected a tensor, a tuple of tensors (positional) or a dict "
                             f"(keywords){_hint_for(x)}")

    # -- what it holds ---------------------------------------------------------------------
    def tensors(self) -> list[tuple[str, Tensor]]:
        """Every tensor with its place: ``'0'``, ``'1'`` for positional ones, the keyword's name."""
        out: list[tuple[str, Tensor]] = []
        for i, a in enumerate(self.args):
            out.extend(_leaves(a, str(i)))
        for k, v in self.kwargs.items():
            out.extend(_leaves(v, k))
        return out

    @property
    def single(self) -> bool:
        """One positional tensor and nothing else (what most vision models take)."""
        return len(self.args) == 1 and not self.kwargs and isinstance(self.args[0], Tensor)

    @property
    def first(self) -> Tensor:
        """The first tensor (positional first), which sets batch size and device."""
        found = self.tensors()
        if not found:
            raise InputError("the inputs hold no tensor; expected at least one batched tensor")
        return found[0][1]

    @property
    def batch_size(self) -> int:
        t = self.first
        return int(t.shape[0]) if t.dim() else 1

    @property
    def device(self) -> torch.device:
        return self.first.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first floating tensor (the data; token ids are integers), else the first's."""
        for _, t in self.tensors():
            if t.is_floating_point():
                return t.dtype
        return self.first.dtype

    # -- new inputs from these -------------------------------------------------------------
    def map(self, fn: Callable[[Tensor], Any]) -> Inputs:
        """``fn`` applied to every tensor (nested tuples, lists and dicts kept)."""
        return Inputs(tuple(_map(a, fn) for a in self.args), {k: _map(v, fn) for k, v in self.kwargs.items()})

    def map_batched(self, fn: Callable[[Tensor], Any]) -> Inputs:
        """``fn`` applied to the tensors whose first dimension is the batch; the rest unchanged."""
        n = self.batch_size
        return self.map(lambda t: fn(t) if t.dim() and t.shape[0] == n else t)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Inputs:
        """Moved to ``device``; floating tensors cast to ``dtype`` when given (integer ids stay)."""
        return self.map(lambda t: t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None))

    def detach(self) -> Inputs:
        return self.map(Tensor.detach)

    def slice(self, start: int, stop: int) -> Inputs:
        """Samples ``start:stop`` of the batch."""
        return self.map_batched(lambda t: t[start:stop])

    def select(self, index: Tensor | Sequence[int]) -> Inputs:
        """The samples at ``index`` (a ``(k,)`` long tensor or list), in that order."""
        return self.map_batched(lambda t: t[torch.as_tensor(index, device=t.device)])

    def repeat(self, k: int) -> Inputs:
        """Each sample ``k`` times in a row (``[a, a, b, b]`` for ``k=2``)."""
        return self.map_batched(lambda t: t.repeat_interleave(k, dim=0))

    def chunks(self, size: int) -> Iterator[Inputs]:
        """Consecutive slices of at most ``size`` samples."""
        n = self.batch_size
        for start in range(0, n, max(1, size)):
            yield self.slice(start, min(n, start + size))

    # -- the explained input ---------------------------------------------------------------
    def resolve(self, wrt: int | str | None = None) -> int | str:
        """The input ``wrt`` names, as a position (int) or a keyword (str). ``None``, the default of every
        entry point, is the first floating-point tensor (positional first, then keywords): the data,
        not token ids or masks; with none of them, the first input."""
        if wrt is None:
            for i, a in enumerate(self.args):
                if isinstance(a, Tensor) and a.is_floating_point():
                    return i
            for k, v in self.kwargs.items():
                if isinstance(v, Tensor) and v.is_floating_point():
                    return k
            return 0 if self.args or not self.kwargs else next(iter(self.kwargs))
        if wrt == 0 and not self.args and self.kwargs and not isinstance(wrt, bool):  # keywords only: the first
            return next(iter(self.kwargs))
        return wrt

    def _where(self, wrt: int | str | None) -> tuple[str, int | str]:
        wrt = self.resolve(wrt)
        if isinstance(wrt, bool) or not isinstance(wrt, (int, str)):
            raise InputError(f"wrt={wrt!r}: expected the index of a positional input or the name of a keyword input")
        if isinstance(wrt, int):
            if not -len(self.args) <= wrt < len(self.args):
                raise InputError(f"wrt={wrt} is not a positional input; the model gets {len(self.args)} "
                                 f"positional input(s)" + (f" and keywords {', '.join(self.kwargs)}" if self.kwargs else ""))
            return "args", wrt % len(self.args)
        if wrt not in self.kwargs:
            raise InputError(f"wrt={wrt!r} is not a keyword input; the keywords are: "
                             f"{', '.join(self.kwargs) or 'none'}")
        return "kwargs", wrt

    def get(self, wrt: int | str | None = None) -> Any:
        """The positional input ``wrt`` (an int) or keyword input ``wrt`` (a str); ``None``: see :meth:`resolve`."""
        kind, key = self._where(wrt)
        return self.args[key] if kind == "args" else self.kwargs[key]

    def replace(self, wrt: int | str | None, value: Any) -> Inputs:
        """These inputs with input ``wrt`` replaced by ``value``."""
        kind, key = self._where(wrt)
        if kind == "args":
            args = list(self.args)
            args[key] = value
            return Inputs(tuple(args), dict(self.kwargs))
        return Inputs(self.args, {**self.kwargs, key: value})

    def explained(self, wrt: int | str | None = None, model: nn.Module | None = None) -> Tensor:
        """The input an attribution explains: a floating tensor. Token ids (integers) cannot carry a
        gradient: :class:`UnsupportedModelError` naming the embedding layer to explain instead."""
        wrt = self.resolve(wrt)
        x = self.get(wrt)
        if not isinstance(x, Tensor):
            raise InputError(f"input {wrt!r} is a {type(x).__name__}; expected a tensor to explain")
        if not x.is_floating_point():
            emb = None
            if model is not None:
                emb = next((n for n, m in model.named_modules() if isinstance(m, nn.Embedding)), None)
            hint = (f"; explain its embedding layer instead (layer={emb!r})" if emb
                    else "; explain a layer after the embedding instead")
            raise UnsupportedModelError(
                f"input {wrt!r} holds {x.dtype} values (token ids?), which have no gradient{hint}")
        return x

    # -- running the model -----------------------------------------------------------------
    def call(self, model: Callable[..., Any]) -> Any:
        """``model(*args, **kwargs)``."""
        return model(*self.args, **self.kwargs)

    def describe(self) -> str:
        """Shapes for messages: ``(2, 3, 32, 32)`` or ``(2, 3, 32, 32), mask=(2, 32)``."""
        parts = [str(tuple(t.shape)) if k.isdigit() else f"{k}={tuple(t.shape)}" for k, t in self.tensors()]
        return ", ".join(parts)


def check_arity(model: nn.Module, inputs: Inputs) -> None:
    """:class:`InputError` when ``model.forward`` cannot take these arguments (two tensors for a
    ``forward(self, x)``, an unknown keyword), before the forward; a forward without a readable
    signature passes."""
    import inspect

    forward = getattr(model, "forward", None)
    try:
        sig = inspect.signature(forward)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*inputs.args, **inputs.kwargs)
    except TypeError as exc:
        raise InputError(f"{type(model).__name__}.forward{sig} cannot take the inputs given "
                         f"({len(inputs.args)} positional{', keywords ' + ', '.join(inputs.kwargs) if inputs.kwargs else ''}): "
                         f"{exc}") from None


def check_inputs(model: nn.Module, x: InputsLike, *, wrt: int | str | None = None, explains: bool = True) -> Inputs:
    """:class:`Inputs` checked for ``model`` before any expensive work: the explained input
    through :func:`check_input` when it is one tensor the first layer reads (a batch of one made
    of an unbatched tensor), every floating tensor finite, and one batch size throughout.
    ``explains``: the caller explains one input (attribution); without it (activations, fusion
    shares over all inputs) no input is singled out and nothing is said about which."""
    inputs = Inputs.of(x)
    if inputs.single:
        checked = Inputs((check_input(model, inputs.args[0]),), {})
        check_arity(model, checked)
        return checked
    tensors = inputs.tensors()
    if not tensors:
        raise InputError("the inputs hold no tensor; expected at least one batched tensor")
    check_work_memory([t for _, t in tensors])
    for key, t in tensors:
        check_finite(t, f"input {key}")
    inputs.get(wrt)  # wrt names an input
    if wrt is None and explains:  # the default is a guess when several inputs are data: say which one, once
        floats = [k for k, t in tensors if t.is_floating_point()]
        if len(floats) > 1:
            msg = (f"explaining input {inputs.resolve(None)!r}, the first floating-point input of "
                   f"{', '.join(map(repr, floats))}; pass wrt= to explain another")
            if msg not in _SAID:
                _SAID.add(msg)
                warnings.warn(msg, stacklevel=3)
    # one batch: the explained input's first dimension, in every other input that has it at the same rank
    # or more (a shared mask of lower rank, (H, W) beside (B, C, H, W), passes as it is)
    explained = inputs.get(wrt)
    if isinstance(explained, Tensor) and explained.dim():
        n = explained.shape[0]
        for key, t in tensors:
            if t.dim() >= explained.dim() and t.shape[0] != n:
                raise InputShapeError(f"input {key} has {t.shape[0]} samples ({tuple(t.shape)}) but input "
                                      f"{inputs.resolve(wrt)!r} has {n} ({tuple(explained.shape)}); expected one "
                                      f"batch size for every batched input")
    check_arity(model, inputs)
    return inputs

_CONV_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}


def first_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first leaf module (registration order) that has parameters, with its name."""
    for name, module in model.named_modules():
        if next(module.children(), None) is None and any(True for _ in module.parameters(recurse=False)):
            return name, module
    return None


def flattens_first(model: nn.Module) -> bool:
    """Whether the model's first leaf module is ``nn.Flatten`` (it reads images as flat vectors)."""
    for module in model.modules():
        if next(module.children(), None) is not None:
            continue
        return isinstance(module, nn.Flatten)
    return False


def expected_input(model: nn.Module) -> str | None:
    """A short description of the input the first layer wants, e.g. ``'(N, 3, H, W)'``."""
    found = first_layer(model)
    if found is None:
        return None
    _, layer = found
    for cls, dims in _CONV_DIMS.items():
        if isinstance(layer, cls):
            spatial = {1: "L", 2: "H, W", 3: "D, H, W"}[dims]
            return f"(N, {layer.in_channels}, {spatial})"
    if isinstance(layer, nn.Linear):
        return f"(N, {layer.in_features})"
    return None


def check_finite(x: Tensor, name: str = "input") -> Tensor:
    """``x`` unchanged; :class:`NonFiniteInputError` naming the count of NaN / infinite values."""
    if (x.is_floating_point() or x.is_complex()) and x.numel() and not x.is_meta and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        kinds = []
        if bool(torch.isnan(x).any()):
            kinds.append("NaN")
        if bool(torch.isinf(x).any()):
            kinds.append("infinite")
        raise NonFiniteInputError(
            f"{name} of shape {tuple(x.shape)} has {bad} {' and '.join(kinds)} value(s); expected finite values"
        )
    return x


def trial_forward(model: nn.Module, x: InputsLike) -> tuple[bool, Any]:
    """``(ran, output)`` of one eval-mode, no-grad forward of a copy of the first two samples (the
    model comes back exactly as it went in, and a model that edits its input edits the copy);
    ``(False, None)`` when the forward raises, or when its output does not keep dimension 0 as the
    batch (then ``x`` was not read as a batch: say a batch of gray images without their channel
    dimension, which the model took as one image of that many channels)."""
    from .probe import eval_forward

    inputs = Inputs.of(x)
    n = min(2, inputs.batch_size)
    try:
        out = eval_forward(model, inputs.slice(0, n).map(Tensor.clone))
    except Exception:  # the trial says only whether the model takes this input
        return False, None
    if n == 2 and isinstance(out, Tensor) and (out.dim() == 0 or out.shape[0] != 2):
        return False, None
    return True, out


def takes_shape(model: nn.Module, shape: Sequence[int]) -> bool:
    """Whether ``model`` runs on a batch of two zero inputs of ``shape`` (on its device, in its
    dtype, no gradients): for choosing sizes a model that takes one input size only accepts."""
    p = next(model.parameters(), None)
    kind = {"device": p.device, "dtype": p.dtype} if p is not None and p.is_floating_point() else {}
    return trial_forward(model, torch.zeros(2, *shape, **kind))[0]


def check_input(model: nn.Module, x: Tensor, *, name: str = "input") -> Tensor:
    """Validate ``x`` for ``model``; return it batched (never modified in place).

    - NaN or infinite values raise :class:`NonFiniteInputError`;
    - an unbatched input (one dimension short of what the first layer wants) becomes a batch of one;
    - a channel / feature count that the first layer cannot take raises :class:`InputShapeError`
      naming both shapes;
    - an empty batch is returned as is (callers return empty results).

    The first layer is read off the model without running it (the first registered leaf with
    parameters). A model can run its layers in another order or reshape before its first one
    (``fc1(x.view(len(x), -1))``): before rejecting a shape, the first two samples are run
    through the model, and an input it takes as a batch is accepted as it is.
    """
    if not isinstance(x, Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}{_hint_for(x)}")
    try:
        return _check_input(model, x, name)
    except (InputShapeError, InputDtypeError):
        if x.dim() >= 1 and x.shape[0] > 0 and trial_forward(model, x)[0]:
            return x
        raise


#: Bytes an explanation holds per byte of its inputs, at least (copies, gradients, maps, activations).
INPUT_WORK_FACTOR = 4


def check_work_memory(tensors: Sequence[Tensor], factor: int = INPUT_WORK_FACTOR, what: str = "the work on inputs") -> None:
    """:class:`~torchloupe.errors.ResourceLimitError` when ``factor`` times the inputs' bytes cannot fit
    in the memory of their device (:mod:`torchloupe._limits`), before any forward."""
    if not tensors:
        return
    need = sum(t.numel() * t.element_size() for t in tensors) * factor
    shapes = ", ".join(str(tuple(t.shape)) for t in tensors[:3]) + (", ..." if len(tensors) > 3 else "")
    check_memory(need, f"{what} of shape {shapes}", device=tensors[0].device, hint="use a smaller batch or size")


def _check_input(model: nn.Module, x: Tensor, name: str) -> Tensor:
    check_work_memory([x])
    check_finite(x, name)
    found = first_layer(model)
    if found is None:
        return x
    lname, layer = found
    if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)) and not (x.is_floating_point() or x.is_complex()):
        raise InputDtypeError(
            f"{name} holds {x.dtype} values, but the first layer {lname!r} ({type(layer).__name__}) takes "
            f"floating-point ones; {dtype_hint(x)}")
    weight = getattr(layer, "weight", None)
    if isinstance(weight, Tensor) and weight.is_floating_point() and x.is_floating_point() and x.dtype != weight.dtype:
        raise InputDtypeError(
            f"{name} holds {x.dtype} values, but the first layer {lname!r} ({type(layer).__name__}) has "
            f"{weight.dtype} weights; convert with x.to({str(weight.dtype).replace('torch.', 'torch.')}) "
            f"(or the model with model.to(x.dtype))")
    for cls, dims in _CONV_DIMS.items():
        if isinstance(layer, cls):
            want = dims + 2
            if x.dim() == want - 1:
                x = x.unsqueeze(0)
            if x.dim() != want:
                raise InputShapeError(
                    f"{name} has shape {tuple(x.shape)}, but the first layer {lname!r} "
                    f"({cls.__name__}) wants {want} dimensions {expected_input(model)}"
                )
            if x.shape[1] != layer.in_channels:
                raise InputShapeError(
                    f"{name} has shape {tuple(x.shape)} with {x.shape[1]} channels, but the first "
                    f"layer {lname!r} ({cls.__name__}) wants {layer.in_channels} channels "
                    f"{expected_input(model)}"
                )
            return x
    if isinstance(layer, nn.Linear) and x.is_floating_point():
        if flattens_first(model):
            batched_ok = x.dim() >= 2 and math.prod(x.shape[1:]) == layer.in_features
            if not batched_ok and x.dim() >= 1 and math.prod(x.shape) == layer.in_features:
                x = x.unsqueeze(0)
            if x.dim() < 2 or math.prod(x.shape[1:]) != layer.in_features:
                raise InputShapeError(
                    f"{name} has shape {tuple(x.shape)} ({math.prod(x.shape[1:]) if x.dim() > 1 else x.numel()} "
                    f"features per sample), but the first layer {lname!r} (Linear) wants "
                    f"{layer.in_features} features after flattening"
                )
            return x
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.shape[-1] != layer.in_features:
            raise InputShapeError(
                f"{name} has shape {tuple(x.shape)}, but the first layer {lname!r} (Linear) "
                f"wants {layer.in_features} features in the last dimension"
            )
    return x


def standard_layout(x: Tensor) -> Tensor:
    """``x`` with the strides of a freshly made tensor of its shape (row-major), copied only when
    they differ. ``Tensor.contiguous()`` is not enough: a ``(N, 1, H, W)`` tensor with channels-last
    strides counts as contiguous."""
    expected, step = [], 1
    for size in reversed(x.shape):
        expected.append(step)
        step *= max(int(size), 1)
    if tuple(reversed(expected)) == tuple(x.stride()):
        return x
    return x.clone(memory_format=torch.contiguous_format)
