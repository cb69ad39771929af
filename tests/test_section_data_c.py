"""Sections as data: feature visualization, dataset exemplars, weights and weight learning.

Each: the data object holds the right numbers (known by construction: set weights, a planted
dataset, a hand-made weight history), ``render()`` gives the section's blocks with a finding that
states those numbers, a bad option is refused in one line, the data pickles and shows in a notebook.
"""

from __future__ import annotations

import html
import math
import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import torchloupe as tl
from torchloupe.errors import UsageError
from torchloupe.reporting.base import Details, Figure, Finding, Image, NotApplicable, Subject, Table, Text
from torchloupe.reporting.sections import exemplars as ex_section
from torchloupe.reporting.sections import feature_vis as fv_section
from torchloupe.reporting.sections import weight_learning as wl_section
from torchloupe.reporting.sections import weights as w_section

QUICK = {"quick": True, "seed": 0}


def _findings(blocks):
    return [b for b in blocks if isinstance(b, Finding)]


def _shows(data, text):
    page = data._repr_html_()
    assert "<img" in page
    assert text in html.unescape(page)


# --- feature visualization and exemplars: one search per subject -----------------------------------
class _Planted(nn.Module):
    """``conv`` is a 1x1 identity on the 3 colour channels (channel c = colour c), ``dead`` a conv whose
    channel 2 has zero weights and bias -1 (constant: no input can move it)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.dead = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
            self.conv.bias.zero_()
            self.dead.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
            self.dead.weight[2].zero_()
            self.dead.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))

    def forward(self, x):
        return self.fc(self.dead(self.conv(x)).mean((2, 3)))


def _planted_data(labels=True):
    """15 constant 4x4 images: samples 0-4 light up colour 0 (10, 9, ..., 6), 5-9 colour 1 (20, 18, ...),
    10-14 colour 2 (all 5: ties); labels chosen so channel 0's top-5 hold 3 of class 'a', channel 1's
    5 of 'b' and channel 2's 3 of 'c'."""
    x = torch.zeros(15, 3, 4, 4)
    for i in range(5):
        x[i, 0] = 10.0 - i
        x[5 + i, 1] = 20.0 - 2 * i
        x[10 + i, 2] = 5.0
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 0, 1, 2])
    return TensorDataset(x, y) if labels else TensorDataset(x)


def _subject(labels=True, **kw):
    model = _Planted().eval()
    return Subject("planted", model, torch.rand(2, 3, 8, 8), labels=["a", "b", "c"],
                   dataset=_planted_data(labels), **kw)


def test_exemplars_are_searched_once_for_feature_vis_and_exemplars(monkeypatch):
    import torchloupe.synthesis as synthesis

    calls = []
    real = synthesis.exemplars

    def counted(*args, **kwargs):
        calls.append(kwargs.get("channels"))
        return real(*args, **kwargs)

    monkeypatch.setattr(synthesis, "exemplars", counted)
    subject = _subject(layers=["conv"])
    both = {**QUICK, "report_sections": ("feature_vis", "exemplars")}
    fv = fv_section.build(subject, {**both, "steps": 3})
    ex = ex_section.build(subject, both)
    assert len(calls) == 1
    assert fv.exemplars is not None and torch.equal(fv.exemplars.indices, ex.exemplars.indices)


