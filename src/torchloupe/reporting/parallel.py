"""Independent CPU work (report sections, demo training) spread over forked worker processes.

Report sections and demo models are many small, independent jobs whose time goes to Python
(matplotlib layout, hooks, small forwards) more than to large tensor kernels, so one torch
thread in each of several processes beats several threads in one. Workers are *forked*: they
inherit the models and data already in memory, nothing is pickled on the way in, and only each
job's result (strings and bytes) comes back.

Forking is only safe in some processes, so :func:`worker_count` falls back to 1 (run in this
process, in order) when it is not: off Linux (macOS frameworks are not fork-safe), once CUDA
is initialised (a forked child cannot use it), or when ``jobs`` asks for 1.

Workers never outlive this process: each asks the kernel for SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)`` on Linux; elsewhere a thread polling ``os.getppid()``), so a
SIGKILL of the parent takes them down within a moment instead of leaving orphans that hold its
stdout open. They ignore SIGINT (a Ctrl-C reaches the whole process group: the parent decides)
and take SIGTERM the default way. When the parent leaves the pool by an exception
(``KeyboardInterrupt``, or a SIGTERM the command line turns into one) :func:`forked_pool`
terminates and reaps its workers instead of waiting for their jobs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
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


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """In a forked worker: end this process when ``parent`` dies (SIGTERM from the kernel on
    Linux, else a daemon thread polling ``os.getppid()`` twice a second)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        def watch() -> None:
            import time

            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="torchloupe-parent-watchdog", daemon=True).start()


def _init_worker(threads: int, parent: int | None = None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited through fork
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the workers
    if parent is not None:
        _die_with_parent(parent)
    torch.set_num_threads(threads)


def fork_executor(workers: int):
    """A ``ProcessPoolExecutor`` of ``workers`` forked processes, ``cpus // workers`` torch threads
    each, that die with this process. Submit module-level functions; for closures over data in
    memory use :func:`run_jobs`. Prefer :func:`forked_pool`, which also stops them on an error."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker, initargs=(max(1, available_cpus() // workers), os.getpid()),
    )


def stop_workers(pool, grace: float = 2.0) -> list[int]:
    """Terminate the worker processes of ``pool`` (SIGTERM, then SIGKILL after ``grace`` seconds),
    reap them and shut the pool down without waiting for its jobs; returns their pids."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(grace)
        if p.is_alive():
            p.kill()
            p.join(grace)
    pool.shutdown(wait=False, cancel_futures=True)
    return [p.pid for p in procs]


@contextlib.contextmanager
def forked_pool(workers: int) -> Iterator[Any]:
    """:func:`fork_executor` as a ``with`` block: on a normal exit the pool is shut down after its
    jobs; when the block raises (an error, ``KeyboardInterrupt``, ``SystemExit``) the workers are
    terminated and reaped at once and the exception goes on."""
    pool = fork_executor(workers)
    try:
        yield pool
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown(wait=True, cancel_futures=True)


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
    try:
        with forked_pool(workers) as pool:
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
        _JOB = None
    for i in order:  # after a broken pool: finish here
        if i not in done:
            yield i, fn(i)
