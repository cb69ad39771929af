"""Attention / recurrent views and report sections: escaping, limits, applicability, ViT patches."""

from __future__ import annotations

import json
import re

import torch
from torch import nn

import torchloupe as tl
from tests.helpers import tiny_cnn
from torchloupe.reporting.base import Figure, Html, NotApplicable, Subject, Table
from tests.section_blocks import blocks_of


def _maps(L=2, H=2, T=5, B=1):
    torch.manual_seed(0)
    return {f"l{i}": torch.rand(B, H, T, T).softmax(-1) for i in range(L)}


def test_token_view_escapes_tokens_and_carries_only_numbers():
    from torchloupe.render.attention import token_view_html

    maps = _maps(B=2)
    evil = ["<script>alert(1)</script>", "a&b", '"q"', "</script>", "ok"]
    markup = token_view_html(maps, [evil, list("vwxyz")], assets=False)
    assert "<script>alert(1)" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup and "a&amp;b" in markup
    payload = re.search(r'<script type="application/json" class="tl-data">(.*?)</script>', markup, re.S).group(1)
    assert "<" not in payload  # nothing in a token can end the island
    data = json.loads(payload)
    assert [s["tokens"] for s in data["samples"]] == [evil, list("vwxyz")]  # both samples, their own tokens
    # [sample][layer][head][query][key], integers 0..1000
    assert data["samples"][1]["heads"][1][0][2][0] == round(float(maps["l1"][1, 0, 2, 0]) * 1000)
    assert data["samples"][0]["mean"][0][3][4] == round(float(maps["l0"][0, :, 3, 4].mean()) * 1000)
    assert "http" not in markup and "src=" not in markup  # nothing external
    assert markup.count("<script") == 1  # the data only: the script comes once per page
    alone = token_view_html(maps, evil, sample=1)  # one sample, with its own style and script (a notebook)
    assert alone.count("<script") == 2 and "<style>" in alone
    assert len(json.loads(re.search(r'class="tl-data">(.*?)</script>', alone, re.S).group(1))["samples"]) == 1


def test_token_view_limits_long_inputs():
    from torchloupe.render.attention import token_view_html

    maps = _maps(L=4, H=12, T=100, B=3)
    markup = token_view_html(maps, [f"t{i}" for i in range(100)], max_tokens=64, max_values=100_000)
    data = json.loads(re.search(r'class="tl-data">(.*?)</script>', markup, re.S).group(1))
    assert len(data["samples"][0]["mean"][0]) == 64 and data["samples"][0]["heads"] == []
    assert len(data["samples"]) == 3  # 4 layers x 64^2 means = 16,384 values a sample: all three fit
    assert "first 64 of 100 tokens" in markup and "heads averaged" in markup
    few = token_view_html(maps, [f"t{i}" for i in range(100)], max_tokens=64, max_values=20_000)
    assert len(json.loads(re.search(r'class="tl-data">(.*?)</script>', few, re.S).group(1))["samples"]) == 1
    assert "first 1 of 3 samples" in few


