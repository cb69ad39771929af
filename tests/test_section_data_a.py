"""The overview, architecture, feature map and saliency sections as data: what they compute (known by
construction), what they draw and conclude from it, their options, pickling and the notebook view."""

from __future__ import annotations

import html
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import tiny_cnn
from tests.report_fixtures import linear_model
from tests.section_blocks import blocks_of
from torchloupe.errors import UsageError
from torchloupe.reporting.base import Figure, Finding, Html, NotApplicable, Subject, Table, Text
from torchloupe.reporting.sections import architecture, feature_maps, overview, saliency


def _findings(blocks):
    return [b for b in blocks if isinstance(b, Finding)]


def _shows(data, *texts):
    """The notebook view holds every text (escaped as the page writes it)."""
    page = data._repr_html_()
    for t in texts:
        assert html.escape(t) in page, t
    return page


# ---- overview ----------------------------------------------------------------------------------
def _overview_subject(**kw):
    # e_0 -> logits (2, 1, 0): p = 66.5 / 24.5 / 9.0 %; 2 e_1 -> (0, 4, 2): class 1 at 86.7 %
    x = torch.zeros(2, 1, 2, 2)
    x[0, 0, 0, 0], x[1, 0, 0, 1] = 1.0, 1.0
    model = linear_model()
    with torch.no_grad():
        model[1].weight[:, 1] *= 2
    return Subject("lin", model, x, labels=["a", "b", "c"], targets=torch.tensor([0, 2]), **kw)


def test_overview_data_holds_the_softmax_top_k_of_every_input():
    data = overview.build(_overview_subject(), {"cards": 1, "top_k": 2})
    want = torch.softmax(torch.tensor([[2.0, 1, 0], [0, 4, 2]]), 1).topk(2, dim=1)
    assert torch.allclose(data.top_p, want.values) and torch.equal(data.top_i, want.indices)
    assert (data.model, data.params, data.trainable, data.input, data.output) == ("Sequential", 15, 15, "(2, 1, 2, 2)",
                                                                                  "(2, 3)")
    assert data.targets.tolist() == [0, 2] and data.classes == 3
    assert (data.n, data.shown, data.names) == (2, 1, ["input 0"]) and data.images.shape == (1, 1, 2, 2)


def test_overview_renders_cards_and_concludes_from_all_inputs():
    data = overview.build(_overview_subject(), {"cards": 1})
    blocks = blocks_of(data)
    assert [type(b) for b in blocks] == [Table, Html, Text, Finding]
    assert blocks[0].rows == [["Sequential", 15, 15, "(2, 1, 2, 2)", "(2, 3)", "cpu / float32"]]
    assert blocks[1].markup.count('class="card"') == 1 and blocks[1].markup.count("<li>") == 3  # top 3 of one card
    assert blocks[2].text == "Showing the first 1 of 2 inputs."
    text = "Top-1 correct on 1 of 2 inputs (predicted: a, b); least confident: input 0, a at 66.5%."
    assert blocks[3] == Finding(text, blocks[1])
    page = _shows(pickle.loads(pickle.dumps(data)), text)
    assert "<img" in page  # the thumbnail


def test_overview_without_class_scores_keeps_the_model_table_and_says_why():
    data = overview.build(_overview_subject(), {"output": "values"})
    assert data.top_p is None and data.no_predictions == ("The output (2, 3) holds values, not class scores, so no "
                                                          "predictions are listed.")
    assert [type(b) for b in blocks_of(data)] == [Table, Text]


def test_overview_options_are_checked():
    subject = _overview_subject()
    with pytest.raises(UsageError, match=r"^overview option cards=0: expected a positive integer or None$"):
        overview.build(subject, {"cards": 0})
    with pytest.raises(UsageError, match=r"^overview option output='logits': expected one of classes, values or None$"):
        overview.build(subject, {"output": "logits"})
    with pytest.raises(UsageError, match=r"section 'overview' has no option 'card'; closest: 'cards'"):
        overview.build(subject, {"card": 3})
    assert overview.OverviewOptions(quick=True).card_limit == 12 and overview.OverviewOptions().card_limit == 24


