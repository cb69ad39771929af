"""The sequence demo models learn what they must, and the tools find it (known truth)."""

from __future__ import annotations

import pytest
import torch

import torchloupe as tl
from torchloupe.demo import sequences as S


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCHLOUPE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def test_copy_transformer_head_attends_k_back():
    model = S.train_copy_transformer()
    x, y = S.copy_data(128, seed=123)
    maps = tl.attention.capture(model, x)
    a = maps["layer.self_attn"]  # (B, heads, T, T)
    t = torch.arange(S.COPY_K, S.COPY_T)
    mass = a[:, :, t, t - S.COPY_K].mean(dim=(0, 2))  # per head
    assert float(mass.max()) > 0.9
    with torch.no_grad():
        acc = (model(x).argmax(-1)[:, S.COPY_K :] == y[:, S.COPY_K :]).float().mean()
    assert float(acc) > 0.95
    # loaded from the cache the second time, same weights
    again = S.train_copy_transformer()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))


def test_counting_lstm_has_a_counting_unit():
    model = S.train_counting_lstm()
    bits, count = S.counting_data(64, seed=123)
    tr = tl.recurrent.trace(model.lstm, bits)
    corr = tl.recurrent.correlate(tr, count, state="c")
    assert float(corr.abs().max()) > 0.95
    shuffled = count[torch.randperm(64)]
    assert float(tl.recurrent.correlate(tr, shuffled, state="c").abs().max()) < float(corr.abs().max())


def test_memory_network_reads_the_right_slot():
    model = S.train_memory_network()
    inputs, _, slot = S.memory_data(500, seed=123)
    reads = tl.attention.capture(model, *inputs, softmax=True, within="memory")
    w = reads["memory"]
    assert w.shape == (500, S.MEM_SLOTS)
    assert float((w.argmax(-1) == slot).float().mean()) > 0.95
