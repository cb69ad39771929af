"""Invariant cases of the attribution area: every CAM method and every saliency function."""

import pytest

import torchloupe as tl
from torchloupe.errors import TargetError
from tests.helpers import Case


def _cam(cls, **kw):
    def call(model, x):
        res = cls(model, **kw)(x)
        assert res.maps.shape == (x.shape[0], *x.shape[2:])

    return call


def _bad_target(model, x):
    with pytest.raises(TargetError):
        tl.cam.GradCAM(model)(x, target=99)


CASES = [
    *[Case(cls.__name__, _cam(cls)) for cls in dict.fromkeys(tl.cam.METHODS.values())],
    Case("GradCAM_two_layers", _cam(tl.cam.GradCAM, layer=["features.2", "features.5"])),
    Case("GradCAM_target_out_of_range", _bad_target, arm=None),
    Case("compare", lambda m, x: tl.cam.compare(m, x, ["gradcam", "cam", "eigencam", "layercam"])),
    Case("gradient", lambda m, x: tl.saliency.gradient(m, x, 1)),
    Case("guided_backprop", lambda m, x: tl.saliency.guided_backprop(m, x)),
    Case("deconvnet", lambda m, x: tl.saliency.deconvnet(m, x, [0, 1])),
    Case("guided_gradcam", lambda m, x: tl.saliency.guided_gradcam(m, x, None, "features.3")),
    Case("smoothgrad", lambda m, x: tl.saliency.smoothgrad(tl.saliency.guided_backprop, n=3, sigma=0.1)(m, x)),
]
