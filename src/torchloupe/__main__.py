"""``python -m torchloupe``: the ``loupe`` command line."""

from __future__ import annotations

from .app.cli import entry

if __name__ == "__main__":  # pragma: no cover
    entry()
