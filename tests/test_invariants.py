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


def test_suite_covers_the_public_api():
    """Every public callable of the top-level package appears in at least one case id."""
    import torchloupe as tl

    covered = " ".join(c.id for c in CASES)
    for name in ("capture", "activations", "find_layer", "trace", "report"):
        assert name in covered, f"tl.{name} has no invariant case"
