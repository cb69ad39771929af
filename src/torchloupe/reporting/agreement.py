"""How far several explanation methods agree: the CAM and saliency sections' conclusions read it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def pairwise_correlation(maps: Tensor) -> Tensor:
    """``(M, B, P)`` maps of M methods on B inputs -> ``(M, M)`` their Pearson correlation, averaged over the inputs."""
    m = maps - maps.mean(dim=2, keepdim=True)
    m = m / m.norm(dim=2, keepdim=True).clamp_min(1e-12)
    return torch.einsum("mbp,nbp->mnb", m, m).mean(dim=2)


def agreement_words(names: Sequence[str], corr: Tensor) -> tuple[str, float, str]:
    """``(level, overall, outlier)`` for a ``(M, M)`` correlation of M >= 2 methods: "agree closely" (>= 0.8),
    "mostly agree" (>= 0.5) or "disagree"; the mean off-diagonal correlation; and, with more than two
    methods, "; X differs most (r on average with the others)" when one is 0.1 below the mean, else ""."""
    m = len(names)
    off = corr[~torch.eye(m, dtype=torch.bool)].reshape(m, m - 1)
    overall, each = float(off.mean()), off.mean(dim=1)
    worst = int(each.argmin())
    level = "agree closely" if overall >= 0.8 else "mostly agree" if overall >= 0.5 else "disagree"
    outlier = ""
    if m > 2 and float(each[worst]) < overall - 0.1:
        outlier = f"; {names[worst]} differs most ({float(each[worst]):.2f} on average with the others)"
    return level, overall, outlier
