"""maximize: behaviour (objective improves, planted pattern recovered, class becomes the prediction),
honesty flags, pre-activation reads, determinism, errors."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import torchloupe as tl
from torchloupe.errors import ChannelError, InputShapeError, LayerNotFoundError, UnsupportedModelError, UsageError
from torchloupe.synthesis import objectives as O
from torchloupe.synthesis.params import InputDomain, ParamError


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.mark.parametrize("param", ["pixel", "fft"])
def test_resnet18_channel_beats_random_inputs_3x(resnet, param):
    # Two channels of layer3 in one batched run; random baseline = best of 32 uniform random inputs.
    res = tl.synthesis.maximize(resnet, ["layer3:5", "layer3:7"], param=param, steps=48, lr=0.1,
                                transforms=None, input_shape=(3, 64, 64), seed=0)
    assert res.images.shape == (2, 3, 64, 64)
    assert float(res.images.min()) >= 0.0 and float(res.images.max()) <= 1.0
    assert (res.final_activation >= 3 * res.baseline_activation).all(), res.rows()
    assert not res.failed.any()
    # the curve rises
    assert (res.objective_curve[-4:].mean(0) > res.objective_curve[:4].mean(0)).all()
    # the baseline is what 32 random inputs give (same generator draws as inside maximize)
    gen = torch.Generator().manual_seed(0)
    rand = torch.rand(32, 3, 64, 64, generator=gen)
    acts = tl.activations(resnet, rand, "layer3")["layer3"]
    assert torch.allclose(res.baseline_activation, acts[:, [5, 7]].mean((2, 3)).amax(0), rtol=1e-4)


class _Planted(nn.Module):
    """conv(3->4, 5x5) -> ReLU(inplace) -> GAP -> fc; filter 0 of the conv is a planted pattern."""

    def __init__(self, pattern: torch.Tensor):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight[0] = pattern
            self.conv.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def _pattern():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 5, 5, generator=g)


@pytest.mark.parametrize("param", ["pixel", "fft"])
def test_planted_detector_pattern_is_recovered(param):
    torch.manual_seed(0)
    pattern = _pattern()
    model = _Planted(pattern).eval()
    res = tl.synthesis.maximize(model, "conv:0@(6,6)", param=param, steps=64, lr=0.1, transforms=None,
                                input_shape=(3, 16, 16), seed=0)
    patch = res.images[0, :, 6:11, 6:11]  # the receptive field of position (6, 6)

    def corr(u, v):
        u, v = u.flatten() - u.mean(), v.flatten() - v.mean()
        return float(u @ v / (u.norm() * v.norm()))

    # Chance level: 75 values, |corr| of a random patch is about 0.1 (sd); the box-constrained optimum
    # sign(pattern) has corr sqrt(2/pi) = 0.8 with the Gaussian pattern.
    assert corr(patch, pattern) > 0.7, corr(patch, pattern)
    noise = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(0))
    assert abs(corr(noise, pattern)) < 0.3
    assert not res.failed.any()


def test_preactivation_is_read_before_inplace_relu():
    torch.manual_seed(0)
    model = _Planted(_pattern()).eval()
    # Drive channel 0 *down*: its pre-activation goes negative; a post-ReLU read would stop at 0.
    res = tl.synthesis.maximize(model, -O.parse("conv:0"), param="pixel", steps=16, lr=0.1,
                                transforms=None, input_shape=(3, 16, 16), seed=0)
    with torch.no_grad():
        conv_out = model.conv(res.images).mean((2, 3))[:, 0]
    assert float(conv_out.detach()) < -0.5
    assert torch.allclose(res.final_activation, -conv_out, atol=1e-5)


def test_class_logit_maximization_makes_it_the_prediction():
    # Classes that compete, as in a trained classifier: logit c = 1.5 * feature c - 0.5 * sum of all.
    torch.manual_seed(0)
    model = _Planted(_pattern()).eval()
    model.fc = nn.Linear(4, 4)
    with torch.no_grad():
        w = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(2))
        model.conv.weight.copy_(w - w.mean((1, 2, 3), keepdim=True))  # zero-mean: no class owns brightness
        model.fc.weight.copy_(2.0 * torch.eye(4) - 0.5)
        model.fc.bias.zero_()
    classes = [0, 1, 2, 3]
    res = tl.synthesis.maximize(model, [f"fc:{c}" for c in classes], param="fft", steps=48, lr=0.1,
                                input_shape=(3, 24, 24), seed=0)
    with torch.no_grad():
        pred = model(res.images).argmax(1)
    assert pred.tolist() == classes
    assert res.names == ("fc:0", "fc:1", "fc:2", "fc:3")


class _Digits(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 8, 3), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parametrize("param", ["pixel", "fft", "cppn"])
def test_one_channel_digits_model_with_normalization(param):
    torch.manual_seed(0)
    model = _Digits().eval()
    dom = InputDomain(range=(0.0, 1.0), mean=0.1307, std=0.3081)
    res = tl.synthesis.maximize(model, ["features.3:2", "head.2:4"], param=param, steps=32, lr=0.1,
                                input_shape=(1, 28, 28), domain=dom, seed=0)
    assert res.images.shape == (2, 1, 28, 28)
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1
    assert not res.failed.any(), res.rows()


def test_default_input_shape_and_vector_inputs():
    from torchloupe.synthesis.maximize import _default_shape

    assert _default_shape(_Digits()) == (1, 128, 128)
    mlp = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(InputShapeError, match="input_shape"):
        tl.synthesis.maximize(mlp, "2:1", steps=2)
    res = tl.synthesis.maximize(mlp, "2:1", param="pixel", steps=24, lr=0.1, input_shape=(16,), seed=0)
    assert res.images.shape == (1, 16) and not res.failed.any()


def test_dead_unit_is_flagged_failed():
    torch.manual_seed(0)
    model = _Planted(_pattern()).eval()
    with torch.no_grad():
        model.conv.weight[1].zero_()
        model.conv.bias[1] = -1.0  # constant -1: nothing can move it
    res = tl.synthesis.maximize(model, ["conv:1", "conv:0"], param="fft", steps=8, transforms=None,
                                input_shape=(3, 16, 16), seed=0)
    assert res.failed.tolist() == [True, False]
    assert res.final_activation[0].item() == pytest.approx(-1.0)
    assert res.rows()[0][-1] == "FAILED"


def test_deterministic_batched_and_no_global_rng():
    from tests.helpers import tiny_cnn

    model = tiny_cnn(seed=0)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    kw = dict(param="fft", steps=6, input_shape=(3, 16, 16))
    a = tl.synthesis.maximize(model, ["features.3:1", "features.3:2"], seed=5, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    b = tl.synthesis.maximize(model, ["features.3:1", "features.3:2"], seed=5, **kw)
    c = tl.synthesis.maximize(model, ["features.3:1", "features.3:2"], seed=6, **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.objective_curve, b.objective_curve)
    assert not torch.equal(a.images, c.images)
    assert a.objective_curve.shape == (6, 2)
    # objectives with penalties and diversity, several images per objective
    d = tl.synthesis.maximize(model, O.parse("features.3:1") - 0.1 * O.diversity("features.3")
                              - 0.01 * O.total_variation(), batch=3, seed=0, **kw)
    assert d.images.shape == (3, 3, 16, 16) and d.groups.tolist() == [0, 0, 0]


def test_dataset_top1_reported_from_exemplars():
    from tests.helpers import tiny_cnn

    model = tiny_cnn(seed=0)
    data = torch.rand(20, 3, 16, 16)
    ex = tl.synthesis.exemplars(model, data.split(5), "features.3", k=2, channels=[1, 4])
    res = tl.synthesis.maximize(model, ["features.3:4", "features.3:0"], steps=4, input_shape=(3, 16, 16),
                                exemplars=ex)
    assert res.dataset_top1[0].item() == ex.values[1, 0].item()
    assert torch.isnan(res.dataset_top1[1])  # channel 0 was not among the exemplars' channels


def test_errors_before_work():
    from tests.helpers import tiny_cnn

    model = tiny_cnn(seed=0)
    with pytest.raises(LayerNotFoundError, match="closest"):
        tl.synthesis.maximize(model, "featurez.3:1", steps=2, input_shape=(3, 16, 16))
    with pytest.raises(ParamError, match="pixel, fft, cppn"):
        tl.synthesis.maximize(model, "features.3:1", param="dct", steps=2)
    with pytest.raises(ChannelError, match="16 channels"):
        tl.synthesis.maximize(model, "features.3:99", steps=2, input_shape=(3, 16, 16))
    with pytest.raises(O.ObjectiveSpecError, match="only penalties"):
        tl.synthesis.maximize(model, O.total_variation(), steps=2, input_shape=(3, 16, 16))
    with pytest.raises(ValueError, match="steps"):
        tl.synthesis.maximize(model, "features.3:1", steps=0)
    with pytest.raises(UsageError, match="steps must be a positive int, got 0"):
        tl.synthesis.maximize(model, "features.3:1", steps=0)
    with pytest.raises(UsageError, match="batch must be a positive int, got 0"):
        tl.synthesis.maximize(model, "features.3:1", batch=0)
    with pytest.raises(UsageError, match="baseline_samples must be at least 1, got 0"):
        tl.synthesis.maximize(model, "features.3:1", baseline_samples=0)
    with pytest.raises(O.ObjectiveSpecError, match="objective is an empty list"):
        tl.synthesis.maximize(model, [])
    with pytest.raises(ParamError, match="domain must be an InputDomain or a dict of its fields, got str"):
        tl.synthesis.maximize(model, "features.3:1", steps=2, input_shape=(3, 16, 16), domain="imagenet")
    with pytest.raises(UnsupportedModelError, match="model: expected an nn.Module, got function"):
        tl.synthesis.maximize(lambda x: x, "features.3:1")


def test_inline_adam_matches_torch_optim_adam():
    """maximize's own Adam (no torch.optim: its first use imports torch._dynamo, seconds of CPU)
    takes the same steps as torch.optim.Adam with default settings."""
    from torchloupe.synthesis.maximize import _Adam

    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 5, 5, generator=g)
    start = torch.randn(2, 3, 5, 5, generator=g)
    ours, ref = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    mine, theirs = _Adam([ours], lr=0.05), torch.optim.Adam([ref], lr=0.05)
    for _ in range(25):
        (grad,) = torch.autograd.grad(((ours - target) ** 3).abs().sum(), [ours])
        mine.step([grad])
        theirs.zero_grad()
        ((ref - target) ** 3).abs().sum().backward()
        theirs.step()
    assert not torch.equal(ours.detach(), start)
    torch.testing.assert_close(ours.detach(), ref.detach(), rtol=1e-6, atol=1e-6)


# --- layouts and multi-input models --------------------------------------------------------
class TokenNet(nn.Module):
    """(B, T=5, F=4) -> Linear(4, 3) per token ("proj") -> mean over tokens -> Linear(3, 2)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.proj(x).mean(1))


