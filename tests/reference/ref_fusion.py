"""Slow literal references for tl.fusion, float64, used only in tests."""

from __future__ import annotations

import itertools

import torch


def shapley_by_permutations(value, K: int) -> list[float]:
    """Shapley values as the mean marginal contribution over all K! orderings; ``value(frozenset) -> float``."""
    phi = [0.0] * K
    perms = list(itertools.permutations(range(K)))
    for order in perms:
        present: set[int] = set()
        for b in order:
            before = value(frozenset(present))
            present.add(b)
            phi[b] += value(frozenset(present)) - before
    return [p / len(perms) for p in phi]


def hsic_u_statistic(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Unbiased HSIC as the U-statistic of Song et al. 2012 (JMLR 13, Thm. 2's kernel h), over distinct 4-tuples."""
    X = X.double().reshape(X.shape[0], -1)
    Y = Y.double().reshape(Y.shape[0], -1)
    n = X.shape[0]
    K = (X @ X.T).tolist()
    L = (Y @ Y.T).tolist()
    total = 0.0
    count = 0
    for idx in itertools.permutations(range(n), 4):
        h = 0.0
        for t, u, v, w in itertools.permutations(idx):
            h += K[t][u] * L[t][u] + K[t][u] * L[v][w] - 2 * K[t][u] * L[t][v]
        total += h / 24.0
        count += 1
    return total / count


def cka_biased(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Kornblith et al. 2019 linear CKA with the biased (centered Gram) HSIC."""
    X = X.double().reshape(X.shape[0], -1)
    Y = Y.double().reshape(Y.shape[0], -1)
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    return float((X.T @ Y).norm() ** 2 / ((X.T @ X).norm() * (Y.T @ Y).norm()))


