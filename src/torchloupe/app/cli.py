"""The ``loupe`` command line.

Each subcommand is a module under :mod:`torchloupe.app.commands` with
``register(subparsers)`` adding its parser and setting ``func=run``.
Errors torchloupe raises on purpose (bad file, bad layer name, bad input...)
print one line and exit with status 2, with no traceback; ``--debug`` shows it. Any other
exception (the model's own code failing mid-way) is one line too, naming its type, with status 2;
usage errors are one line (argparse's, shortened), status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from ..errors import TorchLoupeError


class Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line (``loupe cam: error: ...``), exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import commands

    parser = Parser(
        prog="loupe", description="See inside a PyTorch model: graph, feature maps, weights, CAMs, attention."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):  # shared helpers, not commands
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (TorchLoupeError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if args.debug:
            raise
        print(f"loupe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loupe: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else (the model's own code, a bug): one line too; --debug shows it
        if args.debug:
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"loupe: error: {type(exc).__name__}{': ' + text if text else ''} (--debug shows the traceback)",
              file=sys.stderr)
        return 2


def entry() -> None:  # pragma: no cover - the console script; tests call main()
    """The ``loupe`` console script: :func:`main`, then exit without tearing the interpreter down.

    After a demo, freeing torch, transformers and matplotlib module by module took 1.5 s of the
    run; the work is done and written by then (files are closed, worker pools joined), so
    flush the streams and leave. Exceptions still exit the normal way, with their traceback.
    """
    import os

    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
