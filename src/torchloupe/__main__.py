"""``python -m torchloupe``: the ``loupe`` command line."""

from __future__ import annotations

import sys

if __name__ == "__main__":  # pragma: no cover
    try:  # a Ctrl-C while Python loads the command line: one line, not a traceback
        from .app.cli import entry
    except KeyboardInterrupt:
        print("loupe: interrupted", file=sys.stderr)
        sys.exit(130)
    entry()
