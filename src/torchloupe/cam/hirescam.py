"""HiResCAM: Draelos & Carin 2020, https://arxiv.org/abs/2011.08891.

Map ``ReLU(sum_c g_c * A_c)``: the element-wise product, not averaged first, so the map
shows the positions that raised the score (exact for models ending in GAP + linear).
"""

from __future__ import annotations

from torch import Tensor

from .base import BaseCAM, Run


class HiResCAM(BaseCAM):
    """HiResCAM: element-wise gradient times activation, summed over channels."""

    title = "HiResCAM"

    def cam_map(self, acts: Tensor, grads: Tensor | None, run: Run) -> Tensor:  # -> (N,*S)
        return (grads * acts).sum(dim=1)
