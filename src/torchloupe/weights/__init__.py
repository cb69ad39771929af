"""Weights: kernels, FC matrices, class templates (``static``) and how they change in training (``tracker``).

Names resolve lazily to their submodule so that each concept keeps its own file.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # static views of one model
    "kernels": "static",
    "fc_matrix": "static",
    "class_templates": "static",
    # training-time tracking
    "WeightTracker": "tracker",
    "WeightHistory": "tracker",
    "Record": "tracker",
    "TrackerError": "tracker",
    "STATS": "tracker",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'torchloupe.weights' has no attribute {name!r}")
