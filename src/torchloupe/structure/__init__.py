"""Model structure: trace any model into a :class:`ModelGraph` and show it.

``trace(model, *inputs, **kwargs)`` records one forward pass (module hooks plus a
torch-function handler, both from :mod:`torchloupe.probe`; no ``torch.fx``) into a plain
:class:`ModelGraph` and exports it to ONNX (:func:`export_onnx`). Its views live in the render
layer (:mod:`torchloupe.render.graph`): ``g.summary()``, ``g.to_svg()``, ``g.to_html()`` and
``g.to_dot()`` are conveniences that call into it; TensorBoard's Graphs tab is
:func:`torchloupe.integrations.tensorboard.add_graph`.
"""

from __future__ import annotations

from .graph import Branch, Edge, ModelGraph, ModuleInfo, Node
from .onnx import export_onnx
from .tracer import OPAQUE_TYPES, trace

__all__ = ["trace", "ModelGraph", "Node", "Edge", "ModuleInfo", "Branch", "OPAQUE_TYPES", "export_onnx"]
