"""The demo fusion models put their shares on the view that decides the class, by construction of the data."""

from __future__ import annotations

import pytest
import torch

import torchloupe as tl
from torchloupe.demo import fusion_data as fd


@pytest.fixture(scope="module")
def data():
    sv, cv, y, _ = fd.two_view_data(96, seed=7)
    return sv, cv, y


@pytest.fixture(scope="module", params=["early", "late", "iterative"])
def trained(request):
    model, history = fd.train_fusion_model(request.param)
    return request.param, model, history


def test_deciding_view_gets_over_80_percent(trained, data):
    kind, model, _ = trained
    sv, cv, y = data
    assert fd.accuracy(model) > 0.8
    for method in ("auto", "integrated_gradients"):
        res = tl.fusion.contributions(model, (sv, cv), fd.BRANCHES[kind], target=y, method=method)
        if method == "auto":
            assert res.method == ("exact" if kind == "late" else "shapley")
        for c, view in enumerate(fd.DECIDING_VIEW):
            if view == "both":
                continue
            share = float(res.shares[view][y == c].mean())
            assert share > 0.8, (kind, method, fd.FUSION_CLASSES[c], share)


def test_share_history_covers_training(trained):
    kind, _, history = trained
    assert history.steps == list(range(0, 400, 25)) + [400]
    shares = history.shares
    assert set(shares) == {"shape", "colour"}
    assert shares["shape"].shape == (17, 64)
    assert torch.allclose(shares["shape"] + shares["colour"], torch.ones(17, 64), atol=1e-5)


def test_two_view_data_is_what_it_says():
    sv, cv, y, masks = fd.two_view_data(64, seed=0)
    assert sv.shape == cv.shape == (64, 3, 32, 32) and y.shape == (64,)
    assert torch.bincount(y, minlength=8).tolist() == [8] * 8
    blank_colour = cv[(y == 0) | (y == 1)]
    blank_shape = sv[(y == 2) | (y == 3)]
    assert float(blank_colour.max()) <= 0.04 and float(blank_shape.max()) <= 0.04
    assert not masks[(y == 2) | (y == 3)].any() and masks[y == 0].flatten(1).any(1).all()
    red = cv[y == 2].mean((0, 2, 3))
    assert red[0] > 0.6 and red[1] < 0.2
