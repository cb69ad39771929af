"""Lazy attributes for packages whose names live in submodules (one concept per file).

``__getattr__, __dir__ = lazy_exports(__name__, {"name": "submodule", ...}, globals())`` makes
``package.name`` import ``package.submodule`` on first use; with ``submodules=True`` any
submodule is also reachable as an attribute (``tl.render.cam``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any], *, submodules: bool = False
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
            namespace[name] = value
            return value
        if submodules:
            try:
                return importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
