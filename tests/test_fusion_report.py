"""The "Feature fusion" report section on a demo subject, and NotApplicable elsewhere."""

from __future__ import annotations

import sys

import pytest

import torch

from tests.helpers import tiny_cnn
from torchloupe.reporting.base import Figure, NotApplicable, Subject, Table, Text
from tests.section_blocks import blocks_of


def test_import_torchloupe_fusion_loads_no_matplotlib():
    import subprocess

    code = "import sys, torchloupe as tl; tl.fusion.find; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_section_on_the_late_fusion_demo():
    from torchloupe.app.subjects import fusion as subjects
    from torchloupe.reporting.sections import fusion as section

    subject = subjects.fusion_subject("late", seed=0, n=32)
    blocks = blocks_of(section.build(subject, {"quick": True, "seed": 0}))
    assert not isinstance(blocks, NotApplicable)
    figures = [b for b in blocks if isinstance(b, Figure)]
    captions = " | ".join(b.caption for b in figures)
    for word in ("Fusion points", "exact (left) and integrated gradients", "Grad-CAM", "Channel provenance",
                 "Linear CKA", "during training"):
        assert word in captions
    table = [b for b in blocks if isinstance(b, Table)][0]
    rows = {r[0]: r for r in table.rows}
    assert table.columns[:4] == ["class", "deciding view", "shape (exact)", "colour (exact)"]
    assert table.columns[4:] == ["shape (integrated gradients)", "colour (integrated gradients)"]  # headers wrap
    assert float(rows["circle"][2]) > 0.8 and float(rows["red"][3]) > 0.8
    assert all(hasattr(f.figure, "savefig") for f in figures)


def test_provenance_shows_every_argument_of_the_cat_even_with_one_op_name():
    # The iterative model's cat takes two tensors both made by `add`: each gets its own row.
    from torchloupe.app.subjects import fusion as subjects
    from torchloupe.reporting.sections import fusion as section

    subject = subjects.fusion_subject("iterative", seed=0, n=16)
    blocks = blocks_of(section.build(subject, {"quick": True, "seed": 0}))
    fig = next(b.figure for b in blocks if isinstance(b, Figure) and "provenance" in b.caption)
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    rows = [t for t in texts if t.endswith(")") and "[" in t]
    assert rows == ["add ← to_shape.1\n[0:8)", "add ← to_colour.1\n[8:16)"]
    tiles = [t for t in texts if t.startswith("ch ")]
    assert sorted(int(t[3:]) for t in tiles) == list(range(16))


def test_section_not_applicable_without_branches():
    from torchloupe.reporting.sections import fusion as section

    subject = Subject(name="cnn", model=tiny_cnn(), inputs=torch.rand(2, 3, 16, 16))
    res = blocks_of(section.build(subject, {"quick": True, "seed": 0}))
    assert isinstance(res, NotApplicable) and "branches" in res.reason and "tl.fusion.find" in res.reason


def test_branch_maps_keep_the_heat_maps_hue_over_a_coloured_view():
    # Over a saturated green view the map is blended with the view's gray, so its colour is the
    # colormap's own (a peak stays red), and the figure carries the 0..1 colour bar.
    from torchloupe.render.colormaps import colorize
    from torchloupe.render.fusion import branch_maps_figure

    green = torch.zeros(1, 3, 8, 8)
    green[:, 1] = 1.0
    peak = torch.ones(1, 8, 8)
    fig = branch_maps_figure({"colour": green}, {"colour": peak}, n=1, row_names=["x"])
    assert len(fig.axes) == 2  # the mosaic and its colour bar
    composed = torch.from_numpy(fig.axes[0].images[0].get_array()[..., :3].copy()).float()  # (H, W, 3)
    h, w = composed.shape[:2]
    inside = composed[h // 2, 3 * w // 4]  # the middle of the right tile: the map
    red = colorize(torch.ones(1, 1), "jet")[:, 0, 0]
    expected = 0.4 * 0.587 + 0.6 * red
    assert torch.allclose(inside, expected, atol=0.02)


# -- branches found from the trace (issue 17, item 3) -----------------------------------------------


class _TwoBranch(torch.nn.Module):
    """A blog-style two-input model: two CNN branches fused by torch.cat, forward(x1, x2)."""

    def __init__(self, flatten_first: bool = False):
        super().__init__()
        self.cnn1 = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.ReLU())
        self.cnn2 = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(32, 2)
        self.flatten_first = flatten_first
        with torch.no_grad():  # identity branches; class 0 weighs cnn1 3x as much as cnn2
            for conv in (self.cnn1[0], self.cnn2[0]):
                conv.weight.fill_(1.0)
                conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[3.0] * 16 + [1.0] * 16, [0.5] * 32]))
            self.fc.bias.zero_()

    def forward(self, x1, x2):
        a, b = self.cnn1(x1), self.cnn2(x2)
        if self.flatten_first:  # the article's form: .view each branch, then cat
            return self.fc(torch.cat((a.view(a.size(0), -1), b.view(b.size(0), -1)), dim=1))
        x = torch.cat((a, b), dim=1)
        return self.fc(x.view(x.size(0), -1))


def _pair(n=6):
    g = torch.Generator().manual_seed(0)
    base = 0.5 + 0.5 * torch.rand(n, 1, 4, 4, generator=g)
    return base, base.clone()  # equal branch outputs: class 0's shares are 3/4 and 1/4 exactly


