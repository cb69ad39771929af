"""Fuzz pass (issue 21): generated shapes, dtypes and values through the public entry points, and generated
argument lists through the command line. Every outcome is a result or a TorchLoupeError (the CLI: a return
code, an argparse usage exit, or one of the errors it reports in one line), never another exception.

Bounded for CI: tiny models, few examples, derandomized (the same examples on every run), no database.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import torchloupe as tl  # noqa: E402
from torchloupe.errors import TorchLoupeError  # noqa: E402

FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


NET = _Net().eval()
DTYPES = [torch.float32, torch.float64, torch.float16, torch.uint8, torch.int64, torch.bool]


@st.composite
def tensors(draw):
    """Mostly image batches near what the model takes, sometimes any rank; odd dtypes and values."""
    if draw(st.integers(0, 3)):
        shape = (draw(st.integers(0, 3)), draw(st.sampled_from([3, 3, 3, 1, 4])), draw(st.integers(1, 9)),
                 draw(st.integers(1, 9)))
    else:
        shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=5)))
    dtype = draw(st.sampled_from(DTYPES))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))), dtype=torch.float64)
    special = draw(st.sampled_from([None, None, math.nan, math.inf, -math.inf, 1e30, -5.0]))
    if special is not None and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = special
    if dtype.is_floating_point:
        return x.to(dtype)
    return (x.clamp(0, 1) * 255).nan_to_num(0).to(dtype) if dtype != torch.bool else x.nan_to_num(0) > 0.5


def values():
    """A tensor, or something that is not one: what a caller may pass by mistake."""
    return st.one_of(tensors(), tensors(), tensors(),
                     st.sampled_from([None, "cat.png", [[0.5, 0.25]], 3.0, np.zeros((2, 3, 8, 8), dtype=np.float32),
                                      (), {}]),
                     st.builds(lambda t: (t,), tensors()), st.builds(lambda t: [t, t], tensors()))


def _maps_like(x):
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return torch.rand(x.shape[0], x.shape[2], x.shape[3])
    return torch.rand(2, 8, 8)


ENTRY_POINTS = {
    "activations": lambda x, t: tl.activations(NET, x, ["features.0", "fc"]),
    "feature_maps": lambda x, t: tl.features.feature_maps(NET, x, "features.2", top=2),
    "GradCAM": lambda x, t: tl.cam.GradCAM(NET, "features.2")(x, target=t),
    "GradCAMPlusPlus": lambda x, t: tl.cam.GradCAMPlusPlus(NET, "features.2")(x, target=t),
    "ScoreCAM": lambda x, t: tl.cam.ScoreCAM(NET, "features.2")(x, target=t),
    "EigenCAM": lambda x, t: tl.cam.EigenCAM(NET, "features.2")(x),
    "gradient": lambda x, t: tl.saliency.gradient(NET, x, t),
    "guided_backprop": lambda x, t: tl.saliency.guided_backprop(NET, x, t),
    "smoothgrad": lambda x, t: tl.saliency.smoothgrad(tl.saliency.gradient, 2)(NET, x, t),
    "deletion": lambda x, t: tl.evaluate.deletion(NET, x, _maps_like(x), t, steps=3),
    "average_drop": lambda x, t: tl.evaluate.average_drop(NET, x, _maps_like(x), t),
    "trace": lambda x, t: tl.trace(NET, x),
}
TARGETS = st.sampled_from([None, None, 0, 2, 3, -1, 1.5, True, "a", [0, 1], torch.tensor([1, 0])])


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_entry_points_give_a_result_or_a_typed_error(name):
    fn = ENTRY_POINTS[name]

    @FUZZ
    @given(x=values(), target=TARGETS)
    def run(x, target):
        try:
            fn(x, target)
        except TorchLoupeError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), f"not one line: {exc!r}"

    run()


@FUZZ
@given(shape=st.lists(st.integers(-1, 40), min_size=0, max_size=4), steps=st.integers(-1, 2),
       lr=st.sampled_from([0.05, 0.0, -1.0, math.nan, math.inf, 1e9]), batch=st.integers(-1, 2),
       objective=st.sampled_from(["fc:0", "fc:2", "fc:3", "fc:-1", "features.2:1", "features.2:1@(1,1)",
                                  "features.2:1@(99,0)", "nope:0", "fc", "", "features.*:0"]),
       param=st.sampled_from(["fft", "pixel", "cppn", "jpeg"]))
def test_maximize_gives_a_result_or_a_typed_error(shape, steps, lr, batch, objective, param):
    try:
        res = tl.synthesis.maximize(NET, objective, steps=steps, lr=lr, batch=batch, param=param,
                                    input_shape=tuple(shape) if shape else None, transforms=None)
    except TorchLoupeError:
        return
    assert torch.isfinite(res.images).all()


# --- the command line ------------------------------------------------------------------------------
MODELS = ["tests.cli_models:make_lenet", "tests.cli_models:nope", "nope.py:make", "resnet18:x", ""]
FLAGS = {
    "graph": [("--input-shape", ["1,1,32,32", "1,1,32", "0,1,32,32", "a,b", "-1", "1,1,100000,100000"]),
              ("--format", ["txt", "dot", "html,svg", "pdf", ""]), ("--depth", ["0", "-1", "x", "2"]),
              ("--expand", ["conv1", "conv11", "Conv2d"]), ("--input-dtype", ["int64", "float64", "int8"])],
    "maximize": [("--shape", ["1 32 32", "3 60000 60000", "0", "-2"]), ("--lr", ["0.1", "0", "nan", "-1"]),
                 ("--param", ["pixel", "fft", "x"]), ("--seed", ["1", "x"])],
    "exemplars": [("--layer", ["conv1", "nope", "conv*", ""]), ("--data", ["demo:shapes:4", "demo:shapes:1e9",
                  "demo:nope", "missing.pt"]), ("--k", ["1", "0", "1e9", "-3"]), ("--batch-size", ["2", "0"])],
    "cam": [("--input", ["IMG", "missing.png", "BAD"]), ("--method", ["gradcam", "nope", "all"]),
            ("--target", ["0", "99", "-1", "x"]), ("--size", ["32", "0", "20000"])],
}


@st.composite
def argvs(draw, tmp):
    cmd = draw(st.sampled_from(list(FLAGS)))
    argv = [cmd]
    model = draw(st.sampled_from(MODELS))
    if model or draw(st.booleans()):
        argv += ["--model", model]
    for flag, choices in FLAGS[cmd]:
        if draw(st.booleans()):
            argv += [flag, *draw(st.sampled_from(choices)).split(" ")]
    if cmd == "maximize":
        argv += [draw(st.sampled_from(["conv1:0", "fc3:9", "fc3:-1", "conv1:0-2", "nope:1", "x"])), "--steps", "1",
                 "--no-progress"]
    if cmd in ("graph", "exemplars", "cam") and draw(st.integers(0, 3)):
        argv += ["--out", str(tmp / draw(st.sampled_from(["out", "file.txt/out", "x.png"])))]
    return [str(a).replace("IMG", str(tmp / "cat.png")).replace("BAD", str(tmp / "bad.png")) for a in argv]


def test_the_cli_gives_a_code_or_a_usage_error(tmp_path, capsys):
    from PIL import Image

    from torchloupe.app.cli import main

    Image.new("L", (32, 32), 90).save(tmp_path / "cat.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "file.txt").write_text("a file where a folder is expected")

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(argv=argvs(tmp_path))
    def run(argv):
        try:
            code = main(["--debug", *argv])  # --debug: an unexpected exception surfaces instead of one line
        except SystemExit as exc:  # argparse: a usage error (2) or --help (0)
            assert exc.code in (0, 2), argv
        except (TorchLoupeError, FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError):
            pass  # what main() reports in one line with exit status 2
        else:
            assert code in (0, 2), (argv, code)
        capsys.readouterr()

    run()
