"""What a reviewer found trying the sections on models we did not write: each case as it was met."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchloupe as tl
from torchloupe.errors import UsageError
from torchloupe.reporting import ReportOptions, Subject, build_report, section
from torchloupe.reporting.sections.cam import CamOptions
from torchloupe.reporting.sections.quality import RANDOM, MethodScores, QualityOptions, judge

from tests.helpers import assert_same_state, model_state, tiny_cnn


class TwoBranch(nn.Module):  # docs/guide/cam.md: an RGB branch and a depth branch, fused late
    def __init__(self):
        super().__init__()
        self.cnn1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.cnn2 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, 3)

    def forward(self, x1, x2):
        return self.fc(torch.cat((self.cnn1(x1), self.cnn2(x2)), dim=1))


def test_the_cam_layer_of_a_two_input_model_is_one_the_explained_input_reaches():
    torch.manual_seed(0)
    model = TwoBranch().eval()
    x1, x2 = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 20, 20)
    before = model_state(model)
    # the last spatial layer of the whole model is the depth branch's: it never sees x1
    assert tl.cam.default_layer(model, (x1, x2), wrt=0)[0] == "cnn1.1"
    assert tl.cam.default_layer(model, (x1, x2), wrt=1)[0] == "cnn2.1"
    cams = section("cam", model, (x1, x2), options={"methods": ["gradcam"]})
    assert cams.layer == "cnn1.1" and cams.results["Grad-CAM"].maps.shape == (2, 32, 32)
    assert_same_state(before, model_state(model))


def test_a_pooler_of_a_model_without_class_scores_is_not_called_a_classifier():
    class Encoder(nn.Module):  # BERT's shape: hidden states and a pooled vector, no class scores
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(6, 6)
            self.pooler = nn.Linear(6, 4)

        def forward(self, x):
            h = self.dense(x)
            return {"last_hidden_state": h, "pooler_output": self.pooler(h)}

    torch.manual_seed(0)
    data = section("weights", Encoder().eval(), torch.rand(3, 6))
    assert data.head == "pooler" and data.head_role == "output units"
    roles = {v.name: v.role for v in data.views if hasattr(v, "role")}
    assert roles["pooler"] != "head"
    text = " ".join(f.text for f in data.render() if type(f).__name__ == "Finding")
    assert "classes" not in text and "class " not in text and "unit " in text
    # the same layer under a model that gives 4 class scores is the head
    mlp = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 4)).eval()
    assert section("weights", mlp, torch.rand(3, 6)).head_role == "classes"


def test_a_head_whose_rows_all_point_apart_says_so():
    mlp = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).eval()
    with torch.no_grad():
        mlp[2].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.1]]))
    data = section("weights", mlp, torch.rand(3, 2))
    finding = [f.text for f in data.render() if type(f).__name__ == "Finding"][-1]
    assert finding.startswith("In 2, no two weight vectors point alike: the closest pair, class 0 and class 1, has "
                              "cosine -1.00")


def test_two_subjects_with_one_name_are_refused(tmp_path):
    model = tiny_cnn(0)
    with pytest.raises(UsageError, match="two subjects are named 'net'; give each its own name"):
        build_report([Subject("net", model, torch.rand(2, 3, 16, 16)), Subject("net", model, torch.rand(2, 3, 16, 16))],
                     tmp_path / "r.html", sections=["overview"], progress=False)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("make, message", [
    (lambda: CamOptions(quick="no"), "option quick='no': expected True or False"),
    (lambda: ReportOptions(quick=1), "option quick=1: expected True or False"),
    (lambda: CamOptions(precision="fp8"), "precision 'fp8' is not one of: fp32, bf16, fp16"),
    (lambda: CamOptions(seed="1"), "option seed='1': expected an integer"),
    (lambda: ReportOptions(sections=["cam"]), r"report option sections=\['cam'\]: expected a dict of section options"),
    (lambda: section("cam", tiny_cnn(0), torch.rand(2, 3, 16, 16), options={"imagse": 1}),
     "options: section 'cam' has no option 'imagse'; closest: 'images'"),
])
def test_common_option_values_are_checked_where_they_are_made(make, message):
    with pytest.raises(UsageError, match=message):
        make()


def test_a_subjects_options_for_an_unknown_section_are_refused_before_any_section_runs(tmp_path):
    subject = Subject("m", tiny_cnn(0), torch.rand(2, 3, 16, 16), options={"camm": {"images": 1}})
    with pytest.raises(UsageError, match="subject 'm': options for unknown section 'camm'; closest: 'cam'"):
        build_report([subject], tmp_path / "r.html", sections=["overview"], progress=False)
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(UsageError, match="subject 'm': section 'cam' has no option 'image'; closest: 'images'"):
        ReportOptions().check_subject(Subject("m", tiny_cnn(0), None, options={"cam": {"image": 1}}))


def _scores(best: float, random: float) -> list[MethodScores]:
    return [MethodScores("A", None, 0.5, best, None, 1.0), MethodScores("B", None, 0.5, best - 0.05, None, 1.0),
            MethodScores(RANDOM, None, 0.5, random, None, None)]


@pytest.mark.parametrize("best, random, marked", [(0.111, 0.110, False), (0.135, 0.110, True), (0.120, 0.121, False)])
def test_a_best_is_marked_only_when_it_beats_random_maps_by_the_margin(best, random, marked):
    t = judge(_scores(best, random), images=8, steps=24, sanity_images=2, groups=4, options=QualityOptions())
    if marked:
        assert t.best["insertion AUC"] == ("A",)
    else:
        assert t.best["insertion AUC"] == () and "insertion AUC" in t.undecided
        assert "random maps" in t.undecided["insertion AUC"]
    wider = judge(_scores(0.135, 0.110), images=8, steps=24, sanity_images=2, groups=4,
                  options=QualityOptions(margin=0.05))
    assert wider.best["insertion AUC"] == () and "come within 0.05 of the best method (0.135)" in wider.undecided["insertion AUC"]
    with pytest.raises(UsageError, match="quality option margin=1.5: expected a score difference in"):
        QualityOptions(margin=1.5)


def _texts(data, kind):
    return [b.text for b in data.render() if type(b).__name__ == kind]


def test_true_classes_that_do_not_fit_are_said_not_used_and_the_finding_reads_plainly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 0.0, 1.0]))  # every input: class 2
    x = torch.rand(2, 3, 2, 2)
    few = section("overview", model, x, targets=[0, 1, 2])
    assert "3 true classes were given for 2 inputs, so they are not used." in _texts(few, "Text")
    assert _texts(few, "Finding") == ["Predicts class 2 for all 2 inputs; least confident: input 0, class 2 at 57.6%."]
    outside = section("overview", model, x, targets=[7, 1])
    assert ("True class 7 is outside the 3 classes the model scores, so the true classes are not used."
            in _texts(outside, "Text"))
    right = section("overview", model, x, targets=[2, 1])
    assert _texts(right, "Finding")[0].startswith("Top-1 correct on 1 of 2 inputs")


def test_feature_visualization_of_a_layer_whose_name_has_a_space():
    model = nn.Sequential()
    model.add_module("stem conv", nn.Conv2d(3, 4, 3, padding=1))
    model.add_module("relu", nn.ReLU())
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(4, 2))
    data = section("feature_vis", model.eval(), torch.rand(2, 3, 16, 16), layers=["stem conv"],
                   options={"quick": True, "steps": 4})
    assert [r[0] for r in data.result.rows()] == [f"stem conv:{c}" for c in range(3)]


def test_quality_on_a_two_input_model_says_why_it_does_not_apply():
    from torchloupe.errors import UnsupportedModelError

    torch.manual_seed(0)
    with pytest.raises(UnsupportedModelError, match="the quality measures perturb one image batch, and this model "
                                                    "takes 2 inputs"):
        section("quality", TwoBranch().eval(), (torch.rand(2, 3, 32, 32), torch.rand(2, 1, 20, 20)))


def test_views_over_every_input_do_not_say_which_input_they_explain():
    import warnings

    from torchloupe.inputs import _SAID

    _SAID.clear()  # the warning is said once per process: a test before this one may have said it
    torch.manual_seed(0)
    model, xs = TwoBranch().eval(), (torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # activations and fusion shares single out no input
        tl.probe.activations(model, xs, ["cnn1.0", "cnn2.0"])
        tl.fusion.contributions(model, xs, {"rgb": "cnn1", "depth": "cnn2"}, method="exact")
    with pytest.warns(UserWarning, match="explaining input 0, the first floating-point input"):
        tl.cam.GradCAM(model, "cnn1.0")(xs)  # an attribution explains one input: it says which


def test_a_typo_in_a_typed_options_class_names_the_closest_field():
    with pytest.raises(UsageError, match="CamOptions has no option 'imagse'; closest: 'images'"):
        CamOptions(imagse=1)
    with pytest.raises(UsageError, match="ReportOptions has no option 'quik'; closest: 'quick'"):
        ReportOptions(quik=True)
    with pytest.raises(UsageError, match="QualityOptions has no option 'treshold'; closest: 'threshold'"):
        QualityOptions(treshold=0.4)


def test_feature_maps_before_a_relu_say_which_channels_are_never_above_zero():
    """The section shows conv outputs before their ReLU by default: a channel whose output is always
    negative 'responds' there but passes nothing after the ReLU; the finding says so."""
    conv = nn.Conv2d(1, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1, 1))
        conv.bias.copy_(torch.tensor([0.0, -0.1, 0.0]))  # inputs in [0, 1): ch 0 >= 0, ch 1 < 0, ch 2 == 0
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()
    data = section("feature_maps", model, torch.rand(2, 1, 8, 8), layers=["0"])
    (layer,) = data.layers
    assert layer.silent == [2] and layer.negative == [1]
    assert _texts(data, "Finding")[0].endswith(
        "dead or unused by these inputs; 1 other channel is never above zero (ch 1): after a ReLU it passes "
        "nothing either.")
    after = section("feature_maps", model, torch.rand(2, 1, 8, 8), layers=["1"])  # after the ReLU: both silent
    assert after.layers[0].silent == [1, 2] and after.layers[0].negative == []


def test_a_strongest_channel_that_is_never_above_zero_is_said_to_be_below_zero():
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
        conv.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)).eval()
    x = torch.rand(2, 1, 4, 4) * 0.5 + 0.5  # in [0.5, 1): ch 0 in [0.5, 1), ch 1 in (-2, -1]
    text = _texts(section("feature_maps", model, x, layers=["0"]), "Finding")[0]
    assert text.startswith("0: all 2 channels respond on these 2 inputs; the strongest, ch 1 (below zero), peaks at ")
    assert text.endswith("1 other channel is never above zero (ch 1): after a ReLU it passes nothing either.")
