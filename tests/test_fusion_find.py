"""tl.fusion.find / tl.fusion.residuals: exact fusion points of the demo models; residual joins (not fusion)
of resnet18, densenet121, EfficientNet-Lite0 and a small BERT."""

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
    assert [(p.name, p.op, p.kind, p.join, p.dim) for p in pts] == [("cat", "cat", "early", "input", 1)]
    assert [(i.producer, i.module, i.channels, i.branch_modules) for i in pts[0].inputs] == [
        ("input:0", "input:0", (0, 3), ()), ("input:1", "input:1", (3, 6), ())]


def test_late_fusion_point(views):
    pts = tl.fusion.find(fd.LateFusion(), *views)
    assert len(pts) == 1
    p = pts[0]
    assert (p.op, p.kind, p.join, p.dim, p.output_shape) == ("cat", "late", "input", 1, (2, 32, 8, 8))
    assert [i.module for i in p.inputs] == ["shape_branch", "colour_branch"]
    assert [i.channels for i in p.inputs] == [(0, 16), (16, 32)]
    assert p.inputs[0].branch_modules == ("shape_branch.0", "shape_branch.2")
    assert p.inputs[1].branch_modules == ("colour_branch.0", "colour_branch.2")
    assert p.branches == {"shape_branch": "shape_branch", "colour_branch": "colour_branch"}


def test_iterative_fusion_points(views):
    model = fd.IterativeFusion()
    pts = tl.fusion.find(model, *views)
    # the exchange adds stay fusion although each is `a + proj(b)` with `b` partly made from `a`: the
    # first stage brings the other view in, the second joins two streams each with learned layers of its own
    assert [(p.op, p.kind, p.join) for p in pts] == [
        ("add", "iterative", "input")] * 2 + [("add", "iterative", "branch")] * 2 + [("cat", "iterative", "branch")]
    assert tl.fusion.residuals(model, *views) == []
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


def test_resnet18_adds_are_residuals_not_fusion():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(1, 3, 32, 32)
    assert tl.fusion.find(model, x) == []
    g = tl.trace(model, x)
    assert g.fusion_points == []
    res = tl.fusion.residuals(model, x)
    names = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert [(p.name, p.join, p.kind) for p in res] == [(f"{n}:add_", "residual", None) for n in names]
    assert [(n.qualname, n.merge, n.join, n.fusion) for n in g.residuals] == [
        (f"{n}/add_", "residual", "residual", None) for n in names]
    # the residual path and the shortcut (identity, or the 1x1-conv + BN projection shortcut)
    assert [i.producer for i in res[0].inputs] == ["layer1.0.bn2", "maxpool"]
    assert [i.module for i in res[2].inputs] == ["layer2.0.bn2", "layer2.0.downsample"]
    assert res[2].inputs[1].branch_modules == ("layer2.0.downsample.0", "layer2.0.downsample.1")


def test_densenet121_dense_concatenations_are_residual_joins():
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval()
    x = torch.rand(1, 3, 32, 32)
    g = tl.trace(model, x)
    assert g.fusion_points == []
    pts = tl.fusion.residuals(model, x)
    # per block of L layers: layers 2..L concatenate >= 2 tensors, plus the block's output cat
    assert len(pts) == 6 + 12 + 24 + 16
    assert all(p.op == "cat" and p.join == "dense" and p.kind is None for p in pts)
    by_name = {p.name: p for p in pts}
    block1 = by_name["features.denseblock1:cat"]
    assert [i.channels for i in block1.inputs] == [(0, 64)] + [(64 + 32 * k, 96 + 32 * k) for k in range(6)]
    assert block1.inputs[0].producer == "features.pool0"
    assert [len(by_name[f"features.denseblock4.denselayer{k}:cat"].inputs) for k in (2, 16)] == [2, 16]
    assert "features.denseblock1.denselayer1:cat" not in by_name  # a cat of one tensor


def test_efficientnet_lite0_residual_adds_and_b0_gates():
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    model = lite.EfficientNet.from_name("efficientnet-lite0").eval()
    g = tl.trace(model, torch.rand(1, 3, 64, 64))
    assert g.fusion_points == []
    # MBConv blocks with stride 1 and as many output filters as input filters add their input back
    skips = [i for i, b in enumerate(model._blocks) if b._block_args.id_skip and b._block_args.stride in (1, [1])
             and b._block_args.input_filters == b._block_args.output_filters]
    assert skips == [2, 4, 6, 7, 9, 10, 12, 13, 14]
    assert [(n.qualname, n.join) for n in g.residuals] == [(f"_blocks.{i}/add", "residual") for i in skips]
    # torchvision's EfficientNet-B0 adds squeeze-and-excitation: x * sigmoid(fc(pool(x))) is a gate
    b0 = torchvision.models.efficientnet_b0(weights=None).eval()
    g0 = tl.trace(b0, torch.rand(1, 3, 64, 64))
    assert g0.fusion_points == []
    joins = [n.join for n in g0.residuals]
    assert joins.count("gate") == 16 and joins.count("residual") == 9


