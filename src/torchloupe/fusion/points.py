"""Find the fusion points of a model: where tensors from different branches meet.

Built on the traced graph (:func:`torchloupe.trace`): a fusion point is a node the graph marks
``merge == "fusion"``, by the one definition in :mod:`torchloupe.structure.merges` (a ``cat`` /
``stack`` / ``add`` / ``mul``... whose arguments come from different branches; kinds early / late /
iterative). This module adds what the fusion tools need: the modules feeding each argument, the
branch a hook can replace, and the channel range of each argument in a ``cat``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..probe import require_module
from ..structure.graph import ModelGraph, Node
from ..structure.merges import MERGE_OPS, ancestors, bits, learned_mask, merges
from ..structure.tracer import record


FUSION_OPS = MERGE_OPS


@dataclass(frozen=True)
class FusionInput:
    """One argument of a fusion op.

    ``producer``: name of the node that produced it (a module path, ``input:i``, or
    ``<scope>:<op>``); ``module``: the outermost module that returned this tensor (a branch one can
    hook, ``input:i`` for a model input, ``None`` when a functional op made it); ``branch_modules``:
    learned modules upstream of this argument and of no other argument; ``shape``; ``channels``:
    ``(start, stop)`` along the ``cat`` dimension (``(i, i + 1)`` for ``stack``), else ``None``.
    """

    producer: str
    module: str | None
    branch_modules: tuple[str, ...]
    shape: tuple[int, ...]
    channels: tuple[int, int] | None

    @property
    def label(self) -> str:
        """How views name this argument: its module (or ``input:i``); for a tensor a functional op
        made, the op with the nearest learned module that feeds this argument alone
        (``add ← to_shape.1``), so two ``add`` arguments of one ``cat`` can be told apart."""
        if self.module is not None:
            return self.module
        if self.branch_modules:
            return f"{self.producer} ← {self.branch_modules[-1]}"
        return self.producer


@dataclass(frozen=True)
class FusionPoint:
    """A node where branches meet. ``name`` is ``<enclosing module>:<op>``; ``kind`` is early / late / iterative."""

    name: str
    op: str
    kind: str
    inputs: tuple[FusionInput, ...]
    output_shape: tuple[int, ...] | None
    dim: int | None
    node: int  # the node's id in the traced graph (execution order)

    @property
    def branches(self) -> dict[str, str]:
        """``{module: module}`` for arguments a hook can replace (see :func:`contributions`)."""
        return {i.module: i.module for i in self.inputs if i.module is not None}


def label(node: Node) -> str:
    """``<enclosing module>:<op>`` for ops (``layer1.0:add_``), the module path for modules."""
    if node.kind == "op":
        return f"{node.module}:{node.type}" if node.module else node.type
    return node.name


def points(graph: ModelGraph) -> list[FusionPoint]:
    """The fusion points of a traced graph, in execution order (the nodes marked ``merge == "fusion"``)."""
    nodes = graph.nodes
    anc = ancestors(nodes)
    learned = learned_mask(nodes)
    input_index = {n.id: i for i, n in enumerate(graph.inputs)}
    out = []
    for m in merges(nodes, anc):
        if m.fusion is None:
            continue
        node = nodes[m.node]
        offsets = None
        if node.type in ("cat", "concat", "concatenate") and node.dim is not None:
            offsets, start = [], 0
            for shape in node.input_shapes:
                size = shape[node.dim] if len(shape) > node.dim else 0
                offsets.append((start, start + size))
                start += size
        elif node.type == "stack":
            offsets = [(i, i + 1) for i in range(len(node.input_shapes))]
        inputs = []
        for k, p in enumerate(m.args):
            if p is None:
                continue
            producer = nodes[p]
            if producer.kind == "input":
                name = module = f"input:{input_index[p]}"
            else:
                name, module = label(producer), producer.returned_by or None
            branch = tuple(dict.fromkeys(label(nodes[i]) for i in bits(m.exclusive[k] & learned)))
            inputs.append(FusionInput(producer=name, module=module, branch_modules=branch,
                                      shape=node.input_shapes[k], channels=offsets[k] if offsets else None))
        out.append(FusionPoint(name=label(node), op=node.type, kind=m.fusion, inputs=tuple(inputs),
                               output_shape=node.output_shape, dim=node.dim, node=node.id))
    return out


def find(model: nn.Module, *inputs, **kwargs) -> list[FusionPoint]:
    """The fusion points of ``model`` on one forward of ``model(*inputs, **kwargs)``, in execution order.

    Traces the model (:func:`torchloupe.trace`; eval mode, no gradients; the model comes back as it
    went in) and reads the fusion points off the graph: ``find(model, x)`` lists exactly the nodes
    ``tl.trace(model, x).fusion_points``. An error inside the model raises :class:`TraceError`.
    """
    require_module(model)
    return points(record(model, inputs, kwargs)[0])
