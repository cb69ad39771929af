"""Report section "Weights": convolution kernels, fully connected weight matrices and class templates.

Computed as :class:`WeightsData` (the weight table, the kernels, matrices and templates to draw as
:class:`KernelView`, :class:`MatrixView` and :class:`TemplateView`, and the numbers the findings read:
the first convolution's kernel norms, the head's row norms and its most alike pair of rows), drawn
by its ``render()``; options: :class:`WeightsOptions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...errors import UsageError
from ...inputs import first_layer
from ...weights.static import class_templates, effective_templates, fc_matrix, kernels
from ..base import Details, Figure, Finding, NotApplicable, SectionData, Subject, Table, register
from ..options import SectionOptions, check_int

_CONV2D = (nn.Conv2d,)


@dataclass(frozen=True)
class WeightsOptions(SectionOptions):
    """``input_shape``: the shape of one input sample as an image ``(C, H, W)``, for a model that takes it
    flat (a first Linear layer's rows are drawn as images of that shape); else the inputs' own shape.
    ``matrices``: how many of the last Linear layers get their matrix drawn (quick: at most 2);
    ``templates``: how many input templates (hidden units, effective class templates) are drawn
    (hidden units in quick mode: at most 8); ``readable_rows`` / ``readable_cols``: a matrix larger
    than this is summarised (a readable corner, row norms, a histogram) with the whole one on demand,
    drawn at WebP quality ``full_quality``; ``labelled_rows``: a head with up to this many labelled
    classes is drawn whole whatever its width; ``near_zero``: a first-layer kernel whose norm is below
    this fraction of the largest counts as near zero (dead) in the finding; ``pair_rows``: the head's
    most alike pair of rows is looked for when it has at most this many rows (the cosine of every pair)."""

    input_shape: tuple | None = None
    matrices: int = 3
    templates: int = 16
    readable_rows: int = 128
    readable_cols: int = 256
    full_quality: int = 45
    labelled_rows: int = 40
    near_zero: float = 0.05
    pair_rows: int = 4096

    def check(self) -> None:
        shape = self.input_shape
        if shape is not None and (not isinstance(shape, (tuple, list)) or not shape or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise UsageError(f"weights option input_shape={shape!r}: expected positive sizes such as (1, 28, 28)")
        for name in ("matrices", "templates", "readable_rows", "readable_cols", "labelled_rows", "pair_rows"):
            check_int("weights", name, getattr(self, name))
        if isinstance(self.full_quality, bool) or not isinstance(self.full_quality, int) or not 1 <= self.full_quality <= 100:
            raise UsageError(f"weights option full_quality={self.full_quality!r}: expected an integer from 1 to 100")
        if isinstance(self.near_zero, bool) or not isinstance(self.near_zero, (int, float)) or not 0 <= self.near_zero < 1:
            raise UsageError(f"weights option near_zero={self.near_zero!r}: expected a fraction in [0, 1)")


@dataclass
class KernelView:
    """Convolution ``kernels`` ``(out, in, kh, kw)`` of layer ``name``, drawn as tiles."""

    name: str
    kernels: Tensor


@dataclass
class MatrixView:
    """A weight matrix ``(rows, cols)`` of layer ``name``: ``ylabel`` / ``xlabel`` name its rows and
    columns, ``role`` (``"head"``: rows are classes, ``"hidden"``: rows are hidden units, else ``""``),
    ``row_labels`` (class names of a head); ``summarised``: too large to read cell by cell (a summary,
    the whole matrix on demand), ``what`` names it there."""

    name: str
    weight: Tensor
    ylabel: str
    xlabel: str
    role: str = ""
    row_labels: list[str] | None = None
    summarised: bool = False
    what: str = "weight matrix"


@dataclass
class TemplateView:
    """Input-space templates ``(K, *image)`` of layer ``name``: ``kind`` ``"effective"`` (rows of
    ``path``, the product of an MLP's matrices), ``"class"`` (rows of a linear classifier on the input)
    or ``"hidden"`` (hidden units of a first Linear layer, the first ``K`` of ``total``)."""

    name: str
    kind: str
    templates: Tensor
    names: list[str]
    image: tuple
    path: str = ""
    total: int = 0


@dataclass
class WeightsData(SectionData):
    """The weights of a model's convolution and linear layers: ``table`` rows (layer, type, weight
    shape, parameters, mean |w|), ``views`` (what is drawn, in order), and the numbers of the findings:
    ``first_conv`` and ``kernel_norms`` ``(out,)`` (the L2 norm of each of its kernels), ``head`` (the last
    Linear layer), ``head_role`` (``"classes"`` or ``"output units"``), ``head_names``, ``head_norms``
    ``(rows,)`` and ``alike``: its two rows with the highest cosine ``(i, j, cosine)`` (None with more
    than ``pair_rows`` rows, or fewer than 2)."""

    section: ClassVar[str] = "weights"
    table: list[list[Any]]
    views: list[Any] = field(default_factory=list)
    first_conv: str | None = None
    kernel_norms: Tensor | None = None
    head: str | None = None
    head_role: str = "output units"
    head_names: list[str] | None = None
    head_norms: Tensor | None = None
    alike: tuple[int, int, float] | None = None
    near_zero: float = 0.05
    full_quality: int = 45

    def kernel_finding(self) -> str:
        """How many first-layer kernels are near zero, against the strongest."""
        norms, name = self.kernel_norms.double(), self.first_conv
        n, top = norms.numel(), float(norms.max())
        if top == 0:
            return f"All {n} kernels of {name} are zero: the layer passes nothing on."
        cut = self.near_zero * top
        dead = [int(i) for i in torch.nonzero(norms < cut).flatten()]
        strongest = [int(i) for i in torch.argsort(-norms, stable=True)[:3]]
        spread = (f"norms from {float(norms.min()):.3g} to {top:.3g} (median {float(norms.quantile(0.5)):.3g}), "
                  f"largest: kernel{'s' if len(strongest) > 1 else ''} {', '.join(map(str, strongest))}")
        pct = f"{self.near_zero:.0%}"
        if not dead:
            return f"None of the {n} kernels of {name} has a norm below {pct} of the largest, so none is dead; {spread}."
        which = ", ".join(map(str, dead[:8])) + (", ..." if len(dead) > 8 else "")
        return (f"{len(dead)} of the {n} kernels of {name} have a norm below {pct} of the largest (kernel"
                f"{'s' if len(dead) > 1 else ''} {which}): they barely respond to their input; {spread}.")

    def head_finding(self) -> str:
        """The head's most alike pair of rows and the range of its row norms."""
        norms = self.head_norms.double()

        def name(i: int) -> str:
            if self.head_names is not None and i < len(self.head_names):
                return repr(str(self.head_names[i]))
            return f"{'class' if self.head_role == 'classes' else 'unit'} {i}"

        lo, hi = int(norms.argmin()), int(norms.argmax())
        norm_text = (f"row norms range from {float(norms[lo]):.3g} ({name(lo)}) to {float(norms[hi]):.3g} "
                     f"({name(hi)})")
        if self.alike is None:
            why = (f"with {norms.numel()} rows the pairs are not compared" if norms.numel() > 1
                   else "it has one row")
            return f"In {self.head}, {norm_text}; {why}."
        i, j, cos = self.alike
        named = self.head_names is not None and max(i, j) < len(self.head_names)
        what = ("classes " if self.head_role == "classes" else "output units ") if named else ""
        if cos < 0:
            return (f"In {self.head}, no two weight vectors point alike: the closest pair, {what}{name(i)} and "
                    f"{name(j)}, has cosine {cos:.2f}; {norm_text}.")
        return (f"In {self.head}, the weight vectors of {what}{name(i)} and {name(j)} are the most alike "
                f"(cosine {cos:.2f}): the layer tells these two apart least by direction; {norm_text}.")

    def render(self) -> list:
        from ...render import kernel_figure, weight_matrix_figure

        table = Table(["layer", "type", "weight shape", "parameters", "mean |w|"], self.table,
                      caption="Weight tensors of the convolution and linear layers")
        blocks: list = [table]
        drawn: dict[str, Any] = {}  # layer -> its first figure (what its finding is read from)
        for view in self.views:
            if isinstance(view, KernelView):
                k, name = view.kernels, view.name
                fig = Figure(kernel_figure(k, title=f"{name}: kernels {'x'.join(str(s) for s in k.shape)}"),
                             caption=f"{name} kernels" + (" as colour tiles (gray = 0)" if k.shape[1] == 3 else
                                                          " (1x1: a matrix over channels)" if k.shape[-2:] == (1, 1) else
                                                          ", one row per output channel, one column per input"))
                blocks.append(fig)
            elif isinstance(view, MatrixView):
                if view.summarised:
                    more = _matrix_blocks(view.weight, view.name, view.ylabel, view.xlabel, view.what, self.full_quality)
                    fig = more[0]
                    blocks.extend(more)
                else:
                    W = view.weight
                    fig = Figure(weight_matrix_figure(W, title=f"{view.name}: {W.shape[0]}x{W.shape[1]}",
                                                      ylabel=view.ylabel, xlabel=view.xlabel,
                                                      row_labels=view.row_labels),
                                 caption=f"{view.name} weight matrix" + {"head": " (rows are classes)",
                                                                         "hidden": " (rows are hidden units)"}.get(view.role, ""))
                    blocks.append(fig)
            else:
                fig = Figure(*_template_figure(view))
                blocks.append(fig)
            drawn.setdefault(view.name, fig)
        if self.kernel_norms is not None and self.kernel_norms.numel():
            blocks.append(Finding(self.kernel_finding(), drawn.get(self.first_conv, table)))
        if self.head_norms is not None and self.head_norms.numel():
            blocks.append(Finding(self.head_finding(), drawn.get(self.head, table)))
        return blocks


def _template_figure(view: TemplateView) -> tuple[Any, str]:
    """The figure of a :class:`TemplateView` and its caption."""
    from ...render import class_template_figure

    t, name = view.templates, view.name
    if view.kind == "effective":
        return (class_template_figure(t, view.names, title=f"effective class templates {view.path}"),
                f"Effective class templates: rows of {view.path} (float64) drawn at the input shape {view.image}; "
                f"the linear path only, nonlinearities and biases left out. Red pixels push the class score up, "
                f"blue down.")
    if view.kind == "class":
        return (class_template_figure(t, view.names, title=f"{name}: class templates"),
                f"class templates: rows of {name}.weight reshaped to the input {view.image}")
    return (class_template_figure(t, view.names, title=f"{name}: input templates of {t.shape[0]} of {view.total} hidden units"),
            f"rows of {name}.weight reshaped to the input {view.image}: what each hidden unit looks for")


def _class_count(subject: Subject) -> int | None:
    """How many class scores the model gives (None: its output holds none, or it cannot be run)."""
    from ...errors import TorchLoupeError

    try:
        scores = subject.shared.predictions().scores
    except TorchLoupeError:
        return None
    return int(scores.shape[-1]) if scores is not None and scores.dim() == 2 else None


def _input_shape(subject: Subject, options: WeightsOptions) -> tuple[int, ...] | None:
    shape = options.input_shape
    if shape is not None:
        return tuple(shape)
    x = subject.inputs
    if isinstance(x, Tensor) and x.dim() >= 2:
        return tuple(x.shape[1:])
    return None


def _cpu(t: Tensor) -> Tensor:
    return t.detach().cpu()


@register(
    "weights",
    "Weights",
    "What the model learned, read off its parameters: convolution kernels (first layer in colour), "
    "fully connected weight matrices (red positive, blue negative) and per-class templates.",
    options=WeightsOptions,
)
def build(subject: Subject, options: WeightsOptions) -> WeightsData | NotApplicable:
    model = subject.model
    quick = bool(options.quick)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, _CONV2D)]
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not convs and not linears:
        return NotApplicable(f"{type(model).__name__} has no Conv2d or Linear layers")
    labels = list(subject.labels) if subject.labels is not None else None
    rows = []
    for name, m in convs + linears:
        w = m.weight
        rows.append([name, type(m).__name__, "x".join(str(s) for s in w.shape), f"{w.numel():,}",
                     f"{float(w.detach().abs().mean()):.3g}"])
    data = WeightsData(table=rows, near_zero=float(options.near_zero), full_quality=options.full_quality)

    def too_large(r: int, c: int) -> bool:
        return r > options.readable_rows or c > options.readable_cols

    # Kernels: the first convolution (RGB tiles when it sees colour) and, unless quick, the last.
    shown = convs[:1] + (convs[-1:] if len(convs) > 1 and not quick else [])
    for name, m in shown:
        k = _cpu(kernels(m))
        if k.shape[-2:] == (1, 1) and too_large(k.shape[0], k.shape[1]):  # a 1x1 conv: a channel matrix
            data.views.append(MatrixView(name, k[:, :, 0, 0], "output channel", "input channel", summarised=True,
                                         what="1x1 kernels"))
        else:
            data.views.append(KernelView(name, k))
    if convs:
        data.first_conv = convs[0][0]
        data.kernel_norms = _cpu(kernels(convs[0][1])).float().flatten(1).norm(dim=1)
    # Fully connected matrices: rows are classes for the head of a classifier, hidden units
    # inside an MLP; columns the input's features for the first layer, hidden units after it.
    shape = _input_shape(subject, options)
    first = first_layer(model)
    chain = _chain(linears) if not convs else []
    index = {id(m): i for i, (_, m) in enumerate(chain)}
    classes = _class_count(subject)

    def head_of(m: nn.Module, W: Tensor) -> bool:
        """Rows are classes: as many as the class names, or the last layer of an MLP whose output is
        that many class scores (not a BERT pooler, whose model gives no class scores)."""
        if labels is not None and W.shape[0] == len(labels):
            return True
        return bool(chain) and m is chain[-1][1] and classes == W.shape[0]

    for name, m in linears[-min(options.matrices, 2):] if quick else linears[-options.matrices:]:
        W = _cpu(fc_matrix(m))
        is_head = head_of(m, W)
        reads_input = first is not None and m is first[1]
        inner = id(m) in index and not reads_input
        ylabel = "class" if is_head else "hidden unit" if id(m) in index else "output unit"
        xlabel = f"hidden unit of {chain[index[id(m)] - 1][0]}" if inner else "input feature"
        role = "head" if is_head else "hidden" if id(m) in index else ""
        summarised = too_large(*W.shape) and not (is_head and labels is not None and len(labels) <= options.labelled_rows)
        data.views.append(MatrixView(name, W, ylabel, xlabel, role=role, summarised=summarised,
                                     row_labels=labels if is_head and not summarised else None))
    if linears:
        name, m = linears[-1]
        W = _cpu(fc_matrix(m))
        is_head = head_of(m, W)
        data.head, data.head_role = name, "classes" if is_head else "output units"
        data.head_names = labels if labels is not None and len(labels) == W.shape[0] else None
        data.head_norms = W.float().norm(dim=1)
        data.alike = _most_alike(W.double()) if 2 <= W.shape[0] <= options.pair_rows else None
    # Templates: the first layer, when it is linear and reads the (flattened) input directly; for an
    # MLP (a chain of Linear layers) the effective class templates W_L ... W_1 as well.
    image = _template_shape(shape, first[1].in_features) if first is not None and isinstance(first[1], nn.Linear) else None
    for name, m in linears:
        if first is None or m is not first[1] or image is None:
            continue
        if len(chain) >= 2 and m is chain[0][1]:
            t = _cpu(effective_templates([c for _, c in chain], image))
            k = t.shape[0]
            names = labels if labels is not None and len(labels) == k else [str(i) for i in range(k)]
            path = " @ ".join(f"{n}.W" for n, _ in reversed(chain))
            n = options.templates
            data.views.append(TemplateView(name, "effective", t[:n], list(names[:n]), image, path=path, total=k))
        t = _cpu(class_templates(m, image))
        if labels is not None and t.shape[0] == len(labels):
            data.views.append(TemplateView(name, "class", t, list(labels), image, total=t.shape[0]))
        else:
            k = min(t.shape[0], min(options.templates, 8) if quick else options.templates)
            data.views.append(TemplateView(name, "hidden", t[:k], [f"hidden unit {i}" for i in range(k)], image,
                                           total=t.shape[0]))
    return data


def _most_alike(W: Tensor) -> tuple[int, int, float] | None:
    """The two rows of ``W`` ``(rows, cols)`` with the highest cosine similarity ``(i, j, cosine)``, i < j
    (rows of zeros left out; None when fewer than two rows are nonzero)."""
    norms = W.norm(dim=1)
    keep = torch.nonzero(norms > 0).flatten()
    if keep.numel() < 2:
        return None
    U = W[keep] / norms[keep, None]
    cos = U @ U.T
    cos.fill_diagonal_(-math.inf)
    flat = int(torch.argmax(cos))
    a, b = divmod(flat, cos.shape[1])
    i, j = sorted((int(keep[a]), int(keep[b])))
    return i, j, float(cos[a, b])


def _matrix_blocks(W, name: str, ylabel: str, xlabel: str, what: str, quality: int) -> list:
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
                          f"WebP at quality {quality}: noise-like, it would be the largest image of the page).",
                  kind="photo", quality=quality)
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
