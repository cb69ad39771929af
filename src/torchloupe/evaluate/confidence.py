"""Average drop and increase in confidence (Chattopadhay et al. 2018): the target's probability on
the image multiplied by the map, against the original.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..probe import session
from ..targets import OutputSpec
from .batching import DEFAULT_MEMORY_BUDGET, Scorer, chunk_size, class_target, prepare


def _confidence_pair(model, x, maps, target, memory_budget, wrt, output):
    tgt, output = class_target(target, output)
    inputs, x, maps = prepare(model, x, maps, wrt=wrt)
    with session(model) as run:
        scorer = Scorer(run, inputs, wrt, output, chunk_size(x, memory_budget))
        targets = scorer.class_indices(tgt)
        both = torch.cat([x, x * maps[:, None]])
        p = scorer.probabilities(both, torch.arange(x.shape[0], device=x.device).repeat(2))
    b = x.shape[0]
    y = p[:b].gather(1, targets[:, None])[:, 0]
    o = p[b:].gather(1, targets[:, None])[:, 0]
    return y, o


def average_drop(model, x, maps, target=None, memory_budget: int = DEFAULT_MEMORY_BUDGET, *,
                 wrt: int | str | None = None, output: OutputSpec = None) -> Tensor:
    """Per-sample drop in confidence, in percent: ``100 · max(0, Y − O) / Y`` ``(N,)``.

    ``Y``: the target's softmax probability on ``x``; ``O``: on ``x · map`` (maps in [0, 1]).
    The paper's *Average Drop* is the mean of this over the data set (lower is better).
    ``x``: anything ``model(...)`` takes; input ``wrt`` is the image multiplied by the map, the
    others are kept. ``output`` selects the class scores (:mod:`torchloupe.targets`).
    """
    y, o = _confidence_pair(model, x, maps, target, memory_budget, wrt, output)
    return 100.0 * torch.clamp(y - o, min=0) / y.clamp_min(torch.finfo(y.dtype).tiny)


def increase_in_confidence(model, x, maps, target=None, memory_budget: int = DEFAULT_MEMORY_BUDGET, *,
                           wrt: int | str | None = None, output: OutputSpec = None) -> Tensor:
    """Per-sample indicator ``(N,)`` float: 1 when ``O > Y`` (the map alone raises confidence).
    ``x``, ``wrt``, ``output`` as in :func:`average_drop`."""
    y, o = _confidence_pair(model, x, maps, target, memory_budget, wrt, output)
    return (o > y).float()
