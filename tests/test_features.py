"""Feature maps: values, ranking, arrangement of non-spatial outputs, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchloupe as tl
from torchloupe.errors import ChannelError, LayerNotFoundError, UnsupportedModelError, UsageError
from torchloupe.features import feature_maps
from tests.helpers import assert_same_state, model_state, tiny_cnn


def _scaler() -> nn.Sequential:
    """1x1 conv with weights 1, 3, -1, 2: channel c is x * w_c, then ReLU."""
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 3.0, -1.0, 2.0]).view(4, 1, 1, 1))
    return nn.Sequential(conv, nn.ReLU())


def test_hand_computed_maps_order_and_stats():
    model = _scaler()
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    fm = feature_maps(model, x, "1")
    assert fm.layer == "1" and fm.kind == "spatial" and fm.shape == (1, 4, 2, 2)
    assert torch.equal(fm.maps[0, 1], 3 * x[0, 0])
    assert torch.equal(fm.maps[0, 2], torch.zeros(2, 2))
    assert fm.order.tolist() == [[1, 3, 0, 2]]
    assert fm.stats["mean"].tolist() == [[2.5, 7.5, 0.0, 5.0]]
    assert fm.stats["max"].tolist() == [[4.0, 12.0, 0.0, 8.0]]
    assert fm.top_channels(0, 2) == [1, 3]
    assert not fm.maps.requires_grad


def test_order_is_per_sample():
    model = nn.Sequential(nn.Identity())
    x = torch.zeros(2, 3, 2, 2)
    x[0, 2] = 1.0
    x[1, 0] = 5.0
    x[1, 1] = 1.0
    fm = feature_maps(model, x, "0")
    assert fm.order[0, 0] == 2 and fm.order[1].tolist() == [0, 1, 2]


def test_top_and_channels_select():
    model = _scaler()
    x = torch.rand(3, 1, 4, 4) + 0.1
    fm = feature_maps(model, x, "1", top=2)
    assert fm.channels.tolist() == [1, 3]
    assert torch.equal(fm.maps[:, 0], 3 * x[:, 0])
    assert fm.top_channels(0) == [1, 3]
    sel = feature_maps(model, x, "1", channels=[2, 0])
    assert sel.channels.tolist() == [2, 0] and sel.top_channels(0) == [0, 2]
    with pytest.raises(ChannelError, match=r"channel 4 is out of range; layer '1' has 4 channels \(0..3\)"):
        feature_maps(model, x, "1", channels=[4])
    with pytest.raises(ChannelError, match="channel -1"):
        feature_maps(model, x, "1", channels=-1)
    with pytest.raises(ValueError, match="top must be a positive int"):
        feature_maps(model, x, "1", top=0)
    with pytest.raises(UsageError, match="top must be a positive int or None, got 0"):
        feature_maps(model, x, "1", top=0)
    with pytest.raises(UsageError, match=r"layer spec <class .*Conv2d'> matches 2 layers \(0, 1\.\.\.\); expected one"):
        feature_maps(nn.Sequential(model[0], nn.Conv2d(4, 4, 1)), x, nn.Conv2d)
    with pytest.raises(UnsupportedModelError, match="model: expected an nn.Module, got str"):
        feature_maps("model", x, "1")
    with pytest.raises(UnsupportedModelError, match="model: expected an nn.Module, got str"):
        tl.features.feature_maps_of("model", x, ["1"])


def test_wrong_layer_names_the_closest():
    with pytest.raises(LayerNotFoundError, match="'features.4' is not a module of TinyCNN; closest: 'features.4'|closest"):
        feature_maps(tiny_cnn(), torch.rand(1, 3, 8, 8), "features.9")


def test_vectors_sequences_and_tokens_are_arranged():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    fm = feature_maps(lin, torch.rand(2, 3, 2, 2), "1")
    assert fm.kind == "vector" and fm.maps.shape == (2, 5, 1, 1)
    conv1d = nn.Sequential(nn.Conv1d(2, 4, 3))
    fm = feature_maps(conv1d, torch.rand(2, 2, 10), "0")
    assert fm.kind == "sequence" and fm.maps.shape == (2, 4, 1, 8)
    torch.manual_seed(0)
    enc = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True))
    tokens = torch.rand(2, 9, 8)
    fm = feature_maps(enc, tokens, "0")
    # a sequence input (not an image): its tokens are steps in a row, never a 3 x 3 grid by coincidence
    # (issue 18.1; token grids are for tokens of an image, see tests/test_layouts.py)
    assert fm.kind == "tokens" and fm.maps.shape == (2, 8, 1, 9)
    out = enc(tokens).detach()
    assert torch.allclose(fm.maps[1, :, 0, 5], out[1, 5])  # token 5 = column 5
    fm = feature_maps(enc, torch.rand(2, 10, 8), "0")
    assert fm.kind == "tokens" and fm.maps.shape == (2, 8, 1, 10)
    fm = feature_maps(enc, torch.rand(2, 7, 8), "0")
    assert fm.kind == "tokens" and fm.maps.shape == (2, 8, 1, 7)
    fm = feature_maps(enc, torch.rand(2, 7, 8), "0", tokens=False)
    assert fm.kind == "sequence" and fm.maps.shape == (2, 7, 1, 8)


def test_unbatched_and_empty_inputs():
    model = tiny_cnn()
    fm = feature_maps(model, torch.rand(3, 8, 8), "features.2")
    assert fm.maps.shape == (1, 8, 8, 8)
    empty = feature_maps(model, torch.rand(0, 3, 8, 8), "features.2", top=3)
    assert empty.maps.shape == (0, 3, 8, 8) and empty.order.shape == (0, 3)


def test_eval_mode_forward_and_state_kept():
    model = tiny_cnn()  # in train mode, BatchNorm with running stats
    x = torch.rand(2, 3, 8, 8)
    before = model_state(model)
    fm = feature_maps(model, x, "features.1")
    assert_same_state(before, model_state(model))
    model.eval()
    with torch.no_grad():
        expected = model.features[1](model.features[0](x))
    assert torch.allclose(fm.maps, expected, atol=1e-6)


def test_batch_equals_samples_one_by_one():
    model = tiny_cnn()
    x = torch.rand(3, 3, 8, 8)
    whole = feature_maps(model, x, "features.5")
    for i in range(3):
        one = feature_maps(model, x[i : i + 1], "features.5")
        assert torch.allclose(whole.maps[i], one.maps[0], atol=1e-5)
        assert torch.equal(whole.order[i], one.order[0])


def test_lazy_attribute():
    assert tl.features.feature_maps is feature_maps


def test_several_layers_from_one_forward_match_one_by_one():
    from torchloupe.features import feature_maps_of

    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    calls = []
    handle = model.features[0].register_forward_hook(lambda *a: calls.append(1))
    many = feature_maps_of(model, x, ["features.2", "features.5"], top=4)
    assert len(calls) == 1  # one forward for both layers
    handle.remove()
    assert list(many) == ["features.2", "features.5"]
    for name, fm in many.items():
        one = feature_maps(model, x, name, top=4)
        assert torch.equal(fm.maps, one.maps) and torch.equal(fm.order, one.order)
        assert torch.equal(fm.channels, one.channels)
