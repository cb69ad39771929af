"""scikit-learn's handwritten digits (1,797 images of 8x8 pixels) as tensors and a Dataset.

Bundled with scikit-learn (no download). Images are ``(1, 8, 8)`` float in [0, 1]
(the original 0..16 gray levels divided by 16). The first load keeps a copy of the arrays in
the demo cache (``sklearn-digits-v1.pt``, 130 kB), so later runs skip importing scikit-learn.
"""

from __future__ import annotations

import pickle
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import TensorDataset


DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


class DigitsSplit(NamedTuple):
    """Train and test tensors: ``x_* (N, 1, 8, 8)`` float in [0, 1], ``y_* (N,)`` long."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


_CACHE_KEY = "sklearn-digits-v1"


def _load_sklearn() -> tuple[Tensor, Tensor]:
    """Gray levels ``(N, 8, 8)`` uint8 in 0..16 and labels ``(N,)`` uint8, from scikit-learn."""
    from ..errors import require

    datasets = require("sklearn.datasets", "demo", package="scikit-learn")
    data = datasets.load_digits()
    return torch.as_tensor(data.images).round().to(torch.uint8), torch.as_tensor(data.target).to(torch.uint8)


def _raw_digits() -> tuple[Tensor, Tensor]:
    from .cache import cache_path, save_tensors

    path = cache_path(_CACHE_KEY)
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            images, labels = saved["images"], saved["labels"]
            if images.shape == (len(labels), 8, 8) and images.dtype == torch.uint8:
                return images, labels
        except (OSError, RuntimeError, EOFError, KeyError, IndexError, TypeError, ValueError, pickle.UnpicklingError):
            pass  # unreadable copy: load from scikit-learn again
    images, labels = _load_sklearn()
    try:
        save_tensors({"images": images, "labels": labels}, path)
    except OSError:
        pass  # a read-only cache only costs the scikit-learn import next time
    return images, labels


def digits_tensors() -> tuple[Tensor, Tensor]:
    """All 1,797 digits: images ``(N, 1, 8, 8)`` float32 in [0, 1] and labels ``(N,)`` long."""
    images, labels = _raw_digits()
    return images.float().div_(16.0).unsqueeze(1), labels.long()


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
