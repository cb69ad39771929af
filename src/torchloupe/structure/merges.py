"""Where branches meet in a traced graph: the one definition of a *fusion point*.

Both the Architecture view (``Node.merge`` / ``Node.fusion``, set by :func:`torchloupe.trace`) and
:func:`torchloupe.fusion.find` use :func:`merges`, so they always say the same thing.

A *merge* is a ``cat`` / ``stack`` / ``add`` / ``mul`` (or ``sub``, ``mean``...) op node with two or
more tensor arguments produced by different nodes that descend from the model's inputs (parameters,
buffers and constants are not branches). It is a *fusion point* when its arguments come from
different branches: at least one argument passes through a learned layer (a module with parameters,
or an op reading a ``Parameter``) that the other arguments do not see, or at least two arguments have
upstream nodes of their own (two model inputs concatenated). The other merges are ``"skip"``:
combinations of one branch with itself (``h + relu(h)``).

Kinds of fusion points:

- ``early``: no argument has a learned layer upstream (views stacked at the input);
- ``iterative``: one of several fusion stages along the depth: another fusion point lies downstream
  of it, or upstream of it and feeding two or more of its arguments (a residual add after another
  residual add, a dense concatenation, an exchange between branches at every stage);
- ``late``: the rest (the branches' last features meet once, before the head).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


MERGE_OPS = frozenset(
    {"cat", "concat", "concatenate", "stack", "hstack", "vstack", "add", "iadd", "add_", "sub", "isub",
     "sub_", "mul", "imul", "mul_", "sum", "mean", "maximum", "minimum"}
)
#: Ops whose ``dim`` the tracer records (``Node.dim``).
CAT_OPS = frozenset({"cat", "concat", "concatenate", "stack"})


@dataclass(frozen=True)
class Merge:
    """One merge node. ``args``: per tensor argument, its producer when that descends from a model input,
    else ``None``; ``exclusive``: per argument, a bitset of the upstream nodes (the producer included)
    that no other argument sees (``0`` for ``None`` arguments); ``fusion``: the kind of a fusion point
    (``"early" | "late" | "iterative"``) or ``None`` for a skip."""

    node: int
    args: tuple[int | None, ...]
    exclusive: tuple[int, ...]
    fusion: str | None


def bits(value: int) -> list[int]:
    """Indices of the set bits of ``value``, ascending."""
    out = []
    while value:
        low = value & -value
        out.append(low.bit_length() - 1)
        value ^= low
    return out


def ancestors(nodes: Sequence[Any]) -> list[int]:
    """Bitset (a Python int) of the strict ancestors of every node, following ``node.sources``.

    Node ids are topological (a producer is recorded before its consumers).
    """
    anc = [0] * len(nodes)
    for node in nodes:
        acc = 0
        for p in node.sources:
            if p is not None and p != node.id:
                acc |= anc[p] | (1 << p)
        anc[node.id] = acc
    return anc


def learned_mask(nodes: Sequence[Any]) -> int:
    """Bitset of the learned nodes: modules with parameters, ops that read a ``Parameter``."""
    mask = 0
    for n in nodes:
        if (n.kind == "module" and n.total_params > 0) or (n.kind == "op" and any(
                p is not None and nodes[p].kind == "param" and nodes[p].type == "Parameter" for p in n.sources)):
            mask |= 1 << n.id
    return mask


def merges(nodes: Sequence[Any], anc: list[int] | None = None) -> list[Merge]:
    """Every merge node of a traced graph's ``nodes`` (:class:`~torchloupe.structure.graph.Node`), in order."""
    anc = ancestors(nodes) if anc is None else anc
    inputs = 0
    for n in nodes:
        if n.kind == "input":
            inputs |= 1 << n.id
    learned = learned_mask(nodes)
    found = []
    for node in nodes:
        if node.kind != "op" or node.type not in MERGE_OPS:
            continue
        args = tuple(p if p is not None and ((anc[p] | 1 << p) & inputs) else None for p in node.sources)
        distinct = list(dict.fromkeys(p for p in args if p is not None))
        if len(distinct) < 2:
            continue
        reach = {p: anc[p] | (1 << p) for p in distinct}
        excl = {}
        for p in distinct:
            others = 0
            for q in distinct:
                if q != p:
                    others |= reach[q]
            excl[p] = reach[p] & ~others
        fusion = any(e & learned for e in excl.values()) or sum(1 for e in excl.values() if e) >= 2
        found.append((node, args, excl, reach, fusion))
    fusion_ids = [m[0].id for m in found if m[4]]
    out = []
    for node, args, excl, reach, fusion in found:
        kind = None
        if fusion:
            if not any(r & learned for r in reach.values()):
                kind = "early"
            else:
                kind = "late"
                for other in fusion_ids:
                    if other == node.id:
                        continue
                    downstream = bool(anc[other] >> node.id & 1)
                    feeds_several = bool(anc[node.id] >> other & 1) and sum(
                        1 for r in reach.values() if r >> other & 1) >= 2
                    if downstream or feeds_several:
                        kind = "iterative"
                        break
        out.append(Merge(node=node.id, args=args, exclusive=tuple(excl[p] if p is not None else 0 for p in args),
                         fusion=kind))
    return out
