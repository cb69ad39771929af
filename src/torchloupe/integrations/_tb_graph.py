"""TensorBoard's Graphs tab for any model: ``SummaryWriter.add_graph`` where it works, else our graph.

``SummaryWriter.add_graph`` runs ``torch.jit.trace``: it rejects dict outputs and keyword
inputs, and bakes data-dependent control flow in silently. :func:`add_graph` traces with
torchloupe first; when the model reads tensor values to choose its path, takes keyword
inputs, or ``add_graph`` raises, it writes torchloupe's :class:`ModelGraph` as a TensorBoard
``GraphDef`` instead (module paths as name scopes, shapes as ``_output_shapes``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .. import probe
from ..errors import InputTypeError, UnsupportedModelError, UsageError, require
from ..structure.graph import ModelGraph


def _scoped_name(node) -> str:
    if node.kind in ("input", "output"):
        return f"{node.kind}/{node.name}".replace(".", "_")
    parts: list[str] = []
    prev = ""
    for container in node.scope:
        parts.append(container[len(prev) + 1:] if prev and container.startswith(prev + ".") else container)
        prev = container
    if node.kind == "op":
        leaf = f"{node.name}_{node.id}"
    else:
        full = node.name
        leaf = full[len(prev) + 1:] if prev and full.startswith(prev + ".") else (full or node.type)
        if node.call:
            leaf = f"{leaf}_call{node.call + 1}"
        if node.kind == "param":
            leaf = f"{leaf}_{node.id}"
    return "/".join([*parts, leaf.replace("/", "_")])


def graph_def(graph: ModelGraph):
    """``(GraphDef, RunMetadata)`` of ``graph`` as ``SummaryWriter``'s file writer takes it."""
    require("tensorboard", "tensorboard")
    from tensorboard.compat.proto.attr_value_pb2 import AttrValue
    from tensorboard.compat.proto.config_pb2 import RunMetadata
    from tensorboard.compat.proto.graph_pb2 import GraphDef
    from tensorboard.compat.proto.node_def_pb2 import NodeDef
    from tensorboard.compat.proto.step_stats_pb2 import DeviceStepStats, StepStats
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.compat.proto.versions_pb2 import VersionDef

    names = {n.id: _scoped_name(n) for n in graph.nodes}
    preds: dict[int, list[int]] = {}
    for s, d in graph.edges:
        preds.setdefault(d, []).append(s)
    defs = []
    for n in graph.nodes:
        info = [f"type: {n.type}"]
        if n.total_params:
            info.append(f"params: {n.total_params:,}")
        if n.macs:
            info.append(f"mult-adds: {n.macs:,}")
        if n.extra:
            info.append(n.extra)
        attr = {"attr": AttrValue(s=" | ".join(info).encode("utf-8"))}
        if n.output_shapes:
            attr["_output_shapes"] = AttrValue(list=AttrValue.ListValue(
                shape=[TensorShapeProto(dim=[TensorShapeProto.Dim(size=d) for d in s]) for s in n.output_shapes]))
        op = {"input": "IO Node", "output": "IO Node"}.get(n.kind, n.type)
        defs.append(NodeDef(name=names[n.id], op=op, input=[names[p] for p in preds.get(n.id, [])], attr=attr))
    meta = RunMetadata(step_stats=StepStats(dev_stats=[DeviceStepStats(device="/device:CPU:0")]))
    return GraphDef(node=defs, versions=VersionDef(producer=22)), meta


def add_graph(writer, model: nn.Module, *inputs: Any, method: str = "auto", **kwargs: Any) -> str:
    """Write the graph of ``model(*inputs, **kwargs)`` to the ``SummaryWriter`` ``writer``.

    ``method``: ``"auto"`` (``SummaryWriter.add_graph`` when it can show this model faithfully,
    else torchloupe's graph), ``"torch"`` (only ``add_graph``: where it cannot trace the model, an
    :class:`~torchloupe.errors.UnsupportedModelError` in one line, the cause chained) or
    ``"torchloupe"``. Returns the method used: ``"torch"`` or ``"torchloupe"``.
    """
    from ..structure.tracer import trace

    if method not in ("auto", "torch", "torchloupe"):
        raise UsageError(f"method must be 'auto', 'torch' or 'torchloupe', got {method!r}")
    if not hasattr(writer, "_get_file_writer"):
        raise InputTypeError(f"writer must be a torch.utils.tensorboard.SummaryWriter, got {type(writer).__name__}")
    graph = None
    if method == "auto":
        graph = trace(model, *inputs, **kwargs)
        plain = not kwargs and all(isinstance(x, Tensor) for x in inputs)
        if plain and not graph.branches and all(o.name == "output" or o.name.startswith("output[")
                                                 for o in graph.outputs):
            if _torch_add_graph(writer, model, inputs, raise_errors=False):
                return "torch"
    elif method == "torch":
        _check_traceable(model)
        _torch_add_graph(writer, model, inputs, raise_errors=True)
        return "torch"
    if graph is None:
        graph = trace(model, *inputs, **kwargs)
    writer._get_file_writer().add_graph(graph_def(graph))
    writer.flush()
    return "torchloupe"


def _check_traceable(model: nn.Module) -> None:
    """What ``torch.jit.trace`` refuses, said before it runs: modules with backward hooks."""
    probe.require_module(model, "the model to graph")
    hooked = [name or type(model).__name__ for name, m in model.named_modules()
              if getattr(m, "_backward_hooks", None) or getattr(m, "_backward_pre_hooks", None)]
    if hooked:
        raise UnsupportedModelError(
            f"SummaryWriter.add_graph (torch.jit.trace) cannot trace {type(model).__name__}: backward hooks on "
            f"{', '.join(repr(n) for n in hooked[:3])}{' ...' if len(hooked) > 3 else ''}; use method='auto' or "
            f"'torchloupe' for torchloupe's graph")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _torch_add_graph(writer, model: nn.Module, inputs: tuple, raise_errors: bool) -> bool:
    import contextlib
    import io
    import warnings

    # eval=False: TensorBoard's own tracer records the model in the mode the user gave it
    with probe.session(model, eval=False):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                writer.add_graph(model, inputs[0] if len(inputs) == 1 else tuple(inputs))
        except Exception as exc:  # torch.jit.trace raises many kinds; auto mode falls back to our graph
            if raise_errors:
                raise UnsupportedModelError(
                    f"SummaryWriter.add_graph (torch.jit.trace) failed on {type(model).__name__}: "
                    f"{type(exc).__name__}: {_first_line(exc)}; method='auto' or 'torchloupe' draws torchloupe's "
                    f"graph instead") from exc
            return False
    writer.flush()
    return True
