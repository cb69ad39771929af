"""Weights: convolution kernels, fully connected weight matrices and class templates."""

from __future__ import annotations

from torchloupe.reporting.options import SectionOptions

from dataclasses import dataclass
from typing import Any

import math

from torch import Tensor, nn

from ...inputs import first_layer
from ...weights.static import class_templates, effective_templates, fc_matrix, kernels
from ..base import Details, Figure, NotApplicable, Subject, Table, register

_CONV2D = (nn.Conv2d,)


def _input_shape(subject: Subject, options) -> tuple[int, ...] | None:
    shape = options.input_shape
    if shape is not None:
        return tuple(shape)
    x = subject.inputs
    if isinstance(x, Tensor) and x.dim() >= 2:
        return tuple(x.shape[1:])
    return None


@dataclass(frozen=True)
class WeightsOptions(SectionOptions):
    """``input_shape``: the shape of one input sample as an image ``(C, H, W)``, for a model that takes it
    flat (a first Linear layer's rows are drawn as images of that shape); else the inputs' own shape."""

    input_shape: tuple | None = None

@register(
    "weights",
    "Weights",
    "What the model learned, read off its parameters: convolution kernels (first layer in colour), "
    "fully connected weight matrices (red positive, blue negative) and per-class templates.",
    options=WeightsOptions,
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
        if k.shape[-2:] == (1, 1) and _too_large(k.shape[0], k.shape[1]):  # a 1x1 conv: a channel matrix
            blocks.extend(_matrix_blocks(k[:, :, 0, 0], name, "output channel", "input channel", "1x1 kernels"))
            continue
        blocks.append(Figure(kernel_figure(k, title=f"{name}: kernels {'x'.join(str(s) for s in k.shape)}"),
                             caption=f"{name} kernels" + (" as colour tiles (gray = 0)" if k.shape[1] == 3 else
                                                          " (1x1: a matrix over channels)" if k.shape[-2:] == (1, 1) else
                                                          ", one row per output channel, one column per input")))
    # Fully connected matrices: rows are classes for the head of a classifier, hidden units
    # inside an MLP; columns the input's features for the first layer, hidden units after it.
    shape = _input_shape(subject, options)
    first = first_layer(model)
    chain = _chain(linears) if not convs else []
    index = {id(m): i for i, (_, m) in enumerate(chain)}
    for name, m in linears[-2:] if quick else linears[-3:]:
        W = fc_matrix(m)
        is_head = (labels is not None and W.shape[0] == len(labels)) or (bool(chain) and m is chain[-1][1])
        reads_input = first is not None and m is first[1]
        inner = id(m) in index and not reads_input
        rows = "class" if is_head else "hidden unit" if id(m) in index else "output unit"
        columns = f"hidden unit of {chain[index[id(m)] - 1][0]}" if inner else "input feature"
        if _too_large(*W.shape) and not (is_head and labels is not None and len(labels) <= 40):
            blocks.extend(_matrix_blocks(W, name, rows, columns, "weight matrix"))
            continue
        blocks.append(Figure(
            weight_matrix_figure(W, title=f"{name}: {W.shape[0]}x{W.shape[1]}",
                                 ylabel=rows, xlabel=columns,
                                 row_labels=labels if is_head else None),
            caption=f"{name} weight matrix" + (" (rows are classes)" if is_head else
                                               " (rows are hidden units)" if id(m) in index else "")))
    # Templates: the first layer, when it is linear and reads the (flattened) input directly; for an
    # MLP (a chain of Linear layers) the effective class templates W_L ... W_1 as well.
    image = _template_shape(shape, first[1].in_features) if first is not None and isinstance(first[1], nn.Linear) else None
    for name, m in linears:
        if first is None or m is not first[1] or image is None:
            continue
        if len(chain) >= 2 and m is chain[0][1]:
            t = effective_templates([c for _, c in chain], image)
            k = t.shape[0]
            names = labels if labels is not None and len(labels) == k else [str(i) for i in range(k)]
            path = " @ ".join(f"{n}.W" for n, _ in reversed(chain))
            blocks.append(Figure(class_template_figure(t[:16], names[:16], title=f"effective class templates {path}"),
                                 caption=f"Effective class templates: rows of {path} (float64) drawn at the input "
                                         f"shape {image}; the linear path only, nonlinearities and biases left out. "
                                         f"Red pixels push the class score up, blue down."))
        t = class_templates(m, image)
        is_head = labels is not None and t.shape[0] == len(labels)
        if is_head:
            blocks.append(Figure(class_template_figure(t, labels, title=f"{name}: class templates"),
                                 caption=f"class templates: rows of {name}.weight reshaped to the input {image}"))
        else:
            k = min(t.shape[0], 8 if quick else 16)
            blocks.append(Figure(
                class_template_figure(t[:k], [f"hidden unit {i}" for i in range(k)],
                                      title=f"{name}: input templates of {k} of {t.shape[0]} hidden units"),
                caption=f"rows of {name}.weight reshaped to the input {image}: what each hidden unit looks for"))
    return blocks


# A matrix with more cells than a figure has pixels to show them reads as noise: above these
# sizes it is summarised (a readable crop, row norms, a histogram), the whole matrix on demand.
_READABLE_ROWS, _READABLE_COLS = 128, 256
_FULL_QUALITY = 60


def _too_large(rows: int, cols: int) -> bool:
    return rows > _READABLE_ROWS or cols > _READABLE_COLS


def _matrix_blocks(W, name: str, ylabel: str, xlabel: str, what: str) -> list:
    """A large matrix as its summary figure, the whole matrix in a closed ``<details>``."""
    from ...render import matrix_summary_figure, weight_matrix_figure

    rows, cols = W.shape
    summary = Figure(
        matrix_summary_figure(W, title=f"{name}: {rows}x{cols} {what}", ylabel=ylabel, xlabel=xlabel),
        caption=f"{name}: {rows}x{cols} is too many cells to read one by one, so: a readable corner, the norm "
                f"of each row (rows with unusually large or small weights stand out) and the distribution of the "
                f"values. Red positive, blue negative.",
        alt=f"Three panels about the {rows} by {cols} {what} of {name}: the top-left corner as a red-blue heat "
            f"map, a line of the L2 norm of each of the {rows} rows, and a histogram of all {rows * cols:,} values.",
        kind="lineart")
    full = Figure(weight_matrix_figure(W, title=f"{name}: {rows}x{cols}", ylabel=ylabel, xlabel=xlabel),
                  caption=f"The whole {name} matrix (averaged down where it has more cells than pixels; "
                          f"WebP at quality {_FULL_QUALITY}: noise-like, it would be the largest image of the page).",
                  kind="photo", quality=_FULL_QUALITY)
    return [summary, Details(f"Show the whole {rows}x{cols} {name} matrix", [full])]


def _chain(linears: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """The Linear layers when they form one chain (each reads what the previous writes: an MLP), else []."""
    ok = len(linears) >= 2 and all(b.in_features == a.out_features for (_, a), (_, b) in zip(linears, linears[1:]))
    return linears if ok else []


def _template_shape(shape: tuple[int, ...] | None, features: int) -> tuple[int, ...] | None:
    """The shape a first Linear layer's rows are drawn at: the input's own when it is an image,
    a flat input as the square image it holds (784 -> (1, 28, 28)), else the input shape."""
    from ...render.image import image_shape

    if shape is None or math.prod(shape) != features:
        return None
    if len(shape) >= 2 and not (len(shape) == 3 and shape[0] not in (1, 3)):
        return shape
    return image_shape(features, shape) or shape
