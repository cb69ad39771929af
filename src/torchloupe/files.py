"""Writing output files so that a reader never meets half of one.

Every file torchloupe writes (graph pages, PNGs, overlays, saved tensors, the report) goes through
:func:`atomic_write` or :func:`atomic_path`: the bytes go to a temporary file in the target's own
folder, which is renamed over the target once complete. So:

- a full disk, a kill or an error mid-way leaves the previous file (or none), never a truncated
  one, and the temporary file is removed;
- a symbolic link at the target path is replaced by the new file, not followed: a link planted at
  ``out/index.html`` cannot make torchloupe overwrite the file it points to;
- a failure is one :class:`~torchloupe.errors.OutputError` naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import OutputError

__all__ = ["atomic_write", "atomic_path", "check_replaceable"]


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (setting it to read it
    would briefly affect files other threads create)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _error(path: Path, exc: OSError) -> OutputError:
    why = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"cannot write {_shown(path)}: {why}", getattr(exc, "errno", None))


def _shown(path: Path) -> str:
    """``'path'`` for a message, with bytes that are not text (a non-UTF-8 file name) escaped."""
    return repr(os.fsencode(path).decode("utf-8", "backslashreplace"))


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse an output path that holds something other than a regular file, a symbolic link or
    nothing: renaming over a device (``/dev/full``), a pipe or a socket would replace it with a file."""
    import stat

    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _error(path, exc) from exc
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode)):
        raise OutputError(f"cannot write {_shown(path)}: it is a device, a pipe or a socket, not a file; "
                          f"give the path of a file to create or replace")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write to; renamed to ``path`` when the block ends
    without an error, removed otherwise. The folder must exist.

    >>> with atomic_path("model.onnx") as tmp:      # doctest: +SKIP
    ...     torch.onnx.export(model, x, tmp)
    """
    path = Path(path)
    check_replaceable(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _error(path, exc) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600); outputs are normal files
        if path.is_dir() and not path.is_symlink():
            raise IsADirectoryError(21, "Is a directory")
        os.replace(tmp, path)  # replaces a symbolic link at `path` itself, never the file it points to
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        raise _error(path, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], object],
                 encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns ``path``.

    ``data``: bytes, a string (encoded with ``encoding``), or a function that writes to the binary
    file it is given (``lambda f: torch.save(obj, f)``). Raises
    :class:`~torchloupe.errors.OutputError` when the file cannot be written; nothing is left at
    ``path`` then but what was there before.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode(encoding)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
    return path
