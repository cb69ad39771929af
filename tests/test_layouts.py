"""Layouts of layer outputs (tl.layers.layout_of) and the CAMs, default layers and activations that
read them: convolutions of any rank, tokens with and without a class token, channels-last."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import torchloupe as tl
from torchloupe import layers as L
from torchloupe.errors import LayerNotFoundError, UsageError


@pytest.fixture(autouse=True)
def _fresh_warnings():
    L._WARNED.clear()
    yield
    L._WARNED.clear()


# --- layout_of -----------------------------------------------------------------------------
def test_layout_of_convolutions_of_any_rank():
    t1 = torch.arange(2 * 3 * 5.0).reshape(2, 3, 5)
    lay = L.layout_of(t1, module=nn.Conv1d(2, 3, 1))
    assert (lay.kind, lay.channel, lay.positions, lay.guessed) == ("conv", 1, (2,), False)
    assert lay.to_bcs(t1) is t1 and lay.spatial == (5,)
    lay = L.layout_of((2, 4, 3, 6, 8), (2, 1, 6, 12, 16), module=nn.Conv3d(1, 4, 1))
    assert (lay.kind, lay.channel, lay.positions, lay.channels) == ("conv", 1, (2, 3, 4), 4)
    # a 5-D output without a module hint: axes 2.. have the input's aspect (3:6:8 = 6:12:16)
    lay = L.layout_of((2, 4, 3, 6, 8), (2, 1, 6, 12, 16))
    assert (lay.kind, lay.guessed) == ("conv", False)
    # a Conv1d net on a (B, C, L) input: the length is kept, the channels change
    lay = L.layout_of((2, 16, 300), (2, 10, 300))
    assert (lay.kind, lay.channel, lay.guessed) == ("conv", 1, False)


def test_layout_of_tokens_with_and_without_class_token():
    t = torch.arange(2 * 17 * 4.0).reshape(2, 17, 4)
    lay = L.layout_of(t, (2, 3, 32, 32))
    assert (lay.kind, lay.channel, lay.extra, lay.grid) == ("tokens", 2, 1, (4, 4))
    bcs = lay.to_bcs(t)
    assert bcs.shape == (2, 4, 4, 4)
    # patch token 1 + 4*2 + 3 = 12 (after the class token) sits at grid (2, 3); its features on axis 1
    assert torch.equal(bcs[1, :, 2, 3], t[1, 12])
    assert torch.equal(lay.to_bcs(t, grid=False), t.transpose(1, 2))
    lay = L.layout_of((2, 16, 4), (2, 3, 32, 32))
    assert (lay.extra, lay.grid) == (0, (4, 4))
    # a non-image (B, T, F) input: the tokens are the positions (no grid); features change size
    lay = L.layout_of((2, 7, 32), (2, 7, 5))
    assert (lay.kind, lay.positions, lay.grid, lay.guessed) == ("tokens", (1,), None, False)
    # token ids (B, T) of a text model
    assert L.layout_of((2, 7, 32), (2, 7)).kind == "tokens"
    # a token layer by its type, even where the shapes would allow (B, C, L)
    lay = L.layout_of((2, 7, 7), (2, 9, 7), module=nn.LayerNorm(7))
    assert (lay.kind, lay.guessed) == ("tokens", False)


def test_layout_of_channels_last():
    t = torch.arange(2 * 4 * 4 * 96.0).reshape(2, 4, 4, 96)
    lay = L.layout_of(t, (2, 3, 32, 32))
    assert (lay.kind, lay.channel, lay.positions) == ("channels_last", 3, (1, 2))
    assert torch.equal(lay.to_bcs(t), t.permute(0, 3, 1, 2))
    # the LayerNorm inside a ConvNeXt block runs on (B, H, W, C): its type says so
    lay = L.layout_of((2, 8, 8, 8), (2, 3, 32, 32), module=nn.LayerNorm(8))
    assert (lay.kind, lay.guessed) == ("channels_last", False)


def test_channel_dim_overrides_and_guesses_warn_once():
    lay = L.layout_of((2, 5, 6), (2, 5, 6), channel_dim=1)
    assert (lay.kind, lay.channel, lay.guessed) == ("conv", 1, False)
    lay = L.layout_of((2, 4, 4, 6), None, channel_dim=-1)
    assert (lay.kind, lay.channel, lay.positions) == ("channels_last", 3, (1, 2))
    with pytest.raises(UsageError, match="channel_dim=0"):
        L.layout_of((2, 5, 6), channel_dim=0)
    with pytest.warns(UserWarning, match=r"\(B, T, C\) tokens .*pass channel_dim="):
        lay = L.layout_of((2, 5, 6), (2, 5, 6))
    assert lay.guessed and lay.kind == "tokens"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.layout_of((2, 5, 6), (2, 5, 6))  # said once


# --- CAM on tokens of a sequence -------------------------------------------------------------
class SeqClassifier(nn.Module):
    """(B, T, F) -> TransformerEncoder -> mean over tokens -> Linear."""

    def __init__(self, d=8):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(d, 2)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def test_gradcam_on_transformer_encoder_maps_tokens():
    torch.manual_seed(0)
    model = SeqClassifier().eval()
    x = torch.randn(2, 6, 8)
    planted = [4, 1]
    with torch.no_grad():
        a = model.encoder(x)  # (B, T, F): LayerNorm outputs, all of one norm
        # class 0 reads the direction of sample 0's planted token: its map peaks there by construction
        model.head.weight[0] = a[0, planted[0]]
        model.head.weight[1] = a[1, planted[1]]
    res = tl.cam.GradCAM(model)(x, [0, 1])
    assert res.layer == "encoder"
    assert res.layout.kind == "tokens" and res.layout.positions == (1,)
    assert res.maps.shape == (2, 6) and res.raw.shape == (2, 6)
    assert res.maps.argmax(1).tolist() == planted
    # Grad-CAM by hand: d score / d A[t] = w_k / T for every token, so the map is relu(A[t] . w_k) / T
    w = model.head.weight.detach()[[0, 1]]
    want = torch.relu(torch.einsum("btf,bf->bt", a, w) / 6)
    torch.testing.assert_close(res.raw, want, rtol=1e-5, atol=1e-6)


# --- default layers -------------------------------------------------------------------------
def test_hf_vit_default_layer_reaches_every_patch():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64)
    model = transformers.ViTForImageClassification(cfg).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    name, module = tl.cam.default_layer(model, x)
    assert name.endswith("1.layernorm_before") and isinstance(module, nn.LayerNorm)
    res = tl.cam.GradCAM(model)(x, [0, 1])
    assert res.layer == name and res.layout.extra == 1 and res.layout.grid == (4, 4)
    # reference: float64 activations and gradients of the target logits at that layer, by hand
    kept = {}
    m64 = __import__("copy").deepcopy(model).double()
    h = dict(m64.named_modules())[name].register_forward_hook(lambda m, a, o: kept.update(a=o))
    try:
        logits = m64(pixel_values=x.double()).logits
    finally:
        h.remove()
    (g,) = torch.autograd.grad(logits[0, 0] + logits[1, 1], [kept["a"]])
    A = kept["a"].detach()[:, 1:].reshape(2, 4, 4, 32)
    G = g[:, 1:].reshape(2, 4, 4, 32)
    want = torch.relu((A * G.mean((1, 2), keepdim=True)).sum(-1)).float()
    assert want.abs().max() > 0
    torch.testing.assert_close(res.raw, want, rtol=1e-4, atol=1e-7)
    # the final layernorm only gets the class token's gradient: its maps are all zero
    assert torch.equal(tl.cam.GradCAM(model, "vit.layernorm")(x, [0, 1]).raw, torch.zeros(2, 4, 4))


class WithAux(nn.Module):
    """googlenet-style: an auxiliary head that runs in training mode only."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.aux = nn.Conv2d(4, 2, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        out = self.fc(y.mean((2, 3)))
        if self.training:
            return out, self.aux(y)
        return out


