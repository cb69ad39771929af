"""Input and target checks, done before any expensive work.

:func:`check_input` turns an unbatched input into a batch of one, rejects NaN
and infinite values, and checks the channel / feature count against the
model's first layer where it can be read off the model. :func:`check_targets`
turns an int / list / tensor target into a ``(B,)`` index tensor and checks
its range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputError, InputShapeError, NonFiniteInputError, TargetError

__all__ = ["first_layer", "check_input", "check_finite", "check_targets", "check_model_targets", "num_classes_of", "expected_input"]

_CONV_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}


def first_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first leaf module (registration order) that has parameters, with its name."""
    for name, module in model.named_modules():
        if next(module.children(), None) is None and any(True for _ in module.parameters(recurse=False)):
            return name, module
    return None


def _flatten_first(model: nn.Module) -> bool:
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
    if (x.is_floating_point() or x.is_complex()) and x.numel() and not bool(torch.isfinite(x).all()):
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


def trial_forward(model: nn.Module, x: Tensor | tuple[Tensor, ...]) -> tuple[bool, Any]:
    """``(ran, output)`` of one eval-mode, no-grad forward of a copy of the first two samples (the
    model comes back exactly as it went in, and a model that edits its input edits the copy);
    ``(False, None)`` when the forward raises, or when its output does not keep dimension 0 as the
    batch (then ``x`` was not read as a batch: say a batch of gray images without their channel
    dimension, which the model took as one image of that many channels)."""
    from .probe import eval_forward

    xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    n = min(2, xs[0].shape[0])
    try:
        out = eval_forward(model, tuple(t[:n].clone() for t in xs) if len(xs) > 1 else xs[0][:n].clone())
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
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    try:
        return _check_input(model, x, name)
    except InputShapeError:
        if x.dim() >= 1 and x.shape[0] > 0 and trial_forward(model, x)[0]:
            return x
        raise


def _check_input(model: nn.Module, x: Tensor, name: str) -> Tensor:
    check_finite(x, name)
    found = first_layer(model)
    if found is None:
        return x
    lname, layer = found
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
        if _flatten_first(model):
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


def num_classes_of(model: nn.Module) -> int | None:
    """Class count guessed before any forward: ``out_features`` of the last registered ``nn.Linear``."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return None if last is None else int(last.out_features)


def check_model_targets(model: nn.Module, x: Tensor | tuple[Tensor, ...], target: Any, *, device=None) -> Tensor:
    """:func:`check_targets` against the model's class count: guessed from its layers (no forward),
    and when that guess rejects a target, read from the output of the first two samples (a model
    may register its head before other linear layers, or end in something else).
    """
    first = x[0] if isinstance(x, (tuple, list)) else x
    batch = first.shape[0] if first.dim() else 1
    guess = num_classes_of(model)
    try:
        return check_targets(target, batch, guess, device=device)
    except TargetError:
        if guess is None or first.dim() < 1 or batch == 0:
            raise
        ran, out = trial_forward(model, x)
        true = int(out.shape[-1]) if ran and isinstance(out, Tensor) and out.dim() == 2 else None
        if true is None or true == guess:
            raise
        return check_targets(target, batch, true, device=device)


def check_targets(target: Any, batch: int, num_classes: int | None, *, device=None) -> Tensor:
    """A ``(batch,)`` long tensor of class indices from an int, a sequence or a tensor.

    Raises :class:`TargetError` naming the bad index and the valid range.
    """
    if isinstance(target, bool) or target is None:
        raise TargetError(f"target must be a class index, a list or tensor of them, got {target!r}")
    if isinstance(target, int):
        t = torch.full((batch,), target, dtype=torch.long, device=device)
    elif isinstance(target, (Sequence, Tensor)) and not isinstance(target, str):
        t = torch.as_tensor(target, device=device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.is_floating_point() or t.is_complex():
            raise TargetError(f"target must hold integer class indices, got dtype {t.dtype}")
        t = t.long().reshape(-1)
        if t.numel() != batch:
            raise TargetError(f"target has {t.numel()} entries, but the batch has {batch} samples")
    else:
        raise TargetError(
            f"target must be an int, a list or tensor of ints, or a callable, got {type(target).__name__}"
        )
    if num_classes is not None and t.numel():
        lo, hi = int(t.min()), int(t.max())
        bad = lo if lo < 0 else hi if hi >= num_classes else None
        if bad is not None:
            raise TargetError(
                f"target class {bad} is out of range; the model has {num_classes} classes (0..{num_classes - 1})"
            )
    return t
