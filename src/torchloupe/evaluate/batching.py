"""What every model-running metric shares: input and map checks, target resolution, and the
perturbed forwards run in chunks sized to memory (channels-last on CPU, freed heap kept).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError, TargetError
from ..inputs import check_input
from ..targets import check_targets


DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of perturbed inputs held at once


CPU_CHUNK_ELEMENTS = 2**19  # on CPU, forwards of about this many input values run fastest (cache-sized)
CPU_CHUNK_MIN_IMAGES = 4  # ... but at least this many images: one image a forward loses more than it saves


def chunk_size(sample: Tensor, budget: int) -> int:
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


def keep_heap() -> None:
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


def probabilities(model: nn.Module, x: Tensor, chunk: int) -> Tensor:
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
        keep_heap()
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


def prepare(model: nn.Module, x: Tensor, maps: Tensor, target: Any):
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


def resolve_targets(model: nn.Module, x: Tensor, target: Any, chunk: int) -> Tensor:
    if x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    if target is None:
        return probabilities(model, x, chunk).argmax(dim=1)
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1] if x.shape[0] else None
    return check_targets(target, x.shape[0], n_classes, device=x.device)
