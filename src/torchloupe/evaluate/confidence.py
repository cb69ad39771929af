"""Average drop and increase in confidence (Chattopadhay et al. 2018): the target's probability on
the image multiplied by the map, against the original.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..probe import preserved
from .batching import DEFAULT_MEMORY_BUDGET, chunk_size, prepare, probabilities, resolve_targets

__all__ = ["average_drop", "increase_in_confidence"]


def _confidence_pair(model, x, maps, target, memory_budget):
    x, maps = prepare(model, x, maps, target)
    with preserved(model):
        model.eval()
        chunk = chunk_size(x, memory_budget)
        targets = resolve_targets(model, x, target, chunk)
        both = torch.cat([x, x * maps[:, None]])
        p = probabilities(model, both, chunk)
    b = x.shape[0]
    y = p[:b].gather(1, targets[:, None])[:, 0]
    o = p[b:].gather(1, targets[:, None])[:, 0]
    return y, o


def average_drop(model, x, maps, target=None, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Tensor:
    """Per-sample drop in confidence, in percent: ``100 · max(0, Y − O) / Y`` ``(N,)``.

    ``Y``: the target's softmax probability on ``x``; ``O``: on ``x · map`` (maps in [0, 1]).
    The paper's *Average Drop* is the mean of this over the data set (lower is better).
    """
    y, o = _confidence_pair(model, x, maps, target, memory_budget)
    return 100.0 * torch.clamp(y - o, min=0) / y.clamp_min(torch.finfo(y.dtype).tiny)


def increase_in_confidence(model, x, maps, target=None, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Tensor:
    """Per-sample indicator ``(N,)`` float: 1 when ``O > Y`` (the map alone raises confidence)."""
    y, o = _confidence_pair(model, x, maps, target, memory_budget)
    return (o > y).float()


# ---------------------------------------------------------------- ROAD: noisy linear imputation
