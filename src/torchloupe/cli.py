"""Deprecated home of the command line; it lives in :mod:`torchloupe.app.cli` now.

Kept so ``python -m torchloupe.cli`` (and ``torchrun -m torchloupe.cli``) keep working;
``python -m torchloupe`` is the same command.
"""

from __future__ import annotations

from .app.cli import build_parser, entry, main

__all__ = ["main", "entry", "build_parser"]

if __name__ == "__main__":  # pragma: no cover
    entry()
