"""LayerCAM: Jiang et al. 2021, https://doi.org/10.1109/TIP.2021.3089943.

Map ``ReLU(sum_c ReLU(g_c) * A_c)``: every position keeps its own positive gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import BaseCAM, Run


class LayerCAM(BaseCAM):
    """LayerCAM: element-wise positive gradient times activation, summed over channels."""

    title = "LayerCAM"

    def cam_map(self, acts: Tensor, grads: Tensor | None, run: Run) -> Tensor:  # -> (N,*S)
        return (torch.relu(grads) * acts).sum(dim=1)
