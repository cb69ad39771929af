import torchloupe as tl
from tests.helpers import Case


def _capture(model, x):
    with tl.capture(model, ["features.0", "features.3"], eval_mode=True) as rec:
        model(x)
    assert rec["features.3"].shape[1] == 16


def _session(model, x):
    with tl.probe.session(model, freeze=True, fastpath=False, hf_attention="sdpa") as run:
        out = run(x)
        out.sum()  # the run is the block's: nothing it does outlives the session


def _cam_two_inputs(model, x):
    # the same model fed as a keyword: Inputs + wrt by name
    tl.cam.GradCAM(model, "features.3")(tl.inputs.Inputs((), {"x": x}), target=1, wrt="x")


def _trial(ran: bool) -> None:
    """Trial forwards report a model that raises as False (by design); the raising variant needs it to raise."""
    if not ran:
        raise RuntimeError("the trial forward saw the model raise")


CASES = [
    Case("session", _session),
    Case("eval_forward", lambda m, x: tl.probe.eval_forward(m, x)),
    Case("preserved", lambda m, x: _session(m, x)),
    Case("require_module", lambda m, x: tl.probe.require_module(m), arm=None),
    Case("check_inputs", lambda m, x: tl.inputs.check_inputs(m, x), arm=None),
    Case("trial_forward", lambda m, x: _trial(tl.inputs.trial_forward(m, x)[0])),
    Case("takes_shape", lambda m, x: _trial(tl.inputs.takes_shape(m, (3, 16, 16)))),
    Case("first_layer", lambda m, x: tl.inputs.first_layer(m), arm=None),
    Case("expected_input", lambda m, x: tl.inputs.expected_input(m), arm=None),
    Case("flattens_first", lambda m, x: tl.inputs.flattens_first(m), arm=None),
    Case("check_input", lambda m, x: tl.inputs.check_input(m, x), arm=None),
    Case("check_model_targets", lambda m, x: tl.targets.check_model_targets(m, x, [0, 1]), arm=None),
    Case("num_classes_of", lambda m, x: tl.targets.num_classes_of(m), arm=None),
    Case("gradcam_keyword_input", _cam_two_inputs),
    Case("default_layer", lambda m, x: tl.cam.default_layer(m, x)),
    Case("find_layer", lambda m, x: tl.find_layer(m, "features.3"), arm=None),
    Case("capture", _capture),
    Case("activations", lambda m, x: tl.activations(m, x, ["features.2", "fc"])),
]
