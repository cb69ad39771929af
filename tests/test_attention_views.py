"""Attention / recurrent views and report sections: escaping, limits, applicability, ViT patches."""

from __future__ import annotations

import json
import re

import torch
from torch import nn

import torchloupe as tl
from tests.helpers import tiny_cnn
from torchloupe.reporting.base import Figure, Html, NotApplicable, Subject, Table


def _maps(L=2, H=2, T=5, B=1):
    torch.manual_seed(0)
    return {f"l{i}": torch.rand(B, H, T, T).softmax(-1) for i in range(L)}


def test_token_view_escapes_tokens_and_carries_only_numbers():
    from torchloupe.render.attention import token_view_html

    maps = _maps()
    evil = ["<script>alert(1)</script>", "a&b", '"q"', "</script>", "ok"]
    markup = token_view_html(maps, evil)
    assert "<script>alert(1)" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup and "a&amp;b" in markup
    payload = re.search(r'<script type="application/json" class="tl-data">(.*?)</script>', markup, re.S).group(1)
    data = json.loads(payload)
    assert set(data) == {"mean", "heads"}
    assert data["heads"][1][0][2][0] == round(float(maps["l1"][0, 0, 2, 0]) * 1000)  # [layer][head][query][key]
    assert "http" not in markup and "src=" not in markup  # nothing external
    assert markup.count("<script") == 2


def test_token_view_limits_long_inputs():
    from torchloupe.render.attention import token_view_html

    maps = _maps(L=4, H=12, T=100)
    markup = token_view_html(maps, [f"t{i}" for i in range(100)], max_tokens=64, max_values=100_000)
    data = json.loads(re.search(r'class="tl-data">(.*?)</script>', markup, re.S).group(1))
    assert len(data["mean"][0]) == 64 and data["heads"] == []
    assert "first 64 of 100 tokens" in markup and "heads averaged" in markup


def test_heads_grid_and_matrix_figures_draw():
    from torchloupe.render.attention import heads_grid, matrix_figure

    fig = heads_grid(_maps(L=3, H=4))
    assert len(fig.axes) == 12
    fig = matrix_figure(tl.attention.rollout(_maps())[0], ["a", "b", "c", "d", "e"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c", "d", "e"]


class _TinyViT(nn.Module):
    """4x4 patches of a 16x16 image, a CLS token, one encoder layer, a head."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2, enable_nested_tensor=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1)
        return self.fc(self.enc(t)[:, 0])


def test_attention_section_vit_gets_patch_overlay_and_cnn_is_not_applicable():
    from torchloupe.reporting.sections import attention as section

    torch.manual_seed(0)
    vit = _TinyViT().eval()
    blocks = section.build(Subject("vit", vit, torch.rand(2, 3, 16, 16)), {"quick": True, "seed": 0})
    captions = [b.caption for b in blocks if isinstance(b, Figure)]
    assert "rollout over the image patches" in captions
    res = section.build(Subject("cnn", tiny_cnn(), torch.rand(2, 3, 16, 16)), {"quick": True, "seed": 0})
    assert isinstance(res, NotApplicable) and "no attention" in res.reason


def test_attention_section_token_view_and_attend_back_table():
    from torchloupe.reporting.sections import attention as section

    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 8)
    subject = Subject("enc", enc, x, extras={"tokens": [list("abcdef")] * 2, "attend_back": 1})
    blocks = section.build(subject, {"quick": True, "seed": 0})
    assert any(isinstance(b, Html) and "tl-token-view" in b.markup for b in blocks)
    table = next(b for b in blocks if isinstance(b, Table))
    a = tl.attention.capture(enc, x)["layers.0.self_attn"]
    t = torch.arange(1, 6)
    assert table.rows[0][1] == f"{float(a[:, 0, t, t - 1].mean()):.3f}"


def test_recurrent_section_on_lstm_and_cells():
    from torchloupe.reporting.sections import recurrent as section

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(2, 4, batch_first=True)

        def forward(self, x):
            return self.gru(x)[0][:, -1]

    x = torch.randn(2, 7, 2)
    blocks = section.build(Subject("gru", Seq(), x, extras={"signal": x[..., 0].cumsum(1)}), {"quick": True, "seed": 0})
    figs = [b.caption for b in blocks if isinstance(b, Figure)]
    assert figs == ["gru: states over time", "gru: gate saturation", "gru: the units most correlated with the signal"]

    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.LSTMCell(2, 3)

        def forward(self, x):
            h = None
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return h[0]

    blocks = section.build(Subject("cells", Loop(), x), {"quick": True, "seed": 0})
    assert [b.caption for b in blocks if isinstance(b, Figure)][0] == "cell: LSTM cell, 7 calls"
    assert isinstance(section.build(Subject("cnn", tiny_cnn(), torch.rand(1, 3, 8, 8)), {}), NotApplicable)
