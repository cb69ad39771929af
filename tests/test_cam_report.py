"""The report sections "Class activation maps" (50) and "Guided backpropagation / deconvnet" (55)."""

from __future__ import annotations

import torch
from torch import nn

from torchloupe.reporting.base import Figure, NotApplicable, Subject, Table, Text, registered
from tests.helpers import tiny_cnn
from tests.section_blocks import blocks_of


def _sections():
    return {s.key: s for s in registered()}


def test_sections_registered_in_order():
    s = _sections()
    assert (s["cam"].order, s["cam"].title) == (50, "Class activation maps")
    assert (s["saliency"].order, s["saliency"].title) == (55, "Guided backpropagation / deconvnet")


def test_cam_section_shows_every_method_and_the_prediction():
    model = tiny_cnn().eval()
    x = torch.rand(2, 3, 16, 16)
    subject = Subject(name="tiny", model=model, inputs=x, labels=["a", "b", "c", "d"])
    blocks = _sections()["cam"].build(subject, {"quick": False, "seed": 0})
    fig = [b for b in blocks if isinstance(b, Figure)][0].figure
    titles = [t.get_text() for t in fig.axes[0].texts if t.get_rotation() == 0]  # column heads (rows: rotated)
    assert titles == ["input", "CAM", "Grad-CAM", "Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM", "Score-CAM",
                      "Eigen-CAM"]
    table = [b for b in blocks if isinstance(b, Table)][0]
    with torch.no_grad():
        probs = model(x).softmax(1)
    assert [r[1] for r in table.rows] == [["a", "b", "c", "d"][int(i)] for i in probs.argmax(1)]
    assert [r[2] for r in table.rows] == [round(float(p), 4) for p in probs.max(1).values]
    quick = _sections()["cam"].build(subject, {"quick": True, "seed": 0})
    assert any(isinstance(b, Text) and b.text.startswith("Score-CAM skipped") for b in quick)


def test_sections_not_applicable_without_images():
    mlp = nn.Sequential(nn.Linear(4, 3))
    subject = Subject(name="mlp", model=mlp, inputs=torch.rand(2, 4))
    out = _sections()["cam"].build(subject, {"quick": True, "seed": 0})
    assert isinstance(out, NotApplicable) and out.reason == "the inputs are not a batch of images"
    # saliency applies to flat vectors since issue 17: gradients over the features, not a not-applicable line
    out = blocks_of(_sections()["saliency"].build(subject, {"quick": True, "seed": 0}))
    assert not isinstance(out, NotApplicable) and "(4,) inputs" in out[0].caption


def test_saliency_section_columns():
    model = tiny_cnn().eval()
    subject = Subject(name="tiny", model=model, inputs=torch.rand(2, 3, 16, 16))
    blocks = blocks_of(_sections()["saliency"].build(subject, {"quick": True, "seed": 0}))
    fig = blocks[0].figure
    titles = [t.get_text() for t in fig.axes[0].texts if t.get_rotation() == 0]  # column heads (rows: rotated)
    assert titles == ["input", "gradient", "guided backprop", "deconvnet", "guided Grad-CAM"]


def test_cam_layer_follows_the_subjects_layers():
    # `loupe report --layers layer3` used to leave the CAMs on the model's last spatial layer.
    import torchvision

    from torchloupe.reporting.sections.cam import cam_layer

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(1, 3, 64, 64)
    assert cam_layer(Subject("r", model, x), x) == "layer4"
    assert cam_layer(Subject("r", model, x, layers=["layer2", "layer3"]), x) == "layer3"
    assert cam_layer(Subject("r", model, x, layers=["layer3", "fc"]), x) == "layer3"  # fc: not a map
    blocks = _sections()["cam"].build(Subject("r", model, x, images=x, layers=["layer3"]), {"quick": True, "seed": 0})
    assert blocks[0].caption.startswith("Layer layer3;")
