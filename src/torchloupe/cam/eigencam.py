"""Eigen-CAM: Muhammad & Yeasin 2020, https://arxiv.org/abs/2008.00299.

The activations of each sample, as ``(positions, C)``, projected on their first principal
component (right singular vector of the centred matrix); the sign is fixed so that the
projection correlates positively with the channel mean of the activations (an SVD's sign is
arbitrary). Needs no target and no gradient: one no-grad forward. Map ``ReLU(projection)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import BaseCAM, Run


class EigenCAM(BaseCAM):
    """Eigen-CAM: first principal component of the layer's activations."""

    title = "Eigen-CAM"

    uses_gradients = False

    def cam_map(self, acts: Tensor, grads: Tensor | None, run: Run) -> Tensor:  # -> (N,*S)
        n, c = acts.shape[:2]
        flat = acts.reshape(n, c, -1).transpose(1, 2)  # (N, P, C)
        centred = flat - flat.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        proj = flat @ vh[:, 0, :, None]  # (N, P, 1)
        proj = proj.squeeze(2)
        mean = flat.mean(dim=2)
        pc = proj - proj.mean(dim=1, keepdim=True)
        mc = mean - mean.mean(dim=1, keepdim=True)
        sign = torch.where((pc * mc).sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(proj.dtype)
        return (proj * sign).reshape(n, *acts.shape[2:])
