"""WeightTracker: construction, step, history, animate and close leave the model as it was.

The tracker never runs the model, so there is no raising variant (``arm=None``); the suite's
models carry ``.grad`` on half of their parameters, which the tracker reads (grad norms) and
must leave in place, values and identity.
"""

import os
import tempfile

import torch

import torchloupe as tl
from tests.helpers import Case


def _track(model, x):
    with tl.weights.WeightTracker(model, every=2, input_shape=(16,)) as t:
        for _ in range(5):
            t.step()
    h = t.history
    assert h.steps.tolist() == [0, 2, 4, 5]
    assert torch.equal(h["fc.weight"][-1], model.fc.weight)


def _animate(model, x):
    t = tl.weights.WeightTracker(model, every=1, snapshots=["features.0"])
    t.step()
    with tempfile.TemporaryDirectory() as d:
        path = t.animate(os.path.join(d, "k.gif"), what="kernels")
        assert os.path.getsize(path) > 0


def _from_checkpoints(model, x):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "c.pt")
        torch.save(model.state_dict(), p)
        h = tl.weights.WeightTracker.from_checkpoints([p], model=model).history
    assert torch.equal(h["fc.weight"][0], model.fc.weight)


def _sinks(model, x):
    import warnings

    from torch.utils.tensorboard import SummaryWriter

    from torchloupe.integrations.tensorboard import TensorBoardSink, log_weights
    from torchloupe.integrations.visdom import VisdomSink

    with tempfile.TemporaryDirectory() as d:
        writer = SummaryWriter(d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unreachable Visdom server warns once, by design
            sinks = (TensorBoardSink(writer), VisdomSink(port=9, env="invariants"))
            with tl.weights.WeightTracker(model, every=1, sinks=sinks) as t:
                t.step()
        log_weights(writer, t)
        writer.close()
        assert any(name.startswith("events") for name in os.listdir(d))


CASES = [
    Case("log_weights-TensorBoardSink-VisdomSink", _sinks, arm=None),
    Case("WeightTracker", _track, arm=None),
    Case("WeightTracker.animate", _animate, arm=None),
    Case("WeightTracker.from_checkpoints", _from_checkpoints, arm=None),
]
