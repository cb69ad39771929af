"""XGrad-CAM: Fu et al. 2020, https://arxiv.org/abs/2008.02312.

``w_c = sum_ij (A_cij / sum_ab A_cab) * g_cij`` (0 for a channel whose activations sum to 0);
map ``ReLU(sum_c w_c A_c)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import GradientCAM, spatial_dims


class XGradCAM(GradientCAM):
    """XGrad-CAM: gradients weighted by the normalised activations."""

    title = "XGrad-CAM"

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:  # (N,C,*S) -> (N,C)
        dims = spatial_dims(acts)
        total = acts.sum(dim=dims)
        safe = torch.where(total != 0, total, torch.ones_like(total))
        w = (acts * grads).sum(dim=dims) / safe
        return torch.where(total != 0, w, torch.zeros_like(w))
