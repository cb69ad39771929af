"""Integrations with other tools: ``tensorboard`` and ``visdom`` (each an optional extra).

Both load on first use as attributes (``tl.integrations.tensorboard``), so importing
torchloupe never imports TensorBoard or Visdom.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["tensorboard", "visdom"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'torchloupe.integrations' has no attribute {name!r}")
