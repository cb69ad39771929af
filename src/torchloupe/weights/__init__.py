"""Weights: kernels, FC matrices, class templates (``static``) and how they change in training
(``tracker`` records a ``history``; ``learned`` reads templates, kernels and class similarity
from it; ``checkpoints`` builds one from saved state dicts).

Names resolve lazily to their submodule so that each concept keeps its own file.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    # static views of one model
    "kernels": "static",
    "fc_matrix": "static",
    "class_templates": "static",
    "effective_templates": "static",
    # training-time tracking
    "WeightTracker": "tracker",
    "WeightHistory": "history",
    "Record": "history",
    "STATS": "history",
    "TrackerError": ".errors",  # ..errors
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
