"""The attention, recurrent and fusion sections compute a data object, then draw it: the numbers it
holds (known by construction or from a literal reference), the blocks it draws (those of the sections
before they computed data, and what to conclude), its options refused in one line, pickling, its
notebook view; and :class:`~torchloupe.attention.AttentionMaps`, what ``tl.attention.capture`` returns."""

from __future__ import annotations

import html
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import torchloupe as tl
from tests.section_blocks import blocks_of
from tests.test_fusion_report import _pair, _TwoBranch
from torchloupe.errors import UsageError
from torchloupe.reporting.base import Figure, Finding, Html, NotApplicable, Subject, Table, Text


def _kinds(blocks, findings: bool = False):
    """``(type, caption or text)`` of each block (findings left out unless asked)."""
    return [(type(b).__name__, getattr(b, "caption", None) or getattr(b, "text", None) or "")
            for b in blocks if findings or not isinstance(b, Finding)]


def _findings(blocks) -> list[str]:
    return [b.text for b in blocks if isinstance(b, Finding)]


def _page_has(data, texts) -> str:
    page = data._repr_html_()
    assert "<img" in page
    plain = html.unescape(page)
    for t in texts:
        assert t in plain, t
    return page


# -- attention: two layers of set attention ----------------------------------------------------------
T = 6