# ---- architecture ------------------------------------------------------------------------------
class _Fused(nn.Module):
    """Two inputs fused by one cat (late: both arguments come through a learned layer), then one residual add."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)  # 112 parameters
        self.b = nn.Conv2d(3, 4, 3, padding=1)  # 112
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())  # 584
        self.head = nn.Linear(8, 2)  # 18

    def forward(self, x, y):
        h = torch.cat([self.a(x), self.b(y)], 1)
        h = h + self.block(h)
        return self.head(h.mean((2, 3)))


def test_architecture_data_counts_parameters_and_joins():
    model = _Fused()
    data = architecture.build(Subject("fused", model, (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))), {})
    assert data.graph.total_params == sum(p.numel() for p in model.parameters()) == 826
    assert data.weighted == [("block.0", "Conv2d", 584), ("a", "Conv2d", 112), ("b", "Conv2d", 112),
                             ("head", "Linear", 18)]
    assert data.groups == [("block", 584), ("a", 112), ("b", 112), ("head", 18)]
    assert [(n.type, n.join, n.fusion) for n in data.graph.fusion_points] == [("cat", "input", "late")]
    assert [(n.type, n.join) for n in data.graph.residuals] == [("add", "residual")]
    blocks = blocks_of(data)
    graph, table = blocks[1], next(b for b in blocks if isinstance(b, Table))
    assert isinstance(graph, Html) and [r[0] for r in table.rows] == ["a", "b", "block", "head"]
    params, joins = _findings(blocks)
    assert params == Finding("_Fused has 826 parameters in 4 layers with weights; the largest layer, block.0 (Conv2d), "
                             "holds 584 (71%).", table)
    assert joins == Finding("_Fused fuses separate inputs at 1 point, cat (late fusion); its 1 residual add is a "
                            "residual connection, not fusion.", graph)
    page = _shows(pickle.loads(pickle.dumps(data)), params.text, joins.text)
    assert 'class="tl-root"' in page and "<svg" in page  # the graph (drawn inline, not as an image)


def test_architecture_says_which_top_level_module_holds_most_parameters():
    model = tiny_cnn()
    data = architecture.build(Subject("cnn", model, torch.rand(2, 3, 16, 16)), {})
    total = sum(p.numel() for p in model.parameters())
    features = sum(p.numel() for p in model.features.parameters())
    name, layer = max(((n, m) for n, m in model.named_modules() if n and not list(m.children())),
                      key=lambda nm: sum(p.numel() for p in nm[1].parameters()))
    count = sum(p.numel() for p in layer.parameters())
    assert features > count and name.startswith("features.")
    (params, joins) = _findings(blocks_of(data))
    assert params.text == (f"TinyCNN has {total:,} parameters in 5 layers with weights; features holds "
                           f"{round(100 * features / total)}% of them, and its largest layer, {name} "
                           f"({type(layer).__name__}), alone holds {round(100 * count / total)}% ({count:,}).")
    assert joins.text.startswith("TinyCNN has no residual connection and no fusion point:")


def test_architecture_of_a_model_without_parameters_and_residual_only_models():
    data = architecture.build(Subject("relu", nn.ReLU(), torch.rand(2, 3)), {})
    assert _findings(blocks_of(data))[0].text == ("ReLU has no parameters: nothing it computes was learned, so there is "
                                                  "no weight to inspect.")

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(3, 3)

        def forward(self, x):
            return x + self.f(x)

    data = architecture.build(Subject("res", Res(), torch.rand(2, 3)), {})
    assert [f.text for f in _findings(blocks_of(data))] == [
        "Res has 12 parameters in 1 layer with weights, all in f (Linear).",
        "Res fuses nothing: its only join is 1 residual add (a tensor meeting a learned function of itself), and no "
        "separate inputs or branches meet."]


def test_architecture_options():
    subject = Subject("cnn", tiny_cnn(), torch.rand(1, 3, 16, 16))
    assert architecture.build(subject, {"depth": 0}).depth == 0
    with pytest.raises(UsageError, match=r"^architecture option boxes=0: expected a positive integer$"):
        architecture.build(subject, {"boxes": 0})
    with pytest.raises(UsageError, match=r"^architecture option depth=-1: expected None \(fit boxes\) or an integer >= 0$"):
        architecture.build(subject, {"depth": -1})
    with pytest.raises(UsageError, match=r"section 'architecture' has no option 'box'; closest: 'boxes'"):
        architecture.build(subject, {"box": 3})


# ---- feature maps ------------------------------------------------------------------------------
def _planted(x_scale: float = 1.0) -> nn.Module:
    """A 1x1 convolution to 4 channels: ch 0 = x, ch 1 = 2x (the strongest), ch 2 = 0 (dead), ch 3 = 0.001x."""
    conv = nn.Conv2d(1, 4, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2.0, 0.0, 0.001]).reshape(4, 1, 1, 1) * x_scale)
        conv.bias.zero_()
    return nn.Sequential(conv, nn.ReLU())


def test_feature_maps_count_the_planted_dead_and_quiet_channels():
    x = torch.rand(5, 1, 4, 4)
    data = feature_maps.build(Subject("planted", _planted(), x, layers=["0"]), {})
    (layer,) = data.layers
    peak = float(x.max())
    assert torch.allclose(layer.peaks, torch.tensor([peak, 2 * peak, 0.0, 0.001 * peak]))
    assert layer.silent == [2, 3] and layer.strongest == 1 and data.inputs == 5
    assert layer.maps.maps.shape == (1, 4, 4, 4) and torch.allclose(layer.maps.maps[0, 1], 2 * x[0, 0])
    blocks = blocks_of(data)
    fig, finding = blocks
    assert isinstance(fig, Figure) and fig.caption == "0, sample 0: 4 channels, 4x4"
    text = (f"0: 2 of 4 channels stay silent on these 5 inputs (ch 2, 3: 1 exactly zero, the others at most 1% of "
            f"that peak) against a peak of {2 * peak:.3g} on ch 1: filters that pass nothing on here, dead or unused "
            f"by these inputs.")
    assert finding == Finding(text, fig)
    page = _shows(pickle.loads(pickle.dumps(data)), text)
    assert "<img" in page
    # the peaks read the first `inputs` inputs only; quiet=0 counts only the exactly zero channel
    data = feature_maps.build(Subject("planted", _planted(), x, layers=["0"]), {"inputs": 2, "quiet": 0.0})
    assert data.inputs == 2 and float(data.layers[0].peaks[1]) == pytest.approx(2 * float(x[:2].max()))
    assert data.layers[0].silent == [2]
    assert "(ch 2: exactly zero)" in _findings(blocks_of(data))[0].text


def test_feature_maps_of_live_channels_and_of_a_layer_that_is_all_zero():
    x = torch.rand(3, 1, 4, 4)
    data = feature_maps.build(Subject("live", _planted(), x, layers=["0"]), {"quiet": 0.0001})
    peak = float(x.max())
    assert data.layers[0].silent == [2]  # 0.001x is above 0.01% of 2x
    assert "(ch 2: exactly zero)" in _findings(blocks_of(data))[0].text
    model = _planted(0.0)
    text = _findings(blocks_of(feature_maps.build(Subject("zero", model, x, layers=["1"]), {})))[0].text
    assert text == "1: all 4 channels are exactly zero on these 3 inputs, so this layer passes nothing on for them."
    live = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        live.weight.copy_(torch.tensor([1.0, 0.5]).reshape(2, 1, 1, 1))
        live.bias.zero_()
    text = _findings(blocks_of(feature_maps.build(Subject("live", nn.Sequential(live), x), {"samples": 2})))[-1].text
    assert text == (f"0: all 2 channels respond on these 3 inputs; the strongest, ch 0, peaks at {peak:.3g}, the "
                    f"weakest, ch 1, at {0.5 * peak:.3g} (50% of it).")
    assert [feature_maps._percent(p) for p in (0.5, 0.0968, 0.013, 0.0005)] == ["50%", "9.7%", "1.3%", "0.05%"]


def test_feature_maps_options():
    subject = Subject("planted", _planted(), torch.rand(2, 1, 4, 4), layers=["0"])
    assert feature_maps.build(subject, {"quick": True}).tiles == 8
    assert feature_maps.build(subject, {"channels": 3}).tiles == 3
    assert len([b for b in blocks_of(feature_maps.build(subject, {"samples": 2})) if isinstance(b, Figure)]) == 2
    with pytest.raises(UsageError, match=r"^feature_maps option quiet=1.5: expected a fraction in \[0, 1\)$"):
        feature_maps.build(subject, {"quiet": 1.5})
    with pytest.raises(UsageError, match=r"^feature_maps option samples=0: expected a positive integer$"):
        feature_maps.build(subject, {"samples": 0})
    with pytest.raises(UsageError, match=r"section 'feature_maps' has no option 'channel'; closest: 'channels'"):
        feature_maps.build(subject, {"channel": 3})
    empty = feature_maps.build(Subject("empty", _planted(), torch.rand(0, 1, 4, 4), layers=["0"]), {})
    assert isinstance(empty, NotApplicable) and empty.reason.startswith("the batch is empty")
    convs = nn.Sequential(*[nn.Conv2d(1, 1, 1) for _ in range(7)])
    assert feature_maps._layers(Subject("c", convs, torch.rand(1, 1, 4, 4)), 4) == ["0", "2", "4", "6"]


# ---- saliency ----------------------------------------------------------------------------------
def _region_model() -> nn.Module:
    """Flatten + Linear on (1, 8, 8) images: class 0's weights are 1 on rows 2..5 x cols 2..3, 3 on rows 2..5 x
    cols 4..5 and 0 elsewhere; its bias of 10 makes it the prediction. Its gradient is those weights."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    w = torch.zeros(8, 8)
    w[2:6, 2:4], w[2:6, 4:6] = 1.0, 3.0
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0] = w.flatten()
        model[1].bias.copy_(torch.tensor([10.0, 0.0]))
    return model


