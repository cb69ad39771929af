"""Models written the way the blog articles write them, for the command line tests
(``--model tests.cli_models:make_fusion`` ...). Small enough to run every subcommand in a test.

- :class:`FusionNet`: two CNN branches fused by ``torch.cat``, ``forward(self, x1, x2)``, flattened
  with ``x.view(x.size(0), -1)``; :func:`make_fusion` (two RGB inputs) and :func:`make_fusion_rgbd`
  (an RGB image and a one-channel depth map).
- :class:`ConvNet`: MNIST, one channel, ``x.view(-1, 32 * 14 * 14)``.
- :class:`MLP`: 784-128-64-10, ``x.view(-1, 784)``.
- :class:`SeqModel`: Conv1d over ``(B, 10, 300)`` sequences, hand-written attention and a memory read.
- :class:`LeNet`: LeNet-5 on 32x32 gray images.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from tests.blog_models import MLP  # the 784-128-64-10 MLP as the articles write it


class FusionNet(nn.Module):
    def __init__(self, in1=3, in2=3, num_classes=4):
        super().__init__()
        self.cnn1 = nn.Sequential(nn.Conv2d(in1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.cnn2 = nn.Sequential(nn.Conv2d(in2, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, num_classes)

    def forward(self, x1, x2):
        x1 = self.cnn1(x1)
        x2 = self.cnn2(x2)
        x = torch.cat((x1, x2), dim=1)
        x = F.relu(self.conv(x))
        x = x.view(x.size(0), -1)
        return self.fc(x)


def make_fusion():
    """Two RGB 16x16 inputs."""
    return FusionNet()


def make_fusion_rgbd():
    """An RGB 16x16 image and a one-channel 16x16 depth map."""
    return FusionNet(in1=3, in2=1)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(32 * 14 * 14, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 32 * 14 * 14)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def make_convnet():
    """1 x 28 x 28 digits."""
    return ConvNet()


def make_mlp():
    """784 inputs: a 28 x 28 gray image, flattened."""
    return MLP()


class Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = self.query(x), self.key(x), self.value(x)
        scores = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(x.size(-1))
        weights = F.softmax(scores, dim=-1)
        return torch.bmm(weights, v)


class Memory(nn.Module):
    def __init__(self, slots, dim):
        super().__init__()
        self.memory = nn.Parameter(torch.randn(slots, dim) * 0.1)

    def forward(self, x):
        weights = F.softmax(x @ self.memory.t(), dim=-1)
        return weights @ self.memory


class SeqModel(nn.Module):
    """(B, 10, 300) sequences (10 steps of 300 features) -> 3 classes."""

    def __init__(self, features=300, hidden=16, num_classes=3):
        super().__init__()
        self.conv = nn.Conv1d(features, hidden, kernel_size=3, padding=1)
        self.attention = Attention(hidden)
        self.memory = Memory(8, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = x.permute(0, 2, 1)  # (B, 300, 10): Conv1d over time
        x = F.relu(self.conv(x)).permute(0, 2, 1)  # (B, 10, hidden)
        x = self.attention(x)
        x = x + self.memory(x)
        return self.fc(x.mean(dim=1))


def make_seq():
    return SeqModel()


class LeNet(nn.Module):
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
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def make_lenet():
    """1 x 32 x 32 gray images."""
    return LeNet()


def make_fusion_detector():
    """:class:`FusionNet` (RGB + depth) with set weights: class 0 scores the depth pixels above 0.5,
    through ``cnn2``'s channel 0 and ``conv``'s channel 0 only; the RGB branch is all zeros. Its
    Grad-CAM on input 1 peaks where the depth map is bright, by construction."""
    model = FusionNet(in1=3, in2=1)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.cnn2[0].weight[0, 0, 1, 1] = 1.0
        model.cnn2[0].bias[0] = -0.5
        model.conv.weight[0, 8, 1, 1] = 1.0  # conv channel 0 <- cnn2 channel 0 (channels 8.. of the cat)
        model.fc.weight[0].view(16, 8, 8)[0] = 1.0
    return model
