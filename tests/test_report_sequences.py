"""Sequence and vector models in the report (issue 17, item 4): a 784-128-64-10 MLP on flattened
28x28 inputs and a Conv1d model on (B, 10, 300) sequences get the sections that apply, flat vectors
that hold images drawn as images, sequences as maps over steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchloupe.reporting.base import Figure, NotApplicable, Subject
from tests.section_blocks import blocks_of


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 128), nn.Linear(128, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(10, 16, 3, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):  # (B, 10, 300)
        return self.fc(F.relu(self.conv(x)).mean(-1))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _image_arrays(fig):
    return [im.get_array() for ax in fig.axes for im in ax.images]


def test_mlp_saliency_is_drawn_as_28x28_images_and_equals_the_gradient(monkeypatch):
    from torchloupe import saliency
    from torchloupe.render import cam as draw
    from torchloupe.reporting.sections import saliency as section

    torch.manual_seed(0)
    model, x = MLP(), torch.rand(3, 784)
    drawn = {}
    real = draw.plot_saliency

    def spy(images, columns, **kw):
        drawn.update(images=images, columns=columns)
        return real(images, columns, **kw)

    monkeypatch.setattr(draw, "plot_saliency", spy)
    blocks = blocks_of(section.build(Subject("mlp", model, x), {"quick": True, "seed": 0}))
    assert not isinstance(blocks, NotApplicable)
    fig = blocks[0]
    assert isinstance(fig, Figure) and "28x28 images" in fig.caption
    t = model(x).argmax(1)
    g = saliency.gradient(model, x, t)
    # the gradient is computed on the flat input and is exactly the float64 reference's
    xd = x.double().requires_grad_(True)
    md = MLP().double()
    md.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    ref = torch.autograd.grad(md(xd).gather(1, t[:, None]).sum(), xd)[0]
    assert torch.allclose(g.double(), ref, atol=1e-7)
    assert torch.equal(drawn["images"], x.reshape(3, 1, 28, 28))  # in [0, 1]: drawn as they are
    assert torch.equal(drawn["columns"]["gradient"], g.reshape(3, 1, 28, 28))
    assert list(drawn["columns"]) == ["gradient", "guided backprop", "deconvnet"]


def test_sequence_saliency_is_a_map_over_steps_with_the_conv1d_channels():
    from torchloupe import saliency
    from torchloupe.reporting.sections import saliency as section

    torch.manual_seed(0)
    model, x = Seq(), torch.randn(2, 10, 300)
    blocks = blocks_of(section.build(Subject("seq", model, x), {"quick": True, "seed": 0}))
    fig = blocks[0]
    assert "input channels (rows) over steps" in fig.caption
    arrays = _image_arrays(fig.figure)
    assert [a.shape for a in arrays] == [(10, 300)] * 3  # gradient, guided backprop, deconvnet of sample 0
    t = model(x).argmax(1)
    assert torch.allclose(torch.as_tensor(arrays[0].data), saliency.gradient(model, x, t)[0].float())
    labels = [ax.get_xlabel() for ax in fig.figure.axes if ax.get_xlabel()]
    assert labels == ["step (300)"]


def test_sequence_feature_maps_are_one_heat_map_channels_by_steps():
    from torchloupe.reporting.sections import feature_maps as section

    torch.manual_seed(0)
    model, x = Seq(), torch.randn(2, 10, 300)
    blocks = blocks_of(section.build(Subject("seq", model, x), {"quick": True, "seed": 0}))
    fig = blocks[0]
    assert "16 channels over 300 steps" in fig.caption
    (a,) = [a for a in _image_arrays(fig.figure)]
    assert a.shape == (16, 300)
    assert torch.allclose(torch.as_tensor(a.data), model.conv(x[:1])[0].detach(), atol=1e-6)


def test_flat_synthesized_inputs_are_drawn_as_images():
    from torchloupe.render.synthesis import _show
    from torchloupe.render.figures import new_figure

    fig = new_figure(2, 2)
    ax = fig.add_subplot()
    v = torch.linspace(0, 1, 784)
    _show(ax, v)
    (a,) = _image_arrays(fig)
    assert a.shape[:2] == (28, 28) and abs(float(a[0, 1]) - float(v[1])) < 1e-6 and abs(float(a[1, 0]) - float(v[28])) < 1e-6


def test_image_shape_of_flat_vectors():
    from torchloupe.render.image import image_shape

    assert image_shape(784) == (1, 28, 28)
    assert image_shape(3 * 32 * 32) == (3, 32, 32)
    assert image_shape(300) is None and image_shape(9) is None
    assert image_shape(784, (1, 28, 28)) == (1, 28, 28) and image_shape(784, (4, 14, 14)) == (1, 28, 28)


def test_conv1d_feature_vis_picks_the_conv_and_draws_channels_by_steps():
    from tests.section_blocks import blocks_of
    from torchloupe.reporting.sections import feature_vis as section

    torch.manual_seed(0)
    model, x = Seq(), torch.randn(2, 10, 300)
    blocks = blocks_of(section.build(Subject("seq", model, x), {"quick": True, "seed": 0}))
    fig = blocks[0]
    assert fig.caption.startswith("conv: channels 0..2") and "input channels x steps" in fig.caption
    arrays = _image_arrays(fig.figure)
    assert [a.shape for a in arrays] == [(10, 300)] * 3
    assert {ax.get_ylabel() for ax in fig.figure.axes if ax.images} == {"channel"}
    reached = [float(r[1]) for r in blocks[1].rows]
    random = [float(r[2]) for r in blocks[1].rows]
    assert all(a > b for a, b in zip(reached, random))  # each unit driven above the best random input
