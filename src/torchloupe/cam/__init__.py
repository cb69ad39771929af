"""Class activation maps: which pixels made the network decide.

``tl.cam.GradCAM(model, layer=None)(x, target=None) -> CAMResult``. Every method is a small
subclass of :class:`~torchloupe.cam.base.BaseCAM` in a file of its own, registered by one line
of :data:`METHODS` (key -> ``"module:Class"``): the CLI (``loupe cam --method``), the report and
the tests read the registry, and ``tl.cam.<Class>`` resolves from it on first use. Methods
defined elsewhere join with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from .._lazy import lazy_exports
from .base import BaseCAM, CAMResult, GradientCAM, default_layer, run_cams, to_map
from .registry import Methods

#: The CAM methods, in the order figures and tables show them: key (``loupe cam --method``,
#: :func:`compare`) -> class. Adding a method: its file under ``cam/`` and one line here.
METHODS: Methods = Methods(__name__, {
    "cam": ".cam:CAM",
    "gradcam": ".gradcam:GradCAM",
    "gradcam++": ".gradcam_pp:GradCAMPlusPlus",
    "xgradcam": ".xgradcam:XGradCAM",
    "layercam": ".layercam:LayerCAM",
    "hirescam": ".hirescam:HiResCAM",
    "scorecam": ".scorecam:ScoreCAM",
    "eigencam": ".eigencam:EigenCAM",
})

#: ``register(key, "module:Class" or class, replace=False)``: one more method for the CLI, the
#: report and :func:`compare` (see :mod:`torchloupe.cam.registry`).
register = METHODS.register

_EXPORTS = METHODS.exports()

__all__ = [
    "CAMResult",
    "BaseCAM",
    "GradientCAM",
    *_EXPORTS,
    "METHODS",
    "register",
    "title_of",
    "compare",
    "default_layer",
    "to_map",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), submodules=True)


def title_of(method: str | type[BaseCAM]) -> str:
    """How figures and tables name a CAM method: its ``title`` (``"Grad-CAM++"``) for a class, a
    class name (``CAMResult.method``) or a :data:`METHODS` key; any other string as it is."""
    if isinstance(method, type):  # its own title: a subclass of GradCAM is not Grad-CAM
        return method.__dict__.get("title") or method.__name__
    for key, cls in METHODS.items():
        if method in (key, cls.__name__):
            return cls.title or cls.__name__
    return method


def compare(
    model: nn.Module,
    x: Tensor,
    methods: str | Sequence[str] = "all",
    layer=None,
    target=None,
    *,
    reshape: Callable[[Tensor], Tensor] | None = None,
    fuse: str = "mean",
    wrt: int | str = 0,
    output=None,
) -> dict[str, CAMResult]:
    """Several CAM methods on the same images from one forward (and one backward when any of
    them uses gradients), instead of one pass per method; ``{method key: CAMResult}`` in the order
    asked, each equal to what ``METHODS[key](model, layer)(x, target)`` returns alone.

    ``methods``: ``"all"``, a comma-separated string or a list of :data:`METHODS` keys
    (``"scorecam"`` still runs its masked forwards on top of the shared pass). ``layer``,
    ``reshape`` and ``fuse`` as for every method; the default layer is found once.
    """
    import difflib

    from ..errors import UsageError

    names = list(METHODS) if methods == "all" else (
        [m.strip() for m in methods.split(",") if m.strip()] if isinstance(methods, str) else list(methods))
    if not names:
        raise UsageError(f"no CAM methods given; expected 'all' or any of: {', '.join(METHODS)}")
    for name in names:
        if name not in METHODS:
            close = difflib.get_close_matches(str(name).lower(), list(METHODS), n=2, cutoff=0.5)
            hint = f"closest: {', '.join(close)}; " if close else ""
            raise UsageError(f"unknown CAM method {name!r}; {hint}expected any of: {', '.join(METHODS)}")
    names = list(dict.fromkeys(names))
    cams = [METHODS[name](model, layer, reshape=reshape, fuse=fuse) for name in names]
    return dict(zip(names, run_cams(cams, x, target, wrt=wrt, output=output)))