def test_default_layer_never_picks_a_layer_that_does_not_run():
    model = WithAux().train()
    assert tl.cam.default_layer(model, torch.rand(1, 3, 8, 8))[0] == "conv"
    assert model.training  # given back as it came


def test_activations_of_a_layer_that_does_not_run_is_an_error():
    model = WithAux()
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(LayerNotFoundError, match="'aux' did not run"):
        tl.activations(model, x, ["conv", "aux"])
    out = tl.activations(model, x, ["conv"])
    assert torch.equal(out["conv"], model.eval().conv(x).detach())


# --- feature maps ---------------------------------------------------------------------------
def test_feature_maps_of_a_channels_last_layer_are_permuted():
    model = nn.Sequential(nn.Conv2d(3, 6, 4, stride=4), Permute(), nn.LayerNorm(6))
    x = torch.rand(2, 3, 16, 16)
    fm = tl.features.feature_maps(model, x, "2")
    assert fm.kind == "channels-last" and fm.layout.kind == "channels_last"
    out = model(x).detach()  # (2, 4, 4, 6)
    assert torch.equal(fm.maps, out.permute(0, 3, 1, 2))


class Permute(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


def test_layers_that_run_leave_out_googlenet_aux_heads():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).train()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs[-1].startswith("aux2.")  # what a "last registered Conv2d" rule would pick
    ran = tl.features.layers_that_run(model, torch.rand(1, 3, 64, 64), nn.Conv2d)
    assert ran[-1] == "inception5b.branch4.1.conv" and not any(n.startswith("aux") for n in ran)
    assert ran == [n for n in convs if not n.startswith("aux")]  # one conv in each of the two aux heads
    assert model.training