class FixedAttention(nn.Module):
    """``softmax(logits) @ x`` with set logits ``(heads, T, T)``: the attention is known by construction."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x):  # (B, T, d)
        w = torch.softmax(self.logits.expand(x.shape[0], -1, -1, -1), dim=-1)  # (B, heads, T, T)
        return (w @ x[:, None]).mean(1)


def _logits():
    """Layer a: head 0 on the token before (token 0 on itself, logit 20), head 1 even. Layer b: both
    heads on the token itself, logits 2 and 1."""
    a = torch.zeros(2, T, T)
    for t in range(T):
        a[0, t, max(t - 1, 0)] = 20.0
    b = torch.zeros(2, T, T)
    b[0] += 2.0 * torch.eye(T)
    b[1] += 1.0 * torch.eye(T)
    return a, b


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        la, lb = _logits()
        self.a, self.b = FixedAttention(la), FixedAttention(lb)

    def forward(self, x):
        return self.b(self.a(x))


def _attention_subject(**kw):
    torch.manual_seed(0)
    return Subject("fixed", TwoLayers().eval(), torch.randn(2, T, 4), **kw)


def _rollout_reference(maps):
    """Abnar & Zuidema 2020 written out: per layer 0.5 mean_h(A) + 0.5 I, rows renormalised, multiplied up."""
    R = torch.eye(T, dtype=torch.float64)
    for A in maps:
        a = 0.5 * A.double().mean(0) + 0.5 * torch.eye(T, dtype=torch.float64)
        a = a / a.sum(-1, keepdim=True)
        R = a @ R
    return R


def test_attention_data_holds_the_set_attention_and_its_numbers():
    from torchloupe.reporting.sections import attention as section

    data = section.build(_attention_subject(tokens=list("abcdef"), options={"attention": {"attend_back": 1}}),
                         {"quick": True})
    la, lb = _logits()
    wa, wb = torch.softmax(la, -1), torch.softmax(lb, -1)  # (heads, T, T), the same for every sample
    assert list(data.maps) == ["a", "b"] and data.batch == 2 and not data.folded
    assert data.maps["a"].shape == (2, 2, T, T)  # both samples: the token view offers them
    torch.testing.assert_close(data.maps["a"], wa.expand(2, -1, -1, -1))
    torch.testing.assert_close(data.maps["b"], wb.expand(2, -1, -1, -1))
    # focus: the largest weight of a query, on average
    big, e2, e1 = 1 / (1 + 5 * math.exp(-20)), math.exp(2) / (math.exp(2) + 5), math.e / (math.e + 5)
    torch.testing.assert_close(data.focus["a"], torch.tensor([big, 1 / T]))
    torch.testing.assert_close(data.focus["b"], torch.tensor([e2, e1]))
    # the weight one token back: a's head 0 all of it, b's heads the off-diagonal share
    assert data.back == 1
    torch.testing.assert_close(data.back_weight["a"], torch.tensor([big, 1 / T]))
    torch.testing.assert_close(data.back_weight["b"], torch.tensor([1 / (math.exp(2) + 5), 1 / (math.e + 5)]))
    ref = _rollout_reference([wa, wb])
    torch.testing.assert_close(data.rollout, ref.float().expand(2, -1, -1))
    assert data.tokens == list("abcdef") and data.reads == {}


def test_attention_data_keeps_only_the_samples_it_shows():
    from torchloupe.reporting.sections import attention as section

    assert section.build(_attention_subject(), {}).maps["a"].shape[0] == 1  # no tokens: the figures draw sample 0
    small = section.build(_attention_subject(tokens=list("abcdef"), options={"attention": {"view_values": 200}}), {})
    assert small.maps["a"].shape[0] == 1  # 4 heads × 36 values: one sample in 200
    view = next(b.markup for b in small.render() if isinstance(b, Html) and "tl-token-view" in b.markup)
    assert "first 1 of 2 samples" in view  # the view still says what it leaves out


def test_attention_render_draws_the_blocks_of_before_and_what_to_conclude():
    from torchloupe.reporting.sections import attention as section

    data = section.build(_attention_subject(tokens=list("abcdef"), options={"attention": {"attend_back": 1}}), {})
    blocks = data.render()
    assert _kinds(blocks) == [
        ("Text", "2 attention layers × 2 heads, 6 queries × 6 keys; captured in eval mode (no dropout)."),
        ("Figure", "attention of sample 0 per layer (rows) and head (columns)"),
        ("Html", ""),
        ("Table", "mean weight on the token 1 places back (the correct attention)"),
        ("Figure", "how much each output token draws on each input token through all layers"),
    ]
    table = next(b for b in blocks if isinstance(b, Table))
    assert table.rows == [["a", "1.000", "0.167"], ["b", "0.081", "0.130"]] and list(table.highlight) == [(0, 1), (1, 2)]
    col = _rollout_reference([torch.softmax(m, -1) for m in _logits()]).mean(0)
    j = int(col.argmax())
    assert _findings(blocks) == [
        "The most focused head is head 0 of a: its queries put 1.00 of their weight on a single key on average "
        "(spread evenly over 6 keys it would be 0.17); the most spread out is head 1 of a at 0.17.",
        "Head 0 of a attends to the token 1 places back: 1.00 of its weight on average over 2 samples × 5 positions "
        "(spread evenly over 6 tokens it would be 0.17).",
        f"Through all 2 layers (attention rollout) no input token stands out: the most drawn on, token {j} "
        f"('{'abcdef'[j]}'), gets {float(col[j]):.2f} of each token's rollout on average over 2 samples (spread evenly "
        f"it would be 0.17).",
    ]
    refs = [b.ref for b in blocks if isinstance(b, Finding)]
    assert refs == [blocks[1], table, blocks[6]]  # each read from its figure or table


class _Slots(nn.Module):
    def __init__(self):
        super().__init__()
        self.keys = nn.Parameter(torch.eye(4, 3) * 8.0)  # slot s answers the query e_s

    def forward(self, q):  # (B, 3)
        w = torch.softmax(q @ self.keys.T, dim=-1)  # (B, slots)
        return w @ self.keys


class _Memory(nn.Module):
    def __init__(self):
        super().__init__()
        self.memory = _Slots()

    def forward(self, q):
        return self.memory(q)


def test_memory_reads_hold_the_read_weights_and_say_how_often_they_peak_on_the_true_slot():
    from torchloupe.reporting.sections import attention as section

    q = torch.eye(3)[[0, 1, 2, 0]]
    slot = torch.tensor([0, 1, 2, 3])  # the last is wrong: 3 of 4 right
    data = section.build(Subject("mem", _Memory().eval(), q, options={"attention": {"slot": slot}}), {})
    torch.testing.assert_close(data.reads["memory"], torch.softmax(q @ (torch.eye(4, 3) * 8).T, -1))
    assert torch.equal(data.truth["memory"], slot) and data.maps == {}
    blocks = data.render()
    assert _kinds(blocks) == [("Figure", "read weights of memory")]
    assert _findings(blocks) == ["The read weight of memory peaks on the slot holding the answer in 75.0% of 4 samples."]
    # without the true slots: how much of the weight the peak slot takes
    peak = float(torch.softmax(q @ (torch.eye(4, 3) * 8).T, -1).amax(-1).mean())
    plain = section.build(Subject("mem", _Memory().eval(), q), {}).render()
    assert _findings(plain)[0].startswith(f"memory reads mostly one slot: its peak slot takes {peak:.2f} of the read weight")


def test_attention_options_are_refused_in_one_line():
    from torchloupe.reporting.sections import attention as section
    from torchloupe.reporting.sections.attention import AttentionOptions

    with pytest.raises(UsageError, match=r"attention option max_tokens=0: expected a positive integer"):
        AttentionOptions(max_tokens=0)
    with pytest.raises(UsageError, match=r"attention option attend_back=-1: expected a positive integer"):
        AttentionOptions(attend_back=-1)
    with pytest.raises(UsageError, match=r"attention option slot: expected \(B,\) slot indices >= 0"):
        AttentionOptions(slot=torch.rand(3))
    with pytest.raises(UsageError, match=r"section 'attention' has no option 'max_token'; closest: 'max_tokens'"):
        section.build(_attention_subject(), {"max_token": 3})


def test_attention_data_pickles_and_shows_itself_in_a_notebook():
    from torchloupe.reporting.sections import attention as section

    data = section.build(_attention_subject(tokens=list("abcdef"), options={"attention": {"attend_back": 1}}), {})
    back = pickle.loads(pickle.dumps(data))
    assert list(back.maps) == ["a", "b"] and torch.equal(back.rollout, data.rollout)
    assert torch.equal(back.back_weight["a"], data.back_weight["a"]) and back.options == data.options
    assert _findings(back.render()) == _findings(data.render())
    page = _page_has(data, _findings(data.render()))
    assert "tl-token-view" in page


def test_nothing_to_show_is_not_applicable():
    from torchloupe.reporting.sections import attention as section

    res = section.build(Subject("mlp", nn.Sequential(nn.Linear(3, 2)).eval(), torch.rand(2, 3)), {})
    assert isinstance(res, NotApplicable) and "computed no attention" in res.reason


# -- recurrent: set weights -------------------------------------------------------------------------
class _Wrap(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


def _tanh_rnn():
    """h = (tanh(x), -tanh(x)): unit 0 tracks tanh(x) with r = 1, unit 1 with r = -1."""
    rnn = nn.RNN(1, 2, batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor([[1.0], [-1.0]]))
        rnn.weight_hh_l0.zero_()
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
    return _Wrap(rnn)


def _switch_lstm():
    """Every weight 0; input gate bias -10 (always below 0.1), forget gate bias +10 (always above 0.9)."""
    lstm = nn.LSTM(1, 3, batch_first=True)
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.bias_ih_l0[:3] = -10.0
        lstm.bias_ih_l0[3:6] = 10.0
    return _Wrap(lstm)


def test_recurrent_data_holds_the_trace_the_correlation_and_the_saturation():
    from torchloupe.reporting.sections import recurrent as section

    torch.manual_seed(0)
    x = torch.randn(3, 5, 1)
    signal = torch.tanh(x[..., 0])
    data = section.build(Subject("rnn", _tanh_rnn(), x, signal=signal), {})
    (part,) = data.parts
    assert part.name == "rnn" and part.state == "h" and part.saturation == {}
    torch.testing.assert_close(part.trace.h[0, 0], torch.cat([torch.tanh(x), -torch.tanh(x)], -1))
    ref = torch.stack([torch.corrcoef(torch.stack([part.trace.h[0, 0, ..., u].flatten(), signal.flatten()]))[0, 1]
                       for u in range(2)])
    torch.testing.assert_close(part.corr[0, 0], ref)
    torch.testing.assert_close(part.corr[0, 0], torch.tensor([1.0, -1.0]))
    sat = section.build(Subject("lstm", _switch_lstm(), x), {}).parts[0].saturation
    expect = {"input": (1.0, 0.0), "forget": (0.0, 1.0), "cell": (0.0, 0.0), "output": (0.0, 0.0)}
    assert list(sat) == list(expect)
    for gate, (left, right) in expect.items():
        assert sat[gate].shape == (2, 1, 1, 3)
        assert sat[gate][0].flatten().tolist() == [left] * 3 and sat[gate][1].flatten().tolist() == [right] * 3


def test_recurrent_render_draws_the_blocks_of_before_and_what_to_conclude():
    from torchloupe.reporting.sections import recurrent as section

    torch.manual_seed(0)
    x = torch.randn(3, 5, 1)
    blocks = blocks_of(section.build(Subject("rnn", _tanh_rnn(), x, signal=torch.tanh(x[..., 0])), {}))
    assert _kinds(blocks) == [
        ("Text", "rnn: RNN, 1 layer(s) × 1 direction(s), 2 units, 5 steps; re-run step by step from its weights "
                 "(equal to the fused module)."),
        ("Figure", "rnn: states over time"),
        ("Figure", "rnn: the units most correlated with the signal"),
    ]
    assert _findings(blocks) == ["rnn: the unit that tracks the signal best has correlation r = 1.00 with it over "
                                 "3 samples × 5 steps; 2 of 2 units reach |r| ≥ 0.8."]
    lstm = section.build(Subject("lstm", _switch_lstm(), x), {}).render()
    assert _kinds(lstm) == [
        ("Text", "rnn: LSTM, 1 layer(s) × 1 direction(s), 3 units, 5 steps; re-run step by step from its weights "
                 "(equal to the fused module)."),
        ("Figure", "rnn: states over time"),
        ("Figure", "rnn: gate saturation"),
        ("Text", "Give Subject(..., signal=...) as a (B, T) tensor to see the units that track it."),
    ]
    assert _findings(lstm) == ["rnn: the input gate is saturated most often, below 0.1 or above 0.9 in 100% of steps "
                               "on average (100% low, 0% high); 3 of 3 units are saturated more than half the time; "
                               "the least saturated is the cell gate, 0%."]
    # a plain RNN and no signal: nothing to conclude, said so
    plain = section.build(Subject("rnn", _tanh_rnn(), x), {}).render()
    assert _findings(plain) == ["rnn: nothing can be concluded about what its units track: no signal of its shape "
                                "was given and a plain RNN has no gates to read."]
    # a signal of another shape is named
    odd = section.build(Subject("rnn", _tanh_rnn(), x, signal=torch.rand(3, 4)), {}).render()
    assert any(isinstance(b, Text) and "The signal has shape (3, 4), not this module's (B, T) = (3, 5)" in b.text
               for b in odd)


def test_recurrent_options_and_limits():
    from torchloupe.reporting.sections import recurrent as section
    from torchloupe.reporting.sections.recurrent import RecurrentOptions

    with pytest.raises(UsageError, match=r"recurrent options low=0.95, high=0.9: expected low < high"):
        RecurrentOptions(low=0.95)
    with pytest.raises(UsageError, match=r"recurrent option strong=2: expected a number between 0 and 1"):
        RecurrentOptions(strong=2)
    with pytest.raises(UsageError, match=r"recurrent option modules=0: expected a positive integer"):
        RecurrentOptions(modules=0)
    x = torch.randn(3, 5, 1)
    with pytest.raises(UsageError, match=r"section 'recurrent' has no option 'unit'; closest: 'units'"):
        section.build(Subject("rnn", _tanh_rnn(), x), {"unit": 3})
    # a stricter threshold counts fewer gates as saturated: the forget gate's 0.99995 is not above 0.99999
    data = section.build(Subject("lstm", _switch_lstm(), x, options={"recurrent": {"high": 0.99999}}), {})
    assert data.parts[0].saturation["forget"][1].flatten().tolist() == [0.0] * 3


def test_recurrent_data_pickles_and_shows_itself_in_a_notebook():
    from torchloupe.reporting.sections import recurrent as section

    x = torch.randn(3, 5, 1)
    data = section.build(Subject("rnn", _tanh_rnn(), x, signal=torch.tanh(x[..., 0])), {})
    back = pickle.loads(pickle.dumps(data))
    assert torch.equal(back.parts[0].corr, data.parts[0].corr) and torch.equal(back.parts[0].trace.h, data.parts[0].trace.h)
    _page_has(data, _findings(data.render()))


def test_cells_in_the_models_loop_are_correlated_with_a_signal_of_their_calls():
    from torchloupe.reporting.sections import recurrent as section

    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.RNNCell(1, 1)
            with torch.no_grad():
                self.cell.weight_ih.fill_(1.0)
                self.cell.weight_hh.zero_()
                self.cell.bias_ih.zero_()
                self.cell.bias_hh.zero_()

        def forward(self, x):
            h = None
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return h

    x = torch.randn(2, 4, 1)
    data = section.build(Subject("loop", Loop(), x, signal=torch.tanh(x[..., 0])), {})
    (part,) = data.parts
    assert part.cell and torch.allclose(part.corr.flatten(), torch.ones(1))
    assert _kinds(data.render())[0] == ("Figure", "cell: RNN cell, 4 calls")


# -- fusion ----------------------------------------------------------------------------------------------
def test_fusion_data_holds_the_shares_the_fused_channels_and_cka():
    from torchloupe.reporting.sections import fusion as section

    x1, x2 = _pair()
    data = section.build(Subject("two", _TwoBranch(), (x1, x2)), {"quick": True})
    assert data.branches == {"cnn1": "cnn1", "cnn2": "cnn2"} and data.samples == 6
    assert list(data.results) == ["exact", "integrated_gradients"]
    for res in data.results.values():  # class 0 weighs cnn1 3x as much as cnn2, their outputs equal
        torch.testing.assert_close(res.shares["cnn1"], torch.full((6,), 0.75))
        torch.testing.assert_close(res.shares["cnn2"], torch.full((6,), 0.25))
    assert data.class_names == ["0"]
    # sample 0 of the cat: the two identity branches' outputs, channel 0 from cnn1, 1 from cnn2
    torch.testing.assert_close(data.fused, torch.cat([x1[0], x2[0]]))
    assert list(data.ranges.values()) == [(0, 1), (1, 2)]
    # equal branch outputs and their cat: linear CKA 1 everywhere
    assert data.cka.names == ["cnn1", "cnn2", "fused"]
    torch.testing.assert_close(data.cka.matrix.double(), torch.ones(3, 3, dtype=torch.float64))
    assert set(data.maps.maps) == {"cnn1", "cnn2"} and data.maps.targets.shape == (4,)
    torch.testing.assert_close(data.backgrounds["cnn1"], x1[:4])  # each drawn on the input that feeds it


def test_fusion_render_draws_the_blocks_of_before_and_what_to_conclude():
    from torchloupe.fusion import ShareHistory
    from torchloupe.reporting.sections import fusion as section

    blocks = blocks_of(section.build(Subject("two", _TwoBranch(), _pair()), {"quick": True}))
    words = ["Branches found from the traced fusion point cat", "Fusion points in execution order",
             "Per-class mean share of |contribution| to the class score, 6 samples. Integrated gradients used",
             "Mean branch share per class, exact (left) and integrated gradients (right)",
             "Per-sample shares (first 16 samples", "Grad-CAM from each branch's own channels",
             "Channel provenance at the cat", "Linear CKA (unbiased minibatch HSIC)"]
    kinds = _kinds(blocks)
    assert [k for k, _ in kinds] == ["Text", "Figure", "Table", "Figure", "Figure", "Figure", "Figure", "Figure"]
    assert all(text.startswith(w) for (_, text), w in zip(kinds, words))
    assert _findings(blocks) == [
        "Branch cnn1 carries the most evidence for the class score: mean shares cnn1 75%, cnn2 25% (exact, 6 samples).",
        "The fused features at cat resemble cnn1's output most (linear CKA 1.00; cnn2 1.00), and the outputs of cnn1 "
        "and cnn2 are alike (CKA 1.00); CKA measures similarity, not contribution.",
    ]
    # with a history: its curves and the branch whose share moved most
    history = ShareHistory(steps=[0, 10, 20], method="exact",
                           records=[{"cnn1": torch.tensor([0.5, 0.5]), "cnn2": torch.tensor([0.5, 0.5])},
                                    {"cnn1": torch.tensor([0.6, 0.8]), "cnn2": torch.tensor([0.5, 0.4])},
                                    {"cnn1": torch.tensor([0.9, 0.7]), "cnn2": torch.tensor([0.4, 0.6])}])
    more = section.build(Subject("two", _TwoBranch(), _pair(), options={"fusion": {"history": history}}), {}).render()
    assert _kinds(more)[-1][1].startswith("Mean branch share on a fixed probe batch during training (exact)")
    assert _findings(more)[-1] == ("Over training (steps 0 to 20), cnn1's mean share changed most: it rose from 0.50 "
                                   "to 0.80 on the probe batch.")
    assert more[-1].ref is more[-2]


def test_fusion_samples_option_and_quick_mode():
    from torchloupe.reporting.sections import fusion as section

    subject = Subject("two", _TwoBranch(), _pair(12))
    assert section.build(subject, {"samples": 5}).samples == 5
    assert section.build(subject, {"samples": 10, "quick": True}).samples == 5  # half in quick mode
    data = section.build(subject, {"map_samples": 2, "sample_rows": 3})
    assert data.maps.targets.shape == (2,) and len(data.map_names) == 2
    assert any("first 3 samples" in t for _, t in _kinds(data.render()))


def test_fusion_options_are_refused_in_one_line():
    from torchloupe.reporting.sections import fusion as section
    from torchloupe.reporting.sections.fusion import FusionOptions

    with pytest.raises(UsageError, match=r"fusion option samples=0: expected a positive integer"):
        FusionOptions(samples=0)
    with pytest.raises(UsageError, match=r"fusion option branches='cnn1': expected a dict"):
        FusionOptions(branches="cnn1")
    with pytest.raises(UsageError, match=r"fusion option history: expected a tl.fusion.ShareHistory, got list"):
        FusionOptions(history=[])
    with pytest.raises(UsageError, match=r"section 'fusion' has no option 'sample'; closest: 'samples'"):
        section.build(Subject("two", _TwoBranch(), _pair()), {"sample": 3})


def test_fusion_data_pickles_and_shows_itself_in_a_notebook():
    from torchloupe.reporting.sections import fusion as section

    data = section.build(Subject("two", _TwoBranch(), _pair()), {"quick": True})
    back = pickle.loads(pickle.dumps(data))
    assert torch.equal(back.results["exact"].shares["cnn1"], data.results["exact"].shares["cnn1"])
    assert torch.equal(back.fused, data.fused) and back.points == data.points
    assert _findings(back.render()) == _findings(data.render())
    _page_has(data, _findings(data.render()))


def test_a_failing_part_keeps_the_other_parts_and_every_number(monkeypatch):
    from torchloupe.render import fusion as draw
    from torchloupe.reporting.sections import fusion as section

    data = section.build(Subject("two", _TwoBranch(), _pair()), {"quick": True})

    def boom(*a, **k):
        raise RuntimeError("no CKA today")

    monkeypatch.setattr(draw, "cka_figure", boom)
    blocks = data.render()
    notes = [b.text for b in blocks if isinstance(b, Text) and "could not be drawn" in b.text]
    assert notes == ["The CKA figure could not be drawn (RuntimeError: no CKA today); the numbers above are unaffected."]
    assert len(_findings(blocks)) == 2 and sum(isinstance(b, Figure) for b in blocks) == 5  # the other 5 still show


# -- AttentionMaps: what tl.attention.capture returns ----------------------------------------------------
def _encoder(layers=2):
    torch.manual_seed(0)
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), layers,
                                 enable_nested_tensor=False).eval()


def _png(page: str) -> bytes:
    import base64

    m = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert m, page[:300]
    return base64.b64decode(m.group(1))


def test_capture_returns_a_dict_that_pickles_with_its_tokens():
    enc, x = _encoder(), torch.rand(2, 5, 8)
    maps = tl.attention.capture(enc, x)
    assert isinstance(maps, tl.attention.AttentionMaps) and isinstance(maps, dict)
    plain = dict(maps)
    assert maps == plain and list(maps) == ["layers.0.self_attn", "layers.1.self_attn"] and maps.tokens is None
    maps.tokens = list("abcde")
    back = pickle.loads(pickle.dumps(maps))
    assert type(back) is tl.attention.AttentionMaps and back.tokens == list("abcde")
    assert all(torch.equal(back[k], maps[k]) for k in maps)
    assert tl.attention.AttentionMaps(plain, [list("abcde")] * 2).tokens == [list("abcde")] * 2
    torch.testing.assert_close(tl.attention.rollout(maps), tl.attention.rollout(plain))


def test_attention_maps_draw_heads_per_layer_with_token_ticks_and_a_colour_bar():
    from torchloupe.render.notebook import figure_of

    maps = tl.attention.capture(_encoder(3), torch.rand(2, 5, 8))
    maps.tokens = ["the", "cat", "sat", "on", "<mat>"]
    fig = figure_of(maps)
    images = [ax for ax in fig.axes if ax.images]
    heads = [ax for ax in images if ax.get_title().startswith("head")]
    assert len(heads) == 6  # 3 layers × 2 heads
    torch.testing.assert_close(torch.as_tensor(heads[0].images[0].get_array().data), maps["layers.0.self_attn"][0, 0])
    assert [t.get_text() for t in heads[0].get_yticklabels()] == maps.tokens  # token names on the first head
    assert any(ax.get_ylabel() == "attention weight" for ax in fig.axes)  # the colour bar
    page = maps._repr_html_()
    assert _png(page) == maps._repr_png_() and maps._repr_png_() is maps._repr_png_()  # drawn once
    assert "Attention: 3 attention layer(s) × 2 head(s), 5 queries × 5 keys, batch 2; sample 0 drawn" in page


def test_attention_maps_draw_memory_reads_as_bars_and_stay_small():
    from torchloupe.render.notebook import MAX_HEADS, MAX_LAYERS, figure_of

    class Reads(nn.Module):
        def forward(self, q):
            return torch.softmax(q, -1) @ torch.eye(4)

    maps = tl.attention.capture(Reads(), torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0]]))
    fig = figure_of(maps)
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    torch.testing.assert_close(torch.tensor(heights, dtype=torch.float32), torch.softmax(torch.tensor([4.0, 0, 0, 0]), -1))
    # many layers and heads: the first MAX_LAYERS layers, MAX_HEADS heads each, said in the title
    big = tl.attention.AttentionMaps({f"l{i}": torch.rand(1, 12, 40, 40).softmax(-1) for i in range(9)})
    fig = figure_of(big)
    assert sum(1 for ax in fig.axes if ax.images) == MAX_LAYERS * MAX_HEADS
    assert "first 6 of 9 layers, first 8 heads, first 32 tokens" in fig._suptitle.get_text()
    assert len(big._repr_png_()) < 300_000
    empty = tl.attention.AttentionMaps()
    assert empty._repr_png_() is None and "No attention captured" in empty._repr_html_()


def test_capturing_attention_loads_no_matplotlib_until_it_is_drawn():
    code = ("import sys, torch, torchloupe as tl\n"
            "enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1,\n"
            "                                  enable_nested_tensor=False).eval()\n"
            "maps = tl.attention.capture(enc, torch.rand(1, 4, 8))\n"
            "print('matplotlib' in sys.modules)\n"
            "maps._repr_png_()\n"
            "print('matplotlib' in sys.modules)\n")
    src = str(Path(tl.__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": src})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
