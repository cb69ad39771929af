"""Export a model to ONNX (for Netron) with a clear error where the exporter gives up."""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import nn

from .. import probe
from ..errors import UnsupportedModelError, require


def export_onnx(model: nn.Module, *inputs: Any, path: str | os.PathLike, opset: int | None = None,
                dynamo: bool = False, **kwargs: Any) -> str:
    """Write ``model`` traced on ``inputs`` to the ONNX file ``path``; returns the path.

    Runs in a :func:`~torchloupe.probe.session`: eval mode, and the fused attention fast path off
    (its one ATen op has no ONNX form), so ``nn.TransformerEncoder`` and ``nn.MultiheadAttention``
    export; the model comes back as it went in. ``kwargs`` go to the model as keyword inputs.
    ``dynamo=False`` uses the TorchScript-based exporter (fast; data-dependent branches are taken
    as they went for these inputs); ``dynamo=True`` the ``torch.export``-based one. Raises
    :class:`~torchloupe.errors.UnsupportedModelError` naming the model and the exporter's first
    complaint where the exporter cannot handle it; needs the ``onnx`` extra.
    """
    probe.require_module(model, "the model to export")
    require("onnx", "onnx")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"the folder {parent!r} for the ONNX file does not exist")
    extra = {} if opset is None else {"opset_version": opset}
    with probe.session(model, fastpath=False):
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # the TorchScript exporter still works; its deprecation notice is not the user's concern
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                torch.onnx.export(model, tuple(inputs), path, kwargs=kwargs or None, dynamo=dynamo, **extra)
        except Exception as exc:  # the exporter's errors are many and untyped: translate them, keep the cause
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise UnsupportedModelError(
                f"the ONNX exporter cannot handle {type(model).__name__}: {type(exc).__name__}: {first[:300]}"
            ) from exc
    return path
