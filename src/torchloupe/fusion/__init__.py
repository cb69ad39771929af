from .contrib import METHODS, FusionResult, contributions
from .points import FUSION_OPS, FusionInput, FusionPoint, find