def test_shared_exemplars_reuse_a_search_that_holds_the_answer_exactly(monkeypatch):
    import torchloupe.synthesis as synthesis

    calls = []
    real = synthesis.exemplars
    monkeypatch.setattr(synthesis, "exemplars", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    subject = _subject()
    full = subject.shared.exemplars("conv", [0, 1, 2], 512, k=5)
    part = subject.shared.exemplars("conv", [2, 1], 128, k=3)  # the 15 samples either way: cut from the first
    assert len(calls) == 1
    direct = real(subject.model, subject.dataset, "conv", k=3, channels=[2, 1], stop=128)
    assert part.channels == (2, 1) and part.k == 3
    assert torch.equal(part.indices, direct.indices) and torch.equal(part.values, direct.values)
    assert torch.equal(part.crops, direct.crops)
    assert torch.equal(full.indices[1, :3], part.indices[1])
    subject.shared.exemplars("conv", [0], 10)  # the first 10 samples only: a new search
    subject.shared.exemplars("conv", [0], 5, k=6)  # more per channel than kept: a new search
    assert len(calls) == 3
    assert Subject("none", subject.model, subject.inputs).shared.exemplars("conv", [0], 10) is None


def test_feature_vis_data_holds_the_reached_values_and_the_failed_unit():
    subject = _subject(layers=["dead"])
    data = fv_section.build(subject, {**QUICK, "units": [0, 2], "steps": 5, "baseline": 7})
    res = data.result
    assert data.layer == "dead" and data.kind == "conv" and data.channels == [0, 2] and data.steps == 5
    assert res.names == ("dead:0", "dead:2") and res.objective_curve.shape == (5, 2)
    # reached: the channel mean of the layer on the final images (computed again here)
    with torch.no_grad():
        again = subject.model.dead(subject.model.conv(res.images)).mean((2, 3))
    assert torch.allclose(res.final_activation, again[[0, 1], [0, 2]], atol=1e-5)
    # channel 2 is -1 whatever the input: not above random inputs, FAILED
    assert res.failed.tolist() == [False, True] and data.failed == 1
    assert float(res.baseline_activation[1]) == pytest.approx(-1.0)
    # dataset top-1: the best sample of the planted data (channel 0: sample 0 at 10)
    assert data.exemplars.indices[0, 0] == 0 and float(res.dataset_top1[0]) == pytest.approx(10.0)
    blocks = data.render()
    assert [type(b) for b in blocks] == [Figure, Table, Figure, Finding, Text]
    table = blocks[1]
    assert table.columns[2] == "best of 7 random" and [r[4] for r in table.rows] == ["ok", "FAILED"]
    assert table.highlight == [(1, 4)]
    finding = blocks[3]
    assert finding.text == ("1 of 2 units of dead were driven above the best of 7 random inputs in 5 steps; "
                            "the other 1 show nothing the unit prefers.")
    assert finding.ref is table
    assert blocks[0].caption.startswith("dead: channels 0, 2, fft parameterization, 5 steps, seed 0")
    back = pickle.loads(pickle.dumps(data))
    assert torch.equal(back.result.images, res.images) and torch.equal(back.exemplars.values, data.exemplars.values)
    _shows(data, finding.text)


def test_feature_vis_quick_mode_caps_units_and_steps():
    data = fv_section.build(_subject(layers=["conv"]), {**QUICK, "units": 9, "steps": 50})
    assert data.channels == [0, 1, 2] and data.steps == 24  # 3 channels in the layer; quick: at most 24 steps


def test_feature_vis_options_refused_in_one_line():
    subject = _subject(layers=["conv"])
    with pytest.raises(UsageError, match=r"feature_vis option steps=0: expected a positive integer"):
        fv_section.build(subject, {"steps": 0})
    with pytest.raises(UsageError, match=r"feature_vis option lr=-1: expected a number > 0"):
        fv_section.FeatureVisOptions(lr=-1)
    with pytest.raises(UsageError, match=r"option units=\[\]: expected a count of channels"):
        fv_section.FeatureVisOptions(units=[])
    with pytest.raises(UsageError, match=r"has no option 'step'; closest: 'steps'"):
        fv_section.build(subject, {"step": 3})
    with pytest.raises(UsageError, match=r"channel 5 is not a channel of conv \(3 channels: 0..2\)"):
        fv_section.build(subject, {**QUICK, "units": [0, 5]})


def test_exemplars_data_holds_each_channels_samples_and_their_classes():
    data = ex_section.build(_subject(layers=["conv"]), QUICK)
    ex = data.exemplars
    assert data.layer == "conv" and data.channels == [0, 1, 2] and ex.k == 5 and ex.seen == 15
    assert ex.indices.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14]]
    assert ex.values[0].tolist() == [10, 9, 8, 7, 6] and ex.values[1].tolist() == [20, 18, 16, 14, 12]
    assert data.classes.tolist() == [[0, 0, 0, 1, 1], [1, 1, 1, 1, 1], [2, 2, 0, 1, 2]]
    assert data.class_names == ["a", "b", "c"]
    assert data.purity() == [(0, 3, 5), (1, 5, 5), (2, 3, 5)]
    blocks = data.render()
    assert [type(b) for b in blocks] == [Figure, Text, Finding]
    assert "top-5 of the first 15 samples" in blocks[0].caption
    finding = blocks[2]
    assert finding.ref is blocks[0]
    assert finding.text == ("In conv, on average 73% of each channel's top-5 samples are of its most common class "
                            "(channel 0: 3 of 5 'a'; channel 1: 5 of 5 'b'; channel 2: 3 of 5 'c'; the dataset has "
                            "3 classes): the channels lean to one class each, not strictly.")
    back = pickle.loads(pickle.dumps(data))
    assert torch.equal(back.classes, data.classes) and torch.equal(back.exemplars.indices, ex.indices)
    _shows(data, finding.text)


