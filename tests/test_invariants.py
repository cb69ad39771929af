"""The invariant suite: every public entry point leaves the model and its inputs as they were.

Cases live in ``tests/invariant_cases/*.py`` (a ``CASES`` list each), so every issue adds
its entry points without touching this file. For each case: parameters and buffers bit
for bit, ``requires_grad``, ``.grad`` (values and identity), train/eval flags, module
objects and hook dictionaries are unchanged, after a normal call and after a call during
which the model raises.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch

from tests import invariant_cases
from tests.helpers import Case, assert_same_state, model_state, tree_clone, tree_equal


def _cases() -> list[Case]:
    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(invariant_cases.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{invariant_cases.__name__}.{info.name}")
        cases.extend(module.CASES)
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate invariant case ids: {dupes}"
    return cases


CASES = _cases()


def _with_user_grads(model: torch.nn.Module) -> None:
    """Give half of the parameters a .grad, as a user mid-training would have."""
    for i, p in enumerate(model.parameters()):
        if i % 2 == 0 and p.requires_grad:
            p.grad = torch.full_like(p, 0.25)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_state_unchanged_after_call(case: Case):
    torch.manual_seed(0)
    model = case.make()
    _with_user_grads(model)
    inputs = case.inputs()
    inputs_copy = tree_clone(inputs)
    before = model_state(model)
    case.call(model, inputs)
    assert_same_state(before, model_state(model))
    assert tree_equal(inputs, inputs_copy), "the call modified its inputs"


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES if c.arm is not None]
)
def test_state_unchanged_when_model_raises(case: Case):
    torch.manual_seed(0)
    model = case.make()
    _with_user_grads(model)
    case.arm(model)
    inputs = case.inputs()
    inputs_copy = tree_clone(inputs)
    before = model_state(model)
    with pytest.raises(Exception):
        case.call(model, inputs)
    assert_same_state(before, model_state(model))
    assert tree_equal(inputs, inputs_copy), "the call modified its inputs"


def _global_state() -> dict:
    """Process-wide state no call may leave changed: RNG, grad mode, MHA fast path, global module hooks."""
    from torch.nn.modules import module as nn_module

    hooks = {
        name: list(getattr(nn_module, name).keys())
        for name in dir(nn_module)
        if name.startswith("_global_") and name.endswith("hooks") and isinstance(getattr(nn_module, name), dict)
    }
    return {
        "rng": torch.get_rng_state(),
        "grad_enabled": torch.is_grad_enabled(),
        "fastpath": torch.backends.mha.get_fastpath_enabled(),
        "global_hooks": hooks,
    }


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_global_state_unchanged(case: Case):
    torch.manual_seed(0)
    model = case.make()
    inputs = case.inputs()
    before = _global_state()
    case.call(model, inputs)
    after = _global_state()
    assert torch.equal(before.pop("rng"), after.pop("rng")), "the call consumed or reseeded the global RNG"
    assert before == after


# Public callables that take a model (or a tracker / writer) but need no case of their own:
# abstract bases and plain records.
_NOT_ENTRY_POINTS = {"BaseCAM", "GradientCAM", "Branch", "Session"}
_MODULES = (
    "cam", "saliency", "evaluate", "fusion", "attention", "recurrent", "synthesis", "weights",
    "features", "structure", "integrations.tensorboard", "probe", "inputs", "targets",
)


def test_suite_covers_the_public_api():
    """Every public callable whose first argument is a model, module, tracker or writer has a case."""
    import inspect

    covered = {c.id.split("-")[0].split("[")[0] for c in CASES}
    covered |= {part for c in CASES for part in c.id.split("-")}
    missing = []
    for mod_name in _MODULES:
        module = importlib.import_module(f"torchloupe.{mod_name}")
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            fn = obj.__init__ if inspect.isclass(obj) else obj
            if not callable(fn) or name in _NOT_ENTRY_POINTS:
                continue
            try:
                params = list(inspect.signature(fn).parameters)
            except (TypeError, ValueError):
                continue
            if inspect.isclass(obj):
                params = params[1:]
            if params and params[0] in ("model", "module", "tracker", "writer") and name not in covered:
                missing.append(f"{mod_name}.{name}")
    for name in ("capture", "activations", "find_layer", "trace", "report"):
        if name not in covered:
            missing.append(name)
    assert not missing, f"public entry points without an invariant case: {missing}"
