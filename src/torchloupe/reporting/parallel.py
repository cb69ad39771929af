"""Independent CPU work (report sections, demo training) spread over forked worker processes.

Report sections and demo models are many small, independent jobs whose time goes to Python
(matplotlib layout, hooks, small forwards) more than to large tensor kernels, so one torch
thread in each of several processes beats several threads in one. Workers are *forked*: they
inherit the models and data already in memory, nothing is pickled on the way in, and only each
job's result (strings and bytes) comes back.

Forking is only safe in some processes, so :func:`worker_count` falls back to 1 (run in this
process, in order) when it is not: off Linux (macOS frameworks are not fork-safe), once CUDA
is initialised (a forked child cannot use it), or when ``jobs`` asks for 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from ..errors import UsageError


T = TypeVar("T")

_JOB: Callable[[Any], Any] | None = None  # set in the parent right before forking; read by the workers


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_count(jobs: int | str | None, tasks: int | None = None) -> int:
    """How many processes to use for ``jobs`` (an int, ``"auto"`` or None = one per CPU, at most 4).

    1 where forking is unsafe (not Linux, CUDA initialised) and never more than ``tasks``.
    """
    if jobs is None or jobs == "auto":
        want = min(4, available_cpus())
    elif isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"jobs must be a positive int or 'auto', got {jobs!r}")
    else:
        want = jobs
    if want > 1 and not _fork_is_safe():
        want = 1
    if tasks is not None:
        want = min(want, max(1, tasks))
    return want


def _fork_is_safe() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    return not (torch.cuda.is_available() and torch.cuda.is_initialized())


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def fork_executor(workers: int):
    """A ``ProcessPoolExecutor`` of ``workers`` forked processes, ``cpus // workers`` torch threads
    each. Submit module-level functions; for closures over data in memory use :func:`run_jobs`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker, initargs=(max(1, available_cpus() // workers),),
    )


def _call(index: int) -> tuple[int, Any]:
    return index, _JOB(index)  # type: ignore[misc]  # set by run_jobs before the fork


def run_jobs(fn: Callable[[int], T], order: Sequence[int], workers: int) -> Iterator[tuple[int, T]]:
    """Yield ``(i, fn(i))`` for every ``i`` in ``order``, in completion order.

    ``workers > 1`` runs them in that many forked processes, each with ``cpus // workers``
    torch threads, started in ``order`` (put the longest first). ``fn`` should catch its own
    errors and return them as data; one that escapes is re-raised here. Should a worker die
    (killed, out of memory), the jobs not yet done run in this process instead.
    """
    order = list(order)
    if workers <= 1 or len(order) <= 1:
        for i in order:
            yield i, fn(i)
        return

    import warnings
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    global _JOB
    done: set[int] = set()
    _JOB = fn
    pool = fork_executor(workers)
    try:
        with warnings.catch_warnings():  # Python 3.12+ warns about forking a threaded process
            warnings.simplefilter("ignore", DeprecationWarning)
            futures = [pool.submit(_call, i) for i in order]
        try:
            for fut in as_completed(futures):
                i, result = fut.result()
                done.add(i)
                yield i, result
        except BrokenProcessPool:
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _JOB = None
    for i in order:  # after a broken pool: finish here
        if i not in done:
            yield i, fn(i)
