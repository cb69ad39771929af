"""Gradient saliency: hand-computed values, Captum parity, F.relu twins, rectifier rules, warnings."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchloupe as tl
from torchloupe.errors import TargetError
from torchloupe.saliency import GuidedFallbackWarning
from tests.helpers import tiny_cnn


class TwoLayer(nn.Module):
    """y = w2 . act(W1 x): hand-computable gradients."""

    def __init__(self, act: nn.Module | None = None):
        super().__init__()
        self.l1 = nn.Linear(2, 2, bias=False)
        self.act = act if act is not None else nn.ReLU()
        self.l2 = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.l1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
            self.l2.weight.copy_(torch.tensor([[-1.0, 2.0]]))

    def forward(self, x):
        return self.l2(self.act(self.l1(x)))


X = torch.tensor([[1.0, -3.0]])  # h = W1 x = (1, 3): both units on


def test_hand_computed_rules():
    m = TwoLayer()
    # plain: W1^T (w2 * [h > 0]) = (-1, -2); guided: ReLU(w2) * [h > 0] = (0, 2) -> (0, -2);
    # deconvnet: ReLU(w2) = (0, 2) -> (0, -2)
    torch.testing.assert_close(tl.saliency.gradient(m, X, 0), torch.tensor([[-1.0, -2.0]]))
    torch.testing.assert_close(tl.saliency.guided_backprop(m, X, 0), torch.tensor([[0.0, -2.0]]))
    torch.testing.assert_close(tl.saliency.deconvnet(m, X, 0), torch.tensor([[0.0, -2.0]]))
    x_off = torch.tensor([[1.0, 3.0]])  # h = (1, -3): unit 1 off
    torch.testing.assert_close(tl.saliency.guided_backprop(m, x_off, 0), torch.tensor([[0.0, 0.0]]))
    torch.testing.assert_close(tl.saliency.deconvnet(m, x_off, 0), torch.tensor([[0.0, -2.0]]))  # gate ignored


def test_relu6_leaky_hardtanh_gates():
    x = torch.tensor([[7.0, -3.0]])  # h = (7, 3)
    # ReLU6: unit 0 saturated (7 > 6): guided passes ReLU(w2) * [0 < h < 6] = (0, 2)
    torch.testing.assert_close(tl.saliency.guided_backprop(TwoLayer(nn.ReLU6()), x, 0), torch.tensor([[0.0, -2.0]]))
    xl = torch.tensor([[-1.0, -3.0]])  # h = (-1, 3)
    leaky = TwoLayer(nn.LeakyReLU(0.1))
    # ReLU(w2) = (0, 2); gate (0.1, 1) -> (0, 2) -> input (0, -2)
    torch.testing.assert_close(tl.saliency.guided_backprop(leaky, xl, 0), torch.tensor([[0.0, -2.0]]))
    with torch.no_grad():
        leaky.l2.weight.copy_(torch.tensor([[1.0, 2.0]]))
    # ReLU(w2) = (1, 2); gate (0.1, 1) -> (0.1, 2) -> input (0.1, -2)
    torch.testing.assert_close(tl.saliency.guided_backprop(leaky, xl, 0), torch.tensor([[0.1, -2.0]]))
    ht = TwoLayer(nn.Hardtanh(-2.0, 2.0))
    torch.testing.assert_close(tl.saliency.guided_backprop(ht, torch.tensor([[1.0, -3.0]]), 0), torch.tensor([[0.0, 0.0]]))


class Net(nn.Module):
    """Conv net with nn.ReLU modules, one in-place and one reused; ``functional=True`` is its F.relu twin."""

    def __init__(self, functional: bool = False):
        super().__init__()
        self.functional = functional
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.r_inplace = nn.ReLU(inplace=True)
        self.r = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        if self.functional:
            x = F.relu(self.c1(x), inplace=True)
            x = torch.relu(self.pool(self.c2(x)))
            x = self.c3(x).relu_()
        else:
            x = self.r_inplace(self.c1(x))
            x = self.r(self.pool(self.c2(x)))
            x = self.r(self.c3(x))  # reused module
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def twins():
    torch.manual_seed(0)
    a = Net()
    b = Net(functional=True)
    b.load_state_dict(a.state_dict())
    return a.eval(), b.eval(), torch.rand(2, 3, 16, 16)


@pytest.mark.parametrize("fn", ["guided_backprop", "deconvnet"])
def test_matches_captum_and_functional_twin(twins, fn):
    from captum.attr import Deconvolution, GuidedBackprop

    a, b, x = twins
    ours = getattr(tl.saliency, fn)(a, x, [1, 4])
    peer = {"guided_backprop": GuidedBackprop, "deconvnet": Deconvolution}[fn](a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.attribute(x.clone().requires_grad_(), target=[1, 4]).detach()
    for p in a.parameters():
        p.grad = None
    assert theirs.abs().max() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    twin = getattr(tl.saliency, fn)(b, x, [1, 4])
    torch.testing.assert_close(twin, ours, rtol=1e-5, atol=1e-7)
    # the rule changed something: it is not the plain gradient
    assert not torch.allclose(ours, tl.saliency.gradient(a, x, [1, 4]))


def test_matches_captum_resnet18():
    import torchvision
    from captum.attr import GuidedBackprop

    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = GuidedBackprop(m).attribute(x.clone().requires_grad_(), target=[2, 5]).detach()
    torch.testing.assert_close(tl.saliency.guided_backprop(m, x, [2, 5]), theirs, rtol=1e-4, atol=1e-7)


def test_warns_on_unguided_activations():
    m = TwoLayer(nn.SiLU())
    with pytest.warns(GuidedFallbackWarning) as rec:
        tl.saliency.guided_backprop(m, X, 0)
    assert sorted(str(w.message) for w in rec) == [
        "guided backpropagation: no guided rule for silu; their plain gradient was used",
        "guided backpropagation: the model ran no ReLU / ReLU6 / Hardtanh / LeakyReLU; the result is the plain gradient",
    ]
    lin = nn.Sequential(nn.Linear(2, 3))
    with pytest.warns(GuidedFallbackWarning, match="ran no ReLU"):
        g = tl.saliency.deconvnet(lin, X, 1)
    torch.testing.assert_close(g, lin[0].weight[1:2].detach())


def test_batch_equals_singles_and_dtype():
    m = tiny_cnn().double()
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    for fn in (tl.saliency.gradient, tl.saliency.guided_backprop, tl.saliency.deconvnet):
        whole = fn(m, x, [0, 1, 2])
        assert whole.dtype == torch.float64 and whole.shape == x.shape
        for i in range(3):
            torch.testing.assert_close(whole[i : i + 1], fn(m, x[i : i + 1], i), atol=1e-10, rtol=1e-8)


def test_target_error_before_forward():
    m = tiny_cnn()
    calls = []
    h = m.register_forward_pre_hook(lambda mod, a: calls.append((a[0].shape[0], torch.is_grad_enabled())))
    with pytest.raises(TargetError, match="target class 4 is out of range"):
        tl.saliency.guided_backprop(m, torch.rand(3, 3, 8, 8), 4)
    h.remove()
    assert calls in ([], [(2, False)])  # at most two samples, without autograd, confirm the class count


def test_guided_gradcam_is_product():
    m = tiny_cnn().eval()
    x = torch.rand(2, 3, 16, 16)
    gg = tl.saliency.guided_gradcam(m, x, [1, 2], "features")
    cam = tl.cam.GradCAM(m, "features")(x, [1, 2]).maps
    torch.testing.assert_close(gg, tl.saliency.guided_backprop(m, x, [1, 2]) * cam[:, None])


def test_smoothgrad_mean_of_noisy_gradients():
    m = TwoLayer()
    sg = tl.saliency.smoothgrad(tl.saliency.gradient, n=5, sigma=0.0)
    torch.testing.assert_close(sg(m, X, 0), tl.saliency.gradient(m, X, 0))
    x = torch.rand(2, 3, 8, 8)
    model = tiny_cnn()
    a = tl.saliency.smoothgrad(tl.saliency.gradient, n=4, sigma=0.2, seed=3, chunk=2)(model, x, [0, 1])
    gen = torch.Generator().manual_seed(3)
    span = (x.reshape(2, -1).max(1).values - x.reshape(2, -1).min(1).values).view(2, 1, 1, 1)
    want = torch.zeros_like(x)
    for _ in range(4):  # chunk=2 with batch 2: one copy per call
        noisy = x + torch.randn(x.shape, generator=gen) * 0.2 * span
        want += tl.saliency.gradient(model, noisy, [0, 1])
    torch.testing.assert_close(a, want / 4)
