"""CAM: Zhou et al. 2016, https://arxiv.org/abs/1512.04150.

For a model ending in global average pooling + one linear layer: map
``ReLU(sum_c W[target, c] A_c)`` with ``W`` the linear layer's weight (found automatically:
the last ``nn.Linear`` whose ``in_features`` equals the layer's channel count, or ``fc=``).
No gradient is needed: one no-grad forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..layers import LayerSpec, find_layer
from .base import BaseCAM, Run


class CAM(BaseCAM):
    """Class activation mapping from the final linear layer's weights."""

    title = "CAM"

    uses_gradients = False
    needs_class_indices = True

    def __init__(self, model: nn.Module, layer: LayerSpec | Sequence[LayerSpec] | None = None, *, fc: LayerSpec | None = None, **kw):
        super().__init__(model, layer, **kw)
        self.fc = None if fc is None else find_layer(model, fc)
        if self.fc is not None and not isinstance(self.fc, nn.Linear):
            raise UnsupportedModelError(f"fc must be an nn.Linear, got {type(self.fc).__name__}")

    def _linear(self, channels: int) -> nn.Linear:
        if self.fc is not None:
            if self.fc.in_features != channels:
                raise UnsupportedModelError(
                    f"fc has {self.fc.in_features} input features but the layer has {channels} channels"
                )
            return self.fc
        found = [m for m in self.model.modules() if isinstance(m, nn.Linear) and m.in_features == channels]
        if not found:
            raise UnsupportedModelError(
                f"CAM needs a model ending in global average pooling + nn.Linear on the layer's "
                f"{channels} channels; {type(self.model).__name__} has no such linear layer (use GradCAM)"
            )
        return found[-1]

    def cam_map(self, acts: Tensor, grads: Tensor | None, run: Run) -> Tensor:  # -> (N,*S)
        fc = self._linear(acts.shape[1])
        w = fc.weight.detach().to(acts.dtype)[run.targets.to(fc.weight.device)].to(acts.device)  # (N, C)
        return torch.einsum("nc,nc...->n...", w, acts)
