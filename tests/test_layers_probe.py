"""The existing core: finding layers, capturing activations, restoring state, checking inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchloupe as tl
from torchloupe.errors import (InputError, InputShapeError, LayerNotFoundError, NonFiniteInputError, TargetError,
                               UnsupportedModelError)
from torchloupe.inputs import check_input
from torchloupe.layers import closest_names, find_layers, layer_names, name_of
from torchloupe.probe import capture, preserved
from tests.helpers import TinyCNN, assert_same_state, model_state, tiny_cnn


# ---------------------------------------------------------------- layers

def test_find_layer_by_name_glob_type_and_module():
    m = tiny_cnn()
    assert tl.find_layer(m, "features.3") is m.features[3]
    assert tl.find_layer(m, "fc") is m.fc
    assert tl.find_layer(m, "") is m
    assert tl.find_layer(m, nn.Conv2d) is m.features[0]  # first in model order
    assert tl.find_layer(m, m.pool) is m.pool
    assert [n for n, _ in find_layers(m, "features.[03]")] == ["features.0", "features.3"]
    assert [n for n, _ in find_layers(m, nn.BatchNorm2d)] == ["features.1", "features.4"]
    # several specs: model order, no duplicates
    assert [n for n, _ in find_layers(m, ["fc", "features.0", nn.Linear])] == ["features.0", "fc"]
    assert name_of(m, m.features[4]) == "features.4"


def test_wrong_name_suggests_the_closest():
    m = tiny_cnn()
    with pytest.raises(LayerNotFoundError) as err:
        tl.find_layer(m, "feature.3")
    assert str(err.value).startswith("'feature.3' is not a module of TinyCNN; closest: 'features.3'")
    assert err.value.closest[0] == "features.3" and isinstance(err.value, LookupError)
    assert closest_names(m, "features.9")[0].startswith("features.")
    with pytest.raises(LayerNotFoundError, match="has no module of type LSTM; types present: .*Conv2d"):
        tl.find_layer(m, nn.LSTM)
    with pytest.raises(LayerNotFoundError, match="the given Linear module is not part of TinyCNN"):
        tl.find_layer(m, nn.Linear(2, 2))
    with pytest.raises(LayerNotFoundError, match="'layer\\*' is not a module"):
        tl.find_layer(m, "layer*")
    with pytest.raises(LayerNotFoundError, match="not a name, glob, module type or module"):
        tl.find_layer(m, 3.5)
    with pytest.raises(TypeError, match="expected an nn.Module, got str"):
        tl.find_layer("model", "fc")
    with pytest.raises(UnsupportedModelError, match="^model: expected an nn.Module, got str$"):
        tl.find_layer("model", "fc")


def test_layer_names():
    m = tiny_cnn()
    assert layer_names(m)[:2] == ["features", "features.0"]
    assert "features" not in layer_names(m, leaves_only=True)


# ---------------------------------------------------------------- capture / activations

class Twice(nn.Module):
    """One module called twice per forward."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))

    def forward(self, x):
        return self.lin(self.lin(x))


def test_capture_a_module_used_twice():
    m = Twice()
    x = torch.tensor([[1.0, 1.0]])
    with capture(m, "lin") as rec:
        m(x)
    assert rec.calls("lin")[0].tolist() == [[2.0, 3.0]]
    assert rec.calls("lin")[1].tolist() == [[4.0, 9.0]]
    assert rec["lin"].tolist() == [[4.0, 9.0]]  # the last call
    assert tl.activations(m, x, "lin")["lin"].tolist() == [[4.0, 9.0]]


def test_capture_values_and_hooks_removed():
    m = tiny_cnn().eval()
    x = torch.rand(2, 3, 8, 8)
    before = model_state(m)
    with capture(m, ["features.0", "fc"]) as rec:
        out = m(x)
        assert len(m.features[0]._forward_hooks) == 1
    assert_same_state(before, model_state(m))
    assert torch.equal(rec["fc"], out.detach()) and not rec["fc"].requires_grad
    assert torch.allclose(rec["features.0"], m.features[0](x).detach())
    assert set(rec) == {"features.0", "fc"} and len(rec) == 2
    with pytest.raises(KeyError, match="'pool' was not captured"):
        rec["pool"]


