"""Shared test helpers: snapshots of a model's full state, tiny models with known weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

_HOOK_ATTRS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def model_state(model: nn.Module) -> dict[str, Any]:
    """Everything a torchloupe call must leave unchanged, copied."""
    state: dict[str, Any] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        state[f"param:{name}"] = p.detach().clone()
        state[f"requires_grad:{name}"] = p.requires_grad
        state[f"grad:{name}"] = None if p.grad is None else p.grad.detach().clone()
        state[f"grad_id:{name}"] = id(p.grad) if p.grad is not None else None
    for name, b in model.named_buffers(remove_duplicate=False):
        state[f"buffer:{name}"] = b.detach().clone()
    for name, m in model.named_modules(remove_duplicate=False):
        state[f"training:{name}"] = m.training
        state[f"module_id:{name}"] = id(m)
        for attr in _HOOK_ATTRS:
            d = m.__dict__.get(attr)
            if d is not None:
                state[f"{attr}:{name}"] = [(k, id(v)) for k, v in d.items()]
    return state


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys(), f"state keys changed: {set(before) ^ set(after)}"
    for key, a in before.items():
        b = after[key]
        if isinstance(a, torch.Tensor):
            assert isinstance(b, torch.Tensor), key
            assert a.dtype == b.dtype and a.shape == b.shape, key
            assert torch.equal(a, b), f"{key} changed"
        else:
            assert a == b, f"{key}: {a!r} -> {b!r}"


def tree_clone(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, (list, tuple)):
        return type(x)(tree_clone(v) for v in x)
    if isinstance(x, dict):
        return {k: tree_clone(v) for k, v in x.items()}
    return x


def tree_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tree_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tree_equal(a[k], b[k]) for k in a)
    return a == b


class TinyCNN(nn.Module):
    """conv-bn-relu x2, GAP, linear: the smallest model CAM applies to. BatchNorm catches mode bugs."""

    def __init__(self, in_ch: int = 3, classes: int = 4, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width * 2, 3, padding=1),
            nn.BatchNorm2d(width * 2),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 2, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny_cnn(seed: int = 0, **kw) -> TinyCNN:
    torch.manual_seed(seed)
    m = TinyCNN(**kw)
    # Non-trivial BN statistics so a forward in train mode would change them.
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    m.train()  # the user's mode; torchloupe must leave it so
    return m


def arm_tripwire(model: nn.Module) -> None:
    """Make ``model`` raise mid-forward: a forward hook on its last leaf module raises.

    The hook belongs to the 'user', so it must still be registered after the call.
    """
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    target = leaves[-1]

    def boom(module, args, output):
        raise RuntimeError("tripwire: the model raised mid-forward")

    target.register_forward_hook(boom)


@dataclass
class Case:
    """One public entry point in the invariant suite.

    ``call(model, inputs)`` runs the entry point. ``make()`` builds a fresh model (in the
    user's mode, possibly with ``.grad`` set), ``inputs()`` its inputs. ``arm`` makes the model
    raise mid-call (default: :func:`arm_tripwire`); ``None`` skips the raising variant for
    entry points that never run the model.
    """

    id: str
    call: Callable[[nn.Module, Any], Any]
    make: Callable[[], nn.Module] = tiny_cnn
    inputs: Callable[[], Any] = lambda: torch.rand(2, 3, 16, 16)
    arm: Callable[[nn.Module], None] | None = arm_tripwire
    marks: tuple = field(default_factory=tuple)


def peer(name: str):
    """Import a peer library of the test extras; its absence fails the test (never a silent skip)."""
    import importlib

    import pytest

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"{name} belongs to the test extras (`make test` installs it): {exc}")
