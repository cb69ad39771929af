import torch
from torch import nn

import torchloupe as tl
from tests.helpers import Case


class _TwoBranchBN(nn.Module):
    """Two conv-BN branches, cat, GAP, linear head; left in train mode with non-trivial BN statistics."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x.flip(-1))], 1).mean((2, 3)))


def _make():
    torch.manual_seed(0)
    m = _TwoBranchBN()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.train()


def _inputs():
    return torch.rand(4, 3, 8, 8)


_B = {"a": "a", "b": "b"}


class _Residual(nn.Module):
    """x + f(x) with a BN inside f, in train mode: a residual join, not fusion."""

    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU())
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head((x + self.f(x)).mean((2, 3)))


def _make_residual():
    torch.manual_seed(0)
    return _Residual().train()


def _tracker(m, x):
    tr = tl.fusion.ShareTracker(m, x, _B, every=1)
    tr.step()
    tr.step()


CASES = [
    Case("find-fusion", lambda m, x: tl.fusion.find(m, x), make=_make, inputs=_inputs),
    Case("residuals", lambda m, x: tl.fusion.residuals(m, x), make=_make_residual, inputs=_inputs),
    Case("branch_specs", lambda m, x: tl.fusion.branch_specs(m, tl.fusion.find(m, x)), make=_make, inputs=_inputs),
    *[
        Case(f"contributions-{meth}", lambda m, x, meth=meth: tl.fusion.contributions(m, x, _B, method=meth, baseline="mean"),
             make=_make, inputs=_inputs)
        for meth in ("auto", "exact", "shapley", "ablation", "integrated_gradients", "gradient_x_activation")
    ],
    Case("contributions-branches-none", lambda m, x: tl.fusion.contributions(m, x, None, target=1), make=_make, inputs=_inputs),
    Case("branch_maps", lambda m, x: tl.fusion.branch_maps(m, x, _B), make=_make, inputs=_inputs),
    Case("similarity-fusion", lambda m, x: tl.fusion.similarity(m, x, _B), make=_make, inputs=_inputs),
    Case("fused_features", lambda m, x: tl.fusion.fused_features(m, x, _B), make=_make, inputs=_inputs),
    Case("ShareTracker", _tracker, make=_make, inputs=_inputs),
]


class _TwoInputsBN(nn.Module):
    """``forward(x, y) -> {"aux", "logits"}``: one conv-BN branch per input, cat, GAP, linear head."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x, y):
        h = torch.cat([self.a(x), self.b(y)], 1)
        return {"aux": torch.tanh(h), "logits": self.head(h.mean((2, 3)))}


def _make_two():
    torch.manual_seed(0)
    m = _TwoInputsBN()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.train()


def _two_inputs():
    return torch.rand(4, 3, 8, 8), torch.rand(4, 1, 8, 8)


CASES += [
    *[
        Case(f"contributions-keyword-inputs-{meth}",
             lambda m, x, meth=meth: tl.fusion.contributions(m, {"x": x[0], "y": x[1]}, _B, method=meth, output="logits"),
             make=_make_two, inputs=_two_inputs)
        for meth in ("auto", "shapley", "integrated_gradients")
    ],
    Case("contributions-input-branches", lambda m, x: tl.fusion.contributions(
        m, x, {"x": "input:0", "y": "input:1"}, method="ablation", output="logits"), make=_make_two, inputs=_two_inputs),
    Case("branch_maps-two-inputs", lambda m, x: tl.fusion.branch_maps(m, x, _B, output="logits"),
         make=_make_two, inputs=_two_inputs),
    Case("similarity-keyword-inputs", lambda m, x: tl.fusion.similarity(m, {"x": x[0], "y": x[1]}, _B),
         make=_make_two, inputs=_two_inputs),
]
