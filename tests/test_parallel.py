"""Forked worker processes for report sections and demo training (torchloupe.reporting.parallel)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from torchloupe.reporting import parallel as par
from torchloupe.errors import UsageError

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork only on Linux")


@linux
def test_jobs_run_in_workers_and_every_result_comes_back():
    parent = os.getpid()
    out = dict(par.run_jobs(lambda i: (i * i, os.getpid(), torch.get_num_threads()), [3, 1, 2, 0], 2))
    assert {k: v[0] for k, v in out.items()} == {3: 9, 1: 1, 2: 4, 0: 0}
    assert all(pid != parent for _, pid, _ in out.values())
    assert {threads for _, _, threads in out.values()} == {max(1, par.available_cpus() // 2)}


@linux
def test_jobs_of_a_dead_worker_finish_in_this_process():
    parent = os.getpid()

    def job(i):
        if i == 0 and os.getpid() != parent:
            os._exit(3)  # the worker dies (as if killed for memory)
        return i, os.getpid()

    out = dict(par.run_jobs(job, [0, 1, 2, 3], 2))
    assert sorted(out) == [0, 1, 2, 3]
    assert out[0][1] == parent


def test_one_worker_runs_in_order_here():
    seen = []
    out = list(par.run_jobs(lambda i: seen.append(i) or os.getpid(), [2, 0, 1], 1))
    assert seen == [2, 0, 1] and [i for i, _ in out] == [2, 0, 1] and {p for _, p in out} == {os.getpid()}


def test_worker_count(monkeypatch):
    monkeypatch.setattr(par, "available_cpus", lambda: 8)
    monkeypatch.setattr(par, "_fork_is_safe", lambda: True)
    assert par.worker_count("auto") == 4 and par.worker_count(None, tasks=3) == 3
    assert par.worker_count(6) == 6 and par.worker_count(1) == 1
    for bad in (0, -1, "two", 2.0, True):
        with pytest.raises(UsageError, match="jobs must be a positive int or 'auto'"):
            par.worker_count(bad)
    monkeypatch.setattr(par, "_fork_is_safe", lambda: False)  # off Linux, or CUDA in use
    assert par.worker_count(4) == 1


def test_fork_is_unsafe_once_cuda_is_initialised(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert not par._fork_is_safe()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert par._fork_is_safe()
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not par._fork_is_safe()
