"""Hardening of processes and foreign code (issue 21, findings 1, 2, 13, 15, 16).

Kill tests start real ``loupe`` runs in subprocesses, signal them once their report workers are
forked, then look for survivors by pid in the process table. They clean up what they started
by pid, whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from torchloupe.app.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="report workers fork only on Linux")

SLOW_MODEL = """
import time

import torch
from torch import nn


class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        time.sleep(0.2)  # every forward is slow: the sections keep both workers busy for minutes
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def build():
    return Slow()
"""


# -- the process table -----------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return [c.pid for c in psutil.Process(pid).children()]
        except psutil.NoSuchProcess:
            return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _cleanup(pids: list[int]) -> None:
    for p in pids:
        if _alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([SRC, str(Path(__file__).resolve().parents[1])] +
                           ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def _interruptible() -> None:
    """In the child before exec: Ctrl-C's default action. A shell starts background jobs (``make test &``,
    some CI runners) with SIGINT ignored, and Python then keeps it ignored, as a user who ran loupe that
    way asked; the tests want a terminal's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _loupe(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torchloupe", *args], cwd=cwd, env=_env(**env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_interruptible)


def _workers(proc: subprocess.Popen, n: int = 2, within: float = 120.0) -> list[int]:
    """The pids of ``n`` forked workers of ``proc`` once they exist (the test fails if they never do)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        kids = _children(proc.pid)
        if len(kids) >= n:
            return kids
        time.sleep(0.05)
    pytest.fail(f"loupe never forked {n} workers (exit status {proc.poll()}): {proc.stderr.read().decode()[-800:]}")


def _read_to_eof(stream, seconds: float) -> bytes | None:
    """All of ``stream`` if it ends (every writer closed it) within ``seconds``, else None."""
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(stream.read()), daemon=True)
    t.start()
    t.join(seconds)
    return got[0] if got else None


@pytest.fixture()
def slow_run(tmp_path):
    """(start, cleanup) of ``loupe report --jobs 2`` on a model whose forward sleeps."""
    (tmp_path / "slow.py").write_text(SLOW_MODEL)
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 40, 90)).save(tmp_path / "img.png")
    started: list[int] = []

    def start() -> subprocess.Popen:
        proc = _loupe(["report", "--model", "slow.py:build", "--input", "img.png", "--out", "out", "--jobs", "2",
                       "--no-progress"], tmp_path)
        started.append(proc.pid)
        return proc

    yield start, started
    for pid in list(started):
        _cleanup(_children(pid) + [pid])


# -- finding 1: killed runs leave no workers -------------------------------------------------

@linux
@pytest.mark.parametrize("sig, status, line", [
    (signal.SIGTERM, 143, "loupe: stopped by SIGTERM"),
    (signal.SIGINT, 130, "loupe: interrupted"),
])
def test_report_stopped_by_a_signal_stops_its_workers_and_leaves_nothing(slow_run, tmp_path, sig, status, line):
    start, started = slow_run
    proc = start()
    workers = _workers(proc)
    started.extend(workers)
    time.sleep(0.3)  # the workers are inside their first sections
    os.kill(proc.pid, sig)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 10, "the parent took too long to stop its workers"
    assert proc.returncode == status
    assert err.decode().strip() == line  # one line, no traceback
    assert _wait_gone(workers, 3) == []
    out_dir = tmp_path / "out"
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # no report, no temporary file


@linux
def test_sigkill_of_the_parent_takes_the_workers_down_and_frees_its_stdout(slow_run):
    start, started = slow_run
    proc = start()
    workers = _workers(proc)
    started.extend(workers)
    time.sleep(0.3)
    proc.kill()
    proc.wait(5)
    # `loupe report | tee log` ends: no worker holds the pipe the parent wrote to
    assert _read_to_eof(proc.stdout, 5) is not None, "a worker still holds the dead parent's stdout open"
    assert _wait_gone(workers, 5) == []


@linux
def test_report_workers_ignore_ctrl_c_and_die_with_their_parent():
    from torchloupe.reporting import parallel as par

    def job(i):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        sig = ctypes.c_int(0)
        libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
        return os.getpid(), sig.value, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    out = dict(par.run_jobs(job, [0, 1], 2))
    for pid, death, on_int, on_term in out.values():
        assert pid != os.getpid()
        assert death == signal.SIGTERM and on_int == signal.SIG_IGN and on_term == signal.SIG_DFL


WATCHDOG = """
import os, sys, time
from torchloupe.reporting import parallel as par

parent = os.getpid()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # let go of the test's pipes: the test sees the parent end, not this child
    os.dup2(null, 2)
    sys.platform = "darwin"  # as off Linux: no prctl, the watchdog thread instead
    par._die_with_parent(parent)
    time.sleep(60)
    os._exit(0)
