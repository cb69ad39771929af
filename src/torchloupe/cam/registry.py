"""The registry of CAM methods: key -> class, what the CLI, the report and the tests read.

A method is registered by a key (``"gradcam"``, what ``loupe cam --method`` and
:func:`torchloupe.cam.compare` take) and where its class lives, ``"module:Class"``: a module
starting with ``.`` is under :mod:`torchloupe.cam` (``".gradcam:GradCAM"``), any other is
imported as it is (``"mypackage.cams:MyCAM"``). The module is imported the first time the key
is looked up. A class object is accepted as well::

    tl.cam.register("mycam", "mypackage.cams:MyCAM")
    tl.cam.compare(model, x, ["gradcam", "mycam"])
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from ..errors import MissingDependencyError, UsageError
from .base import BaseCAM


class Methods(Mapping[str, type[BaseCAM]]):
    """``{key: CAM class}`` in registration order, each class imported on first access.

    ``package`` anchors the relative specs (``".gradcam:GradCAM"``); :meth:`exports` names the
    classes of those, for the package's lazy attributes (``tl.cam.GradCAM``).
    """

    def __init__(self, package: str, specs: Mapping[str, str | type[BaseCAM]] = ()):
        self._package = package
        self._specs: dict[str, str | type[BaseCAM]] = {}
        self._classes: dict[str, type[BaseCAM]] = {}
        for key, spec in dict(specs).items():
            self.register(key, spec)

    # -- the mapping -----------------------------------------------------------------------
    def __getitem__(self, key: str) -> type[BaseCAM]:
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = self._resolve(key, self._specs[key])  # KeyError for an unknown key
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, key: object) -> bool:
        return key in self._specs

    def __repr__(self) -> str:
        return f"Methods({self._specs!r})"

    # -- registering -----------------------------------------------------------------------
    def register(self, key: str, method: str | type[BaseCAM], *, replace: bool = False) -> None:
        """Add a method under ``key``: ``"module:Class"`` (imported on first use) or a
        :class:`~torchloupe.cam.base.BaseCAM` subclass. A key already taken raises
        :class:`~torchloupe.errors.UsageError` unless ``replace``."""
        if not isinstance(key, str) or not key.strip() or key != key.strip() or "," in key:
            raise UsageError(f"a CAM method key must be a non-empty string without commas or spaces around it, "
                             f"got {key!r}")
        if key == "all":
            raise UsageError("'all' names every CAM method; pick another key")
        if key in self._specs and not replace:
            raise UsageError(f"CAM method {key!r} is already registered ({self.spec(key)}); pass replace=True "
                             f"to replace it")
        if isinstance(method, type):
            if not issubclass(method, BaseCAM):
                raise UsageError(f"CAM method {key!r}: {method.__name__} is not a torchloupe.cam.BaseCAM subclass")
        elif not isinstance(method, str) or method.count(":") != 1 or not all(method.split(":")):
            raise UsageError(f"CAM method {key!r}: expected 'module:Class' or a BaseCAM subclass, got {method!r}")
        self._specs[key] = method
        self._classes.pop(key, None)
        if isinstance(method, type):
            self._classes[key] = method

    def unregister(self, key: str) -> None:
        """Remove ``key`` (a :class:`~torchloupe.errors.UsageError` when it is not registered)."""
        if key not in self._specs:
            raise UsageError(f"no CAM method {key!r}; registered: {', '.join(self._specs)}")
        del self._specs[key]
        self._classes.pop(key, None)

    # -- what the package reads ------------------------------------------------------------
    def spec(self, key: str) -> str:
        """Where ``key``'s class lives, ``"module:Class"`` (for messages)."""
        spec = self._specs[key]
        return f"{spec.__module__}:{spec.__qualname__}" if isinstance(spec, type) else spec

    def exports(self) -> dict[str, str]:
        """``{class name: submodule}`` of the methods under the package (``{"GradCAM": "gradcam"}``)."""
        out = {}
        for spec in self._specs.values():
            if isinstance(spec, str) and spec.startswith("."):
                module, name = spec[1:].split(":")
                out[name] = module
        return out

    def _resolve(self, key: str, spec: str | type[BaseCAM]) -> type[BaseCAM]:
        if isinstance(spec, type):
            return spec
        module_name, name = spec.split(":")
        try:
            module = importlib.import_module(module_name, self._package if module_name.startswith(".") else None)
        except MissingDependencyError:  # the method's own extra: its one-line pip message
            raise
        except ImportError as exc:
            raise UsageError(f"CAM method {key!r}: cannot import {module_name!r} ({exc})") from exc
        cls = getattr(module, name, None)
        if not (isinstance(cls, type) and issubclass(cls, BaseCAM)):
            what = "not found" if cls is None else f"a {type(cls).__name__}, not a BaseCAM subclass"
            raise UsageError(f"CAM method {key!r}: {name!r} in {module.__name__} is {what}")
        return cls
