"""Grad-CAM: Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391.

``w_c = mean_ij dy/dA_cij``; map ``ReLU(sum_c w_c A_c)``.
"""

from __future__ import annotations

from torch import Tensor

from .base import GradientCAM, spatial_dims


class GradCAM(GradientCAM):
    """Grad-CAM: channel weights are the spatially averaged gradients."""

    title = "Grad-CAM"

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:  # (N,C,*S) -> (N,C)
        return grads.mean(dim=spatial_dims(grads))
