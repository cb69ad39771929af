"""Deletion and insertion (Petsiuk et al. 2018, RISE): the target's softmax probability as the
most salient pixels are removed (or revealed onto a blurred copy); area under the curve per
sample by the trapezoid rule on ``[0, 1]`` as in the RISE code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError, UsageError
from ..inputs import InputsLike
from ..probe import session
from ..targets import OutputSpec
from .batching import DEFAULT_MEMORY_BUDGET, Scorer, chunk_size, class_target, prepare


@dataclass(frozen=True)
class CurveResult:
    """A deletion or insertion run.

    ``curves``: ``(B, steps + 1)`` target probability after each step (step 0 = nothing changed);
    ``fractions``: ``(steps + 1,)`` fraction of pixels changed at each point;
    ``auc``: ``(B,)`` trapezoid area under the curve on ``[0, 1]``; ``targets``: ``(B,)``.
    """

    curves: Tensor
    fractions: Tensor
    auc: Tensor
    targets: Tensor
    kind: str
    substrate: str

    def summary(self) -> dict[str, float]:
        return {f"{self.kind}_auc_mean": float(self.auc.mean()) if self.auc.numel() else float("nan")}

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


def gaussian_blur(x: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with zero padding (the RISE paper's substrate).

    ``kernel_size``: an odd int of at least 1 (the output keeps the input's size); ``sigma`` > 0."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise UsageError(f"kernel_size must be an odd int of at least 1 (the output keeps the input's size), "
                         f"got {kernel_size!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise UsageError(f"sigma must be a finite number above 0, got {sigma!r}")
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise InputError(f"gaussian_blur takes a floating (N, C, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
                         + (f" of {x.dtype}" if isinstance(x, Tensor) else ""))
    half = kernel_size // 2
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    kx = k.view(1, 1, 1, -1).expand(c, 1, 1, kernel_size)
    ky = k.view(1, 1, -1, 1).expand(c, 1, kernel_size, 1)
    y = F.conv2d(x, kx, padding=(0, half), groups=c)
    return F.conv2d(y, ky, padding=(half, 0), groups=c)


def _substrate(x: Tensor, kind: str | Tensor) -> Tensor:
    if isinstance(kind, Tensor):
        return kind.to(x).expand_as(x)
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "blur":
        return gaussian_blur(x)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    raise InputError(f"substrate {kind!r} is not one of 'zero', 'blur', 'mean' or a tensor")


def _distinct(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(distinct images, index of each image's copy)``: ``x == distinct[index]``.

    Rows are grouped by a float64 projection (a weighted sum per row, each row reduced the same
    way, so copies get the same key; a BLAS matrix-vector product does not promise that) and
    each group is verified exactly; should two different images ever share a key, every image
    is kept.
    """
    b = x.shape[0]
    everything = torch.arange(b, device=x.device)
    if b < 2:
        return x, everything
    flat = x.reshape(b, -1)
    weights = torch.sin(torch.arange(flat.shape[1], device=x.device, dtype=torch.float64) * 0.618 + 0.5)
    _, inverse = torch.unique((flat.to(torch.float64) * weights).sum(dim=1), return_inverse=True)
    groups = int(inverse.max()) + 1
    if groups == b:
        return x, everything
    first = torch.full((groups,), b, device=x.device).scatter_reduce(0, inverse, everything, "amin")
    if not torch.equal(flat, flat[first[inverse]]):
        return x, everything
    return x[first], inverse


