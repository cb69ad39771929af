"""Matplotlib's colormaps applied in torch: a 256-entry lookup table per map, on any device."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from ..errors import InputShapeError, InputTypeError, UsageError, require

__all__ = ["colormap_table", "colorize"]


@lru_cache(maxsize=32)
def _table(name: str) -> Tensor:
    colormaps = require("matplotlib", "render").colormaps

    try:
        cmap = colormaps[name]
    except KeyError:
        known = ", ".join(sorted(n for n in colormaps if not n.endswith("_r"))[:20])
        raise UsageError(f"unknown colormap {name!r}; matplotlib knows e.g. {known}, ...") from None
    import numpy as np

    return torch.from_numpy(cmap(np.linspace(0.0, 1.0, 256))[:, :3].astype("float32"))


def colormap_table(name: str = "viridis", device=None) -> Tensor:
    """The ``(256, 3)`` RGB table of matplotlib colormap ``name`` (float32, in [0, 1])."""
    return _table(name).to(device) if device is not None else _table(name)


def colorize(maps: Tensor, cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None) -> Tensor:
    """Map scalar maps to RGB with a matplotlib colormap.

    ``maps``: ``(N, H, W)``, ``(N, 1, H, W)`` or ``(H, W)``; values are taken in
    ``[vmin, vmax]`` (default ``[0, 1]``) and clamped. Returns ``(N, 3, H, W)``
    (``(3, H, W)`` for a 2-D input) float32 on the maps' device. NaN maps to the low end.
    """
    if not isinstance(maps, Tensor):
        raise InputTypeError(f"maps must be a torch.Tensor, got {type(maps).__name__}")
    squeeze = maps.dim() == 2
    if squeeze:
        maps = maps.unsqueeze(0)
    elif maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise InputShapeError(f"maps must be (N, H, W), (N, 1, H, W) or (H, W), got shape {tuple(maps.shape)}")
    lo = 0.0 if vmin is None else float(vmin)
    hi = 1.0 if vmax is None else float(vmax)
    m = maps.detach().float()
    m = torch.nan_to_num((m - lo) / (hi - lo if hi != lo else 1.0), nan=0.0).clamp(0.0, 1.0)
    index = (m * 255.0).round().long()
    out = colormap_table(cmap, device=m.device)[index].permute(0, 3, 1, 2).contiguous()
    return out[0] if squeeze else out


#: One colormap per kind of quantity, in every still figure and animation:
#: signed values centred at 0 (weights, signed gradients, hidden states): blue < 0 < red;
SIGNED = "RdBu_r"
#: non-negative values (activations, histograms, similarities in [0, 1]): one sequential map;
MAGNITUDE = "viridis"
#: class activation maps (relevance scaled to [0, 1]), always with their colour bar.
CAM = "jet"
