"""Integrations with other tools: ``tensorboard`` and ``visdom`` (each an optional extra).

Submodules load on first attribute access (``tl.integrations.visdom.VisdomSink``), so that
``import torchloupe`` imports neither tool.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("tensorboard", "visdom")

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'torchloupe.integrations' has no attribute {name!r}")
