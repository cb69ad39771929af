"""Find the fusion points of a model: where tensors from different branches meet.

A *fusion point* is a ``cat`` / ``stack`` / ``add`` / ``mul`` (or ``sub``, ``mean``...) node with two or
more tensor arguments produced by different nodes, where the arguments come from different
branches: at least one argument passes through a learned layer the others do not see, or at
least two arguments have producers of their own (two model inputs concatenated).

Kinds:

- ``early``: no argument has a learned layer upstream (views stacked at the input);
- ``iterative``: one of several fusion stages along the depth: another fusion point lies
  downstream of it, or upstream of it and feeding two or more of its arguments (a residual
  add after another residual add, an exchange between branches at every stage);
- ``late``: the rest (the branches' last features meet once, before the head).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ._flow import Flow, ancestors, bits, record

__all__ = ["FusionInput", "FusionPoint", "find", "FUSION_OPS"]

FUSION_OPS = frozenset(
    {"cat", "concat", "concatenate", "stack", "hstack", "vstack", "add", "iadd", "add_", "sub", "isub",
     "sub_", "mul", "imul", "mul_", "sum", "mean", "maximum", "minimum"}
)


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


@dataclass(frozen=True)
class FusionPoint:
    """A node where branches meet. ``name`` is ``<enclosing module>:<op>``; ``kind`` is early / late / iterative."""

    name: str
    op: str
    kind: str
    inputs: tuple[FusionInput, ...]
    output_shape: tuple[int, ...] | None
    dim: int | None
    node: int  # index in the recorded flow (execution order)

    @property
    def branches(self) -> dict[str, str]:
        """``{module: module}`` for arguments a hook can replace (see :func:`contributions`)."""
        return {i.module: i.module for i in self.inputs if i.module is not None}


def _points(flow: Flow) -> list[FusionPoint]:
    anc = ancestors(flow)
    nodes = flow.nodes
    learned = 0
    for n in nodes:
        if n.learned:
            learned |= 1 << n.id
    candidates = []
    for node in nodes:
        if node.type not in FUSION_OPS or node.module:
            continue
        prods = [a for a in node.args if a is not None]
        distinct = list(dict.fromkeys(prods))
        if len(distinct) < 2:
            continue
        reach = [anc[p] | (1 << p) for p in distinct]
        excl = []
        for i, r in enumerate(reach):
            others = 0
            for j, r2 in enumerate(reach):
                if j != i:
                    others |= r2
            excl.append(r & ~others)
        if not (any(e & learned for e in excl) or sum(1 for e in excl if e) >= 2):
            continue
        candidates.append((node, distinct, reach, excl))

    fusion_ids = {c[0].id for c in candidates}
    points = []
    for node, distinct, reach, excl in candidates:
        if not any(r & learned for r in reach):
            kind = "early"
        else:
            kind = "late"
            for other in fusion_ids - {node.id}:
                downstream = bool(anc[other] >> node.id & 1)
                feeds_several = bool(anc[node.id] >> other & 1) and sum(1 for r in reach if r >> other & 1) >= 2
                if downstream or feeds_several:
                    kind = "iterative"
                    break
        offsets = None
        if node.type in ("cat", "concat", "concatenate") and node.dim is not None:
            offsets, start = [], 0
            for shape in node.shapes:
                d = node.dim % len(shape)
                offsets.append((start, start + shape[d]))
                start += shape[d]
        elif node.type == "stack":
            offsets = [(i, i + 1) for i in range(len(node.shapes))]
        inputs = []
        for k, p in enumerate(node.args):
            if p is None:
                continue
            mine = excl[distinct.index(p)]
            branch = tuple(dict.fromkeys(nodes[i].name for i in bits(mine & learned)))
            producer = nodes[p]
            module = producer.name if producer.type == "input" else flow.outer.get(p)
            inputs.append(FusionInput(producer=producer.name, module=module, branch_modules=branch,
                                      shape=node.shapes[k], channels=offsets[k] if offsets else None))
        dim = None if node.dim is None else node.dim % len(node.shapes[0])
        points.append(FusionPoint(name=node.name, op=node.type, kind=kind, inputs=tuple(inputs),
                                  output_shape=node.out_shape, dim=dim, node=node.id))
    return points


def find(model: nn.Module, *inputs, **kwargs) -> list[FusionPoint]:
    """The fusion points of ``model`` on one forward of ``model(*inputs, **kwargs)``, in execution order.

    The forward runs in eval mode without gradients; the model comes back as it went in.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    return _points(record(model, inputs, kwargs))
