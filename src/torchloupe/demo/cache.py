"""Where demo models keep their trained weights, and the one helper that uses it.

Demo models train in seconds, once: the first run trains and saves the state dict
under :func:`cache_dir`, later runs load it (``torch.load(weights_only=True)``).
A cache *key* names the model and everything that changes its weights, e.g.
``"shapes-cnn-v1-seed0"``: bump the version part whenever the architecture, data
or training recipe changes, and stale files are simply never read again.

Cache directory, first that is set: ``$TORCHLOUPE_CACHE``, ``$XDG_CACHE_HOME/torchloupe``,
``~/.cache/torchloupe``.

Other demo modules use it like this::

    from torchloupe.demo.cache import load_or_train

    def train_my_model(seed=0, progress=True):
        return load_or_train(
            f"my-model-v1-seed{seed}",
            build=lambda: MyModel(),                          # fresh, untrained module
            train=lambda model: fit(model, seed, progress),   # trains it in place
        )
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = [
    "cache_dir", "cache_path", "load_or_train", "save_state", "save_tensors", "load_state",
    "NotCached", "cached_only", "check_training_allowed", "load_blob", "report_unusable",
]

M = TypeVar("M", bound=nn.Module)

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

_CACHED_ONLY = [False]  # set inside cached_only(): training raises NotCached instead


class NotCached(LookupError):
    """Raised inside :func:`cached_only` where a model would have to be trained."""


@contextlib.contextmanager
def cached_only() -> Iterator[None]:
    """Inside the block, a demo model that is not in the cache raises :class:`NotCached` instead of
    training (``loupe demo`` uses it to leave training to the worker that runs the model's sections)."""
    before = _CACHED_ONLY[0]
    _CACHED_ONLY[0] = True
    try:
        yield
    finally:
        _CACHED_ONLY[0] = before


def check_training_allowed(what: str) -> None:
    """Raise :class:`NotCached` when called inside :func:`cached_only`: ``what`` would train now."""
    if _CACHED_ONLY[0]:
        raise NotCached(f"{what} is not in the cache")


def cache_dir(create: bool = True) -> Path:
    """The torchloupe cache directory (created unless ``create=False``)."""
    root = os.environ.get("TORCHLOUPE_CACHE")
    if root:
        path = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        path = base / "torchloupe"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def cache_path(key: str, suffix: str = ".pt") -> Path:
    """The file a cache ``key`` maps to; keys are plain file names (letters, digits, ``._-``)."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(
            f"cache key {key!r} must start with a letter or digit and hold only letters, digits, '.', '_', '-'"
        )
    return cache_dir() / f"{key}{suffix}"


def save_tensors(obj: dict[str, torch.Tensor], path: Path) -> None:
    """``torch.save`` a dict of tensors to ``path`` atomically (a reader never sees half a file);
    it loads back with ``torch.load(weights_only=True)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(model: nn.Module, path: Path) -> None:
    """Write ``model.state_dict()`` to ``path`` atomically (a reader never sees half a file)."""
    save_tensors({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


_READ_ERRORS = (OSError, RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError, AttributeError,
                pickle.UnpicklingError)


def load_blob(path: Path) -> Any:
    """What :func:`save_tensors` wrote to ``path`` (``torch.load(weights_only=True)``); a
    :class:`~torchloupe.errors.CheckpointError` in one line when it cannot be read (garbage,
    truncated, empty, a folder, Python objects other than tensors)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except _READ_ERRORS as exc:
        raise CheckpointError(f"cached weights {str(path)!r} cannot be loaded: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def report_unusable(path: Path, exc: BaseException) -> None:
    """Say on stderr, in one line, that the cache file ``path`` cannot be used and is retrained."""
    why = str(exc).split(": ", 1)[-1] if isinstance(exc, CheckpointError) else _first_line(exc)
    print(f"torchloupe: demo cache: {path.name} cannot be used ({why.strip()}); training it again",
          file=sys.stderr)


def load_state(model: M, path: Path) -> M:
    """Load a state dict saved by :func:`save_state` into ``model`` (``weights_only=True``).

    Raises :class:`~torchloupe.errors.CheckpointError` when the file is unreadable or does
    not fit the model.
    """
    state = load_blob(path)
    try:
        model.load_state_dict(state)
    except _READ_ERRORS as exc:
        raise CheckpointError(f"cached weights {str(path)!r} cannot be loaded: {_first_line(exc)}") from exc
    return model


def load_or_train(
    key: str,
    build: Callable[[], M],
    train: Callable[[M], Any],
    *,
    retrain: bool = False,
) -> M:
    """The model cached under ``key``, training and caching it first if needed.

    ``build()`` makes a fresh module; ``train(model)`` trains it in place (its return value
    is ignored). A cached file that cannot be loaded (truncated, from an older recipe with
    the same key) is retrained and overwritten. ``retrain=True`` ignores the cache.
    The model comes back in eval mode.
    """
    path = cache_path(key)
    model = build()
    if path.exists() and not retrain:
        try:
            return load_state(model, path).eval()
        except CheckpointError as exc:
            check_training_allowed(key)  # (in cached_only(): the worker that trains it reports it)
            report_unusable(path, exc)
            model = build()
    check_training_allowed(key)
    train(model)
    try:
        save_state(model, path)
    except OSError:
        pass  # a read-only cache only costs a retrain next time
    return model.eval()
