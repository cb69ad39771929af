"""Class activation maps: which pixels made the network decide.

``tl.cam.GradCAM(model, layer=None)(x, target=None) -> CAMResult``. Every method is a small
subclass of :class:`~torchloupe.cam.base.BaseCAM` in a file of its own, registered by one line
of :data:`METHODS` (key -> ``"module:Class"``): the CLI (``loupe cam --method``), the report and
the tests read the registry, and ``tl.cam.<Class>`` resolves from it on first use. Methods
defined elsewhere join with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

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
    "Comparison",
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


class Comparison(dict):
    """What :func:`compare` returns: ``{method key: CAMResult}`` of the methods that ran, in the order
    asked (a plain ``dict`` otherwise), and :attr:`skipped`: ``{method key: why it does not apply}``."""

    def __init__(self, results=(), skipped=None):
        super().__init__(results)
        self.skipped: dict[str, str] = dict(skipped or {})

    def __repr__(self) -> str:
        return f"Comparison({dict.__repr__(self)}, skipped={self.skipped!r})"

    def __reduce__(self):
        return (type(self), (dict(self), self.skipped))


def compare(
    model: nn.Module,
    x: Tensor,
    methods: str | Sequence[str] = "all",
    layer=None,
    target=None,
    *,
    reshape: Callable[[Tensor], Tensor] | None = None,
    fuse: str = "mean",
    wrt: int | str | None = None,
    output=None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Comparison:
    """Several CAM methods on the same images from one forward (and one backward when any of
    them uses gradients), instead of one pass per method; ``{method key: CAMResult}`` in the order
    asked, each equal to what ``METHODS[key](model, layer)(x, target)`` returns alone.

    ``methods``: ``"all"``, a comma-separated string or a list of :data:`METHODS` keys
    (``"scorecam"`` still runs its masked forwards on top of the shared pass, and warns with their
    number up front when there are many). ``layer``, ``reshape`` and ``fuse`` as for every method; the
    default layer is found once. ``options``: keyword arguments per method key, e.g.
    ``{"scorecam": {"max_masks": 64, "progress": True}}``.

    A method that cannot apply here (CAM on a model without a global-average-pooling + ``nn.Linear``
    head, or with a callable target; any method raising
    :class:`~torchloupe.errors.UnsupportedModelError` or :class:`~torchloupe.errors.TargetError` on its
    own) is left out of the result and named with the reason in ``result.skipped``. When none
    applies, that error is raised.
    """
    import difflib

    from ..errors import TargetError, UnsupportedModelError, UsageError
    from ..targets import Target

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
    options = dict(options or {})
    unknown = [k for k in options if k not in names]
    if unknown:
        raise UsageError(f"options for {', '.join(map(repr, unknown))}, which is not among the methods compared "
                         f"({', '.join(names)})")
    skipped: dict[str, str] = {}
    if Target.of(target, output).is_callable:
        for name in names:
            if METHODS[name].needs_class_indices:
                skipped[name] = (f"{METHODS[name].__name__} needs class-index targets (it reads the classifier's row "
                                 f"of the class), not a callable")
    cams = {name: METHODS[name](model, layer, reshape=reshape, fuse=fuse, **dict(options.get(name, {})))
            for name in names if name not in skipped}

    def guarded(name: str, cam: BaseCAM):
        method = cam.cam_map

        def cam_map(acts, grads, run):  # one method that cannot apply must not sink the others
            try:
                return method(acts, grads, run)
            except (UnsupportedModelError, TargetError) as exc:
                skipped[name] = str(exc)
                return acts.new_zeros((acts.shape[0], *acts.shape[2:]))

        cam.cam_map = cam_map  # this call's own CAM object, never the model
        return cam

    if not cams:
        raise TargetError("; ".join(f"{k}: {v}" for k, v in skipped.items()))
    results = run_cams([guarded(k, c) for k, c in cams.items()], x, target, wrt=wrt, output=output)
    ran = {k: r for k, r in zip(cams, results) if k not in skipped}
    if not ran:
        raise UnsupportedModelError("no CAM method applies: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return Comparison(ran, {k: skipped[k] for k in names if k in skipped})