@pytest.mark.parametrize("flatten_first", [False, True], ids=["cat-then-view", "view-then-cat"])
def test_two_input_model_with_no_extras_shows_both_branches_shares(flatten_first):
    from torchloupe.reporting.sections import fusion as section

    model = _TwoBranch(flatten_first)
    blocks = blocks_of(section.build(Subject("two", model, _pair()), {"quick": True, "seed": 0}))
    assert not isinstance(blocks, NotApplicable)
    found = [b.text for b in blocks if isinstance(b, Text) and b.text.startswith("Branches found")]
    assert found and "cnn1, cnn2" in found[0]
    table = next(b for b in blocks if isinstance(b, Table))
    assert table.columns == ["class", "cnn1 (exact)", "cnn2 (exact)",
                             "cnn1 (integrated gradients)", "cnn2 (integrated gradients)"]
    assert table.rows == [["0", "0.75", "0.25", "0.75", "0.25"]]
    captions = " | ".join(b.caption for b in blocks if isinstance(b, Figure))
    for word in ("Fusion points", "Grad-CAM", "Linear CKA"):
        assert word in captions
    heads = next(b.figure for b in blocks if isinstance(b, Figure) and "Grad-CAM" in b.caption)
    texts = [t.get_text() for t in heads.findobj(lambda a: hasattr(a, "get_text"))]
    assert {"cnn1 view", "cnn1 map", "cnn2 view", "cnn2 map"} <= set(texts)  # each drawn on its own input


def test_declared_branches_without_backgrounds_draw_each_on_its_input():
    # extras={'fusion': {'branches': ...}} alone used to crash ('NoneType' object is not subscriptable).
    from torchloupe.reporting.sections import fusion as section

    subject = Subject("two", _TwoBranch(), _pair(), extras={"fusion": {"branches": {"left": "cnn1", "right": "cnn2"}}})
    blocks = blocks_of(section.build(subject, {"quick": True, "seed": 0}))
    table = next(b for b in blocks if isinstance(b, Table))
    assert table.rows == [["0", "0.75", "0.25", "0.75", "0.25"]] and table.columns[1] == "left (exact)"
    assert any(isinstance(b, Figure) and "Grad-CAM" in b.caption for b in blocks)
    assert not any(isinstance(b, Text) and "No branch maps" in b.text for b in blocks)


def test_a_drawing_error_keeps_the_computed_shares(monkeypatch):
    from torchloupe.render import fusion as draw
    from torchloupe.reporting.sections import fusion as section

    def boom(*a, **k):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(draw, "shares_figure", boom)
    blocks = blocks_of(section.build(Subject("two", _TwoBranch(), _pair()), {"quick": True, "seed": 0}))
    table = next(b for b in blocks if isinstance(b, Table))
    assert table.rows == [["0", "0.75", "0.25", "0.75", "0.25"]]
    notes = [b.text for b in blocks if isinstance(b, Text) and "could not be drawn" in b.text]
    assert len(notes) == 1 and "branch shares" in notes[0] and "renderer broke" in notes[0]
    assert any(isinstance(b, Figure) and "Linear CKA" in b.caption for b in blocks)  # the rest still shows


def test_vector_branches_show_shares_and_say_why_there_are_no_maps():
    from torchloupe.reporting.sections import fusion as section

    class Vec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, u, v):
            return self.head(torch.cat([self.a(u), self.b(v)], dim=1))

    torch.manual_seed(0)
    blocks = blocks_of(section.build(Subject("vec", Vec(), (torch.randn(8, 3), torch.randn(8, 3))), {"quick": True, "seed": 0}))
    assert any(isinstance(b, Table) and b.columns[1:3] == ["a (exact)", "b (exact)"] for b in blocks)
    notes = [b.text for b in blocks if isinstance(b, Text)]
    assert any(n.startswith("No branch maps") and "(B, C, h, w)" in n and "(8, 3)" in n for n in notes)
    assert any(isinstance(b, Figure) and "Linear CKA" in b.caption for b in blocks)


def test_residual_adds_are_not_fusion():
    import torchloupe as tl
    from torchloupe.errors import UnsupportedModelError
    from torchloupe.reporting.sections import fusion as section

    class Res(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.block = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU())
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            h = h + self.block(h)
            return self.head(h.mean((2, 3)))

    model, x = Res(), torch.rand(4, 3, 8, 8)
    res = blocks_of(section.build(Subject("res", model, x), {"quick": True, "seed": 0}))
    assert isinstance(res, NotApplicable)
    assert "Res has no fusion point: its joins are 1 residual add(s) x + f(x)" in res.reason
    points = tl.fusion.find(model, x)
    assert points == [] and tl.fusion.branch_specs(model, points) is None
    assert [(p.name, p.join) for p in tl.fusion.residuals(model, x)] == [("add", "residual")]
    with pytest.raises(UnsupportedModelError, match="residual adds are not fusion"):
        tl.fusion.contributions(model, x)


def test_report_of_a_two_input_model_lists_its_branches(tmp_path):
    import torchloupe as tl

    info = tl.report(_TwoBranch(), _pair(), tmp_path / "r.html", sections="fusion", progress=False)
    html = (tmp_path / "r.html").read_text()
    assert [r.status for r in info.runs] == ["ok"]
    assert "no branches declared" not in html and "cnn1 (exact)" in html and "0.75" in html