def test_capture_is_not_changed_by_inplace_ops_later():
    m = tiny_cnn().eval()  # features.2 is ReLU(inplace=True), right after the BatchNorm
    x = torch.rand(2, 3, 8, 8)
    acts = tl.activations(m, x, ["features.1"])
    with torch.no_grad():
        bn = m.features[1](m.features[0](x))
    assert (bn < 0).any()
    assert torch.equal(acts["features.1"], bn)


def test_hooks_removed_after_an_exception_inside_the_block():
    m = tiny_cnn()
    before = model_state(m)
    with pytest.raises(RuntimeError, match="boom"):
        with capture(m, ["features.0", "features.3"], eval_mode=True) as rec:
            m(torch.rand(1, 3, 8, 8))
            raise RuntimeError("boom")
    assert_same_state(before, model_state(m))
    assert rec["features.3"].shape == (1, 16, 8, 8)


def test_activations_run_in_eval_mode_and_restore_train_mode():
    m = tiny_cnn()  # train mode: a train-mode forward would change the BatchNorm running stats
    x = torch.rand(4, 3, 8, 8)
    before = model_state(m)
    acts = tl.activations(m, x, ["fc"])
    assert_same_state(before, model_state(m))
    assert m.training
    m.eval()
    with torch.no_grad():
        assert torch.allclose(acts["fc"], m(x), atol=1e-6)


def test_preserved_restores_everything():
    m = tiny_cnn()
    m.fc.weight.grad = torch.ones_like(m.fc.weight)
    before = model_state(m)
    user_hook = m.fc.register_forward_hook(lambda *a: None)  # the user's hook stays
    before = model_state(m)
    original_conv = m.features[0]
    with pytest.raises(ValueError):
        with preserved(m):
            m.eval()
            m.fc.weight.requires_grad_(False)
            m.fc.weight.grad = None
            m.features[0] = nn.Identity()
            m.pool.register_forward_hook(lambda *a: None)
            m.features[3].register_full_backward_hook(lambda *a: None)
            m.features[3].register_forward_pre_hook(lambda *a: None)
            m.fc.bias.grad = torch.zeros_like(m.fc.bias)
            raise ValueError("mid-call")
    assert_same_state(before, model_state(m))
    assert m.features[0] is original_conv and m.training
    user_hook.remove()


def test_preserved_rejects_a_non_module():
    with pytest.raises(TypeError, match="expected an nn.Module"):
        with preserved(object()):
            pass


# ---------------------------------------------------------------- inputs

def test_check_input_errors_name_the_shapes():
    m = tiny_cnn()
    with pytest.raises(InputShapeError) as err:
        check_input(m, torch.rand(2, 1, 8, 8))
    msg = str(err.value)
    assert "(2, 1, 8, 8)" in msg and "1 channels" in msg and "wants 3 channels (N, 3, H, W)" in msg
    with pytest.raises(InputShapeError, match="wants 4 dimensions"):
        check_input(m, torch.rand(3, 8))
    with pytest.raises(NonFiniteInputError, match="1 NaN value"):
        x = torch.rand(1, 3, 4, 4)
        x[0, 1, 2, 2] = float("nan")
        check_input(m, x)
    with pytest.raises(NonFiniteInputError, match="infinite"):
        check_input(m, torch.full((1, 3, 2, 2), float("inf")))
    with pytest.raises(InputError, match="must be a torch.Tensor, got list"):
        check_input(m, [1, 2, 3])


def test_unbatched_input_becomes_a_batch_of_one_and_empty_stays_empty():
    m = tiny_cnn()
    x = torch.rand(3, 8, 8)
    b = check_input(m, x)
    assert b.shape == (1, 3, 8, 8) and torch.equal(b[0], x)
    acts = tl.activations(m, x, "fc")
    assert acts["fc"].shape == (1, 4)
    empty = check_input(m, torch.rand(0, 3, 8, 8))
    assert empty.shape == (0, 3, 8, 8)
    assert tl.activations(m.eval(), torch.rand(0, 3, 8, 8), "features.0")["features.0"].shape == (0, 8, 8, 8)


