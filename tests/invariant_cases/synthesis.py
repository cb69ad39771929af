import torch

import torchloupe as tl
from tests.helpers import Case
from torchloupe.synthesis import objectives as O


def _maximize(model, x):
    res = tl.synthesis.maximize(model, ["features.0:1", "fc:2"], steps=2, input_shape=(3, 16, 16), seed=0)
    assert res.images.shape == (2, 3, 16, 16)


def _maximize_composed(model, x):
    obj = O.parse("features.3:1") - 0.1 * O.diversity("features.3") - 0.01 * O.total_variation()
    tl.synthesis.maximize(model, obj, param="pixel", batch=2, steps=2, redirect_steps=2,
                          input_shape=(3, 16, 16), seed=0)


def _exemplars(model, x):
    ex = tl.synthesis.exemplars(model, torch.utils.data.TensorDataset(x), "features.0", k=2, batch_size=1)
    assert ex.indices.shape == (8, 2)


def _exemplars_batches(model, x):
    tl.synthesis.exemplars(model, [x, x], "fc", k=3, reduce="max", negative=True)


CASES = [
    Case("maximize", _maximize),
    Case("maximize-composed", _maximize_composed),
    Case("exemplars", _exemplars),
    Case("exemplars-batches", _exemplars_batches),
]
