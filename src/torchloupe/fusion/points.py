"""Find the fusion points of a model: where separate branches or separate inputs meet.

Built on the traced graph (:func:`torchloupe.trace`): a fusion point is a node the graph marks
``merge == "fusion"``, by the one definition in :mod:`torchloupe.structure.merges` (a ``cat`` /
``stack`` / ``add`` / ``mul``... whose arguments come from separate inputs, ``join == "input"``, or
separate learned branches, ``join == "branch"``; kinds early / late / iterative). Residual joins, a
tensor meeting a learned function of itself (``x + f(x)`` in a ResNet, EfficientNet or BERT, a
DenseNet concatenation, a squeeze-and-excitation gate), are not fusion points: :func:`residuals`
lists them. This module adds what the fusion tools need: the modules feeding each argument, the
branch a hook can replace, and the channel range of each argument in a ``cat``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import InputError
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
    ``(start, stop)`` along the ``cat`` dimension (``(i, i + 1)`` for ``stack``), else ``None``;
    ``through``: for a tensor a functional op made, the module whose output it is through ops of
    that one tensor (``self.cnn1(x1).view(B, -1)`` -> ``"cnn1"``), else ``None``.
    """

    producer: str
    module: str | None
    branch_modules: tuple[str, ...]
    shape: tuple[int, ...]
    channels: tuple[int, int] | None
    through: str | None = None

    @property
    def own_branch(self) -> bool:
        """Whether this argument comes down a branch of its own: a model input, or a path with a
        learned layer no other argument sees. The skip argument of a residual ``x + f(x)`` has none
        (everything upstream of ``x`` also feeds ``f(x)``)."""
        return bool(self.branch_modules) or (self.module or "").startswith("input:")

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
    """A node where branches meet. ``name`` is ``<enclosing module>:<op>``; ``kind`` is early / late /
    iterative; ``join`` is ``"input"`` (an argument carries a model input the others do not see) or
    ``"branch"`` (separate learned branches of the same inputs). :func:`residuals` gives the same
    record for residual joins, with ``kind`` ``None`` and ``join`` ``"residual" | "dense" | "gate"``."""

    name: str
    op: str
    kind: str | None
    inputs: tuple[FusionInput, ...]
    output_shape: tuple[int, ...] | None
    dim: int | None
    node: int  # the node's id in the traced graph (execution order)
    join: str = "branch"

    @property
    def branches(self) -> dict[str, str]:
        """``{module: module}`` for arguments a hook can replace (see :func:`contributions`)."""
        return {i.module: i.module for i in self.inputs if i.module is not None}

    @property
    def joins_branches(self) -> bool:
        """Whether two or more arguments come down branches of their own (:attr:`FusionInput.own_branch`):
        separate inputs or branches meeting, not a residual ``x + f(x)`` (one branch added to its own input)."""
        return sum(1 for i in self.inputs if i.own_branch) >= 2


def branch_specs(model: nn.Module, found: list[FusionPoint]) -> tuple[dict[str, str], FusionPoint] | None:
    """``({name: spec}, point)``: the branches of the last fusion point in ``found`` that joins separate
    branches (:attr:`FusionPoint.joins_branches`; residual adds are passed over), as
    :func:`~torchloupe.fusion.contributions` takes them. Each argument with a branch of its own gives
    the module that returned it (``"input:i"`` for a model input) or, when a functional op made it, the
    module it comes from through ops of that one tensor (a ``view`` after the branch), else the nearest
    learned module of its branch; the name is the spec. ``None`` when no
    point has two such arguments."""
    modules = dict(model.named_modules())
    for p in reversed(found):
        if not p.joins_branches:
            continue
        specs: dict[str, str] = {}
        for i in p.inputs:
            if not i.own_branch:
                continue
            spec = i.module or i.through or next((m for m in reversed(i.branch_modules) if m in modules and m), None)
            if spec is not None and spec not in specs:
                specs[spec] = spec
        if len(specs) >= 2:
            return specs, p
    return None


def label(node: Node) -> str:
    """``<enclosing module>:<op>`` for ops (``layer1.0:add_``), the module path for modules."""
    if node.kind == "op":
        return f"{node.module}:{node.type}" if node.module else node.type
    return node.name


def _through_ops(nodes, p: int, limit: int = 32) -> str | None:
    """The module whose output node ``p`` is, through ops that take that one tensor (views, reshapes,
    activations, scaling by constants or parameters); ``None`` when an op takes two or more."""
    q = nodes[p]
    for _ in range(limit):
        if q.kind != "op" or q.returned_by:
            break
        srcs = {s for s in q.sources if s is not None and nodes[s].kind != "param"}
        if len(srcs) != 1:
            return None
        q = nodes[srcs.pop()]
    return q.returned_by or None


def points(graph: ModelGraph, merge: str = "fusion") -> list[FusionPoint]:
    """The fusion points of a traced graph, in execution order (the nodes marked ``merge == "fusion"``);
    with ``merge="residual"``, its residual joins instead (``graph.residuals``)."""
    if merge not in ("fusion", "residual"):
        raise InputError(f"merge must be 'fusion' or 'residual', got {merge!r}")
    nodes = graph.nodes
    anc = ancestors(nodes)
    learned = learned_mask(nodes)
    input_index = {n.id: i for i, n in enumerate(graph.inputs)}
    out = []
    for m in merges(nodes, anc):
        if m.merge != merge:
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
                                      shape=node.input_shapes[k], channels=offsets[k] if offsets else None,
                                      through=None if module is not None else _through_ops(nodes, p)))
        out.append(FusionPoint(name=label(node), op=node.type, kind=m.fusion, inputs=tuple(inputs),
                               output_shape=node.output_shape, dim=node.dim, node=node.id, join=m.join))
    return out


def find(model: nn.Module, *inputs, **kwargs) -> list[FusionPoint]:
    """The fusion points of ``model`` on one forward of ``model(*inputs, **kwargs)``, in execution order.

    Traces the model (:func:`torchloupe.trace`; eval mode, no gradients; the model comes back as it
    went in) and reads the fusion points off the graph: ``find(model, x)`` lists exactly the nodes
    ``tl.trace(model, x).fusion_points``: joins of separate branches or inputs, never a residual add
    (:func:`residuals` lists those). An error inside the model raises :class:`TraceError`.
    """
    require_module(model)
    return points(record(model, inputs, kwargs)[0])


def residuals(model: nn.Module, *inputs, **kwargs) -> list[FusionPoint]:
    """The residual joins of ``model`` on one forward, in execution order: where a tensor meets a learned
    function of itself (``x + f(x)`` and projection shortcuts, ``join == "residual"``; ``cat([x, f(x)])``,
    ``"dense"``; ``x * g(x)``, ``"gate"``), exactly the nodes ``tl.trace(model, x).residuals``. Each
    record is a :class:`FusionPoint` with ``kind`` ``None``. Not fusion: :func:`find` leaves them out."""
    require_module(model)
    return points(record(model, inputs, kwargs)[0], merge="residual")
