"""tl.attention.capture on attention written by hand: torchvision's Swin and MaxViT (relative position
biases included), blog-style Conv1d attention, memory reads written as methods; the warning when
nothing is found; softmax=True results drawn."""

from __future__ import annotations

import json
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import torchloupe as tl
from tests.section_blocks import blocks_of


def _no_warning_capture(model, *x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return tl.attention.capture(model, *x, **kw)


# -- torchvision Swin ------------------------------------------------------------------------------

def _swin_window_attention(attn, x):
    """softmax(q kᵀ / √d + B) of an unshifted Swin block, by hand: x (B, H, W, C) after norm1."""
    B, H, W, C = x.shape
    ws, heads = attn.window_size[0], attn.num_heads
    x = F.pad(x, (0, 0, 0, (ws - W % ws) % ws, 0, (ws - H % ws) % ws))
    pH, pW = x.shape[1:3]
    windows = x.view(B, pH // ws, ws, pW // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)
    qkv = windows @ attn.qkv.weight.T + attn.qkv.bias
    q, k, _ = qkv.reshape(windows.shape[0], ws * ws, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    N = ws * ws
    bias = attn.relative_position_bias_table[attn.relative_position_index].view(N, N, heads).permute(2, 0, 1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // heads)
    return torch.softmax(scores + bias, dim=-1), torch.softmax(scores, dim=-1)


def test_swin_t_every_block_captured_and_block_0_equals_hand_computed():
    torch.manual_seed(0)
    model = torchvision.models.swin_t(weights=None).eval()
    block = model.features[1][0]
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_(0.0, 1.0)  # a bias that matters
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    maps = _no_warning_capture(model, x)
    wanted = [n for n, m in model.named_modules() if type(m).__name__ == "ShiftedWindowAttention"]
    assert len(wanted) == 12 and list(maps) == wanted
    with torch.no_grad():
        ref, without_bias = _swin_window_attention(block.attn, block.norm1(model.features[0](x)))
    got = maps["features.1.0.attn"]
    assert got.shape == (2 * 9, 3, 49, 49)  # 16 x 16 tokens padded to 21 x 21: 9 windows per image
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    assert float((ref - without_bias).abs().max()) > 0.1  # the relative position bias is in the reference
    # the shifted block's mask (-100 on pairs from different regions): those weights vanish
    shifted = maps["features.1.1.attn"]
    assert float(shifted.amin()) < 1e-30 and torch.allclose(shifted.sum(-1), torch.ones(()), atol=1e-5)


# -- torchvision MaxViT ----------------------------------------------------------------------------

class _Grid(nn.Module):
    def __init__(self):
        super().__init__()
        from torchvision.models.maxvit import RelativePositionalMultiHeadAttention

        self.attn = RelativePositionalMultiHeadAttention(16, 8, 16)  # 2 heads, 4 x 4 windows

    def forward(self, x):
        return self.attn(x)


def test_maxvit_relative_attention_equals_hand_computed_with_windows_folded_batch_major():
    torch.manual_seed(1)
    model = _Grid().eval()
    with torch.no_grad():
        model.attn.relative_position_bias_table.normal_(0.0, 1.0)
    x = torch.randn(2, 3, 16, 16)  # (B, G, P, D): 3 windows of 16 positions
    maps = _no_warning_capture(model, x)
    assert list(maps) == ["attn"]
    a = model.attn
    with torch.no_grad():
        q, k, _ = (x @ a.to_qkv.weight.T + a.to_qkv.bias).chunk(3, dim=-1)
        q = q.reshape(2, 3, 16, 2, 8).permute(0, 1, 3, 2, 4)
        k = k.reshape(2, 3, 16, 2, 8).permute(0, 1, 3, 2, 4)
        bias = a.relative_position_bias_table[a.relative_position_index.view(-1)].view(16, 16, 2).permute(2, 0, 1)
        ref = torch.softmax(q @ k.transpose(-1, -2) * 16 ** -0.5 + bias, dim=-1)  # (B, G, H, T, S)
    torch.testing.assert_close(maps["attn"], ref.reshape(6, 2, 16, 16), rtol=0, atol=1e-6)
    torch.testing.assert_close(maps["attn"][3], ref[1, 0])  # batch-major: sample 1's first window is row 3


def test_maxvit_every_attention_module_captured_in_order():
    # maxvit_t's own code at a small configuration (maxvit_t itself needs 224 x 224 and 31M parameters)
    from torchvision.models.maxvit import MaxVit

    torch.manual_seed(0)
    model = MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16], block_layers=[1, 2],
                   head_dim=4, stochastic_depth_prob=0.0, num_classes=3).eval()
    maps = _no_warning_capture(model, torch.rand(2, 3, 32, 32))
    wanted = [n for n, m in model.named_modules() if type(m).__name__ == "RelativePositionalMultiHeadAttention"]
    assert len(wanted) == 6 and list(maps) == wanted  # window and grid attention of 3 blocks
    first = maps[wanted[0]]
    assert first.shape == (2 * 16, 2, 4, 4)  # 8 x 8 after the stem and first block: 16 windows of 2 x 2
    torch.testing.assert_close(first.sum(-1), torch.ones(32, 2, 4))


# -- blog-style attention, memory read as a method -------------------------------------------------

class Attention(nn.Module):
    """The article's ``attention_weights = model.attention(input)``: returns the weights themselves."""

    def __init__(self, channels, d):
        super().__init__()
        self.d = d
        self.query = nn.Conv1d(channels, d, 1)
        self.key = nn.Conv1d(channels, d, 1)

    def forward(self, h):  # (B, C, T) -> (B, T, T)
        q, k = self.query(h).transpose(1, 2), self.key(h).transpose(1, 2)
        return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.d), -1)


