"""Static views of a model's weights: conv kernels, fully connected matrices, class templates.

These read parameters only (no forward pass), return detached copies, and never change
the module::

    tl.weights.kernels(model.features.conv1)          # (out, in, kh, kw)
    tl.weights.fc_matrix(model.fc)                    # (out_features, in_features)
    tl.weights.class_templates(linear, (1, 8, 8))     # (out_features, 1, 8, 8)
    tl.weights.effective_templates([m.fc1, m.fc2, m.fc3], (1, 28, 28))   # rows of W3 @ W2 @ W1

A class template is the row of a linear classifier's weight matrix reshaped to the
input's shape: for a linear layer applied to the (flattened) input, the score of class
``k`` is ``<template_k, x> + b_k``, so the template shows which input pixels push
towards (positive) or away from (negative) the class. For an MLP the *effective* template
is a row of ``W_L ... W_2 W_1`` (:func:`effective_templates`): the linear path from the input
to the class score, nonlinearities and biases left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import TemplateShapeError, UnsupportedModelError


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def kernels(module: nn.Module | Tensor) -> Tensor:
    """The kernels of a convolution as a detached ``(out, in / groups, *kernel_size)`` tensor.

    Transposed convolutions (weights stored ``(in, out / groups, ...)``) are returned as
    ``(out / groups, in, ...)``, the same "output channel first" layout. A weight tensor
    may be given directly. For a first layer on RGB images ``in == 3`` and every kernel
    is an RGB tile (:func:`torchloupe.render.kernel_figure` draws them).
    """
    if isinstance(module, Tensor):
        w = module
    elif isinstance(module, _CONVS):
        w = module.weight
        if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            w = w.transpose(0, 1)
    else:
        raise UnsupportedModelError(
            f"kernels() takes a convolution (Conv1d/2d/3d or ConvTranspose) or its weight tensor, "
            f"got {type(module).__name__}"
        )
    if w.dim() < 3:
        raise UnsupportedModelError(f"a kernel tensor has at least 3 dimensions (out, in, k...), got {tuple(w.shape)}")
    return w.detach().clone()


def fc_matrix(linear: nn.Module | Tensor) -> Tensor:
    """The weight matrix of a linear layer as a detached ``(out_features, in_features)`` tensor.

    Also takes a 1x1 convolution (its kernels squeezed to a matrix) or a 2-D weight tensor.
    """
    if isinstance(linear, nn.Linear):
        w = linear.weight
    elif isinstance(linear, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and math.prod(linear.kernel_size) == 1:
        w = linear.weight.reshape(linear.weight.shape[0], -1)
    elif isinstance(linear, Tensor) and linear.dim() == 2:
        w = linear
    else:
        what = type(linear).__name__ if not isinstance(linear, Tensor) else f"a tensor of shape {tuple(linear.shape)}"
        raise UnsupportedModelError(
            f"fc_matrix() takes nn.Linear, a 1x1 convolution or a 2-D weight tensor, got {what}"
        )
    return w.detach().clone()


def class_templates(linear: nn.Module | Tensor, input_shape: Sequence[int] | int) -> Tensor:
    """Rows of a linear layer's weight reshaped to ``input_shape``: ``(out_features, *input_shape)``.

    ``input_shape`` is the shape of one sample as the layer sees it before flattening,
    e.g. ``(1, 8, 8)`` for a linear classifier on 8x8 digits or ``(3, 32, 32)`` for one on
    CIFAR images. Raises :class:`TemplateShapeError` (a ``ValueError``) when the shape's
    element count differs from ``in_features``, naming both.
    """
    w = fc_matrix(linear)
    shape = (int(input_shape),) if isinstance(input_shape, int) else tuple(int(s) for s in input_shape)
    if not shape or any(s <= 0 for s in shape):
        raise TemplateShapeError(f"input_shape must be positive sizes, got {input_shape!r}")
    if math.prod(shape) != w.shape[1]:
        raise TemplateShapeError(
            f"input_shape {shape} has {math.prod(shape)} elements, but the linear layer has "
            f"in_features={w.shape[1]}; expected a shape with {w.shape[1]} elements"
        )
    return w.reshape(w.shape[0], *shape)


def effective_templates(linears: Sequence[nn.Module | Tensor], input_shape: Sequence[int] | int) -> Tensor:
    """Effective input-space templates of a chain of linear layers (an MLP, first layer first):
    the rows of ``W_L @ ... @ W_2 @ W_1`` in float64, reshaped to ``(out_features of the last,
    *input_shape)``. The linear path only: the nonlinearities between the layers and the biases
    are left out, so a template shows which input pixels the chain's linear part weighs towards
    (positive) or away from (negative) each output. Raises :class:`TemplateShapeError` when a
    layer does not read what the previous one writes, or ``input_shape`` does not hold the first
    layer's ``in_features``."""
    ws = [fc_matrix(m) for m in linears]
    if not ws:
        raise TemplateShapeError("effective_templates needs at least one linear layer")
    for k in range(1, len(ws)):
        if ws[k].shape[1] != ws[k - 1].shape[0]:
            raise TemplateShapeError(
                f"layer {k} reads {ws[k].shape[1]} features but layer {k - 1} writes {ws[k - 1].shape[0]}; "
                f"expected a chain, first layer first")
    w = ws[-1].double()
    for prev in reversed(ws[:-1]):  # W_L @ ... @ W_1 from the head, as Python reads it (the cheap order)
        w = w @ prev.double()
    return class_templates(w, input_shape)
