"""What the subcommands write, written one way: complete files or none (:mod:`torchloupe.files`),
folders made with one-line errors, and file names fit for pages and messages.

- :func:`atomic_write` (from :mod:`torchloupe.files`): bytes, text or a writer function to a
  temporary file in the target folder, renamed into place; a symbolic link at the target is
  replaced, never followed; any ``OSError`` (full disk, read-only folder) is one
  :class:`~torchloupe.errors.OutputError` line, exit status 2.
- :func:`output_set`: the files of one command, removed again (those it created) when the command
  fails or is stopped half-way.
- :func:`make_folder`: ``--out`` made (after the checks of
  :func:`~torchloupe.app.commands._common.output_folder`), or one line saying why not.
- :func:`display_name` / :func:`safe_stem`: a path's name as text that encodes (a file name that is
  not UTF-8 shows U+FFFD where its odd bytes were), and as a name for an output file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import OutputError
from ..files import atomic_path, atomic_write

__all__ = ["atomic_write", "atomic_path", "make_folder", "output_set", "display_name", "safe_stem", "unique_stems"]


def make_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder, made with its parents if missing."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make the output folder {display_name(folder)!r}: {exc.strerror or exc}",
                          exc.errno) from exc
    return folder


def display_name(path: str | os.PathLike) -> str:
    """``path`` as text that can be written anywhere: bytes of a file name that are not UTF-8 (held
    by Python as lone surrogates) become U+FFFD."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "replace")


def safe_stem(path: str | os.PathLike) -> str:
    """The stem of ``path`` (its name without the suffix) as valid UTF-8 text, for output file names."""
    return display_name(Path(path).stem)


def unique_stems(paths) -> list[str]:
    """:func:`safe_stem` of each path, made unique: a repeated stem gets ``-2``, ``-3``... skipping
    stems other inputs have (``x/img.png``, ``y/img.png``, ``z/img-2.png`` -> ``img``, ``img-3``, ``img-2``)."""
    stems = [safe_stem(p) for p in paths]
    taken: set[str] = set()
    first = {}
    for i, s in enumerate(stems):
        first.setdefault(s, i)
    out = []
    for i, stem in enumerate(stems):
        name, k = stem, 1
        if first[stem] != i:  # a repeat: the first of the same stem keeps it
            while name in taken or name in first:
                k += 1
                name = f"{stem}-{k}"
        taken.add(name)
        out.append(name)
    return out


@contextlib.contextmanager
def output_set() -> Iterator[Callable[..., Path]]:
    """``with output_set() as write: write(path, data)``: :func:`atomic_write` for each file of one
    command's output; when the block ends by an exception (a full disk, Ctrl-C, SIGTERM) the files it
    created are removed again, so a stopped run leaves none of its new files behind (files it
    replaced stay replaced: they are whole either way). ``with write.writing(path):`` covers a file
    some other code writes (atomically) inside the block, e.g. an ONNX export."""
    made: list[Path] = []

    def write(path: str | os.PathLike, data) -> Path:
        with writing(path):
            atomic_write(path, data)
        return Path(path)

    @contextlib.contextmanager
    def writing(path: str | os.PathLike) -> Iterator[Path]:
        new = not os.path.lexists(path)
        yield Path(path)
        if new and os.path.lexists(path):
            made.append(Path(path))

    write.writing = writing  # type: ignore[attr-defined]

    try:
        yield write
    except BaseException:
        for p in reversed(made):
            with contextlib.suppress(OSError):
                p.unlink()
        raise
