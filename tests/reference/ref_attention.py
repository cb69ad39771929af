"""Slow literal float64 references for attention aggregation and recurrent steps (loops, no vectorisation)."""

from __future__ import annotations

import math

import torch


def rollout(maps, head_fusion="mean"):
    """Abnar & Zuidema 2020, written out entry by entry: R = Â_L ... Â_1, Â = rownorm(0.5 A + 0.5 I)."""
    B, H, T, _ = maps[0].shape
    out = torch.zeros(B, T, T, dtype=torch.float64)
    for b in range(B):
        R = None
        for a in maps:
            A = [[0.0] * T for _ in range(T)]
            for i in range(T):
                for j in range(T):
                    vals = [float(a[b, h, i, j]) for h in range(H)]
                    fused = {"mean": sum(vals) / H, "max": max(vals), "min": min(vals)}[head_fusion]
                    A[i][j] = 0.5 * fused + (0.5 if i == j else 0.0)
                s = sum(A[i])
                A[i] = [v / s for v in A[i]]
            if R is None:
                R = A
            else:
                R = [[sum(A[i][k] * R[k][j] for k in range(T)) for j in range(T)] for i in range(T)]
        out[b] = torch.tensor(R, dtype=torch.float64)
    return out


def lstm_steps(x, w_ih, w_hh, b_ih, b_hh):
    """One-direction one-layer LSTM over x (T, I), unbatched, float64, gate by gate."""
    T = x.shape[0]
    H = w_hh.shape[1]
    h = [0.0] * H
    c = [0.0] * H
    hs, cs = [], []
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    for t in range(T):
        pre = [
            sum(float(w_ih[r, k]) * float(x[t, k]) for k in range(x.shape[1]))
            + float(b_ih[r])
            + sum(float(w_hh[r, k]) * h[k] for k in range(H))
            + float(b_hh[r])
            for r in range(4 * H)
        ]
        i = [sig(v) for v in pre[0:H]]
        f = [sig(v) for v in pre[H : 2 * H]]
        g = [math.tanh(v) for v in pre[2 * H : 3 * H]]
        o = [sig(v) for v in pre[3 * H : 4 * H]]
        c = [f[u] * c[u] + i[u] * g[u] for u in range(H)]
        h = [o[u] * math.tanh(c[u]) for u in range(H)]
        hs.append(list(h))
        cs.append(list(c))
    return torch.tensor(hs, dtype=torch.float64), torch.tensor(cs, dtype=torch.float64)
