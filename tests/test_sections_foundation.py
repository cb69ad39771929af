"""The feature map (30) and weights (40) report sections on small untrained models."""

from __future__ import annotations

import torch
from torch import nn

from tests.section_blocks import blocks_of
from torchloupe.demo.models import DigitsMLP, ShapesCNN
from torchloupe.reporting.base import Figure, NotApplicable, Subject, Table, registered
from torchloupe.reporting.sections import feature_maps as fm_section
from torchloupe.reporting.sections import weights as w_section
from tests.section_blocks import blocks_of

OPTIONS = {"quick": True, "seed": 0}


def _captions(blocks):
    return [b.caption for b in blocks if isinstance(b, Figure)]


def test_sections_are_registered_in_order():
    sections = {s.key: s for s in registered()}
    assert sections["feature_maps"].order == 30 and sections["weights"].order == 40


def test_feature_maps_of_a_cnn():
    torch.manual_seed(0)
    subject = Subject("cnn", ShapesCNN().eval(), torch.rand(3, 3, 32, 32), labels=list("abcde"),
                      layers=["features.relu1", "features.relu4"])
    blocks = blocks_of(fm_section.build(subject, OPTIONS))
    assert _captions(blocks) == ["features.relu1, sample 0: 12 channels, 16x16", "features.relu4, sample 0: 48 channels, 4x4"]
    assert all(b.figure.axes for b in blocks if isinstance(b, Figure))
    # without layers: up to 3 convolutions spread over the model, first and last included
    subject.layers = None
    assert fm_section._layers(subject) == ["features.conv1", "features.conv3", "features.conv4"]


class _TwoViews(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.both = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x, y):
        return self.both(torch.cat([self.a(x), self.b(y)], 1)).mean((2, 3))


def test_feature_maps_of_a_two_input_model_show_the_input_each_layer_sees(monkeypatch):
    # Beside a layer of the second branch, the second input, not the first; none beside the fused layer.
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    subject = Subject("two views", _TwoViews(), (x, y), images=x, layers=["a", "b", "both"])
    shown = {}
    real = fm_section._figure

    def spy(fm, sample, channels, image):
        shown[fm.layer] = image
        return real(fm, sample, channels, image)

    monkeypatch.setattr(fm_section, "_figure", spy)
    blocks_of(fm_section.build(subject, OPTIONS))
    assert torch.equal(shown["a"], x[0]) and torch.equal(shown["b"], y[0]) and shown["both"] is None


def test_feature_maps_not_applicable_to_an_mlp():
    subject = Subject("mlp", DigitsMLP(), torch.rand(2, 1, 8, 8), layers=["fc1", "fc2"])
    out = fm_section.build(subject, OPTIONS)
    assert isinstance(out, NotApplicable) and "output vectors" in out.reason
    bare = Subject("mlp", nn.Sequential(nn.Linear(3, 2)), torch.rand(2, 3))
    assert isinstance(fm_section.build(bare, OPTIONS), NotApplicable)


def test_weights_of_a_cnn():
    torch.manual_seed(0)
    subject = Subject("cnn", ShapesCNN().eval(), torch.rand(2, 3, 32, 32), labels=list("abcde"))
    blocks = blocks_of(w_section.build(subject, OPTIONS))
    table = blocks[0]
    assert isinstance(table, Table) and [r[0] for r in table.rows][:2] == ["features.conv1", "features.conv2"]
    assert table.rows[0][2] == "12x3x5x5"
    caps = _captions(blocks)
    assert caps == ["features.conv1 kernels as colour tiles (gray = 0)", "fc weight matrix (rows are classes)"]


def test_class_templates_only_for_a_linear_layer_on_the_input():
    labels = [str(i) for i in range(10)]
    linear = Subject("lin", DigitsMLP(hidden=0), torch.rand(2, 1, 8, 8), labels=labels)
    caps = _captions(blocks_of(w_section.build(linear, OPTIONS)))
    assert "class templates: rows of fc.weight reshaped to the input (1, 8, 8)" in caps
    # fc2 of the MLP also has 64 inputs, but they are hidden units, not pixels: no class templates from it
    mlp = Subject("mlp", DigitsMLP(hidden=64), torch.rand(2, 1, 8, 8), labels=labels)
    caps = _captions(blocks_of(w_section.build(mlp, OPTIONS)))
    assert not any(c.startswith("class templates") for c in caps)
    assert any(c.startswith("rows of fc1.weight reshaped") for c in caps)
    assert "fc2 weight matrix (rows are classes)" in caps


def test_weights_not_applicable_without_conv_or_linear():
    out = w_section.build(Subject("id", nn.Sequential(nn.ReLU()), torch.rand(1, 3)), OPTIONS)
    assert isinstance(out, NotApplicable)


class _WithTemperature(_TwoViews):
    def forward(self, x, y, temperature):
        return super().forward(x, y) / temperature


def test_feature_maps_of_a_model_with_a_scalar_argument_still_draw():
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    subject = Subject("scaled", _WithTemperature(), (x, y, torch.tensor(2.0)), images=x, layers=["a", "b"])
    blocks = blocks_of(fm_section.build(subject, OPTIONS))
    assert len(_captions(blocks)) == 2
