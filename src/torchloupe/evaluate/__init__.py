"""Measures of whether an explanation is right: one module per metric family.

All metrics take saliency maps ``(B, H, W)`` (any resolution; resized to the input with
``F.interpolate``), run their perturbed forwards in batches sized to a memory budget on the
model's device, and return per-sample tensors.

- :func:`deletion` / :func:`insertion` (Petsiuk et al. 2018, RISE): the target's softmax
  probability as the most salient pixels are removed (or revealed onto a blurred copy);
  area under the curve per sample by the trapezoid rule on ``[0, 1]`` as in the RISE code.
  :func:`deletion_curve` / :func:`insertion_curve` return the curves too.
- :func:`pointing_game` (Zhang et al. 2016; TorchRay's definition): hit when the map's
  maximum lies within ``tolerance`` pixels of the object mask.
- :func:`average_drop`, :func:`increase_in_confidence` (Chattopadhay et al. 2018): the
  target's probability on the image multiplied by the map, against the original.
- :func:`road` (Rong et al. 2022): remove the most (MoRF) or least (LeRF) relevant pixels
  and impute them by noisy linear imputation, solved batched by conjugate gradients.
- :func:`randomization_check` (Adebayo et al. 2018): re-initialise layers from the top down
  on a deep copy of the model (never the user's) and measure how similar the explanation stays.

Every metric that runs the model takes what ``model(...)`` takes (a tensor, a tuple of positional
inputs, a dict of keyword inputs): ``wrt`` names the image input it perturbs (default 0), the
other inputs are kept as they are; ``output`` selects the ``(N, classes)`` scores of a model that
returns a dict, a tuple or a Hugging Face ``ModelOutput`` (:mod:`torchloupe.targets`). Targets are
class indices or ``None`` (the predicted class); the models run in a :func:`torchloupe.probe.session`.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "CurveResult": "perturbation",
    "deletion": "perturbation",
    "insertion": "perturbation",
    "deletion_curve": "perturbation",
    "insertion_curve": "perturbation",
    "gaussian_blur": "perturbation",
    "pointing_game": "pointing",
    "average_drop": "confidence",
    "increase_in_confidence": "confidence",
    "road": "remove_and_debias",
    "ROADResult": "remove_and_debias",
    "randomization_check": "randomization",
    "RandomizationResult": "randomization",
    "layer_groups": "randomization",
    "spearman": "randomization",
    "ssim": "randomization",
    "DEFAULT_MEMORY_BUDGET": "batching",
}

# Helpers reachable as attributes but not entry points of their own.
_HELPERS = ("layer_groups", "spearman", "ssim", "DEFAULT_MEMORY_BUDGET")
__all__ = [n for n in _EXPORTS if n not in _HELPERS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), submodules=True)
