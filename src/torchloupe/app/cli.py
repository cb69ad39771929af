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
import signal
import sys
import threading
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


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that ``finally`` blocks run: forked workers
    are stopped and reaped, temporary files removed. Not an ``Exception``: nothing swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame) -> None:
    _quiet_signals()  # a second signal must not interrupt the clean-up of the first
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Stopped(signum)


_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def _quiet_signals() -> None:
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _catch_signals() -> dict | None:
    """Route SIGINT, SIGTERM and SIGHUP through :func:`_stop`; the previous handlers, to restore
    (``None`` off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig in _SIGNALS:
        if previous[sig] is not signal.SIG_IGN:  # nohup / a shell's background job keeps ignoring them
            signal.signal(sig, _stop)
    return previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``loupe`` command; its exit status. SIGINT exits 130, SIGTERM 143 (128 + the
    signal), after stopping any worker process and removing partial output, with one line."""
    previous = _catch_signals()
    for stream in (sys.stdout, sys.stderr):  # a file name the terminal cannot show is escaped, never an error
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            reconfigure(errors="backslashreplace")
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("loupe: interrupted", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"loupe: stopped by {signal.Signals(stop.signum).name}", file=sys.stderr)
        return 128 + stop.signum
    finally:
        if previous is not None:
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _run(argv: Sequence[str] | None) -> int:
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