def test_channel_of_a_token_layer_is_a_feature_not_a_token():
    model = TokenNet()
    res = tl.synthesis.maximize(model, "proj:2", param="pixel", steps=24, lr=0.1, transforms=None,
                                input_shape=(5, 4), baseline_samples=8, seed=0)
    with torch.no_grad():
        feature = model.proj(res.images)[:, :, 2].mean(1)  # feature 2, averaged over the 5 tokens
    torch.testing.assert_close(res.final_activation, feature)
    assert not bool(res.failed[0])  # beat random inputs
    # the layer has 3 features: channel 4 would have been token 4 before
    with pytest.raises(ChannelError, match="3 channels"):
        tl.synthesis.maximize(model, "proj:4", param="pixel", steps=1, transforms=None, input_shape=(5, 4))


class ImageAndVector(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Linear(5, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, img, vec):
        h = self.a(img) + self.b(vec)[:, :, None, None]
        return self.fc(torch.relu(h).mean((2, 3)))


def test_maximize_one_input_of_a_two_input_model_with_the_other_fixed():
    model = ImageAndVector()
    vec = torch.randn(2, 5, generator=torch.Generator().manual_seed(1))
    res = tl.synthesis.maximize(model, "fc:1", param="pixel", steps=32, lr=0.1, transforms=None,
                                inputs=(torch.zeros(2, 3, 8, 8), vec), wrt=0, baseline_samples=8)
    assert res.images.shape == (1, 3, 8, 8)  # input_shape from the optimized input
    with torch.no_grad():
        want = model(res.images, vec[:1])[:, 1]  # the other input held at its sample 0
    torch.testing.assert_close(res.final_activation, want)
    assert float(res.objective_curve[-1, 0]) > float(res.objective_curve[0, 0])
    assert not bool(res.failed[0])
    # optimizing the vector instead (by keyword works the same way for dict inputs)
    res2 = tl.synthesis.maximize(model, "fc:1", param="pixel", steps=8, lr=0.1, transforms=None,
                                 inputs={"img": torch.rand(1, 3, 8, 8), "vec": vec[:1]}, wrt="vec",
                                 baseline_samples=4)
    assert res2.images.shape == (1, 5)


def test_maximize_refuses_token_ids_and_unnamed_inputs_before_any_step():
    from torch import nn

    from torchloupe.errors import UnsupportedModelError

    text = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(UnsupportedModelError, match=r"first layer '0' is an nn.Embedding"):
        tl.synthesis.maximize(text, "2:0", input_shape=(3,), steps=2)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, rgb, depth):
            return self.a(rgb) + self.b(depth)

    with pytest.raises(UnsupportedModelError, match=r"Two.forward takes 2 inputs \(rgb, depth\); pass inputs="):
        tl.synthesis.maximize(Two(), "a:0", input_shape=(3,), steps=2)
