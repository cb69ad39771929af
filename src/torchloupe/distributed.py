"""Dataset-scale runs across processes (``torchrun``), with a single-process fallback.

The pattern used by :func:`torchloupe.synthesis.exemplars`: the work is a list of
batches; rank ``r`` of ``W`` takes batches ``r, r + W, r + 2W, ...`` (the batches
themselves are the ones a single process would make, so every sample is computed
in the same company and the result is bit-identical); each rank reduces its
share to a small partial result; :func:`all_gather` hands every rank every
partial (:func:`all_gather_object` for partials of any size, ``None`` from a rank that
got no batch), and every rank merges them the same way. Under ``torchrun`` a CUDA model
runs on ``cuda:LOCAL_RANK`` (:func:`local_device`) with NCCL; on CPU the backend is gloo.

::

    torchrun --nproc_per_node 4 -m torchloupe exemplars ...

:func:`session` initializes the process group from the ``torchrun`` environment
(``gloo`` on CPU, ``nccl`` when the model is on CUDA) and tears down what it set
up. Without ``torchrun`` everything runs in one process: rank 0 of 1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["is_active", "rank", "world_size", "session", "all_gather", "all_gather_object", "shard",
           "default_backend", "local_device"]


def is_active() -> bool:
    """True when a ``torch.distributed`` process group is initialized with more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def default_backend(device: torch.device | str | None = None) -> str:
    """``'nccl'`` for a CUDA device (when NCCL is built in), else ``'gloo'``."""
    import torch.distributed as dist

    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


@contextlib.contextmanager
def session(backend: str | None = None, device: torch.device | str | None = None) -> Iterator[bool]:
    """Initialize the process group from the ``torchrun`` environment when there is one.

    Yields whether several processes take part. A group that was already initialized
    is used and left alone; one initialized here is destroyed on exit.
    """
    import torch.distributed as dist

    created = False
    if (
        dist.is_available()
        and not dist.is_initialized()
        and int(os.environ.get("WORLD_SIZE", "1")) > 1
        and "MASTER_ADDR" in os.environ
    ):
        backend = backend or default_backend(device)
        if backend == "nccl" and device is not None and torch.device(device).type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        created = True
    try:
        yield is_active()
    finally:
        if created:
            dist.destroy_process_group()


def shard(n_items: int, rank_: int | None = None, world: int | None = None) -> range:
    """Positions ``rank, rank + world, ...`` of ``range(n_items)``: this rank's share."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return range(r, n_items, w)


def all_gather(tensor: Tensor) -> list[Tensor]:
    """Every rank's ``tensor`` (same shape and dtype on every rank), in rank order.

    One process: ``[tensor]``. With NCCL the tensor travels on this rank's CUDA device;
    the results come back on ``tensor``'s device.
    """
    if not is_active():
        return [tensor]
    import torch.distributed as dist

    device = tensor.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        work = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    else:
        work = tensor
    work = work.contiguous()
    out = [torch.empty_like(work) for _ in range(dist.get_world_size())]
    dist.all_gather(out, work)
    return [t.to(device) for t in out]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj`` (any size, ``None`` included), in rank order; one process: ``[obj]``.

    Tensors inside should be on the CPU (a CUDA tensor would be unpickled on the sender's device index).
    """
    if not is_active():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def local_device(device: torch.device | str) -> torch.device:
    """Where this process works: ``cuda:LOCAL_RANK`` for a CUDA ``device`` under ``torchrun`` with
    several processes (one GPU per rank, as NCCL needs), else ``device`` itself."""
    dev = torch.device(device)
    if dev.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return dev
