"""torchloupe: see inside any PyTorch model.

The public face. Compute entry points return plain results (tensors with
names); drawing lives in :mod:`torchloupe.render` and the HTML report in
:mod:`torchloupe.reporting`, both loaded only when first used, so
``import torchloupe`` imports neither matplotlib nor Jinja2.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import errors
from .errors import LayerNotFoundError, TorchLoupeError

# Functions re-exported from the compute core, imported on first use like the subpackages below, so
# that ``import torchloupe`` does not load torch before the command line can catch a Ctrl-C.
_LAZY_NAMES = {
    "find_layer": "layers", "find_layers": "layers", "layer_names": "layers",
    "activations": "probe", "capture": "probe", "preserved": "probe",
}

from ._version import __version__

# Subpackages reached as attributes (tl.cam.GradCAM, tl.render.overlay, ...), imported on first use.
_LAZY = (
    "attention",
    "cam",
    "data",
    "demo",
    "distributed",
    "evaluate",
    "features",
    "fusion",
    "inputs",
    "integrations",
    "recurrent",
    "render",
    "reporting",
    "probe",
    "saliency",
    "structure",
    "synthesis",
    "targets",
    "weights",
)

__all__ = [
    "__version__",
    "errors",
    "TorchLoupeError",
    "LayerNotFoundError",
    "find_layer",
    "find_layers",
    "layer_names",
    "capture",
    "activations",
    "preserved",
    "trace",
    "report",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'torchloupe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def trace(model, *inputs, **kwargs):
    """Trace one forward of ``model`` into a :class:`~torchloupe.structure.ModelGraph`."""
    from .structure import trace as _trace

    return _trace(model, *inputs, **kwargs)


def report(model, inputs, path, labels=None, sections="all", **kwargs):
    """Write one self-contained HTML report of ``model`` on ``inputs`` to ``path``."""
    from .reporting import report as _report

    return _report(model, inputs, path, labels=labels, sections=sections, **kwargs)
