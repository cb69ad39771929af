"""Feature fusion: where a multi-branch model fuses its branches, and what each branch contributes.

- :func:`find` lists the fusion points (``cat`` / ``stack`` / ``add`` / ``mul`` of separate branches or
  inputs) with the modules feeding them, channel ranges in a ``cat``, their kind (early / late /
  iterative) and join (input / branch); :func:`residuals` the residual joins (``x + f(x)``), which are
  not fusion;
- :func:`contributions` splits the target score between branches (``exact``, ``shapley``, ``ablation``,
  ``integrated_gradients``, ``gradient_x_activation``), baselines in branch-output space;
- :func:`branch_maps` Grad-CAM from each branch's channels at the fusion point;
- :func:`similarity` linear CKA (unbiased minibatch HSIC) between branch and fused features;
- :class:`ShareTracker` records shares on a probe batch over training.
"""

from .contrib import METHODS, FusionResult, contributions
from .maps import BranchMaps, branch_maps
from .points import FUSION_OPS, FusionInput, FusionPoint, branch_specs, find, residuals
from .similarity import CKAResult, fused_features, hsic1, linear_cka, similarity
from .tracking import ShareHistory, ShareTracker

__all__ = [
    "find", "residuals", "branch_specs", "FusionPoint", "FusionInput", "FUSION_OPS",
    "contributions", "FusionResult", "METHODS",
    "branch_maps", "BranchMaps",
    "similarity", "fused_features", "linear_cka", "hsic1", "CKAResult",
    "ShareTracker", "ShareHistory",
]
