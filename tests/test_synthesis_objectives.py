"""Objectives, parameterizations, transforms and the redirected ReLU: values by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchloupe.errors import ChannelError, ObjectiveSpecError, UsageError
from torchloupe.synthesis import objectives as O
from torchloupe.synthesis import params as P
from torchloupe.synthesis import transforms as T
from torchloupe.synthesis.maximize import redirected_relu


def _ctx(acts, images=None, groups=None):
    b = next(iter(acts.values())).shape[0]
    images = torch.zeros(b, 1, 2, 2) if images is None else images
    groups = torch.zeros(b, dtype=torch.long) if groups is None else groups
    return O.Context(acts=acts, images=images, groups=groups)


A = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)  # (B=2, C=3, 2, 2)


def test_parse_channel_neuron_and_logit():
    ctx = _ctx({"layer3": A, "fc": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])})
    ch = O.parse("layer3:1")
    assert ch.name == "layer3:1" and ch.layers == ("layer3",) and ch.channel == ("layer3", 1)
    # channel 1 of sample 0 holds 4, 5, 6, 7 -> mean 5.5; sample 1: 16..19 -> 17.5
    assert ch(ctx).tolist() == [5.5, 17.5]
    ne = O.parse("layer3:2@(1,0)")
    assert ne.name == "layer3:2@(1,0)"
    assert ne(ctx).tolist() == [10.0, 22.0]  # A[b, 2, 1, 0] = 8 + 2 = 10, 20 + 2 = 22
    assert O.parse(" layer3 : 2 @ (1, 0) ")(ctx).tolist() == [10.0, 22.0]
    assert O.parse("fc:2")(ctx).tolist() == [3.0, 6.0]
    assert O.neuron("layer3", 0)(ctx).tolist() == [3.0, 15.0]  # centre of a 2x2 map is (1, 1)


@pytest.mark.parametrize("spec", ["layer3", "layer3:x", ":3", "layer3:1@()", 3])
def test_bad_specs_raise(spec):
    with pytest.raises((O.ObjectiveSpecError, TypeError)):
        O.parse(spec)


def test_objectives_of_the_wrong_type_raise_objective_spec_errors():
    obj = O.channel("layer3", 1)
    with pytest.raises(ObjectiveSpecError, match="objective spec must be a string, got int"):
        O.parse(3)
    with pytest.raises(ObjectiveSpecError, match="objective must be an Objective or a string like 'layer3:5', got list"):
        O.as_objective([obj])
    with pytest.raises(ObjectiveSpecError, match="cannot combine an objective with NoneType None"):
        obj + None
    with pytest.raises(ObjectiveSpecError, match="an objective divides by a number, got Objective"):
        obj / obj


def test_check_channel_names_the_layer_and_its_channels():
    O.check_channel(torch.zeros(2, 3, 4), "layer3", -3)  # in range, negative from the end
    with pytest.raises(ChannelError, match=r"channel 3 is out of range for layer 'layer3' with 3 channels \(0..2\)"):
        O.check_channel(torch.zeros(2, 3, 4), "layer3", 3)
    with pytest.raises(ChannelError, match=r"layer 'fc' output has shape \(2,\); expected \(B, C, ...\)"):
        O.check_channel(torch.zeros(2), "fc", 0)


def test_channel_out_of_range_names_the_layer():
    with pytest.raises(ChannelError, match=r"channel 5 .*'layer3' with 3 channels"):
        O.parse("layer3:5")(_ctx({"layer3": A}))
    with pytest.raises(ChannelError, match="outside"):
        O.parse("layer3:0@(2,0)")(_ctx({"layer3": A}))


def test_composition_values_names_and_units():
    ctx = _ctx({"l": A})
    a, b = O.parse("l:0"), O.parse("l:1")  # [1.5, 13.5] and [5.5, 17.5]
    assert (a + b)(ctx).tolist() == [7.0, 31.0]
    assert ("l:0" - b)(ctx).tolist() == [-4.0, -4.0]
    assert (2 * a - 1)(ctx).tolist() == [2.0, 26.0]
    assert (a * b)(ctx).tolist() == [1.5 * 5.5, 13.5 * 17.5]
    assert (-a)(ctx).tolist() == [-1.5, -13.5]
    assert (a / 2)(ctx).tolist() == [0.75, 6.75]
    obj = a - 0.5 * O.total_variation()
    assert obj.name == "l:0 - 0.5·tv"
    assert obj.layers == ("l",)
    assert obj.unit(ctx).tolist() == [1.5, 13.5]  # penalties dropped
    assert (3 * a - O.l1()).unit(ctx).tolist() == [4.5, 40.5]
    assert O.total_variation().unit is None
    assert (-(a - O.l2())).unit(ctx).tolist() == [-1.5, -13.5]


def test_penalties_by_hand():
    img = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]])  # (1, 1, 2, 2)
    ctx = _ctx({"l": A[:1]}, images=img)
    # vertical diffs |1-0|, |3-1| -> mean 1.5; horizontal |1-0|, |3-1| -> 1.5
    assert O.total_variation()(ctx).tolist() == [3.0]
    assert O.l1()(ctx).tolist() == [1.25]
    assert O.l1(center=1.0)(ctx).tolist() == [0.75]  # (1 + 0 + 0 + 2) / 4
    assert O.l2()(ctx).item() == pytest.approx(math.sqrt((0 + 1 + 1 + 9) / 4))


def test_layer_l2_and_direction():
    ctx = _ctx({"l": A})
    assert O.layer_l2("l")(ctx)[0].item() == pytest.approx(sum(i * i for i in range(12)) / 12)
    d = O.direction("l", torch.tensor([0.0, 3.0, 4.0]))  # unit vector (0, .6, .8)
    expected = 0.6 * 5.5 + 0.8 * 9.5  # channel means of sample 0: 1.5, 5.5, 9.5
    assert d(ctx)[0].item() == pytest.approx(expected)
    with pytest.raises(ChannelError):
        O.direction("l", torch.ones(4))(ctx)


def test_diversity_is_cosine_of_gram_within_groups():
    same = torch.ones(2, 2, 3, 3)
    ctx = _ctx({"l": same}, groups=torch.tensor([0, 0]))
    assert O.diversity("l")(ctx).tolist() == pytest.approx([1.0, 1.0])
    x = torch.zeros(3, 2, 1, 1)
    x[0, 0] = 1.0  # gram e00
    x[1, 1] = 1.0  # gram e11: orthogonal to x[0]
    x[2, 0] = 2.0  # gram 4*e00: parallel to x[0] but in another group
    ctx = _ctx({"l": x}, groups=torch.tensor([0, 0, 1]))
    assert O.diversity("l")(ctx).tolist() == pytest.approx([0.0, 0.0, 0.0])
    ctx = _ctx({"l": x}, groups=torch.tensor([0, 1, 0]))
    assert O.diversity("l")(ctx).tolist() == pytest.approx([1.0, 0.0, 1.0])


# --- parameterizations --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pixel", "fft", "cppn"])
def test_params_shapes_range_and_seed(name):
    gen = torch.Generator().manual_seed(3)
    dom = P.InputDomain(range=(-1.0, 2.0))
    params, image_f = P.PARAMS[name]((2, 3, 12, 10), gen, "cpu", dom)
    img = image_f().detach()
    assert img.shape == (2, 3, 12, 10)
    assert float(img.min()) > -1.0 and float(img.max()) < 2.0
    assert all(p.requires_grad and p.is_leaf for p in params)
    grads = torch.autograd.grad(image_f().sum(), params)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    params2, image_f2 = P.PARAMS[name]((2, 3, 12, 10), torch.Generator().manual_seed(3), "cpu", dom)
    assert torch.equal(img, image_f2())


def test_fft_is_one_over_f_and_channels_any():
    # One image, 1 channel: with unit spectrum at frequency (0, 1) only, the image is a cosine along x.
    gen = torch.Generator().manual_seed(0)
    params, image_f = P.fft((1, 1, 8, 8), gen, "cpu", P.InputDomain(range=None), decorrelated=False)
    with torch.no_grad():
        params[0].zero_()
        params[0][0, 0, 0, 1, 0] = 1.0
    img = image_f()[0, 0]
    # scale at f = 1/8 is 8; irfft2 ortho of a single rfft bin (counted twice by Hermitian symmetry) /8, then /4
    expected = 8 * 2 * torch.cos(2 * math.pi * torch.arange(8) / 8) / 8 / 4
    assert torch.allclose(img, expected.expand(8, 8), atol=1e-6)
    with pytest.raises(P.ParamError, match="pixel"):
        P.fft((1, 16), gen, "cpu", P.InputDomain())


def test_domain_normalize_and_decorrelate():
    dom = P.InputDomain(mean=(0.5, 0.0, 1.0), std=(0.5, 1.0, 2.0))
    x = torch.ones(1, 3, 1, 1)
    assert dom.normalize(x).flatten().tolist() == [1.0, 1.0, 0.0]
    assert x.flatten().tolist() == [1.0, 1.0, 1.0]  # not in place
    y = P.decorrelate(torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)).flatten()
    assert torch.allclose(y, P._COLOR[:, 0])
    with pytest.raises(P.ParamError):
        P.InputDomain(range=(1.0, 0.0))


# --- transforms ---------------------------------------------------------------------------
def test_jitter_is_a_per_image_crop():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    gen = torch.Generator().manual_seed(0)
    y = T.Jitter(2)(x, gen)
    assert y.shape == (2, 1, 3, 3)
    for i in range(2):
        hits = [(dy, dx) for dy in range(3) for dx in range(3) if torch.equal(y[i], x[i, :, dy:dy + 3, dx:dx + 3])]
        assert len(hits) == 1


def test_transform_settings_raise_usage_errors():
    with pytest.raises(UsageError, match="jitter must be at least 1 pixel, got 0"):
        T.Jitter(0)
    with pytest.raises(UsageError, match="transforms='bogus' is not known; expected 'standard', 'standard-resized', None"):
        T.resolve("bogus", (3, 16, 16), 0.5)


def test_identity_affine_and_pad():
    x = torch.rand(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(T.RandomRotate([0])(x, gen), x, atol=1e-5)
    assert torch.allclose(T.Compose([T.RandomScale([1.0]), T.RandomRotate([0.0])])(x, gen), x, atol=1e-5)
    p = T.Pad(2, value=0.25)(x, gen)
    assert p.shape == (2, 3, 12, 12) and float(p[0, 0, 0, 0]) == 0.25
    # 90 degrees: a rotation of the grid (exact for even sizes with align_corners=False)
    r = T.RandomRotate([90.0])(x, gen)
    assert torch.allclose(r, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5) or torch.allclose(
        r, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5)


def test_standard_transforms_deterministic_differentiable_no_global_rng():
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    state = torch.get_rng_state()
    tf = T.standard(0.5, size=32)
    a = tf(x, torch.Generator().manual_seed(1))
    b = tf(x, torch.Generator().manual_seed(1))
    c = tf(x, torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, 3, 32 + 6 - 2 - 1, 32 + 6 - 2 - 1)
    (g,) = torch.autograd.grad(a.sum(), x)
    assert g.abs().sum() > 0


# --- redirected ReLU ----------------------------------------------------------------------
class _Relus(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return F.relu6(self.act(x * 1.0)) + torch.relu(x) + x.relu()


def test_redirected_relu_forward_equal_backward_redirected():
    x = torch.tensor([[-1.0, -2.0], [3.0, -1.0]], requires_grad=True)
    with redirected_relu():
        y = F.relu(x)
    assert y.tolist() == [[0.0, 0.0], [3.0, 0.0]]
    # loss = -sum(y): gradient -1 everywhere would push every x up.
    (g,) = torch.autograd.grad(-y.sum(), x)
    # sample 0: all dead -> redirected gradient passes; sample 1: the plain ReLU gradient.
    assert g.tolist() == [[-1.0, -1.0], [-1.0, 0.0]]
    # A gradient that would push a negative input further down is blocked.
    x2 = torch.tensor([[-1.0, 2.0]], requires_grad=True)
    with redirected_relu():
        y2 = torch.relu(x2)
    (g2,) = torch.autograd.grad((y2 * torch.tensor([[1.0, 0.0]])).sum(), x2)
    assert g2.tolist() == [[0.0, 0.0]]


def test_redirected_relu_reaches_modules_without_swapping():
    m = _Relus()
    x = torch.randn(4, 5)
    expected = m(x.clone())
    act = m.act
    with redirected_relu():
        got = m(x.clone())
    assert m.act is act and torch.allclose(got, expected)
    dead = -torch.rand(1, 5) - 0.1
    dead.requires_grad_(True)
    (g0,) = torch.autograd.grad(m(dead).sum(), dead)
    assert g0.abs().sum() == 0
    with redirected_relu():  # the loss of maximizing: descent pushes every dead input up
        (g1,) = torch.autograd.grad(-m(dead).sum(), dead)
    assert (g1 < 0).all()
    with redirected_relu():  # minimizing the output of dead units: no redirected push further down
        (g2,) = torch.autograd.grad(m(dead).sum(), dead)
    assert g2.abs().sum() == 0


def test_redirected_relu_keeps_inplace_semantics():
    x = torch.tensor([[-1.0, 2.0]], requires_grad=True)
    with redirected_relu():
        h = x * 1.0
        r = h.relu_()
        h2 = x * 1.0
        F.relu(h2, inplace=True)
    assert r is h and h.tolist() == [[0.0, 2.0]]
    assert h2.tolist() == [[0.0, 2.0]]  # the return value was ignored: the tensor itself holds it
    (g,) = torch.autograd.grad(-(h + h2).sum(), x)
    assert g.tolist() == [[0.0, -2.0]]