def test_exemplars_listed_beside_feature_vis_keep_the_classes_and_the_finding():
    data = ex_section.build(_subject(layers=["conv"]), {**QUICK, "report_sections": ("feature_vis", "exemplars")})
    blocks = data.render()
    assert [type(b) for b in blocks] == [Text, Table, Finding] and blocks[2].ref is blocks[1]
    assert blocks[1].rows[2] == ["conv:2", "10, 11, 12, 13, 14", "5, 5, 5, 5, 5", "c, c, a, b, c"]


def test_exemplars_without_labels_say_so_and_compare_top1_with_kth():
    data = ex_section.build(_subject(labels=False, layers=["conv"]), QUICK)
    assert data.classes is None
    text = _findings(data.render())[0].text
    assert text == ("Whether the channels of conv select a class cannot be said (the dataset gives no class "
                    "labels); the top-1 sample stands furthest above the 5th in channel 1 (20 against 12), "
                    "least in channel 2 (5 against 5).")


def test_dataset_labels_from_targets_labels_and_items():
    class WithTargets(Dataset):
        targets = [3, 1, 2]

        def __len__(self):
            return 3

        def __getitem__(self, i):
            raise AssertionError("labels are read from .targets, not by loading samples")

    class Items(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(3, 4, 4), torch.tensor(7 - i)

    class NoLabels(Dataset):
        labels = [-1, -1, -1]

        def __len__(self):
            return 3

    assert ex_section.dataset_labels(WithTargets(), [0, 2]) == {0: 3, 2: 2}
    assert ex_section.dataset_labels(Items(), [1, -1]) == {1: 6}
    assert ex_section.dataset_labels(NoLabels(), [0, 1]) is None
    assert ex_section.dataset_labels(torch.zeros(3, 3, 4, 4), [0]) is None


def test_exemplars_options_refused_and_not_applicable():
    with pytest.raises(UsageError, match=r"exemplars option k=0: expected a positive integer"):
        ex_section.build(_subject(), {"k": 0})
    with pytest.raises(UsageError, match=r"has no option 'chanels'; closest: 'channels'"):
        ex_section.build(_subject(), {"chanels": 2})
    na = ex_section.build(Subject("x", _Planted(), torch.rand(2, 3, 8, 8)), QUICK)
    assert isinstance(na, NotApplicable)


# --- weights -------------------------------------------------------------------------------------
class _Weighted(nn.Module):
    """conv: kernel k is ``scale[k]`` everywhere (norms sqrt(27) * scale); fc: rows [1,0,0,0], [1,1,0,0],
    [0,0,0,2] (cosines 0.71, 0, 0; norms 1, 1.41, 2)."""

    SCALES = (1.0, 0.01, 2.0, 0.5)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            for k, s in enumerate(self.SCALES):
                self.conv.weight[k].fill_(s)
            self.fc.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 2]]))

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_weights_data_holds_kernel_norms_and_the_heads_most_alike_rows():
    model = _Weighted()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = w_section.build(Subject("w", model, torch.rand(2, 3, 8, 8), labels=["cat", "dog", "car"]), QUICK)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert data.first_conv == "conv" and data.head == "fc" and data.head_role == "classes"
    assert torch.allclose(data.kernel_norms, math.sqrt(27) * torch.tensor(_Weighted.SCALES))
    assert torch.allclose(data.head_norms, torch.tensor([1.0, math.sqrt(2), 2.0]))
    i, j, cos = data.alike
    assert (i, j) == (0, 1) and cos == pytest.approx(1 / math.sqrt(2))
    assert data.table[0][:4] == ["conv", "Conv2d", "4x3x3x3", "108"]
    assert [type(v).__name__ for v in data.views] == ["KernelView", "MatrixView"]
    blocks = data.render()
    assert [type(b) for b in blocks] == [Table, Figure, Figure, Finding, Finding]
    assert [b.caption for b in blocks[1:3]] == ["conv kernels as colour tiles (gray = 0)", "fc weight matrix (rows are classes)"]
    kernel, head = blocks[3], blocks[4]
    assert kernel.ref is blocks[1] and head.ref is blocks[2]
    assert kernel.text == ("1 of the 4 kernels of conv have a norm below 5% of the largest (kernel 1): they barely "
                           "respond to their input; norms from 0.052 to 10.4 (median 3.9), largest: kernels 2, 0, 3.")
    assert head.text == ("In fc, the weight vectors of classes 'cat' and 'dog' are the most alike (cosine 0.71): the "
                         "layer tells these two apart least by direction; row norms range from 1 ('cat') to 2 ('car').")
    back = pickle.loads(pickle.dumps(data))
    assert torch.equal(back.views[0].kernels, data.views[0].kernels) and back.alike == data.alike
    _shows(data, head.text)