def _bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16)
    return transformers.BertForSequenceClassification(cfg).eval()


def test_bert_residual_adds_are_not_fusion_even_with_an_attention_mask():
    model = _bert()
    ids = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    want = [(f"bert.encoder.layer.{i}.{part}/add", "residual") for i in range(2) for part in ("attention.output", "output")]
    for kw in ({"input_ids": ids}, {"input_ids": ids, "attention_mask": mask}):
        g = tl.trace(model, **kw)
        # the attention mask reaches the attention output through parameter-free ops: still x + f(x)
        assert g.fusion_points == [], kw.keys()
        assert [(n.qualname, n.join) for n in g.residuals] == want
    # token type ids are a second input, embedded on their own and added to the word embeddings: a join
    # of separate inputs, the one fusion point
    g = tl.trace(model, input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    assert [(n.qualname, n.join, n.fusion) for n in g.fusion_points] == [("bert.embeddings/add", "input", "late")]
    assert [(n.qualname, n.join) for n in g.residuals] == want


def test_projection_shortcut_needs_a_short_linear_path():
    class Heads(nn.Module):
        """Two parallel heads on one input added: separate branches, not a residual."""

        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)

        def forward(self, x):
            return self.a(x) + self.b(x)

    class Projected(nn.Module):
        """proj(x) + f(x) with f deeper and nonlinear: a projection shortcut (a residual)."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(4, 4)
            self.proj = nn.Linear(4, 6)
            self.f = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6))

        def forward(self, x):
            h = self.stem(x)
            return self.proj(h) + self.f(h)

    x = torch.rand(2, 4)
    g = tl.trace(Heads(), x)
    assert [(n.type, n.merge, n.join, n.fusion) for n in g.fusion_points] == [("add", "fusion", "branch", "late")]
    assert g.residuals == []
    g = tl.trace(Projected(), x)
    assert g.fusion_points == []
    assert [(n.type, n.merge, n.join) for n in g.residuals] == [("add", "residual", "residual")]
    (r,) = tl.fusion.residuals(Projected(), x)
    assert [i.module for i in r.inputs] == ["proj", "f"]


def test_points_rejects_an_unknown_merge():
    g = tl.trace(fd.EarlyFusion(), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    from torchloupe.fusion.points import points

    with pytest.raises(tl.errors.InputError, match="merge must be 'fusion' or 'residual', got 'skip'"):
        points(g, merge="skip")


@pytest.mark.parametrize("make", [fd.EarlyFusion, fd.LateFusion, fd.IterativeFusion])
def test_find_is_the_traced_graphs_fusion_marking(views, make):
    model = make()
    pts = tl.fusion.find(model, *views)
    g = tl.trace(model, *views)
    marked = g.fusion_points
    assert [p.node for p in pts] == [n.id for n in marked]
    assert [p.kind for p in pts] == [n.fusion for n in marked]
    assert [p.join for p in pts] == [n.join for n in marked]
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
    assert (add.merge, add.join, add.fusion) == ("skip", "skip", None)
    assert (mul.merge, mul.join, mul.fusion) == ("fusion", "branch", "late")
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


def test_architecture_section_names_residuals_and_never_calls_them_fusion(views):
    from torchloupe.reporting.sections.architecture import joins_text

    torch.manual_seed(0)
    resnet = tl.trace(torchvision.models.resnet18(weights=None).eval(), torch.rand(1, 3, 32, 32))
    assert joins_text(resnet) == ("Joins: 8 residual adds (x + f(x)), each a tensor meeting a learned function of "
                                  "itself, not fusion; no fusion point (no op joins separate branches or inputs).")
    assert joins_text(tl.trace(fd.LateFusion(), *views)) == "Joins: 1 fusion point where separate inputs meet (cat)."
    assert joins_text(tl.trace(fd.IterativeFusion(), *views)) == (
        "Joins: 5 fusion points: 2 where separate inputs meet, 3 where separate branches meet (add, add, add, add ...).")
    assert joins_text(tl.trace(nn.Linear(3, 2), torch.rand(1, 3))) is None
