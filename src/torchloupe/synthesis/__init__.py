"""Maximally activating inputs: synthesized (:func:`maximize`) and found in a dataset (:func:`exemplars`).

::

    res = tl.synthesis.maximize(model, ["layer3:0", "layer3:1"], param="fft", steps=256)
    res.images, res.final_activation, res.baseline_activation, res.failed
    ex = tl.synthesis.exemplars(model, dataset, layer="layer3", k=9)
    ex.indices, ex.values, ex.locations, ex.crops
"""

from __future__ import annotations

from . import objectives, params, transforms
from .exemplars import ExemplarResult, exemplars, merge
from .maximize import SynthesisResult, maximize, redirected_relu
from .objectives import Objective
from .params import InputDomain

__all__ = [
    "maximize",
    "exemplars",
    "merge",
    "SynthesisResult",
    "ExemplarResult",
    "Objective",
    "InputDomain",
    "objectives",
    "params",
    "transforms",
    "redirected_relu",
]
