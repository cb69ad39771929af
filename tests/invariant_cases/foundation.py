"""Invariant cases of the foundation's compute entry points: feature maps and static weights."""

import torch
import torchloupe as tl
from tests.helpers import Case


def _feature_maps(model, x):
    fm = tl.features.feature_maps(model, x, "features.3", top=4)
    assert fm.maps.shape == (2, 4, 16, 16)


def _feature_maps_channels(model, x):
    tl.features.feature_maps(model, x, "features.4", channels=[0, 15])


def _kernels(model, x):
    k = tl.weights.kernels(model.features[0])
    k.zero_()  # a copy: changing it must not change the model


def _templates(model, x):
    t = tl.weights.class_templates(model.fc, (16,))
    t.mul_(2)


def _feature_maps_of(model, x):
    out = tl.features.feature_maps_of(model, x, ["features.2", "fc"], top=2)
    assert set(out) == {"features.2", "fc"}


CASES = [
    Case("layers_that_run", lambda m, x: tl.features.layers_that_run(m, x, torch.nn.Conv2d)),
    Case("feature_maps_of", _feature_maps_of),
    Case("feature_maps", _feature_maps),
    Case("feature_maps-channels", _feature_maps_channels),
    Case("kernels", _kernels, arm=None),
    Case("fc_matrix", lambda m, x: tl.weights.fc_matrix(m.fc).zero_(), arm=None),
    Case("class_templates", _templates, arm=None),
]