def _curve(
    kind: str,
    model: nn.Module,
    x: InputsLike,
    maps: Tensor,
    target: Any,
    steps: int,
    substrate: str | Tensor,
    memory_budget: int,
    wrt: int | str,
    output: OutputSpec,
) -> CurveResult:
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive int, got {steps!r}")
    tgt, output = class_target(target, output)
    inputs, x, maps = prepare(model, x, maps, wrt=wrt)
    b, c, h, w = x.shape
    n_pix = h * w
    steps = min(steps, n_pix)
    per_step = math.ceil(n_pix / steps)
    fractions = torch.clamp(torch.arange(steps + 1, dtype=torch.float32) * per_step / n_pix, max=1.0)
    with session(model) as run:
        chunk = chunk_size(x, memory_budget)
        if b == 0:
            empty = torch.zeros(0, steps + 1)
            return CurveResult(empty, fractions, torch.zeros(0), torch.zeros(0, dtype=torch.long), kind, str(substrate))
        scorer = Scorer(run, inputs, wrt, output, chunk)
        rows = torch.arange(b, device=x.device)  # the sample of each image (the model's other inputs)
        # The unchanged images are one end of the curve (deletion's first point, insertion's last):
        # run them first; their first forward also gives the class count the targets are checked against.
        # A batch that repeats an image (several maps of one image) runs each distinct image once
        # (when the image is all the model takes).
        # At step `steps` every pixel is changed (the substrate; insertion starts from it): no map
        # involved, so when both ends fit in one forward they share it.
        base = _substrate(x, substrate)
        if inputs.single:
            (uniq, inverse), (uniq_base, inv_base) = _distinct(x), _distinct(base)
            uniq_rows = None
        else:  # other inputs differ per sample: every image runs
            uniq, inverse, uniq_base, inv_base, uniq_rows = x, rows, base, rows, rows
        both = uniq.shape[0] + uniq_base.shape[0] <= chunk
        if both:
            p_x = scorer.probabilities(torch.cat([uniq, uniq_base]),
                                       None if uniq_rows is None else torch.cat([uniq_rows, uniq_rows]))
        else:
            p_x = scorer.probabilities(uniq[:chunk], None if uniq_rows is None else uniq_rows[:chunk])
        if target is not None:
            targets = tgt.indices(p_x, b)
        if both:
            p_x, p_base = p_x[: uniq.shape[0]], p_x[uniq.shape[0] :]
        else:
            if uniq.shape[0] > chunk:
                p_x = torch.cat([p_x, scorer.probabilities(uniq[chunk:], None if uniq_rows is None else uniq_rows[chunk:])])
            p_base = scorer.probabilities(uniq_base, uniq_rows)
        p_x, p_base = p_x[inverse], p_base[inv_base]
        if target is None:
            targets = tgt.indices(p_x)
        # Rank of each pixel by saliency, descending (rank 0 = most salient); ties broken by position.
        order = maps.reshape(b, -1).argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(n_pix, device=x.device).expand(b, -1))
        rank = rank.view(b, 1, h, w)
        start, finish = (x, base) if kind == "deletion" else (base, x)
        probs = torch.empty(steps + 1, b, device=x.device)
        unchanged_step, changed_step = (0, steps) if kind == "deletion" else (steps, 0)
        probs[unchanged_step] = p_x.gather(1, targets.view(b, 1))[:, 0]
        probs[changed_step] = p_base.gather(1, targets.view(b, 1))[:, 0]
        step_ids = torch.arange(1, steps, device=x.device)
        per_chunk = max(1, chunk // max(b, 1))  # how many steps of the whole batch fit at once
        for s0 in range(0, len(step_ids), per_chunk):
            ids = step_ids[s0 : s0 + per_chunk]
            changed = rank.unsqueeze(0) < (ids * per_step).view(-1, 1, 1, 1, 1)  # (S, B, 1, H, W)
            imgs = torch.where(changed, finish.unsqueeze(0), start.unsqueeze(0)).reshape(-1, c, h, w)
            p = scorer.probabilities(imgs, rows.repeat(len(ids)))
            p = p.view(len(ids), b, -1).gather(2, targets.view(1, b, 1).expand(len(ids), b, 1))[..., 0]
            probs[ids] = p
    curves = probs.t().contiguous()
    # Trapezoid on [0, 1] over the recorded fractions (uniform spacing except a short last step).
    fr = fractions.to(curves.device)
    auc = torch.trapezoid(curves, fr, dim=1)
    return CurveResult(curves, fractions, auc, targets, kind, str(substrate) if not isinstance(substrate, Tensor) else "tensor")


def deletion_curve(model, x, maps, target=None, steps: int = 32, substrate="zero",
                   memory_budget: int = DEFAULT_MEMORY_BUDGET, *, wrt: int | str | None = None,
                   output: OutputSpec = None) -> CurveResult:
    """Deletion: remove pixels in order of decreasing saliency (replaced by ``substrate``).

    A faithful map makes the probability fall fast: lower AUC is better.
    ``x`` ``(N, C, H, W)``, or anything ``model(...)`` takes (a tuple of positional inputs, a dict
    of keyword inputs), of which input ``wrt`` (an image batch) is perturbed and the others kept;
    ``maps`` ``(N, h, w)``; ``target`` int / (N,) / None (predicted class); ``output`` selects the
    ``(N, classes)`` scores of a model returning a dict, tuple or ``ModelOutput``
    (:mod:`torchloupe.targets`).
    """
    return _curve("deletion", model, x, maps, target, steps, substrate, memory_budget, wrt, output)


def insertion_curve(model, x, maps, target=None, steps: int = 32, substrate="blur",
                    memory_budget: int = DEFAULT_MEMORY_BUDGET, *, wrt: int | str | None = None,
                    output: OutputSpec = None) -> CurveResult:
    """Insertion: reveal pixels of ``x`` onto ``substrate`` (default a blurred copy) by decreasing saliency.

    A faithful map makes the probability rise fast: higher AUC is better. ``x``, ``wrt``,
    ``output`` as in :func:`deletion_curve`.
    """
    return _curve("insertion", model, x, maps, target, steps, substrate, memory_budget, wrt, output)


def deletion(model, x, maps, target=None, steps: int = 32, substrate="zero", memory_budget: int = DEFAULT_MEMORY_BUDGET,
             *, wrt: int | str | None = None, output: OutputSpec = None) -> Tensor:
    """Deletion AUC per sample, ``(N,)``. See :func:`deletion_curve`."""
    return deletion_curve(model, x, maps, target, steps, substrate, memory_budget, wrt=wrt, output=output).auc


def insertion(model, x, maps, target=None, steps: int = 32, substrate="blur", memory_budget: int = DEFAULT_MEMORY_BUDGET,
              *, wrt: int | str | None = None, output: OutputSpec = None) -> Tensor:
    """Insertion AUC per sample, ``(N,)``. See :func:`insertion_curve`."""
    return insertion_curve(model, x, maps, target, steps, substrate, memory_budget, wrt=wrt, output=output).auc
