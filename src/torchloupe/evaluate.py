"""Measures of whether an explanation is right.

All metrics take saliency maps ``(B, H, W)`` (any resolution; resized to the input with
``F.interpolate``), run their perturbed forwards in batches sized to a memory budget on the
model's device, and return per-sample tensors.

- :func:`deletion` / :func:`insertion` (Petsiuk et al. 2018, RISE): the target's softmax
  probability as the most salient pixels are removed (or revealed onto a blurred copy);
  area under the curve per sample by the trapezoid rule on ``[0, 1]`` as in the RISE code.
  :func:`deletion_curve` / :func:`insertion_curve` return the curves too.
- :func:`pointing_game` (Zhang et al. 2016; TorchRay's definition): hit when the map's
  maximum lies within ``tolerance`` pixels of the object mask.
- :func:`average_drop`, :func:`increase_in_confidence` (Chattopadhay et al. 2018): the
  target's probability on the image multiplied by the map, against the original.
- :func:`road` (Rong et al. 2022): remove the most (MoRF) or least (LeRF) relevant pixels
  and impute them by noisy linear imputation, solved batched by conjugate gradients.
- :func:`randomization_check` (Adebayo et al. 2018): re-initialise layers from the top down
  on a deep copy of the model (never the user's) and measure how similar the explanation stays.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError, TargetError
from .inputs import check_input, check_targets
from .probe import preserved

__all__ = [
    "CurveResult",
    "deletion",
    "insertion",
    "deletion_curve",
    "insertion_curve",
    "pointing_game",
    "average_drop",
    "increase_in_confidence",
    "road",
    "ROADResult",
    "randomization_check",
    "RandomizationResult",
    "gaussian_blur",
]

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of perturbed inputs held at once


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


CPU_CHUNK_ELEMENTS = 2**19  # on CPU, forwards of about this many input values run fastest (cache-sized)
CPU_CHUNK_MIN_IMAGES = 4  # ... but at least this many images: one image a forward loses more than it saves


def _chunk_size(sample: Tensor, budget: int) -> int:
    """Images per forward: as many as ``budget`` bytes of inputs allow; on CPU also no more than
    about :data:`CPU_CHUNK_ELEMENTS` input values (but :data:`CPU_CHUNK_MIN_IMAGES`), since bigger
    CPU batches run slower per image once their activations leave the cache. Measured (noisy
    shared 2-core machine): EfficientNet-Lite0 at 224 px took 20-25 ms an image in channels-last
    forwards of 1-4 images and 30-54 ms in forwards of 8; resnet50 at 224 px, 52 images a forward
    took 1.35x the time of batches of 4, and batches of 3 ran 0.9x Quantus's batches of 4; the
    64 px shapes CNN ran 784 images in 0.12-0.17 s in channels-last batches of 16-40 and 0.18-0.25 s
    in batches of 80."""
    per = sample[0].numel() * sample.element_size() if sample.numel() else 1
    n = max(1, int(budget // max(per, 1)))
    if sample.device.type == "cpu" and sample.numel():
        n = min(n, max(CPU_CHUNK_MIN_IMAGES, CPU_CHUNK_ELEMENTS // sample[0].numel()))
    return n


_CONTIGUOUS_ONLY: weakref.WeakSet = weakref.WeakSet()  # models whose forward rejects channels-last inputs

HEAP_KEEP_BYTES = 16 * 2**20
_heap_kept = [False]


def _keep_heap() -> None:
    """Let the C allocator keep freed memory for reuse between the chunked CPU forwards.

    glibc serves blocks above its mmap threshold (128 KiB at start) with fresh mappings and
    returns freed heap beyond its trim threshold to the system, so every chunk's activations
    (megabytes) come back as new pages to fault in and zero. Freeing one block of
    :data:`HEAP_KEEP_BYTES` (16 MiB; glibc adjusts for blocks up to 32 MiB with their header)
    raises both thresholds, as glibc does by itself after any such free: the process then keeps
    up to 32 MiB of freed heap. Deletion of 16 64-px images on the shapes CNN: 0.15-0.19 s ->
    0.10-0.11 s. Elsewhere (other C libraries) this is one short-lived untouched allocation.
    Once per process.
    """
    if not _heap_kept[0]:
        _heap_kept[0] = True
        torch.empty(HEAP_KEEP_BYTES, dtype=torch.uint8)


def _probabilities(model: nn.Module, x: Tensor, chunk: int) -> Tensor:
    """Softmax probabilities ``(N, classes)`` of a big batch, run in forwards of ``chunk`` images.

    On CPU, image batches go in as channels-last: the convolutions then run 1.3-1.7x faster
    (EfficientNet-Lite0 and the shapes CNN, one thread) with the same results to float
    rounding. A model that cannot take that layout (``x.view`` on a conv output raises) gets
    contiguous batches instead, from then on (remembered by a weak reference to the model).
    """
    if x.shape[0] == 0:  # an empty batch: no forward, an empty result
        return x.new_zeros((0, 0), dtype=torch.float32)
    probs = []
    if x.device.type == "cpu" and x.shape[0] > 1:
        _keep_heap()
    fast = x.device.type == "cpu" and x.dim() == 4 and model not in _CONTIGUOUS_ONLY
    with torch.no_grad():
        for start in range(0, x.shape[0], chunk):
            xb = x[start : start + chunk]
            out = None
            if fast:
                try:
                    out = model(xb.contiguous(memory_format=torch.channels_last))
                except RuntimeError:
                    fast = False
                    _CONTIGUOUS_ONLY.add(model)
            if out is None:
                out = model(xb.contiguous())
            if not isinstance(out, Tensor) or out.dim() != 2:
                raise TargetError(
                    f"the model's output must be a (N, classes) tensor of logits for this metric, "
                    f"got {type(out).__name__}{'' if not isinstance(out, Tensor) else tuple(out.shape)}"
                )
            probs.append(out.float().softmax(dim=1))
    return torch.cat(probs)


def _prepare(model: nn.Module, x: Tensor, maps: Tensor, target: Any):
    """Validate and align inputs; returns batched x, maps at input size (B, H, W), targets (B,)."""
    x = check_input(model, x)
    if x.dim() != 4:
        raise InputError(f"this metric needs image inputs (N, C, H, W), got shape {tuple(x.shape)}")
    if not isinstance(maps, Tensor):
        raise InputError(f"maps must be a tensor (N, H, W), got {type(maps).__name__}")
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3 or maps.shape[0] != x.shape[0]:
        raise InputError(
            f"maps have shape {tuple(maps.shape)}; expected (N, H, W) with N = {x.shape[0]} (the batch size)"
        )
    if not bool(torch.isfinite(maps).all()):
        raise InputError("maps hold NaN or infinite values")
    maps = maps.to(device=x.device, dtype=torch.float32)
    if maps.shape[-2:] != x.shape[-2:]:
        maps = F.interpolate(maps[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return x, maps


def _resolve_targets(model: nn.Module, x: Tensor, target: Any, chunk: int) -> Tensor:
    if x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    if target is None:
        return _probabilities(model, x, chunk).argmax(dim=1)
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1] if x.shape[0] else None
    return check_targets(target, x.shape[0], n_classes, device=x.device)


def gaussian_blur(x: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with zero padding (the RISE paper's substrate)."""
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
    x: Tensor,
    maps: Tensor,
    target: Any,
    steps: int,
    substrate: str | Tensor,
    memory_budget: int,
) -> CurveResult:
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive int, got {steps!r}")
    x, maps = _prepare(model, x, maps, target)
    b, c, h, w = x.shape
    n_pix = h * w
    steps = min(steps, n_pix)
    per_step = math.ceil(n_pix / steps)
    fractions = torch.clamp(torch.arange(steps + 1, dtype=torch.float32) * per_step / n_pix, max=1.0)
    with preserved(model):
        model.eval()
        chunk = _chunk_size(x, memory_budget)
        if b == 0:
            empty = torch.zeros(0, steps + 1)
            return CurveResult(empty, fractions, torch.zeros(0), torch.zeros(0, dtype=torch.long), kind, str(substrate))
        # The unchanged images are one end of the curve (deletion's first point, insertion's last):
        # run them first; their first forward also gives the class count the targets are checked against.
        # A batch that repeats an image (several maps of one image) runs each distinct image once.
        # At step `steps` every pixel is changed (the substrate; insertion starts from it): no map
        # involved, so when both ends fit in one forward they share it.
        uniq, inverse = _distinct(x)
        base = _substrate(x, substrate)
        uniq_base, inv_base = _distinct(base)
        both = uniq.shape[0] + uniq_base.shape[0] <= chunk
        p_x = _probabilities(model, torch.cat([uniq, uniq_base]) if both else uniq[:chunk], chunk)
        if target is not None:
            targets = check_targets(target, b, p_x.shape[1], device=x.device)
        if both:
            p_x, p_base = p_x[: uniq.shape[0]], p_x[uniq.shape[0] :]
        else:
            if uniq.shape[0] > chunk:
                p_x = torch.cat([p_x, _probabilities(model, uniq[chunk:], chunk)])
            p_base = _probabilities(model, uniq_base, chunk)
        p_x, p_base = p_x[inverse], p_base[inv_base]
        if target is None:
            targets = p_x.argmax(dim=1)
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
            p = _probabilities(model, imgs, chunk)
            p = p.view(len(ids), b, -1).gather(2, targets.view(1, b, 1).expand(len(ids), b, 1))[..., 0]
            probs[ids] = p
    curves = probs.t().contiguous()
    # Trapezoid on [0, 1] over the recorded fractions (uniform spacing except a short last step).
    fr = fractions.to(curves.device)
    auc = torch.trapezoid(curves, fr, dim=1)
    return CurveResult(curves, fractions, auc, targets, kind, str(substrate) if not isinstance(substrate, Tensor) else "tensor")


