"""Slow, literal float64 references for the explanation-quality metrics (one sample at a time)."""

from __future__ import annotations

import math

import numpy as np
import torch


def deletion_curve(model, x, sal, target, steps, substrate):
    """RISE deletion for one image x (C,H,W), saliency (H,W), written as in the paper's code."""
    c, h, w = x.shape
    n = h * w
    step = math.ceil(n / steps)
    order = np.argsort(-sal.reshape(-1).numpy(), kind="stable")
    cur = x.clone().double()
    start = substrate.double()
    scores = []
    for i in range(steps + 1):
        with torch.no_grad():
            p = torch.softmax(model(cur[None].float()).double(), dim=1)[0, target].item()
        scores.append(p)
        if i < steps:
            idx = order[i * step : (i + 1) * step]
            ys, xs = idx // w, idx % w
            for yy, xx in zip(ys, xs):
                cur[:, yy, xx] = start[:, yy, xx]
    return np.array(scores)


def auc(curve, fractions):
    """Trapezoid rule, written out."""
    total = 0.0
    for i in range(len(curve) - 1):
        total += (fractions[i + 1] - fractions[i]) * (curve[i] + curve[i + 1]) / 2
    return total
