"""One-argument views of a model, for the API functions that take one input tensor
(``maximize``, ``exemplars``) when the command line gives a multi-input model or a flat-vector one.

The view registers the model's own children, parameters and buffers under their own names, so
layer names (``cnn1.0``, ``fc1``) mean the same modules, and the model's state is what the API's
session saves and restores. The model object itself is not changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..inputs import Inputs


class _View(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, p in model.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, b in model.named_buffers(recurse=False):
            self.register_buffer(name, b)
        object.__setattr__(self, "wrapped", model)  # not a child: the names stay the model's


class Held(_View):
    """``forward(x)``: the model on ``held`` with input ``wrt`` replaced by ``x`` (reshaped to
    ``(N, *shape)`` when ``shape`` is given: a flat-vector input synthesized as an image). The other
    inputs are their sample 0, repeated along the batch."""

    def __init__(self, model: nn.Module, held: Inputs | None = None, wrt: int | str = 0,
                 shape: Sequence[int] | None = None):
        super().__init__(model)
        self.held = held
        self.wrt = wrt
        self.shape = tuple(shape) if shape is not None else None

    def forward(self, x: Tensor):
        if self.shape is not None:
            x = x.reshape(len(x), *self.shape)
        if self.held is None:
            return self.wrapped(x)
        n = len(x)
        others = self.held.map_batched(lambda t: t[:1].to(x.device).expand(n, *t.shape[1:]).contiguous())
        return others.replace(self.wrt, x).call(self.wrapped)


class Indexed(_View):
    """``forward(index)``: the model on the samples ``index`` (a ``(B,)`` long tensor) of ``inputs``:
    a dataset of indices streams a multi-input dataset through a one-tensor API."""

    def __init__(self, model: nn.Module, inputs: Inputs):
        super().__init__(model)
        self.inputs = inputs

    def forward(self, index: Tensor):
        return self.inputs.select(index.long().cpu()).to(index.device).call(self.wrapped)


def index_dataset(n: int) -> torch.utils.data.TensorDataset:
    return torch.utils.data.TensorDataset(torch.arange(n))
