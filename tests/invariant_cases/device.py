"""Invariant cases of devices and precision (issue 19): half-precision models through the gradient
methods, read-only views under autocast, and the same calls on a CUDA model where there is a GPU."""

import pytest
import torch

import torchloupe as tl
from torchloupe.devices import autocast
from tests.helpers import Case, tiny_cnn

_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _bf16():
    return tiny_cnn(0).to(torch.bfloat16)


def _bf16_inputs():
    return torch.rand(2, 3, 16, 16).to(torch.bfloat16)


def _cuda():
    return tiny_cnn(0).cuda()


def _cuda_inputs():
    return torch.rand(2, 3, 16, 16, device="cuda")


def _feature_maps_bf16_autocast(model, x):
    with autocast(x.device, "bf16"):
        fm = tl.features.feature_maps(model, x, "features.3")
    assert fm.maps.dtype == torch.float32


def _cam_float32(cls):
    def call(model, x):
        res = cls(model, "features.3")(x)
        assert res.maps.dtype == torch.float32 and res.maps.device == x.device

    return call


CASES = [
    Case("GradCAM-bf16_model", _cam_float32(tl.cam.GradCAM), make=_bf16, inputs=_bf16_inputs),
    Case("ScoreCAM-bf16_model", _cam_float32(tl.cam.ScoreCAM), make=_bf16, inputs=_bf16_inputs),
    Case("guided_backprop-bf16_model", lambda m, x: tl.saliency.guided_backprop(m, x, 0), make=_bf16,
         inputs=_bf16_inputs),
    Case("feature_maps-bf16_autocast", _feature_maps_bf16_autocast),
    Case("GradCAM-cuda", _cam_float32(tl.cam.GradCAM), make=_cuda, inputs=_cuda_inputs, marks=(_GPU,)),
    Case("guided_backprop-cuda", lambda m, x: tl.saliency.guided_backprop(m, x, 0), make=_cuda, inputs=_cuda_inputs,
         marks=(_GPU,)),
    Case("feature_maps-cuda_bf16_autocast", _feature_maps_bf16_autocast, make=_cuda, inputs=_cuda_inputs,
         marks=(_GPU,)),
]
