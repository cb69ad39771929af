"""Eigen-CAM: Muhammad & Yeasin 2020, https://arxiv.org/abs/2008.00299.

The activations of each sample, as ``(positions, C)``, projected on their first principal
component (right singular vector ``v`` of the centred matrix): ``p = A v``, one value per
position. Needs no target and no gradient: one no-grad forward. Map ``ReLU(±p)``.

Sign rule (an SVD's sign is arbitrary, so the method must choose):

1. ``p`` is oriented to correlate positively with the channel mean of the activations (the
   map is bright where the layer is); when that cannot decide (|cosine| below 1e-3, or a channel
   mean that varies over positions less than 1e-3 of the activations' own spread: the same at
   every position, as after a LayerNorm over the channels, so what is left is float noise), the
   largest deviation of ``p`` from its mean is made positive instead, so float noise never
   decides the sign;
2. unless that orientation leaves no positive value while the opposite one has some: then
   the opposite is taken. So a projection with positive values never becomes an all-zero map;
   in particular an all-positive projection is never flipped (after a BatchNorm, as
   densenet121's ``features.norm5``, the channel mean can correlate negatively with an
   all-positive projection; rule 1 alone would zero it).

pytorch-grad-cam projects the *centred* activations (``p - mean(p)``) with LAPACK's sign; its
projection equals ours centred, up to that sign.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import BaseCAM, Run


_WEAK = 1e-3  # |cosine| of projection and channel mean below which rule 1 cannot decide


def eigen_projection(acts: Tensor) -> Tensor:
    """``(N, C, *S)`` -> ``(N, *S)``: the projection of each position on the first principal
    component of its sample's activations, oriented by the sign rule of this module."""
    n, c = acts.shape[:2]
    flat = acts.reshape(n, c, -1).transpose(1, 2)  # (N, P, C)
    centred = flat - flat.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    proj = (flat @ vh[:, 0, :, None]).squeeze(2)  # (N, P)
    mean = flat.mean(dim=2)
    pc = proj - proj.mean(dim=1, keepdim=True)
    mc = mean - mean.mean(dim=1, keepdim=True)
    dot = (pc * mc).sum(dim=1)
    sign = torch.where(dot < 0, -1.0, 1.0).to(proj.dtype)  # rule 1
    # rule 1 when the channel mean barely varies over positions (a LayerNorm output: the mean of every
    # token is about the same), so float noise would pick the sign: the largest deviation is positive
    positions = flat.shape[1]
    flat_mean = mc.norm(dim=1) / positions**0.5  # how much the channel mean varies over positions ...
    spread = centred.norm(dim=(1, 2)) / (positions * c) ** 0.5  # ... against how much the activations do
    weak = (dot.abs() <= _WEAK * pc.norm(dim=1) * mc.norm(dim=1)) | (flat_mean <= _WEAK * spread)
    extreme = pc.gather(1, pc.abs().argmax(dim=1, keepdim=True)).squeeze(1)
    sign = torch.where(weak, torch.where(extreme < 0, -1.0, 1.0).to(proj.dtype), sign)
    oriented = proj * sign[:, None]
    # rule 2: never an all-zero map from a projection that has positive values one way round
    dead = (oriented.amax(dim=1) <= 0) & ((-oriented).amax(dim=1) > 0)
    sign = torch.where(dead, -sign, sign)
    return (proj * sign[:, None]).reshape(n, *acts.shape[2:])


class EigenCAM(BaseCAM):
    """Eigen-CAM: first principal component of the layer's activations (sign rule: module docstring)."""

    title = "Eigen-CAM"

    uses_gradients = False

    def cam_map(self, acts: Tensor, grads: Tensor | None, run: Run) -> Tensor:  # -> (N,*S)
        return eigen_projection(acts)
