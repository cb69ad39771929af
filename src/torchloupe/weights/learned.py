"""What a :class:`~torchloupe.weights.WeightHistory` shows, as tensors: class templates, first-layer
kernels and class similarity at each snapshot (the render layer draws them, ``render.weight_learning``).
"""

from __future__ import annotations

import math

from torch import Tensor


def _input_shape(history, features: int) -> tuple[int, ...] | None:
    shape = history.input_shape
    if shape is not None and math.prod(shape) == features:
        return tuple(shape)
    side = math.isqrt(features)
    if shape is None and side * side == features and side > 1:
        return (1, side, side)  # a one-channel square image (784 -> 1 x 28 x 28)
    return None


def template_tensor(history, index: int = -1, kind: str = "auto") -> tuple[Tensor, str] | None:
    """Class templates at snapshot ``index``: ``((classes, *input_shape), kind)`` or ``None``.

    ``kind``: ``"effective"`` (MLP: ``W_L @ ... @ W_1``, float64), ``"head"`` (the head's rows
    when they read the input directly) or ``"auto"`` (effective when the model is an MLP,
    else head). ``None`` when the head's rows are not input-shaped (e.g. after pooling).
    """
    head = history.head_name()
    if head is None or len(history.snapshot_steps) == 0:
        return None
    chain = history.linear_chain()
    if kind in ("auto", "effective") and chain:
        w = history[chain[-1]][index].double()
        for name in reversed(chain[:-1]):  # W_L @ ... @ W_1 from the head, as Python reads it (the cheap order)
            w = w @ history[name][index].double()
        shape = _input_shape(history, w.shape[1])
        return (w.reshape(w.shape[0], *shape), "effective") if shape else None
    if kind == "effective":
        return None
    w = history[head][index]
    if history.kernel_name() is not None:  # a conv net's head reads pooled features, not the input
        return None
    if not history.reads_input(head):  # an MLP's head reads hidden units: its rows are no input images
        return None
    shape = _input_shape(history, w.shape[1])
    return (w.reshape(w.shape[0], *shape), "head") if shape else None


def kernel_tensor(history, index: int = -1) -> tuple[Tensor, str] | None:
    """First-layer filters at snapshot ``index``: conv kernels ``(out, in, kh, kw)`` or, for an
    MLP, the first layer's rows reshaped to the input; with the tensor's name."""
    name = history.kernel_name()
    if name is not None:
        w = history[name][index]
        if w.dim() == 3:  # conv1d: (out, in, k) -> one row image per kernel
            w = w.unsqueeze(-2)
        elif w.dim() == 5:  # conv3d: the middle depth slice
            w = w[:, :, w.shape[2] // 2]
        return w, name
    chain = history.linear_chain()
    if not chain:  # an MLP snapshotted at its first and last layers only: the first one's hidden units
        two_d = [n for n in history.snapshots if n.endswith("weight") and len(history.shapes.get(n, ())) == 2]
        chain = two_d[:1] if len(two_d) >= 2 and history.reads_input(two_d[0]) else []
    if chain:
        w = history[chain[0]][index]
        shape = _input_shape(history, w.shape[1])
        if shape:
            return w.reshape(w.shape[0], *shape), chain[0]
    return None


def class_similarity(history) -> Tensor | None:
    """``(S, classes, classes)`` cosine similarity between the head's rows at each snapshot."""
    head = history.head_name()
    if head is None or len(history.snapshot_steps) == 0:
        return None
    w = history[head].double()
    w = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return w @ w.transpose(-1, -2)


def pick_steps(history, n: int = 3) -> list[int]:
    """Up to ``n`` snapshot indices evenly spread from first to last (start / middle / end)."""
    s = len(history.snapshot_steps)
    if s == 0:
        return []
    if s <= n:
        return list(range(s))
    return sorted({round(i * (s - 1) / (n - 1)) for i in range(n)})
