"""What :func:`torchloupe.report` checks before any section runs: the model, the inputs (type, dtype,
shape, finite values, memory) and the output path. Each bad value is one typed line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import InputTypeError, UsageError
from ..inputs import check_input, check_inputs, check_work_memory
from ..probe import require_module

#: Bytes a report holds per byte of its inputs, at least: every section's copies, maps at input size,
#: gradients, perturbed and blurred batches, the figures' images.
REPORT_MEMORY_FACTOR = 16


def check_output_path(path: Any, what: str = "report path") -> Path:
    """``path`` as a ``Path`` that can be written: not a folder, and its folder exists and is writable or
    can be made (the nearest existing ancestor a writable folder); else :class:`UsageError` naming it."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise UsageError(f"{what} must be a file path (str or pathlib.Path), got {type(path).__name__}")
    p = Path(path)
    if not str(path).strip():
        raise UsageError(f"{what} is empty; expected a file path such as 'report.html'")
    if p.is_dir():
        raise UsageError(f"{what} '{p}' is a folder; expected a file path such as '{p / 'report.html'}'")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{what} '{p}' exists and cannot be written (no write permission)")
    base = p.absolute().parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"{what} '{p}': cannot make its folder ('{base}' is a file, not a folder)")
    try:  # a real write (root passes every os.access check; /proc and read-only mounts do not take files)
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise UsageError(f"{what} '{p}': cannot write there ('{base}': {exc.strerror or exc})") from exc
    return p


def check_report_call(model: Any, inputs: Any, path: Any) -> Any:
    """The checks :func:`torchloupe.report` runs first; returns the inputs (a tensor batched)."""
    require_module(model)
    if inputs is None or isinstance(inputs, (str, bytes)) or hasattr(inputs, "__fspath__"):
        hint = ("; from files, use loupe report --input FILE (or read them into a tensor first)"
                if inputs is not None else "")
        raise InputTypeError(f"inputs are {'None' if inputs is None else type(inputs).__name__ + ' ' + repr(str(inputs))[:60]}"
                             f"; expected a batch tensor (N, C, H, W), a tuple of tensors or a dict{hint}")
    if isinstance(inputs, Tensor):
        inputs = check_input(model, inputs)
        check_work_memory([inputs], REPORT_MEMORY_FACTOR, "a report on inputs")
    else:
        checked = check_inputs(model, inputs)
        check_work_memory([t for _, t in checked.tensors()], REPORT_MEMORY_FACTOR, "a report on inputs")
    check_output_path(path)
    return inputs


__all__ = ["check_report_call", "check_output_path", "REPORT_MEMORY_FACTOR"]