print(pid, flush=True)
time.sleep(0.5)
os._exit(0)  # the parent dies; its child must follow
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_watchdog_ends_a_worker_whose_parent_died_where_there_is_no_prctl(tmp_path):
    run = subprocess.run([sys.executable, "-c", WATCHDOG], capture_output=True, env=_env(), timeout=120)
    child = int(run.stdout.decode().split()[0])
    try:
        assert _wait_gone([child], 5) == []
    finally:
        _cleanup([child])


@linux
def test_leaving_run_jobs_early_terminates_busy_workers_at_once():
    from torchloupe.reporting import parallel as par

    parent = os.getpid()

    def job(i):
        if os.getpid() != parent and i > 0:
            time.sleep(60)  # a long section
        return os.getpid()

    gen = par.run_jobs(job, [0, 1, 2], 2)
    worker = next(gen)[1]
    assert worker != parent
    t0 = time.monotonic()
    gen.close()  # what an exception in the caller's loop (KeyboardInterrupt) does
    assert time.monotonic() - t0 < 5
    assert not _alive(worker)


def _loading_torch(pid: int) -> bool:
    """Whether process ``pid`` has started loading torch's library (its import is under way)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@linux
@pytest.mark.parametrize("wait", [0.0, 0.5])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, wait):
    """SIGINT while Python imports torch and builds the parser: one line, status 130, no traceback."""
    proc = _loupe(["graph", "--model", "torchvision:resnet18", "--input-shape", "1,3,32,32",
                   "--out", str(tmp_path / "g")], tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not _loading_torch(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(wait)
        assert proc.poll() is None, "loupe ended before the signal"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        _cleanup([proc.pid])
    assert (proc.returncode, err.decode()) == (130, "loupe: interrupted\n")
    assert not (tmp_path / "g").exists()


@linux
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_demo_leaves_no_workers_and_its_pipe_ends(tmp_path, sig):
    """``loupe demo | tee log`` killed while its workers train: the pipe ends, nobody survives."""
    cache = tmp_path / "cache"
    proc = _loupe(["demo", "--models", "fusion", "--quick", "--jobs", "2", "--no-progress", "--out", "out"],
                  tmp_path, XDG_CACHE_HOME=str(cache), TORCHLOUPE_CACHE=str(cache / "torchloupe"))
    workers: list[int] = []
    try:
        workers = _workers(proc)
        time.sleep(0.3)
        os.kill(proc.pid, sig)
        assert _read_to_eof(proc.stdout, 8) is not None, "a worker still holds the demo's stdout open"
        proc.wait(10)
        assert _wait_gone(workers, 5) == []
        if sig == signal.SIGTERM:
            assert proc.returncode == 143
            assert proc.stderr.read().decode().strip().splitlines()[-1] == "loupe: stopped by SIGTERM"
            assert not (tmp_path / "out" / "report.html").exists()
            assert [p.name for p in (tmp_path / "out").glob("*")] == []
    finally:
        _cleanup(workers + [proc.pid])


# -- finding 2: no foreign code without consent ----------------------------------------------

CUSTOM_CODE = """
import pathlib

pathlib.Path({marker!r}).write_text("the folder's code ran")

import torch
from transformers import PretrainedConfig, PreTrainedModel


class EvilConfig(PretrainedConfig):
    model_type = "evilnet"


class EvilModel(PreTrainedModel):
    config_class = EvilConfig

    def __init__(self, config):
        super().__init__(config)
        self.fc = torch.nn.Linear(4, 2)
        self.post_init()

    def forward(self, x):
        return self.fc(x)