def test_saliency_share_on_a_planted_object_mask():
    x = torch.rand(3, 1, 8, 8)
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 2:5] = True  # 12 of 64 pixels: all the 1-weights (8) and half the 3-weights (4 x 3)
    data = saliency.build(Subject("region", _region_model(), x, masks=masks), {})
    assert data.kind == "images" and list(data.columns) == ["gradient", "guided backprop", "deconvnet"]
    w = _region_model()[1].weight[0].detach().reshape(1, 1, 8, 8).expand(3, 1, 8, 8)
    assert all(torch.equal(v, w) for v in data.columns.values())
    assert torch.allclose(data.mask_share, torch.full((3,), 12 / 64))
    for v in data.inside.values():
        assert torch.allclose(v, torch.full((3,), 20 / 32))  # (8 x 1 + 4 x 3) / (8 x 1 + 8 x 3)
    assert torch.allclose(data.agreement, torch.ones(3, 3))
    blocks = blocks_of(data)
    fig = blocks[0]
    assert isinstance(fig, Figure) and fig.caption.startswith("Gray = 0;")
    assert any(isinstance(b, Text) and b.text.startswith("guided Grad-CAM does not apply") for b in blocks)
    agree, on_object = _findings(blocks)
    assert agree == Finding("The 3 saliency methods agree closely on which pixels matter: mean pairwise correlation "
                            "of their absolute maps 1.00 over 3 inputs; guided backprop and deconvnet are exactly the "
                            "plain gradient here (no rectifier to guide), which is why they agree with it.", fig)
    assert on_object == Finding("The object masks cover 19% of the image on average and hold this share of the "
                                "saliency over 3 images: gradient 62%, guided backprop 62%, deconvnet 62%; gradient "
                                "is the most on the object (3.3x its area).", fig)
    _shows(pickle.loads(pickle.dumps(data)), agree.text, on_object.text)
    # masks of another size are resized to the maps (nearest): the same numbers
    big = masks.repeat_interleave(2, 1).repeat_interleave(2, 2)
    again = saliency.build(Subject("region", _region_model(), x, masks=big), {})
    assert torch.allclose(again.inside["gradient"], data.inside["gradient"])
    # a mask off the object: no more saliency on it than chance
    off = torch.zeros(3, 8, 8, dtype=torch.bool)
    off[:, 6:, :] = True
    text = _findings(blocks_of(saliency.build(Subject("region", _region_model(), x, masks=off), {})))[1].text
    assert text.endswith("gradient 0%, guided backprop 0%, deconvnet 0%; gradient is the most on the object (0.0x its "
                         "area), gradient and guided backprop and deconvnet no more than the area gives by chance.")


