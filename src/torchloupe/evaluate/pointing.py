"""The pointing game (Zhang et al. 2016; TorchRay's definition): a hit when the map's maximum lies
within ``tolerance`` pixels of the object mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError


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
    mh, mw = masks.shape[-2:]
    ph, pw = maps.shape[-2:]
    if mh * pw != mw * ph or not (mh and mw and ph and pw):
        raise InputError(
            f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} have different aspect ratios: the maps "
            f"would be stretched onto the masks; expected masks of the maps' size (or of their aspect)")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance):
        raise InputError(f"tolerance must be a finite number of pixels, got {tolerance!r}")
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
