"""Results show themselves in a notebook: a notebook built with nbformat runs in a real Jupyter kernel
(nbclient + ipykernel, the test's own Python) and every result cell's rich output is checked: HTML with
the default figure as an inline base64 PNG (or the graph's SVG), ``image/png`` where the result is one
picture, and the report cell an escaped, sandboxed ``<iframe srcdoc>``.

Also, in process: each repr is small and fast, the report's ``.open()`` calls ``webbrowser``, and the
summary lines and the report's ``srcdoc`` are escaped.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import torchloupe as tl

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SRC = str(Path(tl.__file__).resolve().parent.parent)

SETUP = """
import torch
from torch import nn
import torchloupe as tl

torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
x = torch.rand(2, 3, 24, 24)


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(5, 3)

    def forward(self, u, v):
        return self.a(u) + self.b(v)
"""

# name -> (source, what the output must carry): "png" (HTML <img> base64 PNG and image/png),
# "svg" (HTML with an inline <svg>), "iframe" (the report), "section" (one report section's blocks)
CELLS = {
    "CAMResult": ("tl.cam.GradCAM(model, '2')(x)", "png"),
    "FeatureMaps": ("tl.features.feature_maps(model, x, '0')", "png"),
    "ExemplarResult": ("tl.synthesis.exemplars(model, torch.utils.data.TensorDataset(torch.rand(12, 3, 24, 24)), "
                       "layer='2', k=3, channels=[0, 1])", "png"),
    "SynthesisResult": ("tl.synthesis.maximize(model, '2:0', steps=6, input_shape=(3, 24, 24), seed=0)", "png"),
    "AttentionMaps": ("tl.attention.capture(nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), "
                      "2, enable_nested_tensor=False).eval(), torch.rand(2, 5, 8))", "png"),
    "RecurrentTrace": ("tl.recurrent.trace(nn.LSTM(4, 5, batch_first=True), torch.rand(2, 6, 4))", "png"),
    "FusionResult": ("tl.fusion.contributions(TwoBranch(), (torch.rand(3, 4), torch.rand(3, 5)), "
                     "branches={'a': 'a', 'b': 'b'}, method='exact')", "png"),
    "CurveResult": ("tl.evaluate.deletion_curve(model, x, torch.rand(2, 24, 24), steps=6)", "png"),
    "RandomizationResult": ("tl.evaluate.randomization_check(model, x, "
                            "lambda m, i, t: tl.cam.GradCAM(m, '2')(i, t).maps)", "png"),
    "ModelGraph": ("tl.trace(model, x)", "svg"),
    "ReportInfo": ("tl.report(model, x, 'report.html', sections='architecture', progress=False)", "iframe"),
    "SectionData": ("tl.reporting.section('cam', model, x, options={'methods': ['gradcam', 'layercam']})", "section"),
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook, run once in a kernel of this Python with this checkout's torchloupe first on its path."""
    tmp = tmp_path_factory.mktemp("nb")
    spec = tmp / "kernels" / "torchloupe-test"
    spec.mkdir(parents=True)
    env = {"PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "MPLBACKEND": "agg", "OMP_NUM_THREADS": "1"}
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "torchloupe test", "language": "python", "env": env}))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(src) for src, _ in CELLS.values()]
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(tmp)  # where the kernel spec is found
    try:
        client = nbclient.NotebookClient(nb, kernel_name="torchloupe-test", timeout=120,
                                         resources={"metadata": {"path": str(tmp)}})
        t0 = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
    return nb, tmp, seconds


def _result(cell) -> dict:
    outs = [o for o in cell.outputs if o.output_type in ("execute_result", "display_data")]
    assert len(outs) == 1, [o.output_type for o in cell.outputs]
    return outs[0].data


@pytest.mark.parametrize("name", list(CELLS))
def test_each_result_cell_shows_its_figure(executed, name):
    nb, tmp, _ = executed
    cell = nb.cells[1 + list(CELLS).index(name)]
    data = _result(cell)
    page = data["text/html"]
    kind = CELLS[name][1]
    if kind == "png":
        m = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
        assert m, page[:300]
        inline = base64.b64decode(m.group(1))
        assert inline.startswith(b"\x89PNG\r\n\x1a\n")
        png = base64.b64decode(data["image/png"])
        assert png == inline  # one drawing for both formats
        assert 2_000 < len(png) < 300_000
    elif kind == "svg":
        assert "<svg" in page
    elif kind == "section":  # the report's own blocks: its figure (as the page encodes it), table, conclusion
        assert "<h4>Class activation maps</h4>" in page
        assert page.count('<img src="data:image/') == 1 and "<table>" in page
        assert "What to conclude" in page and "The 2 CAM methods" in page
    else:
        assert '<iframe srcdoc="' in page and 'sandbox="allow-scripts"' in page
        assert "&lt;!DOCTYPE html&gt;" in page or "&lt;!doctype html&gt;" in page.lower()
        assert "<script" not in page.split('<iframe srcdoc="', 1)[1].split('"', 1)[0]  # escaped inside srcdoc
        assert (tmp / "report.html").is_file()


def test_the_notebook_runs_in_under_a_minute(executed):
    _, _, seconds = executed
    assert seconds < 60


def test_summaries_say_what_the_result_holds(executed):
    nb, _, _ = executed
    pages = {name: _result(nb.cells[1 + i])["text/html"] for i, name in enumerate(CELLS)}
    assert "GradCAM on 2: 2 map(s) 24×24, targets" in pages["CAMResult"]
    assert ("LSTM: 1 layer(s) × 1 direction(s), 2 sequence(s) of 6 steps, 5 units; gates input, forget, cell, "
            "output; sample 0, last layer drawn") in pages["RecurrentTrace"]
    assert ("Attention: 2 attention layer(s) × 2 head(s), 5 queries × 5 keys, batch 2; sample 0 drawn"
            in pages["AttentionMaps"])
    assert "Exemplars of 2: top 3 of 12 samples for 2 channel(s), highest mean" in pages["ExemplarResult"]
    assert "deletion curves of 2 sample(s), 6 steps onto zero" in pages["CurveResult"]


