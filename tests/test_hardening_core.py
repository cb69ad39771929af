"""Hardening of the compute core (issue 21): the user's errors reach the caller, layer names with
glob characters, ``tl.report``'s upfront checks, typed one-line errors for common mistakes and bad
values, the pre-flight memory estimate, strings in figures and the report, Hugging Face train state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchloupe as tl
from torchloupe import errors


# --- 9. the user's errors are never swallowed -----------------------------------------------------
class _RaisesOnce(nn.Module):
    """Two conv branches joined by a linear head; its forward number ``fail_at`` raises (once)."""

    def __init__(self, fail_at: int = 0):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(8, 3)
        self.fail_at, self.calls, self.raised = fail_at, 0, None

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            self.raised = RuntimeError("user bug")
            raise self.raised
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).mean((2, 3)))


def _maps():
    return torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))


def _x():
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _explain(m, x, t):
    return x.abs().sum(1)


_BR = {"a": "a", "b": "b"}
RAISING = {
    "deletion": lambda m: tl.evaluate.deletion(m, _x(), _maps(), steps=4),
    "insertion": lambda m: tl.evaluate.insertion(m, _x(), _maps(), steps=4),
    "deletion_curve": lambda m: tl.evaluate.deletion_curve(m, _x(), _maps(), steps=4),
    "insertion_curve": lambda m: tl.evaluate.insertion_curve(m, _x(), _maps(), steps=4),
    "average_drop": lambda m: tl.evaluate.average_drop(m, _x(), _maps()),
    "increase_in_confidence": lambda m: tl.evaluate.increase_in_confidence(m, _x(), _maps()),
    "road": lambda m: tl.evaluate.road(m, _x(), _maps(), percentages=(50,)),
    "randomization_check": lambda m: tl.evaluate.randomization_check(m, _x(), _explain),
    "fusion-shapley": lambda m: tl.fusion.contributions(m, _x(), _BR, method="shapley"),
    "fusion-ablation": lambda m: tl.fusion.contributions(m, _x(), _BR, method="ablation"),
    "fusion-integrated_gradients": lambda m: tl.fusion.contributions(m, _x(), _BR, method="integrated_gradients",
                                                                     max_steps=8),
    "fusion-gradient_x_activation": lambda m: tl.fusion.contributions(m, _x(), _BR, method="gradient_x_activation"),
    "fusion-exact": lambda m: tl.fusion.contributions(m, _x(), _BR, method="exact"),
    "ShareTracker": lambda m: tl.fusion.ShareTracker(m, _x(), _BR, every=1).step(),
}


@pytest.mark.parametrize("name", list(RAISING))
def test_a_runtime_error_of_the_model_reaches_the_caller_from_every_forward(name):
    """Whichever forward of the call raises, that very error reaches the caller (no re-run, no result)."""
    clean = _RaisesOnce()
    RAISING[name](clean)
    n = clean.calls
    assert n >= 1
    for k in range(1, n + 1):
        m = _RaisesOnce(fail_at=k)
        with pytest.raises(RuntimeError, match="user bug") as info:
            RAISING[name](m)
        chain, e = [], info.value  # the error itself, or a TraceError raised from it (the tracer's own)
        while e is not None:
            chain.append(e)
            e = e.__cause__
        assert m.raised in chain and (chain[0] is m.raised or isinstance(chain[0], errors.TraceError)), \
            f"forward {k} of {n}: another error reached the caller"
        assert m.calls == k, f"forward {k} of {n} raised, yet the model ran {m.calls} times"


def test_out_of_memory_in_a_channels_last_forward_is_not_a_layout_fallback():
    from torchloupe.evaluate.batching import rejects_channels_last

    assert rejects_channels_last(RuntimeError("view size is not compatible with input tensor's size and stride "
                                              "(at least one dimension spans across two contiguous subspaces)"))
    assert not rejects_channels_last(torch.OutOfMemoryError("CUDA out of memory. view size is not compatible"))
    assert not rejects_channels_last(RuntimeError("user bug"))


class _ViewsItsMaps(nn.Module):
    """A model whose forward takes only standard-layout maps (``x.view`` after a conv)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.conv(x).view(x.shape[0], -1))


def test_a_model_that_rejects_channels_last_still_gets_its_metric():
    m = _ViewsItsMaps()
    got = tl.evaluate.average_drop(m, _x(), _maps())
    # reference: the same metric by hand, contiguous forwards
    with torch.no_grad():
        p = m(_x()).softmax(1)
        t = p.argmax(1)
        y = p.gather(1, t[:, None])[:, 0]
        o = m(_x() * _maps()[:, None]).softmax(1).gather(1, t[:, None])[:, 0]
    want = (torch.clamp(y - o, min=0) / y) * 100
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# --- 6. layer names holding glob characters ------------------------------------------------------
class _GlobNames(nn.Module):
    """ModuleDict keys with ``[``, ``]``, ``*`` and ``?``; also a plain ``a0`` the glob ``a[0]`` would match."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleDict({"a[0]": nn.Conv2d(3, 4, 3, padding=1), "a0": nn.Identity(),
                                     "b*": nn.Conv2d(4, 4, 3, padding=1), "c?": nn.ReLU()})
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.blocks["c?"](self.blocks["b*"](self.blocks["a0"](self.blocks["a[0]"](x))))
        return self.fc(x.mean((2, 3)))


def test_a_layer_name_with_glob_characters_is_found_exactly_first():
    m = _GlobNames()
    assert tl.find_layer(m, "blocks.a[0]") is m.blocks["a[0]"]
    assert tl.find_layer(m, "blocks.b*") is m.blocks["b*"]
    assert tl.find_layer(m, "blocks.c?") is m.blocks["c?"]
    from torchloupe.layers import find_layers

    # exact=False: always a glob ("a[0]" is the character class [0] -> "a0")
    assert [n for n, _ in find_layers(m, "blocks.a[0]", exact=False)] == ["blocks.a0"]
    # a glob naming no module exactly still globs; exact=True refuses it
    assert [n for n, _ in find_layers(m, "blocks.[ab]*")] == ["blocks.a[0]", "blocks.a0", "blocks.b*"]
    with pytest.raises(errors.LayerNotFoundError, match="blocks.\\[ab\\]\\*"):
        find_layers(m, "blocks.[ab]*", exact=True)
    acts = tl.activations(m, _x(), ["blocks.a[0]", "blocks.b*"])
    torch.testing.assert_close(acts["blocks.a[0]"], m.blocks["a[0]"](_x()))


def test_report_on_a_model_whose_layer_names_hold_glob_characters(tmp_path):
    info = tl.report(_GlobNames(), _x(), tmp_path / "r.html", progress=False,
                     sections=["feature_maps", "feature_vis", "cam", "saliency", "architecture"])
    status = {r.section: r.status for r in info.runs}
    assert status == dict.fromkeys(status, "ok") and len(status) == 5, [(r.section, r.message) for r in info.runs]
    assert "blocks.a[0]" in (tmp_path / "r.html").read_text(encoding="utf-8")
