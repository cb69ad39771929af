"""The data objects of the sections "Class activation maps" (:class:`CamData`) and "Explanation quality"
(:class:`QualityData`): their values against the library run directly or numbers built by hand, the
blocks and findings they render, their options' refusals, pickling, the notebook view; and the report
keeping a section's data when its drawing fails (one process and forked workers)."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from markupsafe import escape

import torchloupe as tl
import torchloupe.evaluate as ev
from tests.helpers import tiny_cnn
from torchloupe.errors import UsageError
from torchloupe.evaluate.perturbation import CurveResult
from torchloupe.evaluate.randomization import RandomizationResult
from torchloupe.reporting.base import Figure, Finding, SectionData, Subject, Table, Text
from torchloupe.reporting.sections import cam as cam_section
from torchloupe.reporting.sections import quality
from torchloupe.reporting.sections.cam import CamData, CamOptions
from torchloupe.reporting.sections.quality import RANDOM, QualityData, QualityOptions

LABELS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def tiny():
    model = tiny_cnn().eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    return model, x


# ---------------------------------------------------------------------------------------------- cam


@pytest.fixture(scope="module")
def cams(tiny):
    model, x = tiny
    subject = Subject(name="tiny", model=model, inputs=x, labels=LABELS)
    return cam_section.build(subject, {"methods": ["gradcam", "layercam", "eigencam"]})


def test_cam_data_holds_the_maps_tl_cam_gives(tiny, cams):
    model, x = tiny
    assert isinstance(cams, CamData)
    assert cams.layer == tl.cam.default_layer(model, x)[0]
    with torch.no_grad():
        probs = model(x).softmax(1)
    top = probs.argmax(1)
    assert torch.equal(cams.targets, top)
    torch.testing.assert_close(cams.probs, probs.max(1).values)
    assert cams.names == [LABELS[int(t)] for t in top]
    assert torch.equal(cams.images, x)
    assert list(cams.results) == ["Grad-CAM", "LayerCAM", "Eigen-CAM"]
    for title, cls in (("Grad-CAM", tl.cam.GradCAM), ("LayerCAM", tl.cam.LayerCAM), ("Eigen-CAM", tl.cam.EigenCAM)):
        direct = cls(model, cams.layer)(x, top)
        torch.testing.assert_close(cams.results[title].maps, direct.maps, rtol=1e-5, atol=1e-6)
        assert torch.equal(cams.results[title].targets.cpu(), top)
    assert cams.notes == []


def test_cam_images_and_masked_forward_options(tiny):
    model, x = tiny
    subject = Subject(name="tiny", model=model, inputs=x)
    one = cam_section.build(subject, {"images": 1, "methods": ["gradcam"]})
    assert one.images.shape[0] == 1 and one.results["Grad-CAM"].maps.shape[0] == 1 and len(one.names) == 1
    # Score-CAM: one masked forward per channel (16 at the default layer) and image
    skipped = cam_section.build(subject, {"methods": ["scorecam"], "masked_max_forwards": 16 * 3 - 1})
    assert skipped.results == {} and skipped.notes == ["Score-CAM skipped: it needs up to 48 masked forwards here."]
    ran = cam_section.build(subject, {"methods": ["scorecam"], "masked_max_forwards": 16 * 3})
    assert list(ran.results) == ["Score-CAM"] and ran.notes == []


def test_cam_finding_states_the_hand_computed_correlation(cams):
    blocks = cams.render()
    grid = blocks[0]
    assert isinstance(grid, Figure) and grid.caption.startswith(f"Layer {cams.layer};")
    table = blocks[1]
    assert isinstance(table, Table)
    assert table.rows == [[i, n, round(float(p), 4)] for i, (n, p) in enumerate(zip(cams.names, cams.probs))]
    findings = [b for b in blocks if isinstance(b, Finding)]
    assert len(findings) == 1 and findings[0].ref is grid
    # Pearson correlation of every pair of maps, image by image (numpy), averaged over images, then pairs
    names = list(cams.results)
    maps = {k: cams.results[k].maps.double().numpy().reshape(3, -1) for k in names}
    pair = {(a, b): np.mean([np.corrcoef(maps[a][i], maps[b][i])[0, 1] for i in range(3)])
            for a in names for b in names if a != b}
    overall = np.mean(list(pair.values()))
    each = {a: np.mean([pair[a, b] for b in names if b != a]) for a in names}
    level = "agree closely" if overall >= 0.8 else "mostly agree" if overall >= 0.5 else "disagree"
    text = (f"The 3 CAM methods {level} on where the evidence is: mean pairwise correlation of their maps "
            f"{overall:.2f} over 3 images")
    worst = min(each, key=each.get)
    if each[worst] < overall - 0.1:
        text += f"; {worst} differs most ({each[worst]:.2f} on average with the others)"
    assert findings[0].text == text + "."


def test_cam_with_one_method_says_nothing_can_be_concluded_on_agreement(tiny):
    model, x = tiny
    data = cam_section.build(Subject(name="tiny", model=model, inputs=x), {"methods": ["gradcam"]})
    findings = [b.text for b in data.render() if isinstance(b, Finding)]
    assert findings == ["Only Grad-CAM ran here, so nothing can be concluded about whether the CAM methods agree."]


def test_cam_options_refused_in_one_line(tiny):
    model, x = tiny
    subject = Subject(name="tiny", model=model, inputs=x)
    for given, message in (({"images": 0}, r"cam option images=0: expected a positive integer"),
                           ({"images": True}, r"cam option images=True: expected a positive integer"),
                           ({"methods": "gradcam"}, r"cam option methods='gradcam': expected a non-empty list"),
                           ({"methods": []}, r"cam option methods=\[\]: expected a non-empty list"),
                           ({"methods": ["gradcamm"]}, r"unknown method 'gradcamm'; closest: 'gradcam'"),
                           ({"masked_max_forwards": -1}, r"cam option masked_max_forwards=-1: expected an integer >= 0"),
                           ({"image": 2}, r"section 'cam' has no option 'image'; closest: 'images'")):
        with pytest.raises(UsageError, match=message) as info:
            cam_section.build(subject, given)
        assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match=r"closest: 'masked_max_forwards'"):
        cam_section.build(subject, {"masked_forwards": 2})
    assert CamOptions(images=2, methods=["gradcam"]).given() == {"images": 2, "methods": ["gradcam"]}


def test_cam_data_pickles_and_shows_in_a_notebook(cams):
    back = pickle.loads(pickle.dumps(cams))
    assert back.names == cams.names and back.layer == cams.layer
    for k, r in cams.results.items():
        assert torch.equal(back.results[k].maps, r.maps)
    page = cams._repr_html_()
    assert page.count("<img") >= 1 and "Class activation maps" in page
    finding = next(b.text for b in cams.render() if isinstance(b, Finding))
    assert escape(finding) in page


# ------------------------------------------------------------------------------------------ quality


@pytest.fixture(scope="module")
def measured(tiny):
    model, x = tiny
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 3:9, 4:12] = True
    subject = Subject(name="tiny", model=model, inputs=x, masks=masks)
    data = quality.build(subject, {"steps": 6, "groups": 3, "seed": 7, "random_draws": 2})
    return model, x, masks, data


def _ranked(maps: torch.Tensor) -> torch.Tensor:
    """The maps as the section ranks pixels: each scaled to [0, 1], rounded to 1e-5."""
    return quality._normalize(maps.float()).mul(1e5).round().div(1e5)


def test_quality_data_holds_the_scores_tl_evaluate_gives(measured):
    model, x, masks, data = measured
    assert isinstance(data, QualityData)
    assert (data.images, data.given, data.steps, data.sanity_images) == (3, 3, 6, 2)
    groups = ev.layer_groups(model, 3)
    assert data.groups == len(groups) == 3
    assert list(data.deletion) == ["CAM", "Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM", "Score-CAM",
                                   "Eigen-CAM", "Gradient", "Guided backprop", "Deconvnet", RANDOM]
    targets = model(x).argmax(1)
    # one CAM and one gradient method, each run alone through tl.cam / tl.saliency and tl.evaluate
    gc = tl.cam.GradCAM(model, data.layer)(x, targets).maps
    gb = tl.saliency.guided_backprop(model, x, targets).abs().sum(1)
    for name, maps in (("Grad-CAM", gc), ("Guided backprop", gb)):
        d = ev.deletion_curve(model, x, _ranked(maps), targets, steps=6, substrate="blur")
        i = ev.insertion_curve(model, x, _ranked(maps), targets, steps=6)
        torch.testing.assert_close(data.deletion[name].auc, d.auc, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(data.insertion[name].curves, i.curves, atol=1e-5, rtol=1e-4)
        assert torch.equal(data.pointing[name], ev.pointing_game(maps, masks))
        fn = quality.explainers(model, x, data.layer, quick=False, only=(name,))[name]
        alone = ev.randomization_check(model, x[:2], fn, target=targets[:2], blocks=groups)
        torch.testing.assert_close(data.sanity[name].similarity, alone.similarity, atol=1e-5, rtol=1e-4)
        s = next(s for s in data.scores if s.name == name)
        assert s.deletion == pytest.approx(float(data.deletion[name].auc.mean()))
        assert s.pointing == pytest.approx(float(ev.pointing_game(maps, masks).float().mean()))
        assert s.sanity == tuple(bool(v) for v in alone.similarity[:, -1] < 0.5)
        assert data.verdicts[name] == ("pass" if all(s.sanity) else "fail")
    # the baseline: two draws of random maps from the seed, image after image, draw after draw
    rnd = torch.rand(6, 16, 16, generator=torch.Generator().manual_seed(7))
    d = ev.deletion_curve(model, x.repeat(2, 1, 1, 1), _ranked(rnd), targets.repeat(2), steps=6, substrate="blur")
    torch.testing.assert_close(data.deletion[RANDOM].auc, d.auc, atol=1e-5, rtol=1e-4)
    assert torch.equal(data.pointing[RANDOM], ev.pointing_game(rnd, masks.repeat(2, 1, 1)))
    assert data.baseline.deletion == pytest.approx(float(d.auc.mean()), abs=1e-5)
    assert data.baseline.ms is None and RANDOM not in data.sanity and RANDOM not in data.verdicts
    assert set(data.ms) == set(data.deletion) - {RANDOM} and all(v > 0 for v in data.ms.values())


def test_quality_render_gives_the_table_figures_and_findings(measured):
    *_, data = measured
    blocks = data.render()
    assert isinstance(blocks[0], Text) and blocks[0].text == quality.GUIDE
    table = blocks[1]
    assert table.columns == ["method", "pointing game ↑", "deletion AUC ↓", "insertion AUC ↑", "sanity check",
                             "ms / image"]
    assert [r[0] for r in table.rows] == list(data.deletion)
    assert table.caption.startswith(f"3 images, layer {data.layer} for the CAMs, 6 deletion / insertion steps")
    assert "Sanity check on 2 images and 3 layer groups" in table.caption
    for row, s in zip(table.rows, data.scores):
        assert row[2] == f"{s.deletion:.3f}" and row[3] == f"{s.insertion:.3f}"
    figures = [b for b in blocks if isinstance(b, Figure)]
    assert len(figures) == 2 and figures[1].caption.startswith("Mean rank correlation with the trained model's map "
                                                               "over the 2 images checked")
    findings = [b for b in blocks if isinstance(b, Finding)]
    assert [f.text for f in findings] == data.conclusions and all(f.ref is table for f in findings)
    # 3 images: too few to rank (4 needed), said instead of a best; the sanity line counts every method
    assert data.conclusions[0] == ("pointing game: too few to rank the methods (3 images (at least 4 needed)); "
                                   "no best is marked.")
    assert data.best == {"pointing game": (), "deletion AUC": (), "insertion AUC": ()}
    assert data.undecided["deletion AUC"] == ("too few to rank the methods (3 images (at least 4 needed), 6 steps "
                                              "(at least 10 needed))")
    passed = sum(v == "pass" for v in data.verdicts.values())
    assert data.conclusions[-1].startswith(f"Sanity check: {passed} of 11 methods pass on all 2 images")


def _curve(kind: str, aucs: list[float]) -> CurveResult:
    auc = torch.tensor(aucs)
    return CurveResult(auc[:, None].repeat(1, 11), torch.linspace(0, 1, 11), auc, torch.zeros(len(aucs), dtype=torch.long),
                       kind, "blur")


def _sanity(finals: list[float]) -> RandomizationResult:
    sim = torch.tensor([[0.9, f] for f in finals])
    return RandomizationResult(("fc", "conv"), sim, torch.rand(len(finals), 4, 4), "cascade", "spearman", 0.5,
                               sim[:, -1] < 0.5)


def _data(deletion: dict, insertion: dict | None = None, sanity: dict | None = None, pointing: dict | None = None,
          images: int | None = None, steps: int = 24, **options) -> QualityData:
    """A QualityData from numbers per image (deletion / insertion AUCs, final correlations, hits)."""
    insertion = insertion or {k: [0.5] * len(v) for k, v in deletion.items()}
    n = images or len(next(iter(deletion.values())))
    sanity = {k: _sanity(v) for k, v in (sanity or {}).items()}
    return QualityData(layer="features", images=n, given=n, steps=steps, groups=2,
                       sanity_images=len(next(iter(sanity.values())).similarity) if sanity else 2,
                       deletion={k: _curve("deletion", v) for k, v in deletion.items()},
                       insertion={k: _curve("insertion", v) for k, v in insertion.items()},
                       pointing=None if pointing is None else {k: torch.tensor(v) for k, v in pointing.items()},
                       sanity=sanity, ms={k: 1.0 for k in deletion if k != RANDOM},
                       options=QualityOptions(**options))


def test_sanity_verdict_is_the_captions_rule_over_every_image_checked():
    four = [0.1, 0.2, 0.3, 0.4]
    data = _data({"A": four, "B": four, "C": four, RANDOM: [0.5] * 4},
                 sanity={"A": [0.1, 0.2, 0.3, 0.49], "B": [0.1, 0.2, 0.3, 0.5], "C": [0.6, 0.7, 0.8, 0.9]})
    assert data.verdicts == {"A": "pass", "B": "fail", "C": "fail"}  # B: below on 3 of 4 images, and 0.5 is not below
    table = data.table()
    assert [r[3] for r in table.rows] == ["pass (4/4)", "fail (3/4)", "fail (0/4)", "—"]
    assert ("pass when the rank correlation with the trained model's map is below 0.5 after all 2 groups are "
            "randomized, on all 4 images (a method passing on some of them fails)") in table.caption
    assert "Sanity check: 1 of 3 methods pass on all 4 images; fail: B, C." in data.conclusions
    # the threshold is the option's: at 0.45 A fails on its last image too
    strict = _data({"A": four, RANDOM: [0.5] * 4}, sanity={"A": [0.1, 0.2, 0.3, 0.49]}, threshold=0.45)
    assert strict.verdicts == {"A": "fail"} and "below 0.45 after all 2 groups" in strict.table().caption


def test_too_few_images_checked_gives_no_sanity_verdict():
    data = _data({"A": [0.1] * 4, RANDOM: [0.5] * 4}, sanity={"A": [0.1]})
    assert data.verdicts == {"A": "too few images"}
    assert data.undecided["sanity check"] == "too few images to conclude (1 image checked, at least 2 needed)"
    assert "Sanity check: too few images to conclude (1 image checked, at least 2 needed); no verdict is given." \
        in data.conclusions
    assert not any("pass on all" in c for c in data.conclusions)
    # asking for one image is enough: the verdict is given, on that image
    one = _data({"A": [0.1] * 4, RANDOM: [0.5] * 4}, sanity={"A": [0.1]}, min_sanity_images=1)
    assert one.verdicts == {"A": "pass"} and "Sanity check: 1 of 1 methods pass on all 1 images." in one.conclusions


def test_ties_are_all_marked_or_none():
    # A and B tie at the 3 decimals shown (0.1234 / 0.12341 on average): both marked
    data = _data({"A": [0.1234] * 4, "B": [0.12341] * 4, "C": [0.2] * 4, RANDOM: [0.5] * 4})
    assert data.best["deletion AUC"] == ("A", "B")
    assert sorted(data.table().highlight) == [(0, 1), (1, 1)]
    assert "deletion AUC: best A, B (0.123, random maps 0.500), 2 methods tied." in data.conclusions
    # every method ties: none marked, and it is said
    same = _data({"A": [0.1, 0.3, 0.2, 0.2], "B": [0.2] * 4, RANDOM: [0.5] * 4})
    assert same.best["deletion AUC"] == () and same.table().highlight == []
    assert same.undecided["deletion AUC"] == "all 2 methods tie at 0.200"
    assert "deletion AUC: all 2 methods tie at 0.200; no best is marked." in same.conclusions


def test_no_best_where_random_maps_do_as_well():
    # the baseline's mean over its two draws (0.2) beats the best method on deletion; ties it on insertion
    data = _data({"A": [0.3] * 4, "B": [0.25] * 4, RANDOM: [0.1] * 4 + [0.3] * 4},
                 {"A": [0.6] * 4, "B": [0.7] * 4, RANDOM: [0.7] * 8}, random_draws=2)
    assert data.baseline.deletion == pytest.approx(0.2)
    assert data.best == {"deletion AUC": (), "insertion AUC": ()} and data.table().highlight == []
    assert data.undecided["deletion AUC"] == ("random maps (0.200) do as well as or better than every method "
                                              "(best 0.250)")
    assert ("insertion AUC: random maps (0.700) do as well as or better than every method (best 0.700); this test "
            "does not tell the methods apart here, so no best is marked.") in data.conclusions


def test_too_few_images_or_steps_is_said_instead_of_a_best():
    dels = {"A": [0.1] * 3, "B": [0.4] * 3, RANDOM: [0.6] * 3}
    hits = {"A": [True] * 3, "B": [False] * 3, RANDOM: [False] * 3}
    data = _data(dels, pointing=hits, steps=5)
    assert data.best == {"pointing game": (), "deletion AUC": (), "insertion AUC": ()}
    assert data.undecided["pointing game"] == "too few to rank the methods (3 images (at least 4 needed))"
    assert data.undecided["deletion AUC"] == ("too few to rank the methods (3 images (at least 4 needed), 5 steps "
                                              "(at least 10 needed))")
    # the minimums are options: with 3 images and 5 steps enough, the columns rank
    ranked = _data(dels, pointing=hits, steps=5, min_rank_images=3, min_rank_steps=5)
    assert ranked.best["pointing game"] == ("A",) and ranked.best["deletion AUC"] == ("A",)
    assert ranked.undecided == {"insertion AUC": "random maps (0.500) do as well as or better than every method "
                                                 "(best 0.500)"}
    assert "deletion AUC: best A (0.100, random maps 0.600)." in ranked.conclusions


def test_no_method_applies_is_said():
    data = _data({RANDOM: [0.5] * 4})
    assert data.conclusions == ["No attribution method applies to this model, so nothing can be concluded about "
                                "their quality."]
    assert [b.text for b in data.render() if isinstance(b, Finding)] == data.conclusions


def test_quality_sizes_follow_the_options(tiny):
    assert QualityOptions().sizes((2, 3, 16, 16)) == (8, 24, 6, False)
    assert QualityOptions(quick=True).sizes((2, 3, 16, 16)) == (4, 16, 4, False)
    assert QualityOptions().sizes((2, 3, 129, 128)) == (1, 5, 2, True)
    assert QualityOptions(large_pixels=100, images_by_size=(8, 4, 2)).sizes((2, 3, 16, 16)) == (2, 5, 2, True)
    assert QualityOptions(quick=True, images=3, steps=7, groups=1).sizes((2, 3, 16, 16)) == (3, 7, 1, False)
    model, x = tiny
    data = quality.build(Subject(name="t", model=model, inputs=x), {"images": 2, "steps": 4, "groups": 2,
                                                                     "sanity_images": 1, "quick": True})
    assert (data.images, data.given, data.steps, data.groups, data.sanity_images) == (2, 3, 4, 2, 1)
    assert data.deletion["Grad-CAM"].curves.shape == (2, 5) and data.sanity["Grad-CAM"].similarity.shape == (1, 2)
    assert "Score-CAM" not in data.deletion  # quick: no forward per channel
    assert data.table().caption.startswith("2 images (the first of 3 given)")


@pytest.mark.parametrize("given,message", [
    ({"images": 0}, r"quality option images=0: expected a positive integer \(or None: by size, images_by_size\)"),
    ({"steps": -1}, r"quality option steps=-1: expected a positive integer"),
    ({"groups": 1.5}, r"quality option groups=1.5: expected a positive integer"),
    ({"images_by_size": (8, 4)}, r"quality option images_by_size=\(8, 4\): expected 3 positive integers"),
    ({"random_draws": True}, r"quality option random_draws=True: expected a positive integer"),
    ({"threshold": 1.5}, r"quality option threshold=1.5: expected a rank correlation in \(-1, 1\]"),
    ({"decimals": -1}, r"quality option decimals=-1: expected an integer >= 0"),
    ({"min_rank_images": 0}, r"quality option min_rank_images=0: expected a positive integer"),
    ({"step": 3}, r"section 'quality' has no option 'step'; closest: 'steps'"),
    ({"treshold": 0.3}, r"section 'quality' has no option 'treshold'; closest: 'threshold'"),
])
def test_quality_options_refused_in_one_line(tiny, given, message):
    model, x = tiny
    with pytest.raises(UsageError, match=message) as info:
        quality.build(Subject(name="t", model=model, inputs=x), given)
    assert "\n" not in str(info.value)


def test_quality_data_pickles_small_and_shows_in_a_notebook(measured):
    *_, data = measured
    blob = pickle.dumps(data)
    back = pickle.loads(blob)
    assert back.conclusions == data.conclusions and back.verdicts == data.verdicts and back.scores == data.scores
    for name in data.deletion:
        assert torch.equal(back.deletion[name].auc, data.deletion[name].auc)
    # each method's rows are their own tensors, not views of the whole batch's curves (which would all pickle)
    auc = data.deletion["CAM"].auc
    assert auc.untyped_storage().nbytes() == auc.numel() * auc.element_size()
    page = data._repr_html_()
    assert page.count("<img") == 2 and "Explanation quality" in page
    for line in data.conclusions:
        assert escape(line) in page


# ---------------------------------------------------------------------------------- report builder


@dataclass
class _Sums(SectionData):
    """A throwaway section's data: numbers from the subject's inputs; its drawing always fails."""

    section: ClassVar[str] = "zz_data_kept"
    name: str
    total: float
    firsts: torch.Tensor
    pid: int  # the process that computed it

    def render(self) -> list:
        raise RuntimeError("the figure could not be drawn")


_BUILT: list = []  # what the throwaway section returned in this process


@pytest.fixture
def failing_section():
    from torchloupe.reporting import base

    @base.register("zz_data_kept", "Data kept", "A section whose drawing fails.", order=999)
    def build(subject, options):
        data = _Sums(subject.name, float(subject.inputs.sum()), subject.inputs[:, 0, 0, 0].clone(), os.getpid())
        _BUILT.append(data)
        return data

    _BUILT.clear()
    yield "zz_data_kept"
    base._REGISTRY.pop("zz_data_kept", None)


@pytest.mark.parametrize("jobs", [1, 2])
def test_report_keeps_the_data_of_a_section_whose_drawing_fails(tmp_path, failing_section, jobs):
    from torchloupe.reporting.builder import build_report

    xs = {n: torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(i)) for i, n in enumerate(("one", "two"))}
    subjects = [Subject(name=n, model=torch.nn.Identity(), inputs=x) for n, x in xs.items()]
    info = build_report(subjects, tmp_path / "r.html", sections=[failing_section], progress=False, jobs=jobs)
    page = (tmp_path / "r.html").read_text()
    assert page.count("drawing failed: RuntimeError: the figure could not be drawn") >= 2
    assert page.count("What Data kept computed (_Sums), not drawn") == 2
    assert [r.status for r in info.runs] == ["error", "error"]
    for n, x in xs.items():
        data = info.data[failing_section, n]
        assert isinstance(data, _Sums) and data.name == n
        assert data.total == float(x.sum()) and torch.equal(data.firsts, x[:, 0, 0, 0])
        if jobs == 1:  # the very object the section returned
            assert any(data is built for built in _BUILT) and data.pid == os.getpid()
        for field, value in data.numbers():  # the table on the page is the data's numbers
            assert f"<tr><td>{field}</td><td>{escape(value)}</td></tr>" in page
        assert f"<td>{data.total!r}</td>" in page
    if jobs == 2:  # computed in forked workers, sent back pickled
        assert _BUILT == [] and all(info.data[failing_section, n].pid != os.getpid() for n in xs)