def test_heads_grid_shares_one_scale_states_it_and_names_the_tokens():
    from torchloupe.render.attention import heads_grid, layer_figures, matrix_figure

    maps = _maps(L=3, H=4)
    toks = ["a", "b", "c", "d", "e"]
    fig = heads_grid(maps, tokens=toks)
    tiles = [ax for ax in fig.axes if ax.images]
    assert len(tiles) == 12
    top = max(float(v[0].max()) for v in maps.values())
    assert {tuple(ax.images[0].get_clim()) for ax in tiles} == {(0.0, top)}  # one scale for every map
    bars = [ax for ax in fig.axes if not ax.images and ax.get_ylabel() == "attention weight"]
    assert len(bars) == 1  # and its colour bar
    assert f"0 to {top:.2f}" in fig._suptitle.get_text()
    first_col = [ax for ax in tiles if ax.get_yticklabels() and ax.get_yticklabels()[0].get_text()]
    assert [t.get_text() for t in first_col[0].get_yticklabels()] == toks
    bottom = [ax for ax in tiles if ax.get_xticklabels() and ax.get_xticklabels()[0].get_text()]
    assert len(bottom) == 4 and [t.get_text() for t in bottom[0].get_xticklabels()] == toks
    # text of at least 8 pt: 11 px on a figure shown at 100 px an inch, no wider than 9.5 inches
    sizes = [t.get_fontsize() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    assert min(sizes) >= 8 and fig.get_figwidth() <= 9.5
    # one figure per layer, heads in rows of four, all on the scale of the largest weight of any layer
    per_layer = layer_figures(_maps(L=2, H=12), tokens=toks)
    assert [name for name, _ in per_layer] == ["l0", "l1"]
    scale = max(float(v[0].max()) for v in _maps(L=2, H=12).values())
    for _, f in per_layer:
        grid = [ax for ax in f.axes if ax.images]
        assert len(grid) == 12 and {ax.images[0].get_clim() for ax in grid} == {(0.0, scale)}
        assert len({round(ax.get_position().x0, 3) for ax in grid}) == 4  # 3 rows of 4 tiles
    fig = matrix_figure(tl.attention.rollout(_maps())[0], toks)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == toks


def test_layer_picker_html_escapes_and_reserves_room():
    from torchloupe.render.attention import layer_picker_html

    markup = layer_picker_html([("<l0>", "data:image/png;base64,AAAA", 'maps "of" l0', 640, 480),
                                ("l1", "data:image/png;base64,BBBB", "maps of l1", 640, 480)])
    assert "<l0>" not in markup and "&lt;l0&gt;" in markup and "&quot;of&quot;" in markup
    assert markup.count('width="640" height="480"') == 2
    assert re.findall(r'<option value="(\d)">', markup) == ["0", "1"]


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
    blocks = blocks_of(section.build(Subject("vit", vit, torch.rand(2, 3, 16, 16)), {"quick": True, "seed": 0}))
    captions = [b.caption for b in blocks if isinstance(b, Figure)]
    assert "rollout over the image patches" in captions
    res = blocks_of(section.build(Subject("cnn", tiny_cnn(), torch.rand(2, 3, 16, 16)), {"quick": True, "seed": 0}))
    assert isinstance(res, NotApplicable) and "no attention" in res.reason


def test_attention_section_token_view_and_attend_back_table():
    from torchloupe.reporting.sections import attention as section

    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 8)
    subject = Subject("enc", enc, x, extras={"tokens": [list("abcdef")] * 2, "attend_back": 1})
    blocks = blocks_of(section.build(subject, {"quick": True, "seed": 0}))
    view = next(b.markup for b in blocks if isinstance(b, Html) and "tl-token-view" in b.markup)
    assert "<script>" not in view  # the page holds the token view's script once
    assert len(json.loads(re.search(r'class="tl-data">(.*?)</script>', view, re.S).group(1))["samples"]) == 2
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
    blocks = blocks_of(section.build(Subject("gru", Seq(), x, extras={"signal": x[..., 0].cumsum(1)}), {"quick": True, "seed": 0}))
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

    blocks = blocks_of(section.build(Subject("cells", Loop(), x), {"quick": True, "seed": 0}))
    assert [b.caption for b in blocks if isinstance(b, Figure)][0] == "cell: LSTM cell, 7 calls"
    assert isinstance(blocks_of(section.build(Subject("cnn", tiny_cnn(), torch.rand(1, 3, 8, 8)), {})), NotApplicable)


def test_palette_png_keeps_the_picture_at_a_fraction_of_the_size():
    import io

    from PIL import Image

    from torchloupe.render import to_png
    from torchloupe.render.attention import layer_figures, palette_png

    fig = layer_figures(_maps(L=1, H=12, T=14), tokens=[f"t{i}" for i in range(14)])[0][1]
    full = to_png(fig, dpi=100)
    small, w, h = palette_png(fig)
    assert len(small) < len(full) / 2
    a = Image.open(io.BytesIO(full)).convert("RGB")
    b = Image.open(io.BytesIO(small)).convert("RGB")
    assert (w, h) == a.size == b.size
    import numpy as np

    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 12  # no visible change (text edges move a little)


def test_shared_assets_once_per_page_and_never_twice():
    from torchloupe.render.attention import token_view_html
    from torchloupe.reporting.assets import inline_shared_assets

    view = token_view_html(_maps(), list("abcde"), assets=False)
    page = f"<html><head></head><body>{view}{view}</body></html>"
    once = inline_shared_assets(page)
    assert once.count("window.torchloupeTokens = {") == 1 and once.count("<style>") == 1
    assert "torchloupeGraph" not in once  # no graph on the page: no graph script
    assert inline_shared_assets(once) == once  # a page that has them gets no second copy
    assert inline_shared_assets("<html><head></head><body><p>x</p></body></html>").count("<script") == 0