def test_weights_finding_without_dead_kernels_and_summarised_matrices():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Flatten(), nn.Linear(6 * 6 * 6, 5))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    data = w_section.build(Subject("w", model, torch.rand(2, 3, 8, 8)), {**QUICK, "readable_cols": 100})
    blocks = data.render()
    kernel = _findings(blocks)[0].text
    assert kernel.startswith("None of the 6 kernels of 0 has a norm below 5% of the largest, so none is dead; "
                             "norms from 5.2 to 5.2")
    view = data.views[-1]
    assert view.summarised and view.name == "2" and data.head_role == "output units"  # 216 columns > 100
    assert any(isinstance(b, Details) for b in blocks)
    assert _findings(blocks)[1].ref.caption.startswith("2: 5x216 is too many cells")


def test_weights_options_refused_in_one_line():
    subject = Subject("w", _Weighted(), torch.rand(2, 3, 8, 8))
    with pytest.raises(UsageError, match=r"weights option near_zero=1.5: expected a fraction in \[0, 1\)"):
        w_section.build(subject, {"near_zero": 1.5})
    with pytest.raises(UsageError, match=r"weights option input_shape=\(0, 4\): expected positive sizes"):
        w_section.WeightsOptions(input_shape=(0, 4))
    with pytest.raises(UsageError, match=r"has no option 'matrix'; closest: 'matrices'"):
        w_section.build(subject, {"matrix": 2})


# --- weight learning -----------------------------------------------------------------------------
def _history(snapshots=True):
    """Two tensors over steps 0, 10, 20, 30, 40: ``fc.weight`` goes from ones to 3 * ones by step 30 and
    stays (change 200%, none in the last quarter); ``hid.weight`` grows linearly from ones to 2 * ones
    (change 100%, 25% of it in the last quarter)."""
    from torchloupe.weights.history import STATS, WeightHistory

    steps = torch.tensor([0, 10, 20, 30, 40])
    t = steps.double() / 40
    fc = torch.stack([torch.ones(2, 4) * (1 + 2 * min(float(s) / 30, 1.0)) for s in steps]).float()
    hid = torch.stack([torch.ones(4, 4) * (1 + float(u)) for u in t]).float()
    snaps = {"hid.weight": hid, "fc.weight": fc}
    stats = torch.zeros(5, 2, len(STATS))
    for n, w in enumerate((hid, fc)):
        stats[:, n, 0] = w.flatten(1).norm(dim=1)
        stats[1:, n, 5] = (w[1:] - w[:-1]).flatten(1).norm(dim=1) / stats[:-1, n, 0]
        stats[0, n, 5] = float("nan")
        stats[:, n, 1] = w.flatten(1).mean(1)
        stats[:, n, 3], stats[:, n, 4] = w.flatten(1).min(1).values, w.flatten(1).max(1).values
    hist = torch.zeros(5, 2, 8)
    hist[..., 0] = 16
    rng = torch.stack([stats[..., 3] - 1, stats[..., 4] + 1], dim=-1)
    return WeightHistory(steps=steps, names=("hid.weight", "fc.weight"), stats=stats, hist=hist, hist_range=rng,
                         snapshot_steps=steps if snapshots else steps[:0],
                         snapshots=snaps if snapshots else {}, every=10, input_shape=(1, 2, 2) if snapshots else None,
                         shapes={"hid.weight": (4, 4), "fc.weight": (2, 4)})


