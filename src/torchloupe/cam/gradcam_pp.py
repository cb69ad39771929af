"""Grad-CAM++: Chattopadhay et al. 2018, https://arxiv.org/abs/1710.11063.

Closed form of the paper (eq. 19) for an exponential output ``exp(S)``, written with the
gradients ``g = dS/dA`` of the score itself::

    alpha_cij = g_cij^2 / (2 g_cij^2 + sum_ab A_cab * g_cij^3)      (0 where the denominator is 0)
    w_c       = sum_ij alpha_cij * ReLU(g_cij)

map ``ReLU(sum_c w_c A_c)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import GradientCAM, spatial_dims


class GradCAMPlusPlus(GradientCAM):
    """Grad-CAM++: pixel-wise weighted positive gradients (the paper's closed form)."""

    title = "Grad-CAM++"

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:  # (N,C,*S) -> (N,C)
        dims = spatial_dims(acts)
        g2 = grads * grads
        g3 = g2 * grads
        total = acts.sum(dim=dims, keepdim=True)
        denom = 2 * g2 + total * g3
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), 0)
        return (alpha * torch.relu(grads)).sum(dim=dims)
