"""tl.fusion.find: exact fusion points of the demo models, resnet18 and densenet121."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import torchloupe as tl
from torchloupe.demo import fusion_data as fd


@pytest.fixture(scope="module")
def views():
    sv, cv, _, _ = fd.two_view_data(2, seed=3)
    return sv, cv


def test_early_fusion_point(views):
    pts = tl.fusion.find(fd.EarlyFusion(), *views)
    assert [(p.name, p.op, p.kind, p.dim) for p in pts] == [("cat", "cat", "early", 1)]
    assert [(i.producer, i.module, i.channels, i.branch_modules) for i in pts[0].inputs] == [
        ("input:0", "input:0", (0, 3), ()), ("input:1", "input:1", (3, 6), ())]


def test_late_fusion_point(views):
    pts = tl.fusion.find(fd.LateFusion(), *views)
    assert len(pts) == 1
    p = pts[0]
    assert (p.op, p.kind, p.dim, p.output_shape) == ("cat", "late", 1, (2, 32, 8, 8))
    assert [i.module for i in p.inputs] == ["shape_branch", "colour_branch"]
    assert [i.channels for i in p.inputs] == [(0, 16), (16, 32)]
    assert p.inputs[0].branch_modules == ("shape_branch.0", "shape_branch.2")
    assert p.inputs[1].branch_modules == ("colour_branch.0", "colour_branch.2")
    assert p.branches == {"shape_branch": "shape_branch", "colour_branch": "colour_branch"}


def test_iterative_fusion_points(views):
    pts = tl.fusion.find(fd.IterativeFusion(), *views)
    assert [(p.op, p.kind) for p in pts] == [("add", "iterative")] * 4 + [("cat", "iterative")]
    first = pts[0]
    assert [i.producer for i in first.inputs] == ["shape_stages.0.1", "to_shape.0"]
    assert first.inputs[1].branch_modules == ("colour_stem.0", "colour_stages.0.0", "to_shape.0")
    assert [i.channels for i in pts[-1].inputs] == [(0, 8), (8, 16)]
    # Views name arguments by module; the cat's two `add` arguments by the module feeding each alone.
    assert [i.label for i in first.inputs] == ["shape_stages.0", "to_shape.0"]
    assert [i.label for i in pts[-1].inputs] == ["add ← to_shape.1", "add ← to_colour.1"]


def test_not_fusion_same_tensor_or_parameter_free():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.pos = nn.Parameter(torch.zeros(4))

        def forward(self, x):
            h = self.fc(x)
            h = h + h  # one producer
            h = h + self.pos  # a parameter, not a branch
            return torch.cat([h, torch.relu(h)], 1)  # no learned layer on either side alone

    assert tl.fusion.find(M(), torch.rand(2, 4)) == []


def test_resnet18_residual_adds():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    pts = tl.fusion.find(model, torch.rand(1, 3, 32, 32))
    names = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert [p.name for p in pts] == [f"{n}:add_" for n in names]
    assert all(p.kind == "iterative" and len(p.inputs) == 2 for p in pts)
    # the residual path and the skip (identity, or the downsample branch)
    assert [i.producer for i in pts[0].inputs] == ["layer1.0.bn2", "maxpool"]
    assert [i.module for i in pts[2].inputs] == ["layer2.0.bn2", "layer2.0.downsample"]
    assert pts[2].inputs[1].branch_modules == ("layer2.0.downsample.0", "layer2.0.downsample.1")
    assert pts[1].inputs[1].branch_modules == ()


def test_densenet121_dense_concatenations():
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval()
    pts = tl.fusion.find(model, torch.rand(1, 3, 32, 32))
    # per block of L layers: layers 2..L concatenate >= 2 tensors, plus the block's output cat
    assert len(pts) == 6 + 12 + 24 + 16
    assert all(p.op == "cat" and p.kind == "iterative" for p in pts)
    by_name = {p.name: p for p in pts}
    block1 = by_name["features.denseblock1:cat"]
    assert [i.channels for i in block1.inputs] == [(0, 64)] + [(64 + 32 * k, 96 + 32 * k) for k in range(6)]
    assert block1.inputs[0].producer == "features.pool0"
    assert [len(by_name[f"features.denseblock4.denselayer{k}:cat"].inputs) for k in (2, 16)] == [2, 16]
    assert "features.denseblock1.denselayer1:cat" not in by_name  # a cat of one tensor


@pytest.mark.parametrize("make", [fd.EarlyFusion, fd.LateFusion, fd.IterativeFusion])
def test_find_is_the_traced_graphs_fusion_marking(views, make):
    model = make()
    pts = tl.fusion.find(model, *views)
    g = tl.trace(model, *views)
    marked = g.fusion_points
    assert [p.node for p in pts] == [n.id for n in marked]
    assert [p.kind for p in pts] == [n.fusion for n in marked]
    assert [p.op for p in pts] == [n.type for n in marked]
    assert [p.output_shape for p in pts] == [n.output_shape for n in marked]


def test_skip_is_one_branch_with_itself_and_not_a_fusion_point():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)

        def forward(self, x):
            h = self.a(x)
            h = h + torch.relu(h)  # a merge of h with itself: skip
            return h * self.b(x)  # a second learned branch meets it: late fusion

    g = tl.trace(M(), torch.rand(2, 4))
    add, mul = g.find(type="add")[0], g.find(type="mul")[0]
    assert (add.merge, add.fusion) == ("skip", None)
    assert (mul.merge, mul.fusion) == ("fusion", "late")
    pts = tl.fusion.find(M(), torch.rand(2, 4))
    assert [(p.name, p.kind, p.node) for p in pts] == [("mul", "late", mul.id)]
    assert [(i.producer, i.module, i.branch_modules) for i in pts[0].inputs] == [
        ("add", None, ("a",)), ("b", "b", ("b",))]


def test_functional_learned_branches_are_fusion_branches():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(4, 3))
            self.w2 = nn.Parameter(torch.randn(4, 5))

        def forward(self, x):
            return torch.cat([x @ self.w1, x @ self.w2], dim=-1)

    pts = tl.fusion.find(M(), torch.rand(2, 4))
    assert [(p.name, p.kind, p.dim) for p in pts] == [("cat", "late", 1)]
    assert [(i.producer, i.branch_modules, i.channels) for i in pts[0].inputs] == [
        ("matmul", ("matmul",), (0, 3)), ("matmul", ("matmul",), (3, 8))]


def test_error_inside_the_model_is_a_trace_error():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(5, 3)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)  # b expects 5 features

    model = Broken()
    with pytest.raises(tl.errors.TraceError, match="module 'b'") as info:
        tl.fusion.find(model, torch.rand(2, 4))
    assert info.value.module == "b"
