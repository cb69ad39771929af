"""Weights: kernels, FC matrices, class templates (``static``) and how they change in training (``tracker``).

Names resolve lazily to their submodule so that each concept keeps its own file.
"""

from __future__ import annotations

from .._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
