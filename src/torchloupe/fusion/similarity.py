"""Linear CKA between branch features and fused features: a *similarity*, not a contribution.

Kornblith et al. 2019 (https://arxiv.org/abs/1905.00414) with the unbiased HSIC estimator of
Song et al. 2012 accumulated over minibatches (Nguyen et al. 2021,
https://arxiv.org/abs/2010.15327): for Gram matrices ``K = X X^T``, ``L = Y Y^T`` of ``n`` samples
with zeroed diagonals,

``HSIC_1(K, L) = [tr(K L) + 1^T K 1 1^T L 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K L 1] / (n (n-3))``

and ``CKA = sum_i HSIC_1(K_i, L_i) / sqrt(sum_i HSIC_1(K_i, K_i) sum_i HSIC_1(L_i, L_i))`` over minibatches ``i``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError, UnsupportedModelError
from ..probe import require_module
from ..structure.merges import ancestors
from ..structure.tracer import record


def hsic1(X: Tensor, Y: Tensor) -> Tensor:
    """Unbiased HSIC of linear kernels for ``X`` ``(n, p)``, ``Y`` ``(n, q)``, ``n >= 4``, in float64."""
    n = X.shape[0]
    if n < 4:
        raise InputError(f"unbiased HSIC needs at least 4 samples per minibatch, got {n}")
    X = X.reshape(n, -1).double()
    Y = Y.reshape(n, -1).double()
    K = X @ X.T
    L = Y @ Y.T
    K = K - torch.diag(torch.diagonal(K))
    L = L - torch.diag(torch.diagonal(L))
    ones = torch.ones(n, 1, dtype=torch.float64, device=X.device)
    trace = (K * L).sum()
    middle = (ones.T @ K @ ones) * (ones.T @ L @ ones) / ((n - 1) * (n - 2))
    last = 2.0 / (n - 2) * (ones.T @ K @ L @ ones)
    return ((trace + middle - last) / (n * (n - 3))).reshape(())


def linear_cka(X: Tensor, Y: Tensor, batch_size: int | None = None) -> Tensor:
    """Minibatch linear CKA of ``X`` ``(n, ...)`` and ``Y`` ``(n, ...)`` (samples first); float64 scalar."""
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"X and Y need the same number of samples, got {X.shape[0]} and {Y.shape[0]}")
    n = X.shape[0]
    bs = n if batch_size is None else batch_size
    xy = xx = yy = torch.zeros((), dtype=torch.float64)
    for s in range(0, n, bs):  # a last minibatch under 4 samples is dropped
        xi, yi = X[s:s + bs], Y[s:s + bs]
        if xi.shape[0] < 4:
            continue
        xy = xy + hsic1(xi, yi)
        xx = xx + hsic1(xi, xi)
        yy = yy + hsic1(yi, yi)
    denom = torch.sqrt(xx.clamp_min(0) * yy.clamp_min(0))
    return xy / denom if float(denom) > 0 else torch.tensor(float("nan"), dtype=torch.float64)


@dataclass(frozen=True)
class CKAResult:
    """``names``: the branches, then ``"fused"``; ``matrix`` ``(K+1, K+1)`` linear CKA; ``point``: the fusion point."""

    names: list[str]
    matrix: Tensor
    point: str

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


def _fusion_of(model: nn.Module, x: Any, branches: Mapping[str, str] | None):
    """Trace one forward keeping the values; the branches' specs, the node values, the branches' root nodes
    and the first fusion point fed by all."""
    from .contrib import as_inputs, resolve_branches
    from .linearity import branch_roots
    from .points import points

    require_module(model)
    inputs = as_inputs(model, x)
    specs = resolve_branches(model, inputs, branches)
    graph, values = record(model, inputs.args, dict(inputs.kwargs), keep_values=True)
    roots = branch_roots(graph, specs)
    if len(roots) != len(specs):
        raise UnsupportedModelError(f"branch(es) {sorted(set(specs) - set(roots))} did not run during the forward pass")
    anc = ancestors(graph.nodes)
    chosen = None
    for p in points(graph):
        fed = [r for r in roots.values() if r == p.node or anc[p.node] >> r & 1]
        if len(fed) == len(roots):
            chosen = p
            break
    if chosen is None:
        raise UnsupportedModelError("found no fusion point fed by all the branches")
    return specs, values, roots, chosen


def fused_features(model: nn.Module, x: Any, branches: Mapping[str, str] | None = None):
    """``(FusionPoint, fused tensor)``: the first fusion point fed by all the branches and its output on ``x``."""
    _, values, _, chosen = _fusion_of(model, x, branches)
    return chosen, values[chosen.node].detach()


def similarity(model: nn.Module, x: Any, branches: Mapping[str, str] | None = None,
               batch_size: int | None = None) -> CKAResult:
    """Linear CKA between each branch's output and the fused tensor (the fusion point they feed).

    ``x`` is a batch of at least 4 samples: anything ``model(...)`` takes (a tensor, a tuple of
    positional inputs, a dict of keyword inputs).
    """
    specs, values, roots, chosen = _fusion_of(model, x, branches)
    feats = [values[roots[b]] for b in specs] + [values[chosen.node]]
    names = list(specs) + ["fused"]
    k = len(feats)
    mat = torch.ones(k, k, dtype=torch.float64)
    for i in range(k):
        for j in range(i + 1, k):
            mat[i, j] = mat[j, i] = linear_cka(feats[i].reshape(feats[i].shape[0], -1),
                                               feats[j].reshape(feats[j].shape[0], -1), batch_size)
    return CKAResult(names=names, matrix=mat, point=chosen.name)
