"""What an explanation explains: one rule set for every method.

A *target* says which score of the model's output to explain, one per sample:

- ``None``: the predicted class (``argmax`` of the scores);
- an ``int``: that class for every sample;
- a list or a ``(B,)`` tensor of ints: one class per sample;
- a callable ``f(output) -> (B,)`` scores: anything else (a regression output, a margin between
  two classes, a token's logit), given the model's raw output.

An *output selection* says where the ``(B, classes)`` scores are in what the model returns, for
models that return more than a tensor:

- ``None``: the output itself when it is a tensor; ``output.logits`` / ``output["logits"]`` when
  it has them (Hugging Face ``ModelOutput``, dicts);
- a ``str``: that key of a dict or attribute of a dataclass (``output="logits"``);
- an ``int``: that element of a tuple or list (``output=0``);
- a callable ``f(output) -> (B, classes)`` tensor.

:class:`Target` holds both. ``Target(target, output).resolve(model_output, n)`` gives the class
indices used (``-1`` for a callable target) and a function from a model output to the ``(B,)``
scores, so gradient methods differentiate exactly the score that was chosen. A wrong target is a
:class:`~torchloupe.errors.TargetError` naming the value and what was expected; :func:`check_model_targets`
checks class indices against the model before any expensive work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import Tensor, nn

from .errors import TargetError

__all__ = [
    "Target",
    "TargetLike",
    "OutputSpec",
    "select_output",
    "output_keys",
    "check_targets",
    "check_model_targets",
    "num_classes_of",
]

TargetLike = Union[None, int, Sequence[int], Tensor, Callable[[Any], Tensor]]
OutputSpec = Union[None, str, int, Callable[[Any], Tensor]]


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def output_keys(output: Any) -> list[str]:
    """How the parts of a non-tensor output can be named: dict keys, dataclass fields that are set,
    tuple indices (as strings)."""
    if isinstance(output, Mapping):  # Hugging Face ModelOutput is an OrderedDict of the fields that are set
        return [str(k) for k in output.keys()]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [f.name for f in dataclasses.fields(output) if getattr(output, f.name) is not None]
    if isinstance(output, (tuple, list)):
        return [str(i) for i in range(len(output))]
    return []


def _parts(output: Any) -> str:
    keys = output_keys(output)
    if not keys:
        return _describe(output)
    shown = []
    for k in keys[:8]:
        v = output[int(k)] if isinstance(output, (tuple, list)) else (
            output[k] if isinstance(output, Mapping) else getattr(output, k))
        shown.append(f"{k}: {_describe(v).removeprefix('a ')}")
    more = f", ... ({len(keys)} in all)" if len(keys) > 8 else ""
    return f"{type(output).__name__} with {', '.join(shown)}{more}"


def select_output(output: Any, spec: OutputSpec = None) -> Any:
    """The part of a model's output that ``spec`` names (see the module docstring).

    Raises :class:`TargetError` listing the parts of the output when ``spec`` names none of them.
    """
    if callable(spec):
        return spec(output)
    if spec is None:
        if isinstance(output, Tensor):
            return output
        logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
        if isinstance(logits, Tensor):
            return logits
        return output
    if isinstance(spec, bool) or not isinstance(spec, (str, int)):
        raise TargetError(f"output={spec!r}: expected a key (str), an index (int) or a callable(output) -> tensor")
    try:
        if isinstance(spec, int):
            if isinstance(output, Mapping):  # a Hugging Face ModelOutput indexes its set fields in order
                return output[spec] if spec in output else list(output.values())[spec]
            if not isinstance(output, (tuple, list)):
                raise KeyError(spec)
            return output[spec]
        if isinstance(output, Mapping):
            return output[spec]
        if dataclasses.is_dataclass(output) or hasattr(type(output), spec):
            value = getattr(output, spec)
            if value is None:
                raise KeyError(spec)
            return value
        raise KeyError(spec)
    except (KeyError, IndexError, AttributeError):
        raise TargetError(f"output={spec!r} is not part of the model's output, {_parts(output)}") from None


def _scores(output: Any, spec: OutputSpec, what: str) -> Tensor:
    """``(B, classes)`` scores from a model output, or a TargetError saying what the output holds."""
    scores = select_output(output, spec)
    if isinstance(scores, Tensor) and scores.dim() == 2:
        return scores
    if spec is None and not isinstance(output, Tensor):
        hint = "; pass output=KEY or INDEX (or a callable) to pick the (N, classes) scores" if output_keys(output) else ""
        raise TargetError(f"{what} need (N, classes) scores, but the model returned {_parts(output)}{hint}, "
                          f"or target=callable(output) -> (N,) scores")
    raise TargetError(f"{what} need (N, classes) scores, got {_describe(scores)}"
                      + (f" from output={spec!r}" if spec is not None else " from the model")
                      + "; pass target=callable(output) -> (N,) scores")


class Target:
    """A target and an output selection (see the module docstring), resolved against an output.

    ``Target.of(target, output)`` returns ``target`` itself when it is already a :class:`Target`.
    """

    __slots__ = ("target", "output")

    def __init__(self, target: TargetLike = None, output: OutputSpec = None):
        if isinstance(target, Target):
            target, output = target.target, output if output is not None else target.output
        if isinstance(target, bool) or not (
            target is None or callable(target) or isinstance(target, (int, Sequence, Tensor))
        ) or isinstance(target, str):
            raise TargetError(f"target must be None, an int, a list or tensor of ints, or a callable(output) -> "
                              f"(N,) scores; got {target!r}")
        if not (output is None or callable(output) or isinstance(output, (str, int))) or isinstance(output, bool):
            raise TargetError(f"output={output!r}: expected a key (str), an index (int) or a callable(output) -> tensor")
        self.target = target
        self.output = output

    @classmethod
    def of(cls, target: TargetLike | Target = None, output: OutputSpec = None) -> Target:
        if isinstance(target, Target) and output is None:
            return target
        return cls(target, output)

    @property
    def is_callable(self) -> bool:
        return callable(self.target) and not isinstance(self.target, Tensor)

    @property
    def is_fixed(self) -> bool:
        """Class indices given (not ``None``, not a callable): checkable before any forward."""
        return self.target is not None and not self.is_callable

    def __repr__(self) -> str:
        return f"Target({self.target!r}" + (f", output={self.output!r})" if self.output is not None else ")")

    def scores_of(self, output: Any) -> Tensor:
        """The ``(B, classes)`` scores in a model output (``output`` selection applied)."""
        return _scores(output, self.output, "class-index targets")

    def indices(self, output: Any, n: int | None = None) -> Tensor:
        """``(B,)`` class indices for an output: the given ones (range-checked) or the predicted ones.
        A callable target has none: :class:`TargetError` (the caller needs class indices)."""
        if self.is_callable:
            raise TargetError("this needs class indices; a callable target gives scores only "
                              "(pass an int, a list or tensor of ints, or None for the predicted class)")
        scores = self.scores_of(output)
        n = scores.shape[0] if n is None else n
        if self.target is None:
            return scores.detach().argmax(dim=1)
        return check_targets(self.target, n, scores.shape[1], device=scores.device)

    def resolve(self, output: Any, n: int) -> tuple[Tensor, Callable[[Any], Tensor]]:
        """``(indices, score_fn)``: the ``(n,)`` classes explained (``-1`` each for a callable target)
        and ``score_fn(model_output) -> (n,)`` scores, which keeps the autograd graph."""
        if self.is_callable:
            fn = self.target

            def callable_scores(out: Any) -> Tensor:
                s = fn(select_output(out, self.output) if self.output is not None else out)
                if not isinstance(s, Tensor) or s.shape != (n,):
                    raise TargetError(f"the target callable must return ({n},) scores, one per sample, "
                                      f"got {tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__}")
                return s

            return torch.full((n,), -1, dtype=torch.long), callable_scores
        idx = self.indices(output, n)
        spec = self.output

        def class_scores(out: Any) -> Tensor:
            scores = _scores(out, spec, "class-index targets")
            return scores.gather(1, idx[:, None].to(scores.device)).squeeze(1)

        return idx, class_scores


def num_classes_of(model: nn.Module) -> int | None:
    """Class count guessed before any forward: ``out_features`` of the last registered ``nn.Linear``."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return None if last is None else int(last.out_features)


def check_model_targets(model: nn.Module, x: Any, target: Any, *, device=None, output: OutputSpec = None) -> Tensor:
    """:func:`check_targets` against the model's class count, before any expensive work: guessed
    from its layers (no forward), and when that guess rejects a target, read from the output of
    the first two samples (a model may register its head before other linear layers, or end in
    something else). ``x``: what the model takes (see :class:`torchloupe.inputs.Inputs`)."""
    from .inputs import Inputs, trial_forward

    inputs = Inputs.of(x)
    batch = inputs.batch_size
    guess = num_classes_of(model) if output is None else None
    checked = check_targets(target, batch, None, device=device)  # the form of the target, always
    if guess is not None:
        try:
            return check_targets(target, batch, guess, device=device)
        except TargetError:
            if batch == 0:
                raise
    elif batch == 0:
        return checked
    ran, out = trial_forward(model, inputs)
    scores = select_output(out, output) if ran else None
    true = int(scores.shape[-1]) if isinstance(scores, Tensor) and scores.dim() == 2 else None
    if true is None or true == guess:  # nothing better to check against before the real forward
        return check_targets(target, batch, guess, device=device)
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