def test_saliency_agreement_is_the_mean_pearson_correlation_of_absolute_maps():
    model = tiny_cnn().eval()
    x = torch.rand(3, 3, 16, 16)
    data = saliency.build(Subject("tiny", model, x), {"images": 2})
    assert len(data.targets) == 2 and list(data.columns) == ["gradient", "guided backprop", "deconvnet",
                                                             "guided Grad-CAM"]
    assert data.mask_share is None and not data.inside
    maps = {k: v.abs().sum(1).reshape(2, -1).double().numpy() for k, v in data.columns.items()}
    names = list(maps)
    ref = np.array([[np.mean([np.corrcoef(maps[a][i], maps[b][i])[0, 1] for i in range(2)]) for b in names]
                    for a in names])
    assert np.allclose(data.agreement.numpy(), ref, atol=1e-5)
    off = ref[~np.eye(4, dtype=bool)].mean()
    text = _findings(blocks_of(data))[0].text
    assert f"mean pairwise correlation of their absolute maps {off:.2f} over 2 inputs" in text
    page = _shows(pickle.loads(pickle.dumps(data)), text)
    assert "<img" in page


def test_saliency_of_vectors_concludes_over_features():
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    data = saliency.build(Subject("mlp", model, torch.rand(4, 5)), {})
    assert data.kind == "vectors" and data.shape == (5,)
    text = _findings(blocks_of(data))[0].text
    assert text.startswith("The 3 saliency methods") and "on which inputs matter" in text


def test_saliency_options():
    subject = Subject("tiny", tiny_cnn().eval(), torch.rand(3, 3, 16, 16))
    with pytest.raises(UsageError, match=r"^saliency option images=0: expected a positive integer$"):
        saliency.build(subject, {"images": 0})
    with pytest.raises(UsageError, match=r"section 'saliency' has no option 'image'; closest: 'images'"):
        saliency.build(subject, {"image": 2})
