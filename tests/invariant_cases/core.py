import torchloupe as tl
from tests.helpers import Case


def _capture(model, x):
    with tl.capture(model, ["features.0", "features.3"], eval_mode=True) as rec:
        model(x)
    assert rec["features.3"].shape[1] == 16


CASES = [
    Case("default_layer", lambda m, x: tl.cam.default_layer(m, x)),
    Case("find_layer", lambda m, x: tl.find_layer(m, "features.3"), arm=None),
    Case("capture", _capture),
    Case("activations", lambda m, x: tl.activations(m, x, ["features.2", "fc"])),
]
