"""Models written the way the blog articles write them (issue 17), for tests/test_blog_models.py.

Each is small, CPU-fast and built with a seed; none is trained. Where a test needs known values it sets
the weights itself (``set_*`` helpers below).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class TwoBranchCNN(nn.Module):
    """Two image branches fused by ``torch.cat`` (late fusion), ``forward(self, x1, x2)``."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.cnn1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.cnn2 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x1, x2):
        x1 = self.cnn1(x1)
        x2 = self.cnn2(x2)
        x = torch.cat((x1, x2), dim=1)
        return self.fc(x)


class ConvNet(nn.Module):
    """The 1-channel MNIST ConvNet: conv, pool, and a hand-written flatten ``x.view(-1, 32*14*14)``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(32 * 14 * 14, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = x.view(-1, 32 * 14 * 14)
        return self.fc1(x)


class MLP(nn.Module):
    """784-128-64-10, flattening with ``x.view(-1, 784)`` (accepts (B, 784) or (B, 1, 28, 28))."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(-1, 784)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class Attention(nn.Module):
    """Hand-written scaled dot-product self-attention: ``softmax(q @ k.T / sqrt(d)) @ v``."""

    def __init__(self, d: int):
        super().__init__()
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)

    def weights(self, x):
        q, k = self.q(x), self.k(x)
        return F.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)

    def forward(self, x):
        return self.weights(x) @ self.v(x)


class Memory(nn.Module):
    """A key-value memory of ``slots`` slots read by softmax addressing, written as a method."""

    def __init__(self, d: int, slots: int = 6):
        super().__init__()
        self.keys = nn.Parameter(torch.randn(slots, d) / math.sqrt(d))
        self.values = nn.Parameter(torch.randn(slots, d) / math.sqrt(d))

    def read(self, x):
        w = F.softmax(x @ self.keys.T, dim=-1)  # (B, T, slots)
        return w @ self.values

    def forward(self, x):
        return self.read(x)


class SeqAttentionMemory(nn.Module):
    """Conv1d over (B, 10, 300) sequences (10 steps of 300 features), hand-written attention, memory."""

    def __init__(self, features: int = 300, d: int = 16, num_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv1d(features, d, kernel_size=3, padding=1)
        self.attention = Attention(d)
        self.memory = Memory(d)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):  # x: (B, T=10, F=300)
        h = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, T, d)
        h = h + self.attention(h)
        h = h + self.memory.read(h)
        return self.fc(h.mean(1))


class LeNet(nn.Module):
    """LeNet-5 as in the TensorBoard add_graph tutorials (1x32x32 input)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


# --- variants --------------------------------------------------------------------------------
class DictOutputCNN(nn.Module):
    """A CNN returning a dict ``{"logits": ..., "features": ...}``."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        f = F.relu(self.conv(x))
        pooled = f.mean((2, 3))
        return {"features": pooled, "logits": self.fc(pooled)}


class KeywordFusion(nn.Module):
    """Two named inputs fused by ``torch.cat``, called as ``model(image=..., depth=...)``."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.rgb = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.depth = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, image, depth):
        a = self.rgb(image).mean((2, 3))
        b = self.depth(depth).mean((2, 3))
        return self.fc(torch.cat([a, b], dim=1))


class LinearFusionHead(nn.Module):
    """Two vector branches, each an identity, fused by ``torch.cat`` into one Linear: the score of class
    ``k`` is ``W[k, :2] @ x1 + W[k, 2:] @ x2 + b[k]``, so each branch's contribution is known by hand."""

    def __init__(self):
        super().__init__()
        self.branch_a = nn.Identity()
        self.branch_b = nn.Identity()
        self.head = nn.Linear(4, 2)

    def forward(self, x1, x2):
        return self.head(torch.cat((self.branch_a(x1), self.branch_b(x2)), dim=1))


class LSTMClassifier(nn.Module):
    """An LSTM over (B, T, F) sequences, classifying from the last hidden state."""

    def __init__(self, features: int = 5, hidden: int = 8, num_classes: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


def seeded(cls, *args, seed: int = 0, **kwargs) -> nn.Module:
    """``cls(*args, **kwargs)`` built under ``torch.manual_seed(seed)``, in eval mode."""
    torch.manual_seed(seed)
    return cls(*args, **kwargs).eval()
