"""Graph views and exports: SVG, HTML, dot, TensorBoard event files, ONNX, `loupe graph`, the report section."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
import torch
from torch import nn

from tests.helpers import TinyCNN, tiny_cnn, peer
from tests.test_structure import Gate, Seq, Stack, TwoBranch
from torchloupe.errors import UnsupportedModelError
from torchloupe.structure import export_onnx, trace
from torchloupe.render.graph.layout import collapse, fit_depth
from tests.section_blocks import blocks_of

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def cnn_graph():
    torch.manual_seed(0)
    model = tiny_cnn()
    return model, trace(model, torch.rand(2, 3, 16, 16))


def test_svg_has_one_box_per_view_node_and_one_path_per_edge(tmp_path, cnn_graph):
    _, g = cnn_graph
    path = tmp_path / "g.svg"
    text = g.to_svg(path)
    assert path.read_text() == text
    root = ET.fromstring(text)
    boxes = [el for el in root.iter(f"{SVG_NS}g") if el.get("class") == "box"]
    edges = [el for el in root.iter(f"{SVG_NS}path") if el.get("class") == "e"]
    assert len(boxes) == len(g.nodes) == 11  # x, 6 features, pool, flatten, fc, output
    assert len(edges) == len(g.edges) == 10
    assert [b.get("data-key") for b in boxes] == [f"n{i}" for i in range(11)]
    labels = [t.text for t in root.iter(f"{SVG_NS}text") if t.get("class") == "t"]
    assert labels[:3] == ["x", "features.0", "features.1"]
    frames = [el.get("data-frame") for el in root.iter(f"{SVG_NS}rect") if el.get("class") == "frame"]
    assert frames == ["features"]


def test_svg_escapes_model_strings():
    class Evil(nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("<script>", nn.Linear(2, 2))

        def forward(self, x):
            return getattr(self, "<script>")(x)

    svg = trace(Evil(), torch.rand(1, 2)).to_svg()
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    ET.fromstring(svg)
    html = trace(Evil(), torch.rand(1, 2)).to_html()
    data = re.search(r'class="tl-data">(.*?)</script>', html, re.S).group(1)
    assert "<" not in data and json.loads(data)["nodes"][1]["name"] == "<script>"
    assert html.count("<script") == 2  # the data block and torchloupe's own script, nothing from the model


def test_html_is_self_contained(tmp_path, cnn_graph):
    _, g = cnn_graph
    path = tmp_path / "g.html"
    page = g.to_html(path)
    assert path.read_text() == page
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # no CDN, nothing remote
    data = json.loads(re.search(r'<script type="application/json" class="tl-data">(.*?)</script>', page, re.S)
                      .group(1))
    assert len(data["nodes"]) == len(g.nodes) and len(data["edges"]) == len(g.edges)
    assert data["modules"]["features"]["params"] == sum(p.numel() for p in TinyCNN().features.parameters())
    assert page.count("<script>") == 1 and page.count("<style>") == 1  # one copy of the script and style
    frag = g._repr_html_()  # a notebook cell: the graph with its own style and script, no page around it
    assert '<div class="tl-root">' in frag and "<html" not in frag and frag.count("<script>") == 1
    assert "marker" not in page and ' id="' not in page  # arrowheads are paths: no element ids to clash


def test_large_graph_default_view_is_collapsed():
    g = trace(Stack(n=40), torch.rand(2, 5))
    assert len(g.nodes) == 84
    depth = fit_depth(g)
    assert depth is None  # 84 boxes still fit
    assert fit_depth(g, budget=20) is None  # the 40 expanded blocks fold into one: 6 boxes
    assert len(collapse(g, None)) == 6 and len(collapse(g, None, fold_repeats=False)) == 84
    assert fit_depth(g, budget=40) is None and fit_depth(trace(Stack(n=40), torch.rand(2, 5)), budget=5) == 1
    view = collapse(g, 1)
    assert [(b.label, b.count) for b in view.nodes] == [("x", 1), ("stem", 1), ("blocks.0 … 39", 40), ("out", 1),
                                                        ("output", 1)]
    svg = g.to_svg(depth=1)
    assert svg.count('class="box"') == 5 and "×40" in svg


def test_dot_text(cnn_graph):
    _, g = cnn_graph
    dot = g.to_dot()
    assert dot.count(" -> ") == 10
    assert 'n1 [label="features.0\\nConv2d (2, 8, 16, 16)"' in dot
    assert g.to_dot(depth=0).count(" -> ") == 5  # x, features, pool, flatten, fc, output


# ---- TensorBoard ----------------------------------------------------------------------------------------
def _read_graph(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return acc.Graph()


def test_tensorboard_plain_model_uses_add_graph(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from torchloupe.integrations import tensorboard

    writer = SummaryWriter(str(tmp_path))
    assert tensorboard.add_graph(writer, tiny_cnn(), torch.rand(2, 3, 16, 16)) == "torch"
    writer.close()
    gd = _read_graph(tmp_path)
    names = [n.name for n in gd.node]
    assert any("Conv2d[0]" in n for n in names)  # torch's own naming


def test_tensorboard_falls_back_on_dict_output_and_data_dependent_if(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from torchloupe.integrations import tensorboard

    model = Gate()
    x, y = torch.rand(2, 4), torch.rand(2, 4)
    writer = SummaryWriter(str(tmp_path))
    assert tensorboard.add_graph(writer, model, x, y) == "torchloupe"
    writer.close()
    gd = _read_graph(tmp_path)
    g = trace(model, x, y)
    assert len(gd.node) == len(g.nodes)
    by_name = {n.name: n for n in gd.node}
    assert set(by_name) >= {"input/x", "input/y", "a", "output/logits", "output/feat"}
    assert list(by_name["a"].input) == ["input/x"]
    shape = by_name["a"].attr["_output_shapes"].list.shape[0]
    assert [d.size for d in shape.dim] == [2, 4]
    assert "params: 20" in by_name["a"].attr["attr"].s.decode()


def test_tensorboard_multihead_attention_rejected_by_add_graph_is_written(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from torchloupe.integrations import tensorboard

    model = Seq()
    x = torch.rand(2, 5, 8)
    writer = SummaryWriter(str(tmp_path / "torch"))
    with pytest.raises(Exception):
        tensorboard.add_graph(writer, model, x, method="torch")
    writer.close()
    writer = SummaryWriter(str(tmp_path / "ours"))
    assert tensorboard.add_graph(writer, model, x) == "torchloupe"
    writer.close()
    gd = _read_graph(tmp_path / "ours")
    assert [n.name for n in gd.node] == ["input/x", "lstm", "attn", "mean_3", "fc", "output/output"]
    assert [n.op for n in gd.node][1:3] == ["LSTM", "MultiheadAttention"]


def test_tensorboard_scopes_follow_module_paths(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from torchloupe.integrations.tensorboard import add_graph

    writer = SummaryWriter(str(tmp_path))
    assert add_graph(writer, TwoBranch(), torch.rand(1, 3, 8, 8), method="torchloupe") == "torchloupe"
    writer.close()
    names = [n.name for n in _read_graph(tmp_path).node]
    assert names == ["input/x", "a/0", "a/1", "b/0", "b/1", "cat_5", "head", "output/output"]


# ---- ONNX ----------------------------------------------------------------------------------------------
def test_export_onnx_checks(tmp_path):
    onnx = peer("onnx")
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    path = export_onnx(model, x, path=tmp_path / "m.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 2 and "Gemm" in ops
    assert model.training  # the user's mode is back


def test_export_onnx_attention_model_runs_outside_the_fast_path(tmp_path):
    # In eval mode without autograd, nn.TransformerEncoder runs one fused ATen op
    # (_transformer_encoder_layer_fwd) that has no ONNX form; the export turns that path off.
    onnx = peer("onnx")
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).train()
    x = torch.rand(2, 5, 8)
    path = export_onnx(model, x, path=tmp_path / "enc.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert "Softmax" in ops and "LayerNormalization" in ops
    assert model.training and torch.backends.mha.get_fastpath_enabled()  # mode and flag restored
    model.eval()
    with torch.no_grad():
        expected = model(x)
    (got,) = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5, rtol=1e-5)


def test_export_onnx_clear_error(tmp_path):
    class Eig(nn.Module):
        def forward(self, x):
            return torch.linalg.eigh(x @ x.T)[0]

    with pytest.raises(UnsupportedModelError, match="ONNX exporter cannot handle Eig.*linalg_eigh"):
        export_onnx(Eig(), torch.rand(3, 3), path=tmp_path / "e.onnx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(tiny_cnn(), torch.rand(1, 3, 8, 8), path=tmp_path / "nope" / "m.onnx")
    with pytest.raises(UnsupportedModelError, match="the model to export: expected an nn.Module, got function"):
        export_onnx(lambda x: x, torch.rand(1, 3, 8, 8), path=tmp_path / "m.onnx")


def _tiny_gpt2():
    transformers = peer("transformers")
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
                                  eos_token_id=0)
    torch.manual_seed(0)
    return transformers.GPT2Model(cfg).eval()


def test_export_onnx_hugging_face_gpt2_without_its_cache_and_its_limits_in_one_line(tmp_path):
    onnx = peer("onnx")
    from onnx.reference import ReferenceEvaluator

    model = _tiny_gpt2()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    path = export_onnx(model, ids, path=tmp_path / "gpt2.onnx")  # use_cache=False; the torch.export route
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    assert model.config.use_cache  # the model's own setting is untouched
    with torch.no_grad():
        expected = model(ids, use_cache=False).last_hidden_state
    (got,) = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: ids.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5, rtol=1e-5)
    # the exporters' own limits, each in one line naming the cause
    with pytest.raises(UnsupportedModelError) as info:
        export_onnx(model, ids, path=tmp_path / "c.onnx", use_cache=True)
    msg = str(info.value)
    assert "\n" not in msg and msg == ("the torch.export-based ONNX exporter cannot handle GPT2Model: its output holds a "
                                       "DynamicCache (the Hugging Face key/value cache), which is not a tensor the "
                                       "exporter can write; pass use_cache=False")
    with pytest.raises(UnsupportedModelError) as info:
        export_onnx(model, ids, path=tmp_path / "t.onnx", dynamo=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("the ONNX exporter cannot handle GPT2Model: the TorchScript exporter "
                                              "passes every forward argument positionally") and "'use_cache'" in msg


def test_export_onnx_vision_transformer_outside_fused_kernels(tmp_path):
    # torchvision's VisionTransformer (vit_b_16's class, at 32 px and 2 layers): its nn.MultiheadAttention
    # takes the fused path in eval mode without autograd; the export runs it unfused
    onnx = peer("onnx")
    from onnx.reference import ReferenceEvaluator
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                            num_classes=3).eval()
    x = torch.rand(2, 3, 32, 32)
    proto = onnx.load(export_onnx(vit, x, path=tmp_path / "vit.onnx"))
    onnx.checker.check_model(proto)
    assert "Softmax" in {n.op_type for n in proto.graph.node}
    with torch.no_grad():
        expected = vit(x)
    (got,) = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5, rtol=1e-5)


def test_cli_graph_writes_the_other_formats_when_onnx_fails(tmp_path, capsys):
    peer("onnx")
    from torchloupe.app.cli import main

    src = tmp_path / "eig.py"
    src.write_text("import torch, torch.nn as nn\n"
                   "class Eig(nn.Module):\n"
                   "    def forward(self, x):\n        return torch.linalg.eigh(x @ x.T)[0]\n"
                   "def build():\n    return Eig()\n")
    out = tmp_path / "o"
    assert main(["graph", "--model", f"{src}:build", "--input-shape", "3,3", "--out", str(out),
                 "--format", "txt,onnx,dot"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1:] == [f"wrote {out / 'graph.txt'}", f"wrote {out / 'graph.dot'}"]
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnx not written: the ONNX exporter cannot handle Eig") \
        and "linalg_eigh" in err[0]
    assert not (out / "model.onnx").exists()
    assert main(["graph", "--model", f"{src}:build", "--input-shape", "3,3", "--out", str(out), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the ONNX exporter cannot handle Eig" in err[0]


# ---- CLI -----------------------------------------------------------------------------------------------
def test_cli_graph_writes_every_format(tmp_path, capsys):
    from torchloupe.app.cli import main

    out = tmp_path / "out"
    code = main(["graph", "--model", "torchvision:resnet18", "--input-shape", "1,3,32,32", "--out", str(out),
                 "--format", "html,svg,txt,dot,tensorboard"])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "ResNet: 71 nodes, 78 edges, 11,689,512 parameters"
    assert printed[1:] == [f"wrote {out / name}" for name in ("graph.html", "graph.svg", "graph.txt", "graph.dot",
                                                              "tensorboard")]
    txt = (out / "graph.txt").read_text()
    assert "Total parameters: 11,689,512" in txt and "layer4.1.bn2" in txt
    assert ET.fromstring((out / "graph.svg").read_text()).tag == f"{SVG_NS}svg"
    assert len(_read_graph(out / "tensorboard").node) == 71 or len(_read_graph(out / "tensorboard").node) > 0


def test_cli_graph_onnx_and_file_model(tmp_path, capsys):
    onnx = peer("onnx")
    from torchloupe.app.cli import main

    src = tmp_path / "net.py"
    src.write_text("import torch.nn as nn\n"
                   "def build():\n    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))\n")
    out = tmp_path / "o"
    assert main(["graph", "--model", f"{src}:build", "--input-shape", "2,4", "--out", str(out),
                 "--format", "onnx,txt,svg", "--edges", "straight"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "Sequential: 5 nodes, 4 edges, 23 parameters"
    onnx.checker.check_model(onnx.load(str(out / "model.onnx")))
    assert " C" not in (out / "graph.svg").read_text()
    ref = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert (out / "graph.txt").read_text() == trace(ref, torch.rand(2, 4)).summary()


def test_cli_graph_bad_arguments(tmp_path, capsys):
    from torchloupe.app.cli import main

    assert main(["graph", "--model", "resnet18", "--input-shape", "1,3,8,8", "--out", str(tmp_path)]) == 2
    assert "unknown model spec 'resnet18'" in capsys.readouterr().err
    assert main(["graph", "--model", "torchvision:resnet18", "--input-shape", "1,x", "--out", str(tmp_path)]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert main(["graph", "--model", "torchvision:resnet18", "--input-shape", "1,1,32,32",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "conv1 (Conv2d) wants (N, 3, H, W)" in err and "(1, 1, 32, 32)" in err and err.count("\n") == 1
    assert main(["graph", "--model", "torchvision:resnet18", "--input-shape", "1,3,8,8", "--out", str(tmp_path),
                 "--format", "png"]) == 2
    assert "--format png is not one of" in capsys.readouterr().err


# ---- report section ------------------------------------------------------------------------------------
def test_report_section_architecture():
    from torchloupe.reporting.base import Html, Subject, Table, Text, registered

    section = next(s for s in registered() if s.key == "architecture")
    assert section.order == 20 and section.title == "Architecture"
    blocks = blocks_of(section.build(Subject("cnn", tiny_cnn(), torch.rand(4, 3, 16, 16)), {"quick": True, "seed": 0}))
    kinds = [type(b) for b in blocks]
    assert kinds[:2] == [Text, Html]
    assert blocks[0].text.startswith("TinyCNN: 1,508 parameters, 350,272 mult-adds per sample")
    assert 'class="tl-root"' in blocks[1].markup and 'data-key="n1"' in blocks[1].markup
    table = next(b for b in blocks if isinstance(b, Table))
    assert [r[0] for r in table.rows] == ["features", "pool", "fc"]
    assert table.rows[0][2] == "(1, 16, 16, 16)"  # one sample is traced


def test_report_section_dict_inputs_and_not_applicable():
    from torchloupe.reporting.base import NotApplicable, Subject, registered

    section = next(s for s in registered() if s.key == "architecture")
    from tests.test_structure import Halves

    blocks = blocks_of(section.build(Subject("h", Halves(), {"batch": {"left": torch.rand(2, 3), "right": torch.rand(2, 3)}}),
                                     {"quick": True, "seed": 0}))
    assert blocks[0].text.startswith("Halves: 12 parameters")
    res = section.build(Subject("s", tiny_cnn(), "not a tensor"), {"quick": True, "seed": 0})
    assert isinstance(res, NotApplicable) and "str" in res.reason


def test_edge_styles(cnn_graph):
    _, g = cnn_graph
    two = trace(TwoBranch(), torch.rand(1, 3, 8, 8))
    curved, straight, ortho = (two.to_svg(edges=s) for s in ("curved", "straight", "orthogonal"))
    paths = [re.findall(r'class="e" d="([^"]+)"', svg) for svg in (curved, straight, ortho)]
    assert len(paths[0]) == len(two.edges) == 8
    assert any(" C" in d for d in paths[0]) and not any(" C" in d for d in paths[1] + paths[2])
    # orthogonal: an edge between adjacent layers has only vertical and horizontal segments (a skip
    # over layers is an arc: a right-angled skip beside a column of boxes read as the outline of a box)
    for d in paths[2]:
        if " C" in d:
            continue
        pts = [tuple(map(float, p.split(","))) for p in re.findall(r"[-\d.]+,[-\d.]+", d)]
        assert all(a[0] == b[0] or a[1] == b[1] for a, b in zip(pts, pts[1:])), d
    assert "<title>(1, 4, 8, 8)</title>" in ortho  # an edge names the shape it carries
    with pytest.raises(ValueError, match="edges must be one of"):
        g.to_svg(edges="wavy")


def test_nested_frame_labels_take_opposite_corners_by_nesting_not_dots():
    # "encoder" directly holds "encoder.layer.0" (the ModuleList "encoder.layer" is never called): by
    # dots both were depth-even and their labels were drawn on top of each other.
    from torchloupe.render.graph.layout import layout
    from torchloupe.render.graph.svg import render_svg

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.fc(x))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList([Block()])
            self.out = nn.Linear(4, 4)

        def forward(self, x):
            return self.out(self.layer[0](x))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()

        def forward(self, x):
            return self.encoder(x)

    g = trace(Model(), torch.rand(2, 4))
    svg = render_svg(g, layout(collapse(g, None)))
    anchors = dict(re.findall(r'<text class="fl" data-frame="([^"]+)" [^>]*text-anchor="(\w+)"', svg))
    assert anchors["encoder"] != anchors["encoder.layer.0"]


def test_edges_never_stack_into_a_block_lanes_and_arcs():
    # The iterative-fusion demo: two branches crossing at every stage. Horizontal runs of different
    # edges used to share one y in a gap and draw as a filled black block.
    from torchloupe.demo.fusion_data import IterativeFusion
    from torchloupe.render.graph.layout import layout

    g = trace(IterativeFusion().eval(), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    lay = layout(collapse(g, None))
    runs = []  # (y, x0, x1, source box) of every horizontal run of an edge between adjacent layers
    for (a, _, _), route, way in zip(lay.view.edges, lay.routes, lay.waypoints):
        if len(way) > 2:
            continue
        for (x0, y0), (x1, y1) in zip(route, route[1:]):
            if y0 == y1 and x0 != x1:
                runs.append((y0, min(x0, x1), max(x0, x1), a))
    assert runs
    for i, (y, lo, hi, src) in enumerate(runs):
        for y2, lo2, hi2, src2 in runs[i + 1:]:
            if src != src2 and abs(y - y2) < 1:
                assert hi < lo2 or hi2 < lo, "two edges share a horizontal run"
    skips = [way for way in lay.waypoints if len(way) > 2]
    assert skips  # the stage's input skips the 1x1 projection to the add
    svg = g.to_svg(depth=None)
    assert svg.count(' C') >= len(skips) and svg.count('class="ah"') == len(lay.view.edges)


def test_legend_names_the_marks_the_graph_has():
    from torchloupe.demo.fusion_data import IterativeFusion
    from torchloupe.render.graph.html import legend

    two = trace(IterativeFusion().eval(), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert "fusion: separate branches or inputs meet" in legend(two)  # a to_shape projection added to a branch
    plain = legend(trace(tiny_cnn(), torch.rand(1, 3, 16, 16)))
    assert "fusion" not in plain and "module call" in plain and "input" in plain
    assert "residual add" in legend()  # the full key
