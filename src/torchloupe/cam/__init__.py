"""Class activation maps: which pixels made the network decide.

``tl.cam.GradCAM(model, layer=None)(x, target=None) -> CAMResult``. Every method is a small
subclass of :class:`~torchloupe.cam.base.BaseCAM`; :data:`METHODS` maps the CLI / report
names to the classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from .base import BaseCAM, CAMResult, GradientCAM, default_layer, run_cams, to_map
from .cam import CAM
from .eigencam import EigenCAM
from .gradcam import GradCAM
from .gradcam_pp import GradCAMPlusPlus
from .hirescam import HiResCAM
from .layercam import LayerCAM
from .scorecam import ScoreCAM
from .xgradcam import XGradCAM

__all__ = [
    "CAMResult",
    "BaseCAM",
    "GradientCAM",
    "CAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "HiResCAM",
    "ScoreCAM",
    "EigenCAM",
    "METHODS",
    "title_of",
    "compare",
    "default_layer",
    "to_map",
]

METHODS: dict[str, type[BaseCAM]] = {
    "cam": CAM,
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "hirescam": HiResCAM,
    "scorecam": ScoreCAM,
    "eigencam": EigenCAM,
}


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