# --- in process -----------------------------------------------------------------------------------------
def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(6, 3)).eval()
    return model, torch.rand(2, 3, 24, 24)


def test_import_torchloupe_and_building_results_load_no_matplotlib():
    code = ("import sys, torch, torchloupe as tl\n"
            "m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),\n"
            "                        torch.nn.Flatten(), torch.nn.Linear(4, 2))\n"
            "r = tl.cam.GradCAM(m, '1')(torch.rand(1, 3, 8, 8), target=0)\n"
            "print(sorted(k for k in ('matplotlib', 'jinja2') if k in sys.modules))\n"
            "r._repr_png_()\n"
            "print('matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True"]  # loaded only when the figure is asked for


def test_reprs_are_fast_and_small():
    model, x = _tiny()
    tl.cam.GradCAM(model, "1")(x)._repr_png_()  # matplotlib's first import is not the repr's cost
    cam = tl.cam.GradCAM(model, "1")(x)
    fm = tl.features.feature_maps(model, x, "0")
    for r in (cam, fm):
        t0 = time.perf_counter()
        page = r._repr_html_()
        seconds = time.perf_counter() - t0
        assert seconds < 2.0, (type(r).__name__, seconds)
        assert len(page) < 400_000
        assert r._repr_png_() is r._repr_png_()  # the same bytes, drawn once


def test_summary_is_escaped():
    model, x = _tiny()
    cam = tl.cam.GradCAM(model, "1")(x)
    from dataclasses import replace

    odd = replace(cam, layer="<b>layer</b>")
    page = odd._repr_html_()
    assert "&lt;b&gt;layer&lt;/b&gt;" in page and "<b>" not in page


def test_report_inline_and_open(tmp_path, monkeypatch):
    model, x = _tiny()
    info = tl.report(model, x, tmp_path / "r.html", sections="architecture", progress=False)
    page = info._repr_html_()
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    src = re.search(r'<iframe srcdoc="([^"]*)" sandbox="allow-scripts"', page)
    assert src and html.unescape(src.group(1)) == text  # the whole file, escaped once
    opened = []
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    assert info.open() is True
    assert opened == [(tmp_path / "r.html").resolve().as_uri()]
    # a file over the inline limit is named, not inlined
    from torchloupe.reporting import builder

    monkeypatch.setattr(builder, "INLINE_LIMIT", 100)
    big = info._repr_html_()
    assert "<iframe" not in big and "not shown inline" in big and ".open()" in big


def _png_in(page: str) -> bytes:
    m = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert m, page[:300]
    return base64.b64decode(m.group(1))


def test_the_other_results_show_their_figures():
    """The result types the notebook above does not build, from made-up values (render takes results)."""
    from torchloupe.evaluate import ROADResult
    from torchloupe.fusion import BranchMaps, CKAResult, ShareHistory
    from torchloupe.recurrent import CellTrace

    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    gates = {k: rand(2, 5, 4) for k in ("reset", "update", "new")}
    history = ShareHistory(steps=[0, 10, 20], records=[{"a": rand(4), "b": rand(4)} for _ in range(3)],
                           method="exact")
    results = {
        "CellTrace": CellTrace("GRU", rand(2, 5, 4), None, gates),
        "BranchMaps": BranchMaps({"a": rand(2, 8, 8), "b": rand(2, 8, 8)}, {"a": rand(2, 4, 4), "b": rand(2, 4, 4)},
                                 torch.tensor([0, 1])),
        "CKAResult": CKAResult(["a", "b", "fused"], torch.eye(3) * 0.5 + 0.5, "cat"),
        "ShareHistory": history,
        "ROADResult": ROADResult(rand(2, 4), (10.0, 30.0, 50.0, 70.0), "morf", torch.tensor([0, 1])),
    }
    for name, r in results.items():
        page = r._repr_html_()
        assert _png_in(page) == r._repr_png_(), name
    assert ("GRU cell: 2 sequence(s), 5 calls, 4 units; gates reset, update, new; sample 0 drawn"
            in results["CellTrace"]._repr_html_())
    assert "ROAD (morf) of 2 sample(s) at 4 removal percentages" in results["ROADResult"]._repr_html_()
    # nothing recorded yet: no picture, and the HTML says so
    empty = ShareHistory()
    assert empty._repr_png_() is None and "nothing recorded to draw yet" in empty._repr_html_()


def test_weight_history_and_exemplars_without_crops():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    tracker = tl.weights.WeightTracker(model, every=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.rand(5, 4)).sum().backward()
        opt.step()
        tracker.step()
    hist = tracker.history
    assert _png_in(hist._repr_html_()) == hist._repr_png_()
    assert f"Weight history: {len(hist.names)} tensor(s), {len(hist.steps)} recorded step(s)" in hist._repr_html_()
    # a vector layer has no crops to draw: a table of the top samples instead of a picture
    ex = tl.synthesis.exemplars(model, torch.utils.data.TensorDataset(torch.rand(6, 4)), layer="0", k=2)
    assert ex.crops is None and ex._repr_png_() is None
    page = ex._repr_html_()
    top = [f"#{int(i)}: {float(v):.3g}" for i, v in zip(ex.indices[0].tolist(), ex.values[0].tolist())]
    assert f"<tr><th>0:0</th><td>{top[0]}</td><td>{top[1]}</td></tr>" in page
