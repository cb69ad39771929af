"""TensorBoard (read back with EventAccumulator) and Visdom (against a real server) sinks for WeightTracker."""

from __future__ import annotations

import io
import json
import math
import os
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from tests.helpers import peer
import torch
from torch import nn

from torchloupe.integrations.tensorboard import log_weights
from torchloupe.weights.tracker import WeightTracker

peer("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread gives the same numbers and is far faster on a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)



def _train(tracker_kw=None, steps=12, every=4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.rand(32, 16), torch.randint(0, 3, (32,))
    tracker = WeightTracker(model, every=every, input_shape=(4, 4), **(tracker_kw or {}))
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tracker.step()
    tracker.close()
    return tracker


def _events(logdir):
    ea = EventAccumulator(str(logdir), size_guidance={"histograms": 0, "scalars": 0, "images": 0})
    ea.Reload()
    return ea


def _check_events(ea, h):
    tags = ea.Tags()
    steps = h.steps.tolist()
    assert steps == [0, 4, 8, 12]
    for name in h.names:
        assert f"weights/{name}" in tags["histograms"]
        norms = ea.Scalars(f"weights_norm/{name}")
        assert [e.step for e in norms] == steps
        assert np.allclose([e.value for e in norms], h.stat(name, "norm").numpy(), rtol=1e-6)
        ratios = ea.Scalars(f"weights_update_ratio/{name}")  # undefined at the first record
        assert [e.step for e in ratios] == steps[1:]
        assert np.allclose([e.value for e in ratios], h.stat(name, "update_ratio")[1:].numpy(), rtol=1e-6)
        assert [e.step for e in ea.Scalars(f"weights_grad_norm/{name}")] == steps[1:]
        hists = ea.Histograms(f"weights/{name}")
        assert [e.step for e in hists] == steps
        j = h.index(name)
        for r, e in enumerate(hists):
            v = e.histogram_value
            assert len(v.bucket) == 64 and v.bucket == h.hist[r, j].tolist()
            assert v.num == math.prod(h.shapes[name])
            assert v.min == pytest.approx(float(h.stat(name, "min")[r]))
            assert v.max == pytest.approx(float(h.stat(name, "max")[r]))
            assert v.bucket_limit[-1] == pytest.approx(float(h.hist_range[r, j, 1]))
            mean = float(h.stat(name, "mean")[r])
            assert v.sum == pytest.approx(mean * v.num, rel=1e-5, abs=1e-6)
    images = ea.Images("weights_images/templates")
    assert [e.step for e in images] == h.snapshot_steps.tolist()
    from PIL import Image

    img = Image.open(io.BytesIO(images[-1].encoded_image_string))
    assert img.size == (images[-1].width, images[-1].height) and img.width > 3 * 32  # 3 classes, upscaled tiles


def test_log_weights_reads_back(tmp_path):
    tracker = _train()
    with SummaryWriter(str(tmp_path)) as w:
        assert log_weights(w, tracker) == 4
    _check_events(_events(tmp_path), tracker.history)


def test_live_tensorboard_sink_writes_the_same(tmp_path):
    from torchloupe.integrations._tb_weights import TensorBoardSink

    w = SummaryWriter(str(tmp_path))
    tracker = _train({"sinks": [TensorBoardSink(w)]})
    w.close()
    _check_events(_events(tmp_path), tracker.history)


# -- Visdom against a real server -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def visdom_server(tmp_path_factory):
    visdom = peer("visdom")
    port = _free_port()
    env_path = str(tmp_path_factory.mktemp("visdom_env")) + os.sep
    # visdom.server.run_server.main() serves the API without fetching web assets (python -m visdom.server
    # downloads them first and dies offline). Its flags: -port, --hostname, -env_path, -bind_local.
    code = (
        "import sys; sys.argv=['visdom','-port','%d','--hostname','127.0.0.1','-env_path',%r,'-bind_local',"
        "'-logging_level','WARNING']; from visdom.server.run_server import main; main()" % (port, env_path)
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                    pytest.fail(f"visdom server did not start on port {port}: {out[-2000:]}")
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_visdom_sink_windows_hold_the_logged_data(visdom_server):
    import visdom

    from torchloupe.integrations.visdom import WINDOWS, VisdomSink

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a reachable server gives no warning
        sink = VisdomSink(port=visdom_server, env="tl_test")
    assert sink.enabled
    tracker = _train({"sinks": [sink]})
    h = tracker.history
    viz = visdom.Visdom(port=visdom_server, env="tl_test", use_incoming_socket=False, raise_exceptions=True)
    for win in WINDOWS:
        assert viz.win_exists(win, env="tl_test"), win
    norm = json.loads(viz.get_window_data("weights_norm", env="tl_test"))
    traces = {t["name"]: t for t in norm["content"]["data"]}
    assert set(traces) == {"0.weight", "2.weight"}
    for name, t in traces.items():
        assert t["x"] == [float(s) for s in h.steps.tolist()]
        assert np.allclose(t["y"], h.stat(name, "norm").double().numpy(), rtol=1e-6)
    ratio = json.loads(viz.get_window_data("weights_update_ratio", env="tl_test"))
    t = {t["name"]: t for t in ratio["content"]["data"]}["2.weight"]
    assert np.allclose(t["y"], h.stat("2.weight", "update_ratio")[1:].double().numpy(), rtol=1e-6)
    heat = json.loads(viz.get_window_data("weights_histogram", env="tl_test"))
    z = np.array(heat["content"]["data"][0]["z"])
    assert z.shape == (64, len(h.steps))  # bins x steps
    assert np.allclose(z, np.log1p(h.hist[:, h.index("2.weight")].double().numpy().T))
    sim = json.loads(viz.get_window_data("weights_similarity", env="tl_test"))
    w = h["2.weight"][-1].double()
    w = w / w.norm(dim=1, keepdim=True)
    assert np.allclose(np.array(sim["content"]["data"][0]["z"]), (w @ w.T).numpy())
    img = json.loads(viz.get_window_data("weights_images", env="tl_test"))
    assert img["content"]["src"].startswith("data:image/")
    assert f"step {h.snapshot_steps[-1].item()}" in img["title"]


def test_visdom_unreachable_warns_once_and_training_goes_on():
    peer("visdom")
    from torchloupe.integrations.visdom import VisdomSink

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink = VisdomSink(port=_free_port(), env="nobody")
        tracker = _train({"sinks": [sink]})
    ours = [w for w in caught if "Visdom server" in str(w.message)]
    assert len(ours) == 1 and "not reachable" in str(ours[0].message) and "training goes on" in str(ours[0].message)
    assert not sink.enabled
    assert tracker.history.steps.tolist() == [0, 4, 8, 12]


def test_public_names_resolve():
    import torchloupe as tl
    from torchloupe.integrations import _tb_weights

    assert tl.integrations.tensorboard.log_weights is not None
    assert tl.integrations.visdom.VisdomSink.__name__ == "VisdomSink"
    assert tl.weights.WeightTracker is WeightTracker
    assert _tb_weights.TensorBoardSink.__name__ == "TensorBoardSink"