"""


@pytest.fixture()
def custom_code_folder(tmp_path):
    pytest.importorskip("transformers")
    from safetensors.torch import save_file

    folder, marker = tmp_path / "evil", tmp_path / "MARKER"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "evilnet", "architectures": ["EvilModel"], '
                                        '"auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}}')
    (folder / "evil.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    save_file({"fc.weight": torch.ones(2, 4), "fc.bias": torch.zeros(2)}, str(folder / "model.safetensors"))
    return folder, marker


def test_hf_folder_code_is_refused_without_consent_even_with_yes_on_stdin(custom_code_folder, tmp_path):
    folder, marker = custom_code_folder
    env = _env(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-m", "torchloupe", "graph", "--model", f"hf:{folder}", "--input-shape",
                          "1,4", "--format", "txt", "--out", str(tmp_path / "g")],
                         input=b"y\ny\n", capture_output=True, env=env, timeout=120)
    assert run.returncode == 2
    assert run.stderr.decode() == (
        f"loupe: error: model spec 'hf:{folder}': the folder ships its own Python code (evil.EvilConfig, "
        f"evil.EvilModel), which loading it would run; not run. Pass --trust-remote-code (trust_remote_code=True) "
        f"to run it, only for a folder you trust\n")
    assert not marker.exists()
    assert not (tmp_path / "g" / "graph.txt").exists()


def test_trust_remote_code_runs_the_folder_code_with_a_warning(custom_code_folder, tmp_path):
    folder, marker = custom_code_folder
    env = _env(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-m", "torchloupe", "graph", "--model", f"hf:{folder}", "--input-shape",
                          "1,4", "--format", "txt", "--out", str(tmp_path / "g"), "--trust-remote-code",
                          "--no-progress"], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stderr.decode().startswith(f"loupe: warning: --trust-remote-code: running the Python code of "
                                          f"'{folder}' (evil.EvilConfig, evil.EvilModel)")
    assert marker.read_text() == "the folder's code ran"
    assert "EvilModel" in (tmp_path / "g" / "graph.txt").read_text()


def test_every_hugging_face_load_says_trust_remote_code_false(monkeypatch, tmp_path):
    transformers = pytest.importorskip("transformers")
    from torchloupe.app import models

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("trust_remote_code", "not given"))
        raise OSError("stop here")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "vocab.txt").write_text("[UNK]\n")
    from torchloupe.errors import InputFileError

    with pytest.raises(InputFileError):
        models.load_model(f"hf:{tmp_path}")
    with pytest.raises(InputFileError):
        models.tokenizer_for(f"hf:{tmp_path}")
    assert calls == [False, False]


# -- finding 15: model specs run the user's code, and only what they name --------------------

def test_a_missing_factory_fails_before_the_file_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    (tmp_path / "f.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('top level ran')\n\n"
                                   f"def build():\n    import torch\n    return torch.nn.Linear(2, 2)\n")
    code = main(["graph", "--model", f"{tmp_path / 'f.py'}:missing", "--input-shape", "1,2", "--out",
                 str(tmp_path / "g")])
    assert code == 2
    assert capsys.readouterr().err == (f"loupe: error: model file '{tmp_path / 'f.py'}' has no attribute 'missing'; "
                                       f"callables there: build (checked without running the file)\n")
    assert not marker.exists()
    from torchloupe.app.models import load_model

    assert isinstance(load_model(f"{tmp_path / 'f.py'}:build"), torch.nn.Linear)  # the right name runs it
    assert marker.read_text() == "top level ran"


@pytest.mark.parametrize("spec, message", [
    ("os:abort", "loupe: error: model spec 'os:abort': 'abort' is defined in posix, not in 'os'; expected a function "
                 "or class of 'os' that returns an nn.Module\n"),
    ("os:getcwd", "loupe: error: model spec 'os:getcwd': 'getcwd' is defined in posix, not in 'os'; expected a "
                  "function or class of 'os' that returns an nn.Module\n"),
    ("sys:exit", "loupe: error: calling 'sys:exit' exited (SystemExit: None) instead of returning an nn.Module\n"),
    ("torch.nn:Linear", "loupe: error: 'torch.nn:Linear' takes arguments (in_features, out_features); expected a "
                        "function that builds the model with none, returning an nn.Module\n"),
    ("collections:OrderedDict", "loupe: error: 'collections:OrderedDict' returned a OrderedDict, expected an "
                                "nn.Module\n"),
])
def test_module_specs_name_a_model_factory_of_that_module(spec, message, tmp_path, capsys):
    code = main(["graph", "--model", spec, "--input-shape", "1,2", "--out", str(tmp_path / "g")])
    assert (code, capsys.readouterr().err) == (2, message)


def test_help_says_specs_run_code():
    from torchloupe.app.commands._common import MODEL_HELP

    assert "this runs your own code" in MODEL_HELP and "--trust-remote-code" in MODEL_HELP
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "runs that file's code" in readme and "--trust-remote-code" in readme


# -- finding 13: the demo's fusion cache heals -----------------------------------------------

def _plant(path: Path, kind: str, good: bytes) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if kind == "garbage":
        path.write_bytes(b"\x00not a torch file at all\xff" * 10)
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.mkdir()


@pytest.fixture(scope="module")
def fusion_fresh(tmp_path_factory):
    """The early-fusion demo model trained once (20 steps) into a cache: (state, steps, file name, bytes)."""
    from torchloupe.demo import fusion_data as fd

    cache = tmp_path_factory.mktemp("fusion-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCHLOUPE_CACHE", str(cache))
    try:
        model, hist = fd.train_fusion_model("early", steps=20, every=10)
    finally:
        mp.undo()
    (path,) = (cache / "fusion").glob("early-*.pt")
    return model.state_dict(), list(hist.steps), path.name, path.read_bytes()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", "directory"])
def test_a_bad_fusion_cache_file_is_reported_and_retrained(monkeypatch, tmp_path, capsys, fusion_fresh, kind):
    from torchloupe.demo import fusion_data as fd

    state, steps, name, good = fusion_fresh
    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "cache" / "fusion" / name
    path.parent.mkdir(parents=True)
    _plant(path, kind, good)
    capsys.readouterr()
    model, hist = fd.train_fusion_model("early", steps=20, every=10)
    err = capsys.readouterr().err
    assert err.startswith(f"torchloupe: demo cache: {name} cannot be used (") and err.count("\n") == 1, err
    assert err.endswith("); training it again\n")
    # retrained: the same weights and share history as a first training (same seed)
    assert all(torch.equal(a, b) for a, b in zip(state.values(), model.state_dict().values()))
    assert list(hist.steps) == steps
    if kind != "directory":  # healed: the next run loads it, silently
        fd.train_fusion_model("early", steps=20, every=10)
        assert capsys.readouterr().err == ""


def test_a_bad_fusion_cache_file_keeps_the_family_in_the_demo(monkeypatch, tmp_path, capsys):
    """Before: a broken cache file dropped the fusion models on every run (exit 0)."""
    from torchloupe.app.subjects import fusion
    from torchloupe.demo import fusion_data as fd

    monkeypatch.setenv("TORCHLOUPE_CACHE", str(tmp_path / "cache"))
    real = fd.train_fusion_model
    monkeypatch.setattr(fd, "train_fusion_model", lambda kind, seed=0, **kw: real(kind, seed=seed, steps=20, every=10))
    first = fusion.fusion_subject("late", 0, 8)
    (path,) = (tmp_path / "cache" / "fusion").glob("late-*.pt")
    path.write_bytes(b"garbage")
    capsys.readouterr()
    again = fusion.fusion_subject("late", 0, 8)
    assert capsys.readouterr().err.count("cannot be used") == 1
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))


# -- finding 16: one-line errors from add_graph(method="torch") and WeightHistory.load ---------

def test_add_graph_torch_on_a_model_with_backward_hooks_is_one_line(tmp_path):
    pytest.importorskip("tensorboard")
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    from torchloupe.errors import UnsupportedModelError
    from torchloupe.integrations.tensorboard import add_graph

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    handle = model[0].register_full_backward_hook(lambda *a: None)
    writer = SummaryWriter(str(tmp_path))
    try:
        with pytest.raises(UnsupportedModelError) as info:
            add_graph(writer, model, torch.rand(2, 4), method="torch")
        assert str(info.value) == ("SummaryWriter.add_graph (torch.jit.trace) cannot trace Sequential: backward hooks "
                                   "on '0'; use method='auto' or 'torchloupe' for torchloupe's graph")
        assert len(model[0]._backward_hooks) == 1  # the user's hook is still there
        assert add_graph(writer, model, torch.rand(2, 4)) == "torchloupe"  # auto draws it
    finally:
        handle.remove()
        writer.close()


def test_add_graph_torch_error_is_one_line_with_the_cause_chained(tmp_path):
    pytest.importorskip("tensorboard")
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    from torchloupe.errors import UnsupportedModelError
    from torchloupe.integrations.tensorboard import add_graph

    class DictOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return {"logits": self.fc(x)}

    writer = SummaryWriter(str(tmp_path))
    try:
        with pytest.raises(UnsupportedModelError) as info:
            add_graph(writer, DictOut(), torch.rand(2, 4), method="torch")
    finally:
        writer.close()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("SummaryWriter.add_graph (torch.jit.trace) failed on DictOut: RuntimeError: Encountering a "
                          "dict at the output of the tracer")
    assert msg.endswith("; method='auto' or 'torchloupe' draws torchloupe's graph instead")
    assert isinstance(info.value.__cause__, RuntimeError)


class _NotATensor:
    pass


def test_weight_history_load_of_a_pickle_is_one_line(tmp_path):
    from torchloupe.errors import CheckpointError
    from torchloupe.weights.history import WeightHistory

    path = tmp_path / "history.pt"
    torch.save({"torchloupe": "{}", "tensors": {}, "extra": _NotATensor()}, path)
    with pytest.raises(CheckpointError) as info:
        WeightHistory.load(path)
    assert str(info.value) == (
        f"{path}: cannot read a WeightHistory (it holds a {__name__}._NotATensor object (unpickling it could run "
        f"code), not loaded; a file from WeightHistory.save holds only tensors; for a file you trust: "
        f"WeightHistory.load(path, unsafe=True), which is torch.load(weights_only=False))")
    with pytest.raises(CheckpointError, match="not a torchloupe WeightHistory file"):
        WeightHistory.load(path, unsafe=True)  # read with weights_only=False: then its metadata is checked
