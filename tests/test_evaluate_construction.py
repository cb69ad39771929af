"""Explanation quality where the truth is known by construction: the demo shapes model and its object masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import torchloupe as tl
import torchloupe.evaluate as ev
from tests.section_blocks import blocks_of


def shown_table(blocks):
    from torchloupe.reporting.base import Table as ShownTable

    return next(b for b in blocks if isinstance(b, ShownTable))


@pytest.fixture(scope="module")
def shapes():
    model = tl.demo.train_shapes_model(seed=0)
    ds = tl.demo.shapes_dataset(160, size=64, seed=2024)  # a seed the model never trained on
    xs, _, ms = zip(*[ds[i] for i in range(len(ds))])
    return model, torch.stack(xs), torch.stack(ms)


def _independent_pointing(maps: torch.Tensor, masks: torch.Tensor, tol: float) -> np.ndarray:
    """Hit = distance from the map's argmax to the nearest mask pixel ≤ tol (scipy's distance transform)."""
    hits = []
    for m, k in zip(maps.numpy(), masks.numpy()):
        y, x = np.unravel_index(np.argmax(m), m.shape)
        dist = ndimage.distance_transform_edt(~k)
        hits.append(dist[y, x] <= tol)
    return np.array(hits)


@pytest.mark.parametrize("method", ["GradCAM", "GradCAMPlusPlus", "LayerCAM"])
def test_pointing_game_on_shapes(shapes, method):
    model, x, masks = shapes
    maps = getattr(tl.cam, method)(model)(x).maps
    hits = ev.pointing_game(maps, masks, tolerance=15)
    assert hits.float().mean().item() >= 0.85
    np.testing.assert_array_equal(hits.numpy(), _independent_pointing(maps, masks, 15))
    strict = ev.pointing_game(maps, masks, tolerance=0)
    np.testing.assert_array_equal(strict.numpy(), _independent_pointing(maps, masks, 0))


def test_deletion_and_insertion_rank_gradcam_random_inverted(shapes):
    model, x, _ = shapes
    x = x[:48]
    gc = tl.cam.GradCAM(model)(x).maps
    rnd = torch.rand(gc.shape, generator=torch.Generator().manual_seed(0))
    d = {k: ev.deletion(model, x, m, steps=16, substrate="blur").mean().item()
         for k, m in (("gradcam", gc), ("random", rnd), ("inverted", 1 - gc))}
    i = {k: ev.insertion(model, x, m, steps=16, substrate="blur").mean().item()
         for k, m in (("gradcam", gc), ("random", rnd), ("inverted", 1 - gc))}
    assert d["gradcam"] < d["random"] < d["inverted"], d
    assert i["gradcam"] > i["random"] > i["inverted"], i


def test_randomization_gradcam_drops_guided_backprop_stays_higher(shapes):
    model, x, _ = shapes
    x = x[:8]

    def gradcam(m, inp, t):
        return tl.cam.GradCAM(m)(inp, t).maps

    def guided(m, inp, t):
        return tl.saliency.guided_backprop(m, inp, t)

    gc = ev.randomization_check(model, x, gradcam)
    gb = ev.randomization_check(model, x, guided)
    assert gc.similarity[:, -1].mean().item() < 0.5
    assert gc.passed.float().mean().item() >= 0.5
    # Adebayo et al.: guided backprop stays more similar to the original as the weights are randomized.
    assert gb.similarity.mean().item() > gc.similarity.mean().item() + 0.2


def test_quality_section_table_on_shapes(shapes):
    """The report's "Explanation quality" section on the shapes model: a row per method with the
    pointing game of tl.evaluate, the sanity verdict of a separate randomization check per method
    (the section checks the CAMs from one shared pass per randomized copy), and the best cell of
    each scored column highlighted."""
    from torchloupe.reporting.base import Figure, Finding, Subject, Table, Text, registered
    from torchloupe.reporting.sections.quality import explainers

    model, x, masks = shapes
    n = 4
    subject = Subject(name="shapes", model=model, inputs=x[:8], masks=masks[:8])
    section = {s.key: s for s in registered()}["quality"]
    blocks = blocks_of(section.build(subject, {"quick": True, "seed": 0}))
    table = next(b for b in blocks if isinstance(b, Table))
    assert table.columns == ["method", "pointing game ↑", "deletion AUC ↓", "insertion AUC ↑", "sanity check", "ms / image"]
    names = [r[0] for r in table.rows]
    assert names == ["CAM", "Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM", "Eigen-CAM", "Gradient",
                     "Guided backprop", "Deconvnet", "Random maps"]
    figures = [b.figure for b in blocks if isinstance(b, Figure)]
    assert len(figures) == 2
    legend = [t.get_text() for t in figures[1].axes[0].get_legend().get_texts()]
    assert [t.split(" (= ")[0] for t in legend] == names[:-1]  # the sanity curves in table order
    # Global average pooling then a linear layer: Grad-CAM, XGrad-CAM and HiRes-CAM are CAM's map,
    # so their lines lie under CAM's; the legend says so instead of seeming to lose them.
    assert [t for t in legend if "(= " in t] == ["Grad-CAM (= CAM)", "XGrad-CAM (= CAM)", "HiResCAM (= CAM)"]
    deletion_legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert [t.split(" (")[0] for t in deletion_legend if ", = CAM)" in t] == ["Grad-CAM", "XGrad-CAM", "HiResCAM"]
    colors = {ln.get_label().split(" (")[0]: ln.get_color() for ln in figures[1].axes[0].get_lines()[:-1]
              if not ln.get_label().startswith("_")}  # the per-image markers carry no label
    curve_colors = {ln.get_label().split(" (")[0]: ln.get_color() for ln in figures[0].axes[0].get_lines()}
    assert all(curve_colors[m] == c for m, c in colors.items())  # one colour per method in both figures
    targets = model(x[:n]).argmax(1)
    methods = explainers(model, x[:n], "features", quick=True)
    groups = ev.layer_groups(model, 4)
    for row in table.rows[:-1]:
        maps = methods[row[0]](model, x[:n], targets)
        assert row[1] == f"{ev.pointing_game(maps, masks[:n]).float().mean().item():.3f}"
        alone = ev.randomization_check(model, x[:2], methods[row[0]], target=targets[:2], blocks=groups)
        # pass only when the map decorrelates on every image checked, with the count shown
        verdict = "pass" if bool(alone.passed.all()) else "fail"
        assert row[4] == f"{verdict} ({int(alone.passed.sum())}/2)", row[0]
    assert table.rows[-1][4] == "—" and table.rows[-1][5] == "—"
    assert dict(zip(names, (r[4] for r in table.rows)))["Grad-CAM"] == "pass (2/2)"
    conclusions = " ".join(b.text for b in blocks if isinstance(b, Finding) and b.ref is shown_table(blocks))
    for col in (1, 2, 3):
        marked = sorted(r for r, c in table.highlight if c == col)
        values = [r[col] for r in table.rows[:-1]]  # as shown, 3 decimals
        best = (min if col == 2 else max)(values, key=float)
        random_as_good = float(table.rows[-1][col]) <= float(best) if col == 2 else float(table.rows[-1][col]) >= float(best)
        if random_as_good or values.count(best) == len(values):
            assert marked == [], table.columns[col]  # none marked, and the conclusions say why
            assert f"{table.columns[col][:-2]}: " in conclusions
        else:  # every method tied with the best is marked
            assert marked == [i for i, v in enumerate(values) if v == best], table.columns[col]


def test_quick_quality_on_large_inputs_keeps_the_most_used_methods():
    from tests.helpers import tiny_cnn
    from torchloupe.reporting.base import Subject, Table, registered
    from torchloupe.reporting.sections.quality import QUICK_LARGE

    torch.manual_seed(0)
    x = torch.rand(2, 3, 136, 136)  # over 128 x 128: an ImageNet-size input
    subject = Subject(name="big", model=tiny_cnn().eval(), inputs=x, images=x)
    section = {s.key: s for s in registered()}["quality"]
    quick = next(b for b in blocks_of(section.build(subject, {"quick": True, "seed": 0})) if isinstance(b, Table))
    assert [r[0] for r in quick.rows] == [*QUICK_LARGE, "Random maps"]
    full = next(b for b in blocks_of(section.build(subject, {"quick": False, "seed": 0})) if isinstance(b, Table))
    assert len(full.rows) == 11 and "the first of 2 given" in full.caption
