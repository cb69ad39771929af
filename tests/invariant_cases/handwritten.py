"""Invariant cases for attention written by hand (softmax times a tensor, a memory read as a method) and for
tl.cam.compare skipping a method that cannot apply (Score-CAM capped)."""

import math

import torch
from torch import nn

import torchloupe as tl
from tests.helpers import Case


class _Memory(nn.Module):
    def __init__(self):
        super().__init__()
        self.keys = nn.Parameter(torch.randn(4, 8))

    def read(self, q):
        return torch.softmax(q @ self.keys.T, -1) @ self.keys


class _BlogAttention(nn.Module):
    """Conv1d q/k/v, softmax(q kᵀ / √d) with dropout @ v, a memory read, a head; dropout so train mode differs."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = (nn.Conv1d(6, 8, 1) for _ in range(3))
        self.drop = nn.Dropout(0.3)
        self.memory = _Memory()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):  # (B, T, 6)
        h = x.transpose(1, 2)
        q, k, v = (f(h).transpose(1, 2) for f in (self.q, self.k, self.v))
        mixed = self.drop(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), -1)) @ v
        return self.fc(self.memory.read(mixed.mean(1)))


def _blog():
    torch.manual_seed(0)
    return _BlogAttention().train()


def _capture(model, x):
    maps = tl.attention.capture(model, x)
    assert list(maps) == ["model", "memory"]


class _FlatHead(nn.Module):
    """conv-bn-relu, flatten, Linear(C·H·W): CAM cannot apply, the others can."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.relu(self.bn(self.conv(x))).flatten(1))


def _flat():
    torch.manual_seed(0)
    m = _FlatHead()
    m.bn.running_mean.uniform_(-0.1, 0.1)
    return m.train()


def _compare(model, x):
    res = tl.cam.compare(model, x, "all", "relu", [0, 2], options={"scorecam": {"max_masks": 2, "warn_above": None}})
    assert "cam" in res.skipped and "gradcam" in res


CASES = [
    Case("capture-hand-written-attention", _capture, make=_blog, inputs=lambda: torch.randn(2, 5, 6)),
    Case("relevance-hand-written-attention", lambda m, x: tl.attention.relevance(m, x), make=_blog,
         inputs=lambda: torch.randn(2, 5, 6)),
    Case("compare-skipping-cam", _compare, make=_flat, inputs=lambda: torch.rand(2, 3, 6, 6)),
]
