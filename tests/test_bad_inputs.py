"""Bad input across the entry points: an empty batch gives an empty result, NaN / infinite input a
NonFiniteInputError, a channel count the model cannot take an InputShapeError naming both shapes,
an out-of-range class a TargetError, all before any of the work (never an error from deep inside
PyTorch)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import torchloupe as tl
from torchloupe.errors import InputShapeError, LayerNotFoundError, NonFiniteInputError, TargetError
from tests.helpers import assert_same_state, model_state


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class _TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).mean((2, 3)))


BRANCHES = {"a": "a", "b": "b"}


def _x(n=3):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _nan():
    x = _x()
    x[1, 2, 3, 4] = float("nan")
    return x


EMPTY = {
    "smoothgrad": (lambda m, x: tl.saliency.smoothgrad(tl.saliency.gradient, 3)(m, x), (0, 3, 16, 16)),
    "average_drop": (lambda m, x: tl.evaluate.average_drop(m, x, torch.rand(0, 16, 16)), (0,)),
    "increase_in_confidence": (lambda m, x: tl.evaluate.increase_in_confidence(m, x, torch.rand(0, 16, 16)), (0,)),
    "road": (lambda m, x: tl.evaluate.road(m, x, torch.rand(0, 16, 16)).scores, (0, 9)),
    "randomization_check": (lambda m, x: tl.evaluate.randomization_check(
        m, x, lambda mm, xx, t: tl.saliency.gradient(mm, xx, t)).similarity.shape[:1], None),
}


@pytest.mark.parametrize("name", list(EMPTY))
def test_an_empty_batch_gives_an_empty_result(name):
    fn, shape = EMPTY[name]
    m = _Net()
    out = fn(m, _x()[:0])
    got = tuple(out) if shape is None else tuple(out.shape)
    assert got == ((0,) if shape is None else shape)


def test_empty_batches_of_sequences_and_fused_inputs():
    lstm = nn.LSTM(5, 4)
    tr = tl.recurrent.trace(lstm, torch.rand(4, 0, 5))  # (T, B=0, I)
    assert tr.h.shape[-3] == 0 and tr.output.shape == (4, 0, 4)
    res = tl.fusion.contributions(_TwoBranches(), _x()[:0], branches=BRANCHES)
    assert res.targets.shape == (0,) and all(v.shape == (0,) for v in res.shares.values())
    found = tl.fusion.contributions(_TwoBranches(), _x()[:0])  # the fusion point, found on the empty batch
    assert found.branches == ["a", "b"] and found.share_matrix().shape == (0, 2)
    with pytest.raises(LayerNotFoundError):  # given branches are checked as for a batch
        tl.fusion.contributions(_TwoBranches(), _x()[:0], branches={"a": "a", "b": "nope"})


NAN = {
    "recurrent.trace": lambda: tl.recurrent.trace(nn.LSTM(5, 4), torch.full((4, 2, 5), float("nan"))),
    "attention.capture": lambda: tl.attention.capture(
        nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).eval(), torch.full((1, 4, 8), float("inf"))),
    "synthesis.exemplars": lambda: tl.synthesis.exemplars(_Net(), TensorDataset(_nan()), "features.2", k=1),
    "fusion.contributions": lambda: tl.fusion.contributions(_TwoBranches(), _nan(), branches=BRANCHES),
}


@pytest.mark.parametrize("name", list(NAN))
def test_nan_or_infinite_input_is_refused_with_a_typed_error(name):
    with pytest.raises(NonFiniteInputError, match="expected finite values"):
        NAN[name]()


CHANNELS = {
    "synthesis.maximize": lambda: tl.synthesis.maximize(_Net(), "features.2:1", steps=2, input_shape=(1, 16, 16)),
    "synthesis.exemplars": lambda: tl.synthesis.exemplars(_Net(), TensorDataset(torch.rand(5, 1, 16, 16)), "features.2"),
    "fusion.contributions": lambda: tl.fusion.contributions(_TwoBranches(), torch.rand(2, 1, 16, 16), branches=BRANCHES),
}


@pytest.mark.parametrize("name", list(CHANNELS))
def test_a_wrong_channel_count_names_what_the_first_layer_wants(name):
    with pytest.raises(InputShapeError, match=r"with 1 channels, but the first layer .* wants 3 channels"):
        CHANNELS[name]()


def test_fusion_takes_an_unbatched_input_and_checks_the_target_before_the_work(monkeypatch):
    m = _TwoBranches()
    res = tl.fusion.contributions(m, _x()[0], branches=BRANCHES)
    assert res.targets.shape == (1,)
    from torchloupe.fusion import contrib

    def no_work(*args, **kwargs):
        raise AssertionError("the branches were resolved before the target was checked")

    monkeypatch.setattr(contrib, "resolve_branches", no_work)
    before = model_state(m)
    with pytest.raises(TargetError, match="3 classes"):
        tl.fusion.contributions(m, _x(), branches=BRANCHES, target=7)
    assert_same_state(before, model_state(m))
