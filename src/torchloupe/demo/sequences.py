"""Sequence demo models whose correct inner workings are known, trained in seconds and cached.

- :func:`train_copy_transformer`: one causal transformer layer on "output the token k
  places back"; the right head attends to position ``t - k``.
- :func:`train_counting_lstm`: an LSTM that outputs the running count of ones in a bit
  stream; one cell unit tracks the count.
- :func:`train_memory_network`: a key-value memory read by softmax attention; the query
  is a noisy copy of one key, so the read weight must peak on that slot.

Each ``*_data(n, seed)`` returns the task's inputs and the truth; each ``train_*``
loads the trained weights from the cache or trains (a few seconds on a CPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


COPY_K = 3
COPY_VOCAB = 12
COPY_T = 12


def _load_or_train(key: str, build: Callable[[], nn.Module], train: Callable[[nn.Module], None]) -> nn.Module:
    def train_one_thread(model: nn.Module) -> None:
        # Models this small train fastest on one thread (more only adds synchronisation).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(model)
        finally:
            torch.set_num_threads(threads)

    return _cached(key, build, train_one_thread)


def _cached(key: str, build: Callable[[], nn.Module], train: Callable[[nn.Module], None]) -> nn.Module:
    try:  # the shared demo cache, when it is part of the package
        from .cache import load_or_train  # type: ignore[import-not-found]
    except ImportError:
        load_or_train = None
    if load_or_train is not None:
        return load_or_train(key, build=build, train=train).eval()
    root = os.environ.get("TORCHLOUPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "torchloupe"
    )
    path = Path(root).expanduser() / f"{key}.pt"
    model = build()
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except (RuntimeError, OSError, ValueError):
            model = build()  # stale or broken file: train again
    train(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model.eval()


# -- copy the token k places back ----------------------------------------------------------------


class CopyTransformer(nn.Module):
    """Token + position embeddings, one causal ``nn.TransformerEncoderLayer`` (2 heads), a readout."""

    def __init__(self, vocab: int = COPY_VOCAB, T: int = COPY_T, d: int = 32, heads: int = 2):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(T, d) * 0.5)
        self.layer = nn.TransformerEncoderLayer(d, heads, 64, dropout=0.0, batch_first=True)
        self.out = nn.Linear(d, vocab)
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, T) ints -> (B, T, vocab)
        T = x.shape[1]
        h = self.tok(x) + self.pos[:T]
        return self.out(self.layer(h, src_mask=self.mask[:T, :T]))


def copy_data(n: int, seed: int = 0, k: int = COPY_K) -> tuple[Tensor, Tensor]:
    """Random token sequences ``(n, T)`` and targets ``y[:, t] = x[:, t - k]`` (``-100`` for ``t < k``)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, COPY_VOCAB, (n, COPY_T), generator=g)
    y = torch.full_like(x, -100)
    y[:, k:] = x[:, :-k]
    return x, y


def _fit(model: nn.Module, batches: Callable[[int], tuple], loss_fn, steps: int, lr: float, seed: int) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        x, y = batches(step)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()  # the demo's own model and graph, not a user's
        opt.step()
    model.eval()


def train_copy_transformer(seed: int = 0) -> CopyTransformer:
    def build():
        torch.manual_seed(seed)
        return CopyTransformer()

    def train(model):
        _fit(
            model,
            lambda step: copy_data(32, seed=1000 * seed + step),
            lambda out, y: F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)),
            steps=200,
            lr=1e-2,
            seed=seed,
        )

    return _load_or_train(f"attention-copy-transformer-v2-seed{seed}", build, train)


# -- count the ones ------------------------------------------------------------------------------


class CountingLSTM(nn.Module):
    """Bits ``(B, T, 1)`` -> running count of ones so far ``(B, T)``, through a one-layer LSTM."""

    def __init__(self, hidden: int = 12):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.lstm(x)
        return self.out(h).squeeze(-1)


def counting_data(n: int, seed: int = 0, T: int = 24) -> tuple[Tensor, Tensor]:
    """Bit streams ``(n, T, 1)`` (ones with probability 0.3) and the running count ``(n, T)``."""
    g = torch.Generator().manual_seed(seed)
    bits = (torch.rand(n, T, 1, generator=g) < 0.3).float()
    return bits, bits.squeeze(-1).cumsum(dim=1)


def train_counting_lstm(seed: int = 0) -> CountingLSTM:
    def build():
        torch.manual_seed(seed)
        return CountingLSTM()

    def train(model):
        _fit(model, lambda step: counting_data(32, seed=1000 * seed + step), F.mse_loss, steps=250, lr=2e-2, seed=seed)

    return _load_or_train(f"attention-counting-lstm-v2-seed{seed}", build, train)


# -- read the right memory slot ------------------------------------------------------------------

MEM_SLOTS, MEM_DIM, MEM_CLASSES = 8, 16, 10


class _Read(nn.Module):
    """Softmax over the slots: ``w = softmax(q · K / τ)``, read ``w @ V``."""

    def forward(self, q: Tensor, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        scores = torch.einsum("bd,bsd->bs", q, keys)
        w = torch.softmax(scores, dim=-1)
        return torch.einsum("bs,bsc->bc", w, values), w


class MemoryNetwork(nn.Module):
    """A memory of ``slots`` (key, one-hot value) pairs and a query; predicts the queried value.

    Inputs ``(query (B, D), keys (B, S, D), values (B, S, C))``; the read weights over slots are the
    softmax inside ``memory``.
    """

    def __init__(self):
        super().__init__()
        self.query = nn.Linear(MEM_DIM, MEM_DIM)
        self.key = nn.Linear(MEM_DIM, MEM_DIM)
        self.memory = _Read()
        self.out = nn.Linear(MEM_CLASSES, MEM_CLASSES)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        read, _ = self.memory(self.query(query), self.key(keys), values)
        return self.out(read)


def memory_data(n: int, seed: int = 0, noise: float = 0.3) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor, Tensor]:
    """``((query, keys, values), label, slot)``: the query is a noisy copy of key ``slot``."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, MEM_SLOTS, MEM_DIM, generator=g)
    labels = torch.randint(0, MEM_CLASSES, (n, MEM_SLOTS), generator=g)
    values = F.one_hot(labels, MEM_CLASSES).float()
    slot = torch.randint(0, MEM_SLOTS, (n,), generator=g)
    query = keys[torch.arange(n), slot] + noise * torch.randn(n, MEM_DIM, generator=g)
    return (query, keys, values), labels[torch.arange(n), slot], slot


def train_memory_network(seed: int = 0) -> MemoryNetwork:
    def build():
        torch.manual_seed(seed)
        return MemoryNetwork()

    def train(model):
        def batches(step):
            inputs, label, _ = memory_data(64, seed=1000 * seed + step)
            return inputs, label

        torch.manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for step in range(150):
            inputs, label = batches(step)
            loss = F.cross_entropy(model(*inputs), label)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()

    return _load_or_train(f"attention-memory-network-v2-seed{seed}", build, train)
