"""Export a model to ONNX (for Netron) with a clear error where the exporter gives up."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import re
import warnings
from typing import Any

import torch
from torch import nn

from .. import probe
from ..errors import UnsupportedModelError, require

# TorchScript-exporter failures that are the tracer's interface, not the model's operators: the
# torch.export-based exporter does not have them.
_TRACER_LIMITS = ("got multiple values for argument", "Only tuples, lists and Variables are supported as JIT inputs")


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def cause_of(exc: BaseException) -> str:
    """One line naming why an exporter gave up: a known limit said plainly, else the first line of the
    innermost message that says something (exporter banners and TorchScript IR dumps left out)."""
    text = "\n".join(f"{type(e).__name__}: {e}" for e in _chain(exc))
    cache = re.search(r"(transformers\.cache_utils\.)?(\w*Cache)\b[^\n]*(in output|not a known type|unsupported type)", text)
    if cache or re.search(r"unsupported type: (\w*Cache)", text):
        name = (cache.group(2) if cache else re.search(r"unsupported type: (\w*Cache)", text).group(1))
        return (f"its output holds a {name} (the Hugging Face key/value cache), which is not a tensor the exporter can "
                "write; pass use_cache=False")
    m = re.search(r"got multiple values for argument '(\w+)'", text)
    if m:
        return (f"the TorchScript exporter passes every forward argument positionally, and the forward's own "
                f"argument handling then receives {m.group(1)!r} twice (a Hugging Face decorator); use dynamo=True")
    m = re.search(r"Exporting the operator '?([\w:.]+)'? to ONNX opset version (\d+) is not supported", text)
    if m:
        return f"the operator {m.group(1)} has no ONNX form at opset {m.group(2)}"
    for e in reversed(_chain(exc)):  # innermost first: the wrapper's banner says least
        for line in str(e).splitlines():
            line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
            if line and not line.startswith(("graph(", "%", "Failed to export the model with", "#")):
                return f"{type(e).__name__}: {line[:300]}"
    return type(exc).__name__


def _hf_without_cache(model: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Hugging Face models are exported without their key/value cache (not a tensor): ``use_cache=False``."""
    config = getattr(model, "config", None)
    if config is None or "use_cache" in kwargs or not getattr(config, "use_cache", False):
        return kwargs
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return kwargs
    if "use_cache" in params:
        return {**kwargs, "use_cache": False}
    return kwargs


@contextlib.contextmanager
def _quiet(names: tuple[str, ...] = ("onnxscript", "torch.onnx")):
    """The exporters' log lines (an optimizer pass that could not fold a constant...) are not the user's concern."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def _math_attention():
    """``F.scaled_dot_product_attention`` on its plain (math) kernel: fused kernels have no ONNX form."""
    attention = getattr(torch.nn, "attention", None)
    if attention is None or not hasattr(attention, "sdpa_kernel"):
        yield
        return
    with attention.sdpa_kernel([attention.SDPBackend.MATH]):
        yield


def export_onnx(model: nn.Module, *inputs: Any, path: str | os.PathLike, opset: int | None = None,
                dynamo: bool | None = None, **kwargs: Any) -> str:
    """Write ``model`` traced on ``inputs`` to the ONNX file ``path``; returns the path.

    Runs in a :func:`~torchloupe.probe.session`: eval mode, the fused attention fast path off and
    ``F.scaled_dot_product_attention`` on its math kernel (fused kernels have no ONNX form), so
    ``nn.TransformerEncoder``, ``nn.MultiheadAttention`` and torchvision's ViT export; the model comes
    back as it went in. ``kwargs`` go to the model as keyword inputs; a Hugging Face model gets
    ``use_cache=False`` unless given (its key/value cache is an object, not a tensor the exporter can
    write). ``dynamo=False`` uses the TorchScript-based exporter (fast; data-dependent branches are
    taken as they went for these inputs); ``dynamo=True`` the ``torch.export``-based one; ``None`` (the
    default) the TorchScript one, and the ``torch.export`` one where TorchScript's tracer cannot call
    or return what the model takes (Hugging Face forwards). Raises
    :class:`~torchloupe.errors.UnsupportedModelError` with one line naming the model and the cause
    where the exporter cannot handle it (:func:`cause_of`); needs the ``onnx`` extra.
    """
    probe.require_module(model, "the model to export")
    require("onnx", "onnx")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"the folder {parent!r} for the ONNX file does not exist")
    extra = {} if opset is None else {"opset_version": opset}
    kwargs = _hf_without_cache(model, dict(kwargs))
    tries = [False, True] if dynamo is None else [bool(dynamo)]
    from ..files import atomic_path

    with probe.session(model, fastpath=False), atomic_path(path) as tmp:  # no half-written file, ever
        for i, use_dynamo in enumerate(tries):
            try:
                with torch.no_grad(), _math_attention(), warnings.catch_warnings(), _quiet(), \
                        contextlib.redirect_stdout(io.StringIO()):
                    # the exporters' deprecation notices, tracer warnings and progress lines are not the user's concern
                    warnings.simplefilter("ignore")
                    torch.onnx.export(model, tuple(inputs), str(tmp), kwargs=kwargs or None, dynamo=use_dynamo,
                                      **({"verbose": False} if use_dynamo else {}), **extra)
                break
            except OSError:  # a full disk, a read-only folder: the write failed, not the exporter
                raise
            except Exception as exc:  # the exporters' errors are many and untyped: translate them, keep the cause
                limit = any(s in "\n".join(map(str, _chain(exc))) for s in _TRACER_LIMITS)
                if i + 1 < len(tries) and limit:
                    continue  # the torch.export-based exporter has no such tracer limit
                which = "torch.export-based ONNX exporter" if use_dynamo else "ONNX exporter"
                raise UnsupportedModelError(
                    f"the {which} cannot handle {type(model).__name__}: {cause_of(exc)}"
                ) from exc
    return path
