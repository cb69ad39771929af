"""ROAD (Rong et al. 2022): remove the most (MoRF) or least (LeRF) relevant pixels and impute them
by noisy linear imputation, solved batched by conjugate gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..probe import session
from ..targets import OutputSpec
from .batching import DEFAULT_MEMORY_BUDGET, Scorer, chunk_size, class_target, prepare


_ROAD_KERNEL = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


def _impute(x: Tensor, missing: Tensor, noise: float, generator: torch.Generator | None, tol: float = 1e-6, max_iter: int = 2000) -> Tensor:
    """Fill ``missing`` pixels (``(N, 1, H, W)`` bool) of ``x`` so each equals the weighted mean of its 8
    neighbours (weights 1/6 direct, 1/12 diagonal; the ROAD paper's system), solved by batched
    conjugate gradients on the symmetric positive definite form, then add Gaussian ``noise``."""
    n, c, h, w = x.shape
    dtype = torch.float64
    k = _ROAD_KERNEL.to(device=x.device, dtype=dtype).view(1, 1, 3, 3)
    xs = x.to(dtype).reshape(n * c, 1, h, w)
    m = missing.to(dtype).repeat_interleave(c, dim=0)  # (N*C, 1, H, W), 1 = unknown
    known = xs * (1 - m)
    s = F.conv2d(torch.ones_like(m), k, padding=1)  # in-bounds neighbour weight of each pixel

    def apply(v):  # (S v - K (M v)) restricted to the unknowns; SPD on them
        return m * (s * v - F.conv2d(m * v, k, padding=1))

    rhs = m * F.conv2d(known, k, padding=1)
    v = torch.zeros_like(xs)
    r = rhs - apply(v)
    p = r.clone()
    rs = (r * r).flatten(1).sum(1)
    norm_b = rhs.flatten(1).norm(dim=1).clamp_min(1e-30)
    for _ in range(max_iter):
        if bool(((rs.sqrt() / norm_b) < tol).all()):
            break
        ap = apply(p)
        denom = (p * ap).flatten(1).sum(1)
        alpha = torch.where(denom > 0, rs / denom.clamp_min(1e-300), torch.zeros_like(rs))
        v = v + alpha.view(-1, 1, 1, 1) * p
        r = r - alpha.view(-1, 1, 1, 1) * ap
        rs_new = (r * r).flatten(1).sum(1)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(1e-300), torch.zeros_like(rs))
        p = r + beta.view(-1, 1, 1, 1) * p
        rs = rs_new
    filled = known + m * v
    if noise:
        eps = torch.randn(filled.shape, generator=generator, device="cpu", dtype=dtype).to(filled.device)
        filled = filled + noise * m * eps
    return filled.reshape(n, c, h, w).to(x.dtype)


@dataclass(frozen=True)
class ROADResult:
    """``scores``: ``(B, P)`` target probability after removing each percentage in ``percentages``."""

    scores: Tensor
    percentages: tuple[float, ...]
    order: str
    targets: Tensor

    @property
    def mean(self) -> Tensor:
        return self.scores.mean(dim=1)

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


def road(
    model,
    x,
    maps,
    target=None,
    percentages: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    order: str = "morf",
    noise: float = 0.01,
    seed: int = 0,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    *,
    wrt: int | str | None = None,
    output: OutputSpec = None,
) -> ROADResult:
    """ROAD (Rong et al. 2022): remove ``p`` % of pixels by relevance and impute them.

    ``order="morf"`` removes the most relevant first (a faithful map drops fast: lower is better),
    ``"lerf"`` the least relevant first (higher is better). A pixel is removed at ``p`` % when
    its saliency is at or above the ``(100 - p)``-th percentile (MoRF) — the convention of
    pytorch-grad-cam's ``ROADMostRelevantFirst(percentile=100 - p)``. ``x``: anything
    ``model(...)`` takes; input ``wrt`` (an image batch) is imputed, the others are kept.
    ``output`` selects the class scores (:mod:`torchloupe.targets`).
    """
    if order not in ("morf", "lerf"):
        raise InputError(f"order must be 'morf' or 'lerf', got {order!r}")
    for p in percentages:
        if not 0 <= p <= 100:
            raise InputError(f"percentages must lie in [0, 100], got {p}")
    tgt, output = class_target(target, output)
    inputs, x, maps = prepare(model, x, maps, wrt=wrt)
    b, c, h, w = x.shape
    if b == 0:  # an empty batch: an empty result
        return ROADResult(x.new_zeros((0, len(percentages))), tuple(float(p) for p in percentages), order,
                          torch.zeros(0, dtype=torch.long, device=x.device))
    g = torch.Generator().manual_seed(seed)
    with session(model) as run:
        scorer = Scorer(run, inputs, wrt, output, chunk_size(x, memory_budget))
        targets = scorer.class_indices(tgt)
        rel = maps if order == "morf" else 1 - maps
        flat = rel.reshape(b, -1).double()
        imgs = []
        for p in percentages:
            thr = torch.quantile(flat, (100 - p) / 100.0, dim=1).view(b, 1, 1)
            missing = (rel.double() >= thr).unsqueeze(1)
            imgs.append(_impute(x, missing, noise, g))
        probs = scorer.probabilities(torch.cat(imgs), torch.arange(b, device=x.device).repeat(len(percentages)))
    scores = probs.view(len(percentages), b, -1).gather(2, targets.view(1, b, 1).expand(len(percentages), b, 1))[..., 0]
    return ROADResult(scores.t().contiguous(), tuple(float(p) for p in percentages), order, targets)


# ---------------------------------------------------------------- model-parameter randomization