class SelfAttention(nn.Module):
    """Everything in one forward, no nn.MultiheadAttention."""

    def __init__(self, channels, d):
        super().__init__()
        self.d = d
        self.q, self.k, self.v = (nn.Conv1d(channels, d, 1) for _ in range(3))

    def forward(self, h):  # (B, C, T) -> (B, T, d)
        q, k, v = (f(h).transpose(1, 2) for f in (self.q, self.k, self.v))
        return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.d), -1) @ v


class Memory(nn.Module):
    def __init__(self, slots, d):
        super().__init__()
        self.keys = nn.Parameter(torch.randn(slots, d))
        self.values = nn.Parameter(torch.randn(slots, d))

    def read(self, q):  # a method, not forward: no module hook fires
        w = F.softmax(q @ self.keys.T, dim=1)
        return torch.einsum("bs,sd->bd", w, self.values)


class BlogModel(nn.Module):
    """Conv1d over (B, 10, 300) sequences + hand-written attention + a memory read."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(300, 16, 3, padding=1)
        self.attention = Attention(16, 8)
        self.value = nn.Conv1d(16, 16, 1)
        self.block = SelfAttention(16, 8)
        self.memory = Memory(5, 16)
        self.fc = nn.Linear(16 + 8 + 16, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x.transpose(1, 2)))  # (B, 16, 10)
        weights = self.attention(h)
        context = weights @ self.value(h).transpose(1, 2)  # the product is in the parent
        mixed = self.block(h)
        read = self.memory.read(context.mean(1))
        return self.fc(torch.cat([context.mean(1), mixed.mean(1), read], 1)).softmax(-1)


def test_blog_style_attention_and_memory_method_are_named_by_the_module_that_computes_them():
    torch.manual_seed(2)
    model = BlogModel().eval()
    x = torch.randn(4, 10, 300)
    maps = _no_warning_capture(model, x)
    assert list(maps) == ["attention", "block", "memory"]  # the final softmax multiplies nothing
    with torch.no_grad():
        h = torch.relu(model.conv(x.transpose(1, 2)))
        a = model.attention
        w1 = torch.softmax(a.query(h).transpose(1, 2) @ a.key(h) / math.sqrt(8), -1)
        b = model.block
        w2 = torch.softmax(b.q(h).transpose(1, 2) @ b.k(h) / math.sqrt(8), -1)
        context = w1 @ model.value(h).transpose(1, 2)
        w3 = torch.softmax(context.mean(1) @ model.memory.keys.T, dim=1)
    torch.testing.assert_close(maps["attention"], w1[:, None], rtol=0, atol=1e-6)  # (B, 1, T, T): one head
    torch.testing.assert_close(maps["block"], w2[:, None], rtol=0, atol=1e-6)
    torch.testing.assert_close(maps["memory"], w3[:, None, None], rtol=0, atol=1e-6)  # (B, 1, 1, slots)
    reads = tl.attention.capture(model, x, softmax=True, within="memory")  # the method, under its module
    assert list(reads) == ["attention", "block", "memory"]
    torch.testing.assert_close(reads["memory"], w3, rtol=0, atol=1e-6)  # raw shape (B, slots)
    one = tl.attention.capture(model, x[2:3])
    torch.testing.assert_close(one["block"], maps["block"][2:3], rtol=0, atol=1e-6)


def test_softmax_on_another_axis_and_transposed_product():
    class Pool(nn.Module):  # SAGAN-style: softmax over dim 1, the product takes its transpose on the right
        def forward(self, v, s):
            w = torch.softmax(s, dim=1)  # (B, S, T): normalised over S
            return torch.bmm(v, w)  # (B, D, S) @ (B, S, T)

    v, s = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    maps = _no_warning_capture(Pool().eval(), v, s)
    torch.testing.assert_close(maps["model"], torch.softmax(s, 1).transpose(1, 2)[:, None])  # (B, 1, T, S)


def test_relevance_reaches_hand_written_attention():
    class Clf(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = SelfAttention(4, 4)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):  # (B, 4, T)
            return self.fc(self.block(x)[:, 0])

    torch.manual_seed(3)
    model = Clf().eval()
    x = torch.randn(2, 4, 5)
    got = tl.attention.relevance(model, x, target=torch.tensor([1, 0]))
    b = model.block
    q, k, v = (f(x).transpose(1, 2) for f in (b.q, b.k, b.v))
    a = torch.softmax(q @ k.transpose(1, 2) / 2.0, -1)
    out = model.fc((a @ v)[:, 0])
    (g,) = torch.autograd.grad(out[0, 1] + out[1, 0], [a])
    ref = tl.attention.relevance_rule([a[:, None].detach()], [g[:, None]])
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    assert float((got - torch.eye(5)).abs().max()) > 1e-3


# -- nothing found: a warning saying what was looked for -------------------------------------------

def test_capture_warns_what_it_looked_for_instead_of_a_silent_empty():
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    cnn(torch.rand(1, 3, 6, 6))
    with pytest.warns(UserWarning, match=r"found no attention in Sequential: it looked for nn.MultiheadAttention "
                                         r"\(0 in the model\), F.scaled_dot_product_attention .*no softmax ran"):
        assert tl.attention.capture(cnn.eval(), torch.rand(2, 3, 6, 6)) == {}
    clf = nn.Sequential(nn.Linear(4, 3), nn.Softmax(-1)).eval()
    with pytest.warns(UserWarning, match=r"1 softmax\(es\) ran but none was multiplied by a tensor; pass softmax=True"):
        assert tl.attention.capture(clf, torch.rand(2, 4)) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = tl.attention.capture(clf, torch.rand(2, 4), softmax=True)
    assert list(got) == ["1"] and got["1"].shape == (2, 3)


# -- softmax=True results are drawable ---------------------------------------------------------------

def test_heads_grid_draws_softmax_results_of_any_attention_shape():
    from torchloupe.render.attention import heads_grid, token_view_html

    torch.manual_seed(2)
    model = BlogModel().eval()
    raw = tl.attention.capture(model, torch.randn(2, 10, 300), softmax=True)
    assert raw["attention"].shape == (2, 10, 10) and raw["memory"].shape == (2, 5)  # as computed
    fig = heads_grid(raw)
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(images) == 4  # attention, block, memory, the final softmax (2, 3): one row each
    assert (images[0] == raw["attention"][0].numpy()).all()
    assert images[2].shape == (1, 5) and (images[2][0] == raw["memory"][0].numpy()).all()
    html = token_view_html(raw, [f"t{i}" for i in range(10)])
    select = re.search(r'<select class="tl-layer">(.*?)</select>', html).group(1)
    assert re.findall(r'<option value="\d+">([^<]+)</option>', select) == ["attention", "block"]  # the (B, T, T) layers
    data = json.loads(re.search(r'class="tl-data">(.*?)</script>', html, re.S).group(1))
    assert [len(h) for h in data["samples"][0]["heads"]] == [1, 1]  # one head each


# -- Hugging Face BERT from a tiny config: equal to its own output_attentions ---------------------------

@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_tiny_bert_equals_its_own_output_attentions(impl):
    from tests.helpers import peer

    transformers = peer("transformers")
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(5)
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    model.config._attn_implementation = impl
    ids = torch.randint(0, 60, (2, 9), generator=torch.Generator().manual_seed(6))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    maps = _no_warning_capture(model, input_ids=ids, attention_mask=mask)
    assert model.config._attn_implementation == impl
    assert list(maps) == [f"encoder.layer.{i}.attention.self" for i in range(3)]  # each once, no duplicate
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    for got, want in zip(maps.values(), ref):
        assert got.shape == want.shape == (2, 4, 9, 9)
        assert float((got - want).abs().max()) <= 1e-5
    assert float(maps["encoder.layer.0.attention.self"][1][..., 6:].abs().max()) == 0.0


# -- the report section shows attention and memory reads together ----------------------------------

class MHAMemory(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.memory = Memory(4, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h, _ = self.attn(x, x, x)
        return self.fc(self.memory.read(h.mean(1)))


def test_report_section_shows_multihead_attention_and_memory_reads_together():
    from torchloupe.reporting.base import Figure, Finding, Subject, Text
    from torchloupe.reporting.sections import attention as section

    torch.manual_seed(4)
    model = MHAMemory().eval()
    x = torch.randn(3, 5, 8)
    slot = torch.tensor([0, 1, 2])
    for extras in ({"memory": "memory", "slot": slot}, {"slot": slot}):  # declared or found by itself
        blocks = blocks_of(section.build(Subject("m", model, x, extras=extras), {"quick": True, "seed": 0}))
        captions = [b.caption for b in blocks if isinstance(b, Figure)]
        assert captions[0] == "read weights of memory"
        assert "attention of sample 0 per layer (rows) and head (columns)" in captions
        with torch.no_grad():
            h, _ = model.attn(x, x, x)
            w = torch.softmax(h.mean(1) @ model.memory.keys.T, 1)
        hit = float((w.argmax(-1) == slot).float().mean())
        assert f"peaks on the slot holding the answer in {hit:.1%} of 3 samples" in " ".join(
            b.text for b in blocks if isinstance(b, (Text, Finding)))


def test_report_section_on_windowed_attention_says_how_the_batch_is_folded():
    from torchvision.models.maxvit import MaxVit

    from torchloupe.reporting.base import Figure, Html, Subject, Text
    from torchloupe.reporting.sections import attention as section

    torch.manual_seed(0)
    model = MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16], block_layers=[1, 2],
                   head_dim=4, stochastic_depth_prob=0.0, num_classes=3).eval()
    blocks = blocks_of(section.build(Subject("maxvit", model, torch.rand(2, 3, 32, 32)), {"quick": True, "seed": 0}))
    captions = [b.caption for b in blocks if isinstance(b, Figure)]
    assert captions == []  # no rollout across differently folded layers
    # six layers: one at a time in a layer picker, the folding said above it
    texts = " ".join(b.text for b in blocks if isinstance(b, Text))
    assert "(windows folded into the batch: the first window of sample 0)" in texts
    picker = next(b.markup for b in blocks if isinstance(b, Html))
    assert picker.count("<img") == 6 and 'class="tl-layer-picker"' in picker
    assert blocks[0].text.startswith("6 attention layers × 2–4 heads, 4 queries × 4 keys")
    assert isinstance(blocks[0], Text)