def deletion_curve(model, x, maps, target=None, steps: int = 32, substrate="zero", memory_budget: int = DEFAULT_MEMORY_BUDGET) -> CurveResult:
    """Deletion: remove pixels in order of decreasing saliency (replaced by ``substrate``).

    A faithful map makes the probability fall fast: lower AUC is better.
    ``x`` ``(N, C, H, W)``; ``maps`` ``(N, h, w)``; ``target`` int / (N,) / None (predicted class).
    """
    return _curve("deletion", model, x, maps, target, steps, substrate, memory_budget)


def insertion_curve(model, x, maps, target=None, steps: int = 32, substrate="blur", memory_budget: int = DEFAULT_MEMORY_BUDGET) -> CurveResult:
    """Insertion: reveal pixels of ``x`` onto ``substrate`` (default a blurred copy) by decreasing saliency.

    A faithful map makes the probability rise fast: higher AUC is better.
    """
    return _curve("insertion", model, x, maps, target, steps, substrate, memory_budget)


def deletion(model, x, maps, target=None, steps: int = 32, substrate="zero", memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Tensor:
    """Deletion AUC per sample, ``(N,)``. See :func:`deletion_curve`."""
    return deletion_curve(model, x, maps, target, steps, substrate, memory_budget).auc


def insertion(model, x, maps, target=None, steps: int = 32, substrate="blur", memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Tensor:
    """Insertion AUC per sample, ``(N,)``. See :func:`insertion_curve`."""
    return insertion_curve(model, x, maps, target, steps, substrate, memory_budget).auc


def pointing_game(maps: Tensor, masks: Tensor, tolerance: float = 15) -> Tensor:
    """Per-sample hit ``(N,)`` bool: the map's maximum lies within ``tolerance`` pixels of the mask.

    TorchRay's definition: the maximum point (first one in row-major order on ties) counts as
    a hit when some mask pixel lies at Euclidean distance ≤ ``tolerance`` from it. Maps at a
    different resolution than the masks are resized bilinearly first.
    """
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if masks.dim() == 2:
        masks = masks.unsqueeze(0)
    if maps.dim() != 3 or masks.dim() != 3 or maps.shape[0] != masks.shape[0]:
        raise InputError(
            f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must both be (N, H, W) with the same N"
        )
    if tolerance < 0:
        raise InputError(f"tolerance must be >= 0 pixels, got {tolerance}")
    masks = masks.to(device=maps.device).bool()
    n, h, w = masks.shape
    if maps.shape[-2:] != (h, w):
        maps = F.interpolate(maps[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    if n == 0:
        return torch.zeros(0, dtype=torch.bool, device=maps.device)
    idx = maps.reshape(n, -1).argmax(dim=1)
    py, px = (idx // w).float(), (idx % w).float()
    yy = torch.arange(h, device=maps.device, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, device=maps.device, dtype=torch.float32).view(1, 1, w)
    disk = (yy - py.view(n, 1, 1)) ** 2 + (xx - px.view(n, 1, 1)) ** 2 <= float(tolerance) ** 2
    return (disk & masks).flatten(1).any(dim=1)


def _confidence_pair(model, x, maps, target, memory_budget):
    x, maps = _prepare(model, x, maps, target)
    with preserved(model):
        model.eval()
        chunk = _chunk_size(x, memory_budget)
        targets = _resolve_targets(model, x, target, chunk)
        both = torch.cat([x, x * maps[:, None]])
        p = _probabilities(model, both, chunk)
    b = x.shape[0]
    y = p[:b].gather(1, targets[:, None])[:, 0]
    o = p[b:].gather(1, targets[:, None])[:, 0]
    return y, o


def average_drop(model, x, maps, target=None, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Tensor:
    """Per-sample drop in confidence, in percent: ``100 · max(0, Y − O) / Y`` ``(N,)``.

    ``Y``: the target's softmax probability on ``x``; ``O``: on ``x · map`` (maps in [0, 1]).
    The paper's *Average Drop* is the mean of this over the data set (lower is better).
    """
    y, o = _confidence_pair(model, x, maps, target, memory_budget)
    return 100.0 * torch.clamp(y - o, min=0) / y.clamp_min(torch.finfo(y.dtype).tiny)


def increase_in_confidence(model, x, maps, target=None, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Tensor:
    """Per-sample indicator ``(N,)`` float: 1 when ``O > Y`` (the map alone raises confidence)."""
    y, o = _confidence_pair(model, x, maps, target, memory_budget)
    return (o > y).float()


# ---------------------------------------------------------------- ROAD: noisy linear imputation

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
) -> ROADResult:
    """ROAD (Rong et al. 2022): remove ``p`` % of pixels by relevance and impute them.

    ``order="morf"`` removes the most relevant first (a faithful map drops fast: lower is better),
    ``"lerf"`` the least relevant first (higher is better). A pixel is removed at ``p`` % when
    its saliency is at or above the ``(100 - p)``-th percentile (MoRF) — the convention of
    pytorch-grad-cam's ``ROADMostRelevantFirst(percentile=100 - p)``.
    """
    if order not in ("morf", "lerf"):
        raise InputError(f"order must be 'morf' or 'lerf', got {order!r}")
    for p in percentages:
        if not 0 <= p <= 100:
            raise InputError(f"percentages must lie in [0, 100], got {p}")
    x, maps = _prepare(model, x, maps, target)
    b, c, h, w = x.shape
    if b == 0:  # an empty batch: an empty result
        return ROADResult(x.new_zeros((0, len(percentages))), tuple(float(p) for p in percentages), order,
                          torch.zeros(0, dtype=torch.long, device=x.device))
    g = torch.Generator().manual_seed(seed)
    with preserved(model):
        model.eval()
        chunk = _chunk_size(x, memory_budget)
        targets = _resolve_targets(model, x, target, chunk)
        rel = maps if order == "morf" else 1 - maps
        flat = rel.reshape(b, -1).double()
        imgs = []
        for p in percentages:
            thr = torch.quantile(flat, (100 - p) / 100.0, dim=1).view(b, 1, 1)
            missing = (rel.double() >= thr).unsqueeze(1)
            imgs.append(_impute(x, missing, noise, g))
        probs = _probabilities(model, torch.cat(imgs), chunk)
    scores = probs.view(len(percentages), b, -1).gather(2, targets.view(1, b, 1).expand(len(percentages), b, 1))[..., 0]
    return ROADResult(scores.t().contiguous(), tuple(float(p) for p in percentages), order, targets)


# ---------------------------------------------------------------- model-parameter randomization


@dataclass(frozen=True)
class RandomizationResult:
    """Adebayo et al.'s model-parameter randomization test.

    ``layers``: the layer re-initialised at each step (top first); ``similarity``: ``(B, L)``
    similarity of the explanation after each step to the original (cascade: layers so far all
    re-initialised; independent: only that layer); ``original``: ``(B, H, W)`` maps of the
    trained model; ``passed``: ``(B,)`` True where the similarity at the last step (cascade) or
    the lowest (independent) falls below ``threshold`` (the explanation depends on the weights).
    """

    layers: tuple[str, ...]
    similarity: Tensor
    original: Tensor
    mode: str
    measure: str
    threshold: float
    passed: Tensor


def _as_maps(m: Tensor) -> Tensor:
    if m.dim() == 4:  # gradients shaped like the input: magnitude summed over channels
        m = m.abs().sum(dim=1)
    if m.dim() != 3:
        raise InputError(f"explain must return (N, H, W) maps or (N, C, H, W) input-shaped tensors, got {tuple(m.shape)}")
    return m.detach().float()


def _ranks(v: Tensor) -> Tensor:
    """Average ranks along dim 1 (ties share their mean rank), as in scipy.stats.spearmanr."""
    n = v.shape[1]
    sorted_v, order = v.sort(dim=1, stable=True)
    pos = torch.arange(n, device=v.device, dtype=torch.float64).expand_as(sorted_v).clone()
    # Average the positions of equal values: group starts where the value changes.
    new_group = torch.ones_like(sorted_v, dtype=torch.bool)
    new_group[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    gid = new_group.long().cumsum(dim=1) - 1
    sums = torch.zeros_like(pos).scatter_add_(1, gid, pos)
    counts = torch.zeros_like(pos).scatter_add_(1, gid, torch.ones_like(pos))
    avg = (sums / counts.clamp_min(1)).gather(1, gid)
    ranks = torch.empty_like(avg)
    ranks.scatter_(1, order, avg)
    return ranks


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per sample of two ``(N, ...)`` tensors, ``(N,)``; 0 when one is constant."""
    ra, rb = _ranks(a.flatten(1).double()), _ranks(b.flatten(1).double())
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    den = ra.norm(dim=1) * rb.norm(dim=1)
    r = (ra * rb).sum(dim=1) / den.clamp_min(1e-300)
    return torch.where(den > 0, r, torch.zeros_like(r)).float()


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per sample of two ``(N, H, W)`` maps, each min-max normalised to [0, 1] first."""

    def norm(m):
        lo = m.flatten(1).min(dim=1).values.view(-1, 1, 1)
        hi = m.flatten(1).max(dim=1).values.view(-1, 1, 1)
        return ((m - lo) / (hi - lo).clamp_min(1e-12))[:, None].double()

    x, y = norm(a), norm(b)
    win = min(window, x.shape[-1], x.shape[-2])
    win -= 1 - win % 2
    blur = lambda t: gaussian_blur(t, win, sigma)  # noqa: E731
    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx**2
    syy = blur(y * y) - my**2
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    half = win // 2
    if s.shape[-1] > 2 * half and s.shape[-2] > 2 * half:
        s = s[..., half : s.shape[-2] - half, half : s.shape[-1] - half]
    return s.flatten(1).mean(dim=1).float()


def _reinit(modules: Sequence[nn.Module], seed: int) -> None:
    """Re-initialise every parameter under ``modules``: ``reset_parameters()`` where a module has it
    (its own default initialisation), N(0, 0.02) for any parameter left over. Seeded, and the
    global RNG state (CPU and the CUDA device the parameters live on) is restored afterwards."""
    cuda = sorted({p.device.index or 0 for m in modules for p in m.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        covered: set[int] = set()
        for module in modules:
            for sub in module.modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in sub.parameters(recurse=False))
            with torch.no_grad():
                for p in module.parameters():
                    if id(p) not in covered:
                        p.normal_(0.0, 0.02)


def layer_groups(model: nn.Module, max_groups: int | None = None) -> list[list[str]]:
    """Leaf modules with parameters in registration order, as one group each, or split into at most
    ``max_groups`` contiguous groups (for deep models, where one step per layer would be slow)."""
    names = [
        n
        for n, m in model.named_modules()
        if n and next(m.children(), None) is None and any(True for _ in m.parameters(recurse=False))
    ]
    if max_groups is None or len(names) <= max_groups:
        return [[n] for n in names]
    bounds = [round(i * len(names) / max_groups) for i in range(max_groups + 1)]
    return [names[bounds[i] : bounds[i + 1]] for i in range(max_groups) if bounds[i + 1] > bounds[i]]


def randomization_check(
    model: nn.Module,
    x: Tensor,
    explain: Callable[[nn.Module, Tensor, Tensor], Tensor] | Mapping[str, Callable[[nn.Module, Tensor, Tensor], Tensor]],
    layers: str = "cascade",
    similarity: str = "spearman",
    target: Any = None,
    blocks: Sequence[str] | None = None,
    threshold: float = 0.5,
    seed: int = 0,
    original: Tensor | Mapping[str, Tensor] | None = None,
) -> RandomizationResult | dict[str, RandomizationResult]:
    """Re-initialise layers from the output down on a deep copy of ``model`` and compare explanations.

    ``explain(model, x, targets) -> (N, H, W)`` (or input-shaped ``(N, C, H, W)``, reduced to
    ``|·|`` summed over channels) computes the explanation on whichever model it is given.
    ``layers``: ``"cascade"`` (cumulative, the paper's main test) or ``"independent"``.
    ``blocks``: what to re-initialise at each step, in forward order: layer names / specs, or lists
    of them re-initialised together (default: every leaf module that has parameters, one step each;
    :func:`layer_groups` makes fewer, coarser steps for deep models). Targets stay fixed to the trained model's prediction (or
    ``target``) so only the weights change. ``original``: the trained model's explanation of
    ``x`` when the caller already has it (saves computing it again). The user's model is never modified.

    ``explain`` may also be a dict ``{name: explain}``: every method is checked on the same
    randomized copies (one deep copy and one re-initialisation per step for all of them), and
    the result is a dict ``{name: RandomizationResult}`` (``original`` then a dict too, or None).
    A callable may also return a dict ``{name: maps}``, several methods from one pass (e.g.
    :func:`torchloupe.cam.compare`): each is checked under its own name, and the result is a dict;
    its trained-model maps may be given as ``original={callable's name: {name: maps}}``.
    """
    if layers not in ("cascade", "independent"):
        raise InputError(f"layers must be 'cascade' or 'independent', got {layers!r}")
    measures = {"spearman": spearman, "ssim": ssim}
    if similarity not in measures:
        raise InputError(f"similarity must be one of {sorted(measures)}, got {similarity!r}")
    single = not isinstance(explain, Mapping)
    fns = {"": explain} if single else dict(explain)
    for name, fn in fns.items():
        if not callable(fn):
            what = "explain" if single else f"explain[{name!r}]"
            raise InputError(f"{what} must be a callable (model, x, targets) -> maps, got {type(fn).__name__}")
    if not fns:
        raise InputError("explain is an empty dict; expected at least one method")
    given = {"": original} if single else dict(original or {})
    group_given: dict[str, list[str]] = {}  # group callable -> the names of its maps given under its name
    for name in [n for n, v in given.items() if n in fns and isinstance(v, Mapping)]:
        maps = given.pop(name)
        group_given[name] = list(maps)
        given.update(maps)
    x = check_input(model, x)
    for orig in given.values():
        if orig is not None and (not isinstance(orig, Tensor) or orig.shape[0] != x.shape[0]):
            got = tuple(orig.shape) if isinstance(orig, Tensor) else type(orig).__name__
            raise InputError(f"original must be the explanation of x, (N, H, W) with N = {x.shape[0]}; got {got}")
    from .layers import find_layers

    if blocks is None:
        groups = layer_groups(model)
    else:
        groups = []
        for b in blocks:
            specs = list(b) if isinstance(b, (list, tuple)) else [b]
            groups.append([n for n, _ in find_layers(model, specs)])
    if not groups:
        raise InputError(f"{type(model).__name__} has no layer with parameters to randomise")
    with preserved(model):
        model.eval()
        chunk = _chunk_size(x, DEFAULT_MEMORY_BUDGET)
        targets = _resolve_targets(model, x, target, chunk)
    measure = measures[similarity]
    work = copy.deepcopy(model).eval()
    for sub in work.modules():  # the user's hooks stay on the user's model, not on the randomized copy
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            hooks_dict = sub.__dict__.get(attr)
            if hooks_dict:
                hooks_dict.clear()
    def explain_all(only: Sequence[str] | None = None) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, fn in fns.items():
            if only is not None and name not in only:
                continue
            got = fn(work, x, targets)
            for key, maps in (got.items() if isinstance(got, Mapping) else [(name, got)]):
                if key in out:
                    raise InputError(f"two explanations are named {key!r}; names must be unique")
                out[key] = _as_maps(maps)
        return out

    known = set(fns).union(*group_given.values())
    originals = {name: _as_maps(orig) for name, orig in given.items() if orig is not None and name in known}
    originals.update({k: _as_maps(given[k]) if given.get(k) is not None else v
                      for k, v in explain_all([n for n in fns if n not in originals and n not in group_given]).items()})
    sims: dict[str, list[Tensor]] = {name: [] for name in originals}
    top_down = list(reversed(groups))
    labels = [g[0] if len(g) == 1 else f"{g[0]} … {g[-1]}" for g in top_down]
    pristine = copy.deepcopy(work.state_dict()) if layers == "independent" else None
    for i, (group, label) in enumerate(zip(top_down, labels)):
        _reinit([work.get_submodule(n) for n in group], seed + i)
        now = explain_all()
        for name, orig in originals.items():
            maps = now.get(name)
            if maps is None or maps.shape != orig.shape:
                got = "nothing" if maps is None else tuple(maps.shape)
                raise InputError(f"explain returned {got} for {name or 'the method'!r} after randomising {label!r}, "
                                 f"but {tuple(orig.shape)} before")
            sims[name].append(measure(orig, maps))
        if pristine is not None:
            work.load_state_dict(pristine)
    results = {}
    for name, orig in originals.items():
        sim = torch.stack(sims[name], dim=1)
        final = sim[:, -1] if layers == "cascade" else sim.min(dim=1).values
        results[name] = RandomizationResult(tuple(labels), sim, orig, layers, similarity,
                                            float(threshold), final < threshold)
    return results[""] if single and list(results) == [""] else results

