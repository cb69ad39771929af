"""tl.recurrent: step-by-step traces equal the fused modules; gates obey their equations."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import torchloupe as tl
from tests.reference import ref_attention
from torchloupe.errors import InputShapeError, UnsupportedModelError, UsageError

CONFIGS = [
    (cls, bi, bf, layers, proj)
    for cls, bi, bf, layers, proj in itertools.product(
        (nn.LSTM, nn.GRU, nn.RNN), (False, True), (False, True), (1, 2), (0, 3)
    )
    if proj == 0 or cls is nn.LSTM
]


def _make(cls, bi, bf, layers, proj, seed=0):
    torch.manual_seed(seed)
    kw = {"proj_size": proj} if proj else {}
    return cls(4, 5, num_layers=layers, bidirectional=bi, batch_first=bf, **kw).eval()


def _states(cls, out):
    return (out[1][0], out[1][1]) if cls is nn.LSTM else (out[1], None)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c[0].__name__}-bi{int(c[1])}-bf{int(c[2])}-L{c[3]}-p{c[4]}")
def test_trace_equals_fused_module(cfg):
    cls, bi, bf, layers, proj = cfg
    m = _make(*cfg)
    x = torch.randn(3, 6, 4) if bf else torch.randn(6, 3, 4)
    with torch.no_grad():
        out = m(x)
    tr = tl.recurrent.trace(m, x)
    D = 2 if bi else 1
    H_out = proj or 5
    assert tr.h.shape == (layers, D, 3, 6, H_out)
    assert (tr.output - out[0]).abs().max() <= 1e-6
    h_n, c_n = _states(cls, out)
    assert (tr.h_n - h_n).abs().max() <= 1e-6
    if cls is nn.LSTM:
        assert (tr.c_n - c_n).abs().max() <= 1e-6
        assert tr.c.shape == (layers, D, 3, 6, 5)
    # the last layer's h in time order is the module's output, both directions
    seq_out = out[0] if bf else out[0].transpose(0, 1)  # (B, T, D*H)
    for d in range(D):
        assert (tr.h[-1, d] - seq_out[..., d * H_out : (d + 1) * H_out]).abs().max() <= 1e-6
    # every layer: its final states are h_n (forward: last step; reverse: first step)
    for layer in range(layers):
        assert torch.allclose(tr.h[layer, 0, :, -1], h_n[layer * D], atol=1e-6)
        if bi:
            assert torch.allclose(tr.h[layer, 1, :, 0], h_n[layer * D + 1], atol=1e-6)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("bf", [False, True])
def test_packed_sequence_with_lengths(cls, bf):
    m = _make(cls, True, bf, 2, 0, seed=1)
    x = torch.randn(3, 6, 4) if bf else torch.randn(6, 3, 4)
    lengths = torch.tensor([6, 2, 4])
    packed = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
    h0 = torch.randn(4, 3, 5)
    h0 = (h0, torch.randn(4, 3, 5)) if cls is nn.LSTM else h0
    with torch.no_grad():
        out = m(packed, h0)
    tr = tl.recurrent.trace(m, packed, h0)
    padded, _ = pad_packed_sequence(out[0], batch_first=bf)
    assert (tr.output - padded).abs().max() <= 1e-6
    h_n, c_n = _states(cls, out)
    assert (tr.h_n - h_n).abs().max() <= 1e-6
    if c_n is not None:
        assert (tr.c_n - c_n).abs().max() <= 1e-6
    assert torch.equal(tr.lengths, lengths)
    assert float(tr.h[:, :, 1, 2:].abs().max()) == 0.0  # past the second sequence's end


def test_lstm_gate_equations_hold_and_h0_is_used():
    m = _make(nn.LSTM, True, True, 2, 0, seed=2)
    x = torch.randn(2, 5, 4)
    h0 = torch.randn(4, 2, 5)
    c0 = torch.randn(4, 2, 5)
    with torch.no_grad():
        out = m(x, (h0, c0))
    tr = tl.recurrent.trace(m, x, (h0, c0))
    assert (tr.output - out[0]).abs().max() <= 1e-6
    i, f, g, o = (tr.gates[k] for k in ("input", "forget", "cell", "output"))
    c = tr.c
    c_prev_fwd = torch.cat([c0.view(2, 2, 2, 1, 5)[:, 0], c[:, 0, :, :-1]], dim=2)
    assert torch.allclose(c[:, 0], f[:, 0] * c_prev_fwd + i[:, 0] * g[:, 0], atol=1e-6)
    c_prev_rev = torch.cat([c[:, 1, :, 1:], c0.view(2, 2, 2, 1, 5)[:, 1]], dim=2)
    assert torch.allclose(c[:, 1], f[:, 1] * c_prev_rev + i[:, 1] * g[:, 1], atol=1e-6)
    assert torch.allclose(tr.h, o * torch.tanh(c), atol=1e-6)
    assert float(i.min()) >= 0 and float(i.max()) <= 1 and float(g.min()) >= -1


def test_gru_gate_equations_hold():
    m = _make(nn.GRU, False, False, 1, 0, seed=3)
    x = torch.randn(5, 2, 4)
    tr = tl.recurrent.trace(m, x)
    r, z, n = tr.gates["reset"], tr.gates["update"], tr.gates["new"]
    h_prev = torch.cat([torch.zeros(1, 1, 2, 1, 5), tr.h[:, :, :, :-1]], dim=3)
    assert torch.allclose(tr.h, (1 - z) * n + z * h_prev, atol=1e-6)
    w_in, w_hn = m.weight_ih_l0[10:], m.weight_hh_l0[10:]
    xb = x.transpose(0, 1)
    n_ref = torch.tanh(xb @ w_in.T + m.bias_ih_l0[10:] + r[0, 0] * (h_prev[0, 0] @ w_hn.T + m.bias_hh_l0[10:]))
    assert torch.allclose(n[0, 0], n_ref.detach(), atol=1e-6)
    assert set(tr.gates) == {"reset", "update", "new"} and tr.c is None


def test_lstm_equals_literal_float64_reference():
    m = _make(nn.LSTM, False, False, 1, 0, seed=4).double()
    x = torch.randn(4, 4, dtype=torch.float64)  # unbatched (T, I)
    tr = tl.recurrent.trace(m, x)
    h_ref, c_ref = ref_attention.lstm_steps(*(t.detach() for t in (x, m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)))
    assert torch.allclose(tr.h[0, 0, 0], h_ref, atol=1e-12)
    assert torch.allclose(tr.c[0, 0, 0], c_ref, atol=1e-12)
    assert tr.output.shape == (4, 5) and tr.h_n.shape == (1, 5)


def test_trace_does_not_flip_mode_and_leaves_no_grad():
    m = _make(nn.LSTM, False, False, 1, 0)
    m.train()
    tl.recurrent.trace(m, torch.randn(3, 2, 4))
    assert m.training and all(p.grad is None for p in m.parameters())


def test_trace_errors():
    m = _make(nn.GRU, False, False, 1, 0)
    with pytest.raises(InputShapeError, match="input_size=4"):
        tl.recurrent.trace(m, torch.randn(3, 2, 7))
    with pytest.raises(InputShapeError, match="h0"):
        tl.recurrent.trace(m, torch.randn(3, 2, 4), torch.zeros(2, 2, 5))
    with pytest.raises(UnsupportedModelError, match="trace_cells"):
        tl.recurrent.trace(nn.LSTMCell(4, 5), torch.randn(3, 2, 4))


class _CellLoop(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTMCell(4, 5)
        self.gru = nn.GRUCell(5, 3)

    def forward(self, x):  # (T, B, 4)
        h = c = None
        g = None
        for t in range(x.shape[0]):
            h, c = self.lstm(x[t], None if h is None else (h, c))
            g = self.gru(h, g)
        return g


def test_trace_cells_records_every_call():
    torch.manual_seed(5)
    model = _CellLoop()
    x = torch.randn(4, 2, 4)
    traces = tl.recurrent.trace_cells(model, x)
    assert list(traces) == ["lstm", "gru"]
    lstm = nn.LSTM(4, 5)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(model.lstm.weight_ih)
        lstm.weight_hh_l0.copy_(model.lstm.weight_hh)
        lstm.bias_ih_l0.copy_(model.lstm.bias_ih)
        lstm.bias_hh_l0.copy_(model.lstm.bias_hh)
    ref = tl.recurrent.trace(lstm, x)
    assert traces["lstm"].h.shape == (2, 4, 5)
    assert torch.allclose(traces["lstm"].h, ref.h[0, 0], atol=1e-6)
    assert torch.allclose(traces["lstm"].gates["forget"], ref.gates["forget"][0, 0], atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(traces["gru"].h[:, -1], model(x), atol=1e-6)
    assert model.training
    with pytest.raises(UnsupportedModelError, match="Linear"):
        tl.recurrent.trace_cells(nn.Sequential(nn.Linear(2, 2)), torch.randn(1, 2), cells="0")


class _GatedCell(nn.Module):
    """A GRUCell over the steps, with an optional keyword scale and a positional initial state."""

    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(4, 3)
        self.drop = nn.Dropout(0.5)  # in training mode it would change every step

    def forward(self, x, h0, *, scale=None):
        h = h0
        for t in range(x.shape[0]):
            h = self.cell(self.drop(x[t] if scale is None else x[t] * scale), h)
        return h


def test_trace_cells_takes_positional_and_keyword_inputs():
    torch.manual_seed(6)
    model = _GatedCell().train()
    x, h0, scale = torch.randn(3, 2, 4), torch.randn(2, 3), torch.tensor([[2.0], [0.5]])
    traces = tl.recurrent.trace_cells(model, x, h0, scale=scale)
    gru = nn.GRU(4, 3)
    with torch.no_grad():
        for a, b in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"),
                     ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")):
            getattr(gru, b).copy_(getattr(model.cell, a))
    ref = tl.recurrent.trace(gru, x * scale, h0[None])  # eval: dropout off, the scale applied
    assert torch.allclose(traces["cell"].h, ref.h[0, 0], atol=1e-6)
    assert torch.allclose(traces["cell"].gates["update"], ref.gates["update"][0, 0], atol=1e-6)
    assert model.training
    with pytest.raises(UnsupportedModelError, match="model: expected an nn.Module, got function"):
        tl.recurrent.trace_cells(lambda x: x, x)


def test_saturation_and_correlation_on_set_values():
    # a hand-built trace: one layer, one direction, B=1, T=4, H=2
    h = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])[None, None, None]
    gates = {
        "forget": torch.tensor([[0.05, 0.5], [0.95, 0.5], [0.99, 0.02], [0.5, 0.5]])[None, None, None],
        "cell": torch.tensor([[-0.95, 0.0], [0.0, 0.0], [0.95, 0.0], [0.0, 0.0]])[None, None, None],
    }
    tr = tl.recurrent.RecurrentTrace("LSTM", h, h, gates, h[0, 0], h[:, 0, :, -1], h[:, 0, :, -1])
    sat = tl.recurrent.saturation(tr)
    assert torch.allclose(sat["forget"][:, 0, 0], torch.tensor([[0.25, 0.25], [0.5, 0.0]]))
    assert torch.allclose(sat["cell"][:, 0, 0], torch.tensor([[0.25, 0.0], [0.25, 0.0]]))
    corr = tl.recurrent.correlate(tr, torch.tensor([[0.0, 2.0, 4.0, 6.0]]))
    assert torch.allclose(corr[0, 0], torch.tensor([1.0, 0.0]))  # unit 1 is constant -> 0
    with pytest.raises(InputShapeError, match="signal"):
        tl.recurrent.correlate(tr, torch.zeros(2, 4))
    with pytest.raises(UsageError, match="state='x'; expected 'h' or 'c'"):
        tl.recurrent.correlate(tr, torch.zeros(1, 4), state="x")
