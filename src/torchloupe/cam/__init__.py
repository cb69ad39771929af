"""Class activation maps: which pixels made the network decide.

``tl.cam.GradCAM(model, layer=None)(x, target=None) -> CAMResult``. Every method is a small
subclass of :class:`~torchloupe.cam.base.BaseCAM`; :data:`METHODS` maps the CLI / report
names to the classes.
"""

from __future__ import annotations

from .base import BaseCAM, CAMResult, GradientCAM, default_layer, to_map
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
