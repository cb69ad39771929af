"""scikit-learn's handwritten digits (1,797 images of 8x8 pixels) as tensors and a Dataset.

Bundled with scikit-learn (no download). Images are ``(1, 8, 8)`` float in [0, 1]
(the original 0..16 gray levels divided by 16).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

__all__ = ["DIGIT_CLASSES", "DigitsSplit", "digits_tensors", "digits_dataset", "digits_split"]

DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


class DigitsSplit(NamedTuple):
    """Train and test tensors: ``x_* (N, 1, 8, 8)`` float in [0, 1], ``y_* (N,)`` long."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def digits_tensors() -> tuple[Tensor, Tensor]:
    """All 1,797 digits: images ``(N, 1, 8, 8)`` float32 in [0, 1] and labels ``(N,)`` long."""
    from ..errors import require

    datasets = require("sklearn.datasets", "demo", package="scikit-learn")
    data = datasets.load_digits()
    x = torch.as_tensor(data.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    y = torch.as_tensor(data.target, dtype=torch.long)
    return x, y


def digits_dataset() -> TensorDataset:
    """The digits as a ``TensorDataset`` of ``(image (1, 8, 8), label)`` pairs."""
    return TensorDataset(*digits_tensors())


def digits_split(test_fraction: float = 0.25, seed: int = 0) -> DigitsSplit:
    """A deterministic, class-stratified train/test split (same ``seed``, same split)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x, y = digits_tensors()
    g = torch.Generator().manual_seed(seed)
    test_idx, train_idx = [], []
    for c in range(len(DIGIT_CLASSES)):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(len(idx) * test_fraction)
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    tr, te = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    return DigitsSplit(x[tr], y[tr], x[te], y[te])
