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


def _exemplars_tuple_items(model, x):
    pairs = [((x[i],), i) for i in range(x.shape[0])]  # items ((inputs...), label)
    ex = tl.synthesis.exemplars(model, torch.utils.data.DataLoader(pairs, batch_size=1), "features.3", k=1)
    assert ex.locations.shape == (16, 1, 2)


def _maximize_wrt(model, x):
    tl.synthesis.maximize(model, "features.0:1", steps=2, inputs=(x,), wrt=0, transforms=None)


def _receptive_field(model, x):
    from torchloupe.synthesis.exemplars import receptive_field

    assert receptive_field(model, model.features[3], x[:1]) == (5, 5, -2.0, -2.0, 1.0, 1.0)


def _standard_transforms_for(model, x):
    from torchloupe.inputs import takes_shape
    from torchloupe.synthesis.maximize import standard_transforms_for

    assert standard_transforms_for(model, (3, 16, 16)) == "standard"  # the helper CNN takes any size
    if not takes_shape(model, (3, 16, 16)):  # the probes swallow a model's error: say it, after them
        raise RuntimeError("the model did not run on its probe")


def _maximize_resized(model, x):
    tl.synthesis.maximize(model, "features.0:1", steps=2, input_shape=(3, 16, 16), transforms="standard-resized")


CASES = [
    Case("maximize", _maximize),
    Case("maximize-composed", _maximize_composed),
    Case("exemplars", _exemplars),
    Case("exemplars-batches", _exemplars_batches),
    Case("exemplars-tuple-items", _exemplars_tuple_items),
    Case("maximize-wrt", _maximize_wrt),
    Case("receptive_field", _receptive_field),
    Case("standard-transforms-for", _standard_transforms_for),
    Case("maximize-standard-resized", _maximize_resized),
]
