"""The "Feature fusion" report section on a demo subject, and NotApplicable elsewhere."""

from __future__ import annotations

import sys

import torch

from tests.helpers import tiny_cnn
from torchloupe.reporting.base import Figure, NotApplicable, Subject, Table


def test_import_torchloupe_fusion_loads_no_matplotlib():
    import subprocess

    code = "import sys, torchloupe as tl; tl.fusion.find; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_section_on_the_late_fusion_demo():
    from torchloupe.app.subjects import fusion as subjects
    from torchloupe.reporting.sections import fusion as section

    subject = subjects.fusion_subject("late", seed=0, n=32)
    blocks = section.build(subject, {"quick": True, "seed": 0})
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
    blocks = section.build(subject, {"quick": True, "seed": 0})
    fig = next(b.figure for b in blocks if isinstance(b, Figure) and "provenance" in b.caption)
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    rows = [t for t in texts if t.endswith(")") and "[" in t]
    assert rows == ["add ← to_shape.1\n[0:8)", "add ← to_colour.1\n[8:16)"]
    tiles = [t for t in texts if t.startswith("ch ")]
    assert sorted(int(t[3:]) for t in tiles) == list(range(16))


def test_section_not_applicable_without_branches():
    from torchloupe.reporting.sections import fusion as section

    subject = Subject(name="cnn", model=tiny_cnn(), inputs=torch.rand(2, 3, 16, 16))
    res = section.build(subject, {"quick": True, "seed": 0})
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
