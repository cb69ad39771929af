"""Devices and reduced precision, said once: what a device name means on this machine, and the
autocast the read-only views run under.

``parse_device("auto")`` is CUDA when this machine has it, else the CPU; ``"cpu"``, ``"cuda"``,
``"cuda:N"`` and ``"mps"`` are checked against what is here, and a device that is not here is a
:class:`~torchloupe.errors.UsageError` naming it and the devices that are (before any model is
loaded). :func:`autocast` is :func:`torch.autocast` on a device for ``"bf16"`` / ``"fp16"`` and
nothing for ``"fp32"``: the views that only read the model (feature maps, exemplars, attention,
structure) run under it; gradient methods never do (a half-precision *model* is how they run in
reduced precision, see :mod:`torchloupe.cam`).

float16 autocast on the CPU is allowed: torch 2.14 runs it (convolutions, matmuls and attention
in float16, reductions in float32), slower than float32 there and no more accurate than bfloat16,
which is the better choice on a CPU.
"""

from __future__ import annotations

import contextlib
import re

import torch

from .errors import UsageError

__all__ = ["PRECISIONS", "available_devices", "parse_device", "check_precision", "autocast"]

#: Precision names and the autocast dtype each means (``None``: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

_FORM = re.compile(r"^(cpu|cuda|mps)(?::(\d+))?$")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The devices this process can use: ``cpu``, then ``cuda:0`` ... ``cuda:N-1``, then ``mps``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def parse_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The :class:`torch.device` ``spec`` names, checked against this machine.

    ``"auto"`` (or ``None``): ``cuda`` (the current CUDA device) when CUDA is available, else
    ``cpu``. ``"cuda"`` / ``"cuda:N"`` need CUDA with more than ``N`` devices; ``"mps"`` needs
    Apple's Metal backend. Anything else, or a device not here, raises
    :class:`~torchloupe.errors.UsageError` naming it and the available devices.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    text = str(spec).strip().lower()
    here = ", ".join(available_devices())
    m = _FORM.match(text)
    if m is None:
        raise UsageError(f"device {str(spec)!r} is not a device name; expected auto, cpu, cuda, cuda:N or mps "
                         f"(available here: {here})")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {str(spec)!r} is not available: this machine has no CUDA GPU "
                             f"(available here: {here})")
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise UsageError(f"device {str(spec)!r} is not available: this machine has {count} CUDA "
                             f"device{'s' if count != 1 else ''} (available here: {here})")
        return torch.device(text)
    if not _mps_available():
        raise UsageError(f"device {str(spec)!r} is not available: this machine has no Apple MPS backend "
                         f"(available here: {here})")
    return torch.device("mps")


def check_precision(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision name (``None`` for ``"fp32"``); a bad name is one line."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def autocast(device: torch.device | str, precision: str = "fp32"):
    """A context manager: :func:`torch.autocast` on ``device``'s type in ``precision``'s dtype, or
    nothing for ``"fp32"``. For views that only read the model (no gradients)."""
    dtype = check_precision(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
