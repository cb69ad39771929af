"""Per-branch spatial maps: Grad-CAM from one branch's channels at the fusion point.

For branch ``b`` with spatial output ``A`` ``(B, C_b, h, w)`` (its channels of the fused tensor)
and gradient ``G = d score / dA``: ``map_b = ReLU(sum_c mean_hw(G_c) A_c)`` (Selvaraju et al. 2017,
https://arxiv.org/abs/1610.02391), upsampled to the input size. Maps are normalized *jointly*
per sample (divided by the largest value over all branches), so an idle branch shows a dark map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..inputs import InputsLike
from ..probe import require_module, session
from ..targets import OutputSpec, TargetLike


@dataclass(frozen=True)
class BranchMaps:
    """``maps``: branch -> ``(B, H, W)`` in [0, 1] (joint normalization); ``raw``: branch -> ``(B, h, w)``."""

    maps: dict[str, Tensor]
    raw: dict[str, Tensor]
    targets: Tensor

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


def branch_maps(model: nn.Module, x: InputsLike, branches: Mapping[str, str] | None = None, target: TargetLike = None,
                size: tuple[int, int] | None = None, batch_size: int | None = None, *,
                output: OutputSpec = None) -> BranchMaps:
    """Grad-CAM of each branch from its own channels; ``size`` defaults to the first 4-D input's ``(H, W)``.

    ``x``: anything ``model(...)`` takes (:class:`~torchloupe.inputs.Inputs`); ``target`` class
    indices or ``None`` (predicted); ``output`` selects the ``(B, classes)`` scores of a model
    returning a dict, tuple or ``ModelOutput`` (:mod:`torchloupe.targets`)."""
    from .contrib import Engine, as_inputs, class_target, resolve_branches

    require_module(model)
    tgt, output = class_target(target, output)
    inputs = as_inputs(model, x)
    specs = resolve_branches(model, inputs, branches)
    if size is None:
        four = [t for _, t in inputs.tensors() if t.dim() == 4]
        if not four:
            raise UnsupportedModelError("no 4-D (B, C, H, W) input to size the maps; pass size=(H, W)")
        size = tuple(four[0].shape[-2:])
    with session(model) as run:
        eng = Engine(run, inputs, specs, "zero", batch_size, output)
        grads, _, t = eng.gradients(torch.ones(1, dtype=torch.float64), tgt)
        for b in specs:
            z = eng.clean[b]
            if z.dim() != 4:
                raise UnsupportedModelError(
                    f"branch {b!r} outputs shape {tuple(z.shape)}; spatial maps need (B, C, h, w)")
    raw = {}
    for b in specs:
        A, G = eng.clean[b], grads[b][0]
        w = G.mean(dim=(2, 3), keepdim=True)
        raw[b] = F.relu((w * A).sum(1)).detach()
    up = {b: F.interpolate(r.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
          for b, r in raw.items()}
    peak = torch.stack([u.flatten(1).amax(1) for u in up.values()]).amax(0).clamp_min(1e-12)
    maps = {b: (u / peak.view(-1, 1, 1)).clamp(0, 1) for b, u in up.items()}
    return BranchMaps(maps=maps, raw=raw, targets=t)
