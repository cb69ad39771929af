"""Find layers of a model by dotted name, glob pattern, type or module object.

A *layer spec* is one of:

- a dotted module name, ``"layer4.1.conv2"`` (``""`` is the model itself);
- a glob over dotted names, ``"layer*.0.conv?"`` (:mod:`fnmatch` rules);
- a module class, ``nn.Conv2d`` (every module of that type, in registration order);
- a module object that is part of the model.

A wrong name raises :class:`~torchloupe.errors.LayerNotFoundError` naming the
closest real names.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Sequence
from typing import Union

from torch import nn

from .errors import LayerNotFoundError

__all__ = ["LayerSpec", "find_layer", "find_layers", "layer_names", "name_of", "closest_names"]

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


def find_layers(model: nn.Module, spec: LayerSpec | Sequence[LayerSpec]) -> list[tuple[str, nn.Module]]:
    """Every ``(name, module)`` matching ``spec`` (or a list of specs), in model order, no duplicates.

    Raises :class:`LayerNotFoundError` when any spec matches nothing.
    """
    specs: Iterable[LayerSpec]
    if isinstance(spec, (list, tuple)):
        specs = spec
    else:
        specs = [spec]
    named = list(model.named_modules())
    found: dict[str, nn.Module] = {}
    for s in specs:
        hits: list[tuple[str, nn.Module]]
        if isinstance(s, str):
            if any(c in _GLOB_CHARS for c in s):
                hits = [(n, m) for n, m in named if n and fnmatch.fnmatchcase(n, s)]
            else:
                hits = [(n, m) for n, m in named if n == s]
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


def find_layer(model: nn.Module, spec: LayerSpec) -> nn.Module:
    """The one module named by ``spec``.

    A glob or type that matches several modules returns the first one in model order.
    """
    from .probe import require_module  # probe finds layers with this module: imported on use

    return find_layers(require_module(model), spec)[0][1]


def name_of(model: nn.Module, module: nn.Module) -> str:
    """Dotted name of ``module`` inside ``model`` (``""`` for the model itself)."""
    for n, m in model.named_modules():
        if m is module:
            return n
    raise _not_found(model, module)
