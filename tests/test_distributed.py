"""Exemplars under torchrun (gloo, CPU): uneven shards, ranks without a batch, two 'machines'.

Each run is a real ``torchrun`` from the venv on 127.0.0.1 with a free port, time-limited; every
process it started is ended when the test ends. Every rank's result must equal the single-process
result exactly (values, indices, locations, boxes, crops, seen).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._dist_exemplars import results

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
FIELDS = ("values", "indices", "locations", "boxes", "crops", "samples", "sample_of", "spans", "seen", "model")

pytestmark = pytest.mark.skipif(not TORCHRUN.exists() or not torch.distributed.is_available(),
                                reason="needs torchrun and torch.distributed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _launch(args: list[str]) -> subprocess.Popen:
    cmd = [str(TORCHRUN), "--master-addr", "127.0.0.1", *args]
    return subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: ended whole below


def _wait(procs: list[subprocess.Popen], timeout: float = 180) -> None:
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _same(got: dict, want: dict) -> None:
    for f in FIELDS:
        a, b = got[f], want[f]
        if isinstance(b, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape, f
            assert torch.equal(a.nan_to_num(), b.nan_to_num()) and torch.equal(a.isnan(), b.isnan()), f
        else:
            assert a == b, f


def _check(out: Path, world: int, n: int, batch: int) -> None:
    want = results(n, batch)
    for rank in range(world):
        got = torch.load(out / f"rank{rank}.pt", weights_only=True)
        assert got["multi"] is True and got["world"] == world
        for form in ("dataset", "batches"):
            _same(got[form], want[form])
            assert got[form]["seen"] == n and got[form]["spans"] == ((0, n),)


@pytest.mark.parametrize("world, n, batch", [
    (2, 21, 4),  # 6 batches, the last short: 3 and 3
    (3, 12, 8),  # 2 batches (8 and 4) for 3 ranks: rank 2 has none
    (2, 6, 64),  # one short batch for 2 ranks (the job that died with 'data yielded no samples')
])
def test_ranks_equal_single_process(tmp_path, world, n, batch):
    worker = [str(ROOT / "tests" / "_dist_exemplars.py"), str(tmp_path), str(n), str(batch)]
    _wait([_launch(["--master-port", str(_free_port()), "--nproc-per-node", str(world), *worker])])
    _check(tmp_path, world, n, batch)


def test_two_machines_meet_on_localhost(tmp_path):
    port = str(_free_port())
    worker = [str(ROOT / "tests" / "_dist_exemplars.py"), str(tmp_path), "13", "4"]
    nodes = [_launch(["--nnodes", "2", "--node-rank", str(r), "--nproc-per-node", "1", "--master-port", port, *worker])
             for r in (0, 1)]
    _wait(nodes)
    _check(tmp_path, 2, 13, 4)
