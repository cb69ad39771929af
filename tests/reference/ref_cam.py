"""Slow literal float64 implementations of each CAM paper's formula, for tests only.

Activations and gradients are taken independently of torchloupe: a float64 deep copy of the
model, a plain forward hook keeping the layer's output, ``torch.autograd.grad`` of the target
logit. Each formula is then written out with Python loops over samples, channels and
positions, exactly as printed in its paper.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F


def acts_and_grads(model, x, layer_name, targets, reshape=None):
    """``(A, G, logits)`` as float64 numpy: A, G ``(N, C, h, w)`` (tokens laid on the grid by ``reshape``)."""
    m = copy.deepcopy(model).double().eval()
    layer = dict(m.named_modules())[layer_name]
    kept = {}

    def hook(module, args, output):
        # The layer's own output; the model may rewrite it in place next (densenet: F.relu(inplace=True)),
        # so the rest of the forward runs on a copy.
        kept["a"] = output
        return output.clone()

    h = layer.register_forward_hook(hook)
    try:
        out = m(x.double())
    finally:
        h.remove()
    a = kept["a"]
    score = sum(out[i, int(t)] for i, t in enumerate(targets))
    (g,) = torch.autograd.grad(score, [a])
    a, g = a.detach(), g.detach()
    if reshape is not None:
        a, g = reshape(a), reshape(g)
    return a.numpy(), g.numpy(), out.detach().numpy()


def gradcam(A, G, relu=True):
    N, C, H, W = A.shape
    out = np.zeros((N, H, W))
    for n in range(N):
        for c in range(C):
            w = 0.0
            for i in range(H):
                for j in range(W):
                    w += G[n, c, i, j]
            w /= H * W
            out[n] += w * A[n, c]
    return np.maximum(out, 0) if relu else out


def gradcam_pp(A, G):
    """Chattopadhay et al. 2018, eq. 19 with exponential output (no epsilon)."""
    N, C, H, W = A.shape
    out = np.zeros((N, H, W))
    for n in range(N):
        for c in range(C):
            s = 0.0
            for a in range(H):
                for b in range(W):
                    s += A[n, c, a, b]
            w = 0.0
            for i in range(H):
                for j in range(W):
                    g = G[n, c, i, j]
                    den = 2 * g**2 + s * g**3
                    alpha = g**2 / den if den != 0 else 0.0
                    w += alpha * max(g, 0.0)
            out[n] += w * A[n, c]
    return np.maximum(out, 0)


def xgradcam(A, G):
    N, C, H, W = A.shape
    out = np.zeros((N, H, W))
    for n in range(N):
        for c in range(C):
            s = A[n, c].sum()
            w = 0.0
            if s != 0:
                for i in range(H):
                    for j in range(W):
                        w += A[n, c, i, j] / s * G[n, c, i, j]
            out[n] += w * A[n, c]
    return np.maximum(out, 0)


def layercam(A, G):
    N, C, H, W = A.shape
    out = np.zeros((N, H, W))
    for n in range(N):
        for i in range(H):
            for j in range(W):
                out[n, i, j] = sum(max(G[n, c, i, j], 0.0) * A[n, c, i, j] for c in range(C))
    return np.maximum(out, 0)


def hirescam(A, G):
    N, C, H, W = A.shape
    out = np.zeros((N, H, W))
    for n in range(N):
        for i in range(H):
            for j in range(W):
                out[n, i, j] = sum(G[n, c, i, j] * A[n, c, i, j] for c in range(C))
    return np.maximum(out, 0)


def cam(A, weight, targets):
    N, C, H, W = A.shape
    out = np.zeros((N, H, W))
    for n in range(N):
        for c in range(C):
            out[n] += weight[int(targets[n]), c] * A[n, c]
    return np.maximum(out, 0)


def eigencam(A):
    N, C, H, W = A.shape
    out = np.zeros((N, H, W))
    for n in range(N):
        M = A[n].reshape(C, H * W).T  # (positions, C)
        _, _, vt = np.linalg.svd(M - M.mean(axis=0), full_matrices=False)
        p = M @ vt[0]
        pc, mc = p - p.mean(), M.mean(axis=1) - M.mean(axis=1).mean()
        C0 = M - M.mean(axis=0)
        flat_mean = np.linalg.norm(mc) / np.sqrt(len(mc)) <= 1e-3 * np.linalg.norm(C0) / np.sqrt(C0.size)
        if abs(pc @ mc) <= 1e-3 * np.linalg.norm(pc) * np.linalg.norm(mc) or flat_mean:  # the largest deviation up
            if pc[np.abs(pc).argmax()] < 0:
                p = -p
        elif pc @ mc < 0:
            p = -p
        if p.max() <= 0 < (-p).max():  # never an all-zero map when the other orientation has positives
            p = -p
        out[n] = p.reshape(H, W)
    return np.maximum(out, 0)


def scorecam(model, x, A, targets):
    """One masked forward per channel, softmax probability of the target as the weight."""
    m = copy.deepcopy(model).double().eval()
    x = x.double()
    N, C, H, W = A.shape
    out = np.zeros((N, H, W))
    with torch.no_grad():
        for n in range(N):
            for c in range(C):
                up = F.interpolate(torch.from_numpy(A[n, c])[None, None], size=x.shape[2:], mode="bilinear",
                                   align_corners=False)[0, 0]
                lo, hi = float(up.min()), float(up.max())
                mask = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
                p = torch.softmax(m(x[n : n + 1] * mask), dim=1)[0, int(targets[n])].item()
                out[n] += p * A[n, c]
    return np.maximum(out, 0)


def corr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.std() == 0 and b.std() == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def tokens_to_grid(t, extra=1):
    """``(N, T, C)`` -> ``(N, C, h, w)`` dropping ``extra`` leading tokens (square grid)."""
    n, T, C = t.shape
    s = int(math.isqrt(T - extra))
    return t[:, extra:].reshape(n, s, s, C).permute(0, 3, 1, 2)