def test_check_input_for_linear_models():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert check_input(mlp, torch.rand(8, 8)).shape == (1, 8, 8)  # one sample of 64 features
    assert check_input(mlp, torch.rand(2, 8, 8)).shape == (2, 8, 8)  # a batch that already fits
    with pytest.raises(InputShapeError, match="wants 64 features after flattening"):
        check_input(mlp, torch.rand(2, 1, 8, 9))
    lin = nn.Linear(5, 2)
    assert check_input(lin, torch.rand(5)).shape == (1, 5)
    with pytest.raises(InputShapeError, match="wants 5 features in the last dimension"):
        check_input(lin, torch.rand(2, 4))


class _ViewThenLinear(nn.Module):
    """Reshapes inside forward, so its first layer sees 64 features whatever the input's last dim."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc1(x.view(len(x), -1))


class _HeadFirst(nn.Module):
    """Registers its head before the conv and a helper linear after it: registration order is not run order."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(6, 10)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.gate = nn.Linear(3, 3)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def test_inputs_a_model_takes_are_accepted_whatever_its_layers_registration_order():
    m = _ViewThenLinear()
    before = model_state(m)
    x = torch.rand(5, 1, 8, 8)
    assert tl.activations(m, x, "fc1")["fc1"].shape == (5, 10)
    with pytest.raises(InputShapeError, match="wants 64 features in the last dimension"):
        check_input(m, torch.rand(5, 1, 7, 7))  # the model cannot take it: the static message stands
    head_first = _HeadFirst()
    head_before = model_state(head_first)
    maps = tl.cam.GradCAM(head_first, "conv")(torch.rand(2, 3, 16, 16), target=7).maps
    assert maps.shape == (2, 16, 16)  # 10 classes, from the output, not the 3 of the last Linear
    with pytest.raises(TargetError, match="10 classes"):
        tl.cam.GradCAM(head_first, "conv")(torch.rand(2, 3, 16, 16), target=12)
    assert tl.saliency.gradient(head_first, torch.rand(1, 3, 8, 8), 9).shape == (1, 3, 8, 8)
    assert_same_state(before, model_state(m))
    assert_same_state(head_before, model_state(head_first))


class _EditsItsInput(nn.Module):
    """Subtracts in place from its input, reshapes, and only then reaches its first layer."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 10)

    def forward(self, x):
        x -= 0.5
        return self.fc1(x.view(len(x), -1))


class _AddsTheBatch(nn.Module):
    """Takes one gray image (1, H, W) or a batch (N, 1, H, W)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return self.conv(x.unsqueeze(0) if x.dim() == 3 else x).mean((2, 3))


def test_the_trial_forward_runs_on_a_copy_and_reads_dimension_0_as_the_batch():
    x = torch.rand(3, 1, 8, 8)
    keep = x.clone()
    m = _EditsItsInput()
    out = tl.activations(m, x, "fc1")["fc1"]
    assert torch.equal(x, keep)  # the forwards run on copies: the caller's tensor is never edited
    # (the model's own edit is seen once: neither the trial nor the real forward runs on an edited input)
    assert torch.allclose(out, m.fc1((keep - 0.5).view(3, -1)))
    # Five gray images without their channel dimension are not a batch for this model: the typed
    # error stands (the trial's two "samples" came back as one output).
    with pytest.raises(InputShapeError, match="5 channels"):
        tl.activations(_AddsTheBatch(), torch.rand(5, 28, 28), "conv")


def test_tiny_cnn_is_the_helper_model():
    assert isinstance(tiny_cnn(), TinyCNN)


def test_capture_keeps_what_the_user_does_inside_the_block():
    from tests.helpers import tiny_cnn

    m = tiny_cnn().eval()
    x = torch.rand(2, 3, 8, 8)
    seen = []
    with tl.capture(m, ["features.0"]) as rec:
        m(x).sum().backward()
        handle = m.fc.register_forward_hook(lambda mod, a, out: seen.append(out.shape))
    assert rec["features.0"].shape == (2, 8, 8, 8)
    assert m.features[0].weight.grad is not None  # the user's backward stays
    m(x)
    assert seen == [torch.Size([2, 4])]  # the user's hook stays
    handle.remove()
    assert not m.features[0]._forward_hooks  # capture's own hook is gone
    m.train()
    with tl.capture(m, ["fc"], eval_mode=True):
        assert not m.training
    assert m.training and m.features[1].training
