"""Model structure: trace any model into a :class:`ModelGraph` and show it.

``trace(model, *inputs, **kwargs)`` records one forward pass (module hooks plus a
``TorchFunctionMode``, no ``torch.fx``); the graph prints as a table
(``g.summary()``), draws itself with torchloupe's own layered layout
(``g.to_svg()``, ``g.to_html()``, no Graphviz needed), writes ``dot`` text, and
goes to TensorBoard (:func:`torchloupe.structure.tensorboard.add_graph`) or ONNX
(:func:`export_onnx`).
"""

from __future__ import annotations

from .graph import Branch, Edge, ModelGraph, ModuleInfo, Node
from .onnx import export_onnx
from .tracer import OPAQUE_TYPES, trace

__all__ = ["trace", "ModelGraph", "Node", "Edge", "ModuleInfo", "Branch", "OPAQUE_TYPES", "export_onnx"]
