"""Weights: convolution kernels, fully connected weight matrices and class templates."""

from __future__ import annotations

import math

from torch import Tensor, nn

from ...inputs import first_layer
from ...weights.static import class_templates, fc_matrix, kernels
from ..base import Figure, NotApplicable, Subject, Table, register

_CONV2D = (nn.Conv2d,)


def _input_shape(subject: Subject) -> tuple[int, ...] | None:
    shape = subject.extras.get("input_shape")
    if shape is not None:
        return tuple(shape)
    x = subject.inputs
    if isinstance(x, Tensor) and x.dim() >= 2:
        return tuple(x.shape[1:])
    return None


@register(
    "weights",
    "Weights",
    "What the model learned, read off its parameters: convolution kernels (first layer in colour), "
    "fully connected weight matrices (red positive, blue negative) and per-class templates.",
    40,
)
def build(subject: Subject, options: dict):
    from ...render import class_template_figure, kernel_figure, weight_matrix_figure

    model = subject.model
    quick = bool(options.get("quick", False))
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, _CONV2D)]
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not convs and not linears:
        return NotApplicable(f"{type(model).__name__} has no Conv2d or Linear layers")
    labels = list(subject.labels) if subject.labels is not None else None
    blocks = []
    rows = []
    for name, m in convs + linears:
        w = m.weight
        rows.append([name, type(m).__name__, "x".join(str(s) for s in w.shape), f"{w.numel():,}",
                     f"{float(w.detach().abs().mean()):.3g}"])
    blocks.append(Table(["layer", "type", "weight shape", "parameters", "mean |w|"], rows,
                        caption="Weight tensors of the convolution and linear layers"))
    # Kernels: the first convolution (RGB tiles when it sees colour) and, unless quick, the last.
    shown = convs[:1] + (convs[-1:] if len(convs) > 1 and not quick else [])
    for name, m in shown:
        k = kernels(m)
        blocks.append(Figure(kernel_figure(k, title=f"{name}: kernels {'x'.join(str(s) for s in k.shape)}"),
                             caption=f"{name} kernels" + (" as colour tiles (gray = 0)" if k.shape[1] == 3 else
                                                          " (1x1: a matrix over channels)" if k.shape[-2:] == (1, 1) else
                                                          ", one row per output channel, one column per input")))
    # Fully connected matrices, rows labelled by class for a classifier head.
    shape = _input_shape(subject)
    for name, m in linears[-2:] if quick else linears[-3:]:
        W = fc_matrix(m)
        is_head = labels is not None and W.shape[0] == len(labels)
        blocks.append(Figure(
            weight_matrix_figure(W, title=f"{name}: {W.shape[0]}x{W.shape[1]}", ylabel="class" if is_head else "output unit",
                                 row_labels=labels if is_head else None),
            caption=f"{name} weight matrix" + (" (rows are classes)" if is_head else "")))
    # Templates: the first layer, when it is linear and reads the (flattened) input directly.
    first = first_layer(model)
    for name, m in linears:
        if first is None or m is not first[1] or shape is None or m.in_features != math.prod(shape):
            continue
        t = class_templates(m, shape)
        is_head = labels is not None and t.shape[0] == len(labels)
        if is_head:
            blocks.append(Figure(class_template_figure(t, labels, title=f"{name}: class templates"),
                                 caption=f"class templates: rows of {name}.weight reshaped to the input {shape}"))
        else:
            k = min(t.shape[0], 8 if quick else 16)
            blocks.append(Figure(
                class_template_figure(t[:k], [f"unit {i}" for i in range(k)],
                                      title=f"{name}: input templates of {k} of {t.shape[0]} units"),
                caption=f"rows of {name}.weight reshaped to the input {shape}: what each hidden unit looks for"))
    return blocks