def test_weight_learning_data_holds_how_far_each_tensor_moved():
    h = _history()
    model = nn.Sequential()
    data = wl_section.build(Subject("h", model, torch.rand(2, 4), tracker=h), QUICK)
    assert data.change == pytest.approx({"hid.weight": 1.0, "fc.weight": 2.0})
    assert data.late == pytest.approx({"hid.weight": 0.25, "fc.weight": 0.0})
    assert data.late_from == 30 and data.frames == 12  # quick: at most 12 frames
    assert data.table[1] == ["fc.weight", "8.49", "0.00e+00"]  # 3 * sqrt(8), and still at the end
    blocks = data.render()
    assert isinstance(blocks[0], Text) and "Recorded 5 steps" in blocks[0].text
    assert isinstance(blocks[-1], Finding) and any(isinstance(b, Image) for b in blocks)
    moved = blocks[-2]
    assert isinstance(moved, Table) and blocks[-1].ref is moved
    assert moved.rows == [["hid.weight", "100.0%", "25.0%", "25%"], ["fc.weight", "200.0%", "0.0%", "0%"]]
    text = blocks[-1].text
    assert text == ("fc.weight changed most over training: ‖W_end − W_start‖ is 200.0% of ‖W_start‖ (steps 0 to 40), "
                    "against 100.0% for hid.weight; it has settled: from step 30 to 40 it moved 0.0% of ‖W_start‖, "
                    "0% of its whole change.")
    back = pickle.loads(pickle.dumps(data))
    assert torch.equal(back.history.snapshots["fc.weight"], h.snapshots["fc.weight"]) and back.change == data.change
    _shows(data, text)


def test_weight_learning_says_still_moving_and_what_it_cannot_say():
    h = _history()
    h.snapshots["fc.weight"][-1] *= 0.5  # fc.weight falls back to 1.5 at the end: half its change comes last
    data = wl_section.build(Subject("h", nn.Sequential(), torch.rand(2, 4), tracker=h), {**QUICK, "settled": 0.3})
    assert data.change["fc.weight"] == pytest.approx(0.5) and data.late["fc.weight"] == pytest.approx(1.5)
    text = data.finding()
    assert text.startswith("hid.weight changed most over training: ‖W_end − W_start‖ is 100.0%")
    assert text.endswith("it has settled: from step 30 to 40 it moved 25.0% of ‖W_start‖, 25% of its whole change.")
    data = wl_section.build(Subject("h", nn.Sequential(), torch.rand(2, 4), tracker=h), {**QUICK, "settled": 0.2})
    assert "it is still moving" in data.finding()
    bare = wl_section.build(Subject("h", nn.Sequential(), torch.rand(2, 4), tracker=_history(snapshots=False)), QUICK)
    blocks = bare.render()
    assert bare.change == {} and blocks[-1].ref is blocks[1]  # read off the norms figure
    assert blocks[-1].text == ("Nothing can be said about how far the weights moved over training, because no tensor "
                               "was snapshotted at two steps or more; the largest last update ratio is 1.43e-01 "
                               "(hid.weight).")


def test_weight_learning_options_refused_in_one_line():
    subject = Subject("h", nn.Sequential(), torch.rand(2, 4), tracker=_history())
    with pytest.raises(UsageError, match=r"weight_learning option frames=1: expected an integer >= 2"):
        wl_section.build(subject, {"frames": 1})
    with pytest.raises(UsageError, match=r"weight_learning option last_part=1.5: expected a number > 0 and < 1"):
        wl_section.WeightLearningOptions(last_part=1.5)
    with pytest.raises(UsageError, match=r"has no option 'frame'; closest: 'frames'"):
        wl_section.build(subject, {"frame": 3})


def test_sections_data_through_the_notebook_entry_point():
    data = tl.reporting.section("weights", _Weighted(), torch.rand(2, 3, 8, 8), labels=["cat", "dog", "car"],
                                options={"near_zero": 0.2})
    assert isinstance(data, w_section.WeightsData) and data.near_zero == 0.2
    assert "1 of the 4 kernels of conv have a norm below 20% of the largest" in _findings(data.render())[0].text


def test_a_parallel_report_searches_each_subjects_exemplars_once(monkeypatch, tmp_path):
    """Feature visualization and exemplars share one search through the subject's context; in a
    parallel report both run in one worker process (Section.shares), so the search runs once a subject."""
    import os

    import torchloupe.synthesis as synthesis
    from torchloupe.reporting import build_report, select_sections

    log = tmp_path / "calls.txt"
    real = synthesis.exemplars

    def counted(*args, **kwargs):  # forked workers inherit it; each call is a line with its process
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthesis, "exemplars", counted)
    assert {s.key: s.shares for s in select_sections("feature_vis,exemplars")} == {"feature_vis": "exemplars",
                                                                                  "exemplars": "exemplars"}
    subjects = [_subject(layers=["conv"]), Subject("planted 2", _Planted().eval(), torch.rand(2, 3, 8, 8),
                                                   dataset=_planted_data(True), layers=["conv"])]
    info = build_report(subjects, tmp_path / "r.html", sections=["overview", "feature_vis", "exemplars"],
                        options={"quick": True, "feature_vis": {"steps": 3}}, progress=False, jobs=2)
    assert not info.errors
    assert len(log.read_text().split()) == 2  # one search a subject, not one a section
