"""Static weights: kernels, fully connected matrices, class templates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchloupe as tl
from torchloupe.errors import InputShapeError, UnsupportedModelError
from torchloupe.weights.static import TemplateShapeError, class_templates, fc_matrix, kernels


def test_kernels_are_detached_copies_of_the_weight():
    conv = nn.Conv2d(3, 4, 5)
    k = kernels(conv)
    assert k.shape == (4, 3, 5, 5) and torch.equal(k, conv.weight)
    assert not k.requires_grad
    k.zero_()
    assert conv.weight.abs().sum() > 0  # the module is untouched
    assert kernels(nn.Conv1d(2, 6, 3)).shape == (6, 2, 3)
    assert kernels(nn.Conv2d(4, 8, 3, groups=2)).shape == (8, 2, 3, 3)
    assert torch.equal(kernels(conv.weight), conv.weight)


def test_transposed_convolution_kernels_are_output_first():
    deconv = nn.ConvTranspose2d(3, 5, 2)  # weight stored (in=3, out=5, 2, 2)
    k = kernels(deconv)
    assert k.shape == (5, 3, 2, 2)
    assert torch.equal(k[4, 1], deconv.weight[1, 4])


def test_kernels_of_a_non_convolution_is_a_clear_error():
    with pytest.raises(UnsupportedModelError, match="got Linear"):
        kernels(nn.Linear(3, 4))


def test_fc_matrix():
    lin = nn.Linear(6, 2)
    assert torch.equal(fc_matrix(lin), lin.weight) and not fc_matrix(lin).requires_grad
    one = nn.Conv2d(6, 3, 1)
    assert torch.equal(fc_matrix(one), one.weight[:, :, 0, 0])
    with pytest.raises(UnsupportedModelError, match="got Conv2d"):
        fc_matrix(nn.Conv2d(6, 3, 3))
    with pytest.raises(UnsupportedModelError, match=r"a tensor of shape \(2, 3, 4\)"):
        fc_matrix(torch.zeros(2, 3, 4))


def test_class_templates_are_rows_reshaped():
    lin = nn.Linear(12, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(24.0).view(2, 12))
    t = class_templates(lin, (3, 2, 2))
    assert t.shape == (2, 3, 2, 2)
    assert t[1, 0, 0, 0] == 12.0 and t[0, 2, 1, 1] == 11.0 and t[1, 1, 0, 1] == 17.0


def test_template_dot_input_is_the_class_score():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    x = torch.randn(4, 3, 4, 4)
    t = class_templates(model[1], (3, 4, 4))
    scores = torch.einsum("kchw,nchw->nk", t, x) + model[1].bias
    assert torch.allclose(scores, model(x).detach(), atol=1e-5)


def test_template_shape_mismatch_names_both():
    with pytest.raises(TemplateShapeError) as err:
        class_templates(nn.Linear(64, 10), (3, 8, 8))
    msg = str(err.value)
    assert "(3, 8, 8)" in msg and "192" in msg and "in_features=64" in msg
    assert isinstance(err.value, ValueError) and isinstance(err.value, InputShapeError)
    assert class_templates(nn.Linear(64, 10), 64).shape == (10, 64)
    with pytest.raises(TemplateShapeError, match="positive"):
        class_templates(nn.Linear(4, 2), (0, 4))


def test_lazy_exports():
    assert tl.weights.kernels is kernels
    assert tl.weights.class_templates is class_templates
    assert tl.weights.fc_matrix is fc_matrix
