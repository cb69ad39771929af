"""Where tensors meet in a traced graph: the one definition of a *fusion point* and of a *residual*.

Both the Architecture view (``Node.merge`` / ``Node.join`` / ``Node.fusion``, set by
:func:`torchloupe.trace`) and :func:`torchloupe.fusion.find` use :func:`merges`, so they always say
the same thing.

A *merge* is a ``cat`` / ``stack`` / ``add`` / ``mul`` (or ``sub``, ``mean``...) op node with two or
more tensor arguments produced by different nodes that descend from the model's inputs (parameters,
buffers and constants are not branches). Every merge gets one *join* kind, in this order:

- ``"skip"``: no argument passes through a learned layer (a module with parameters, or an op reading
  a ``Parameter``) that the others do not see, and at most one argument has upstream nodes of its own
  (``h + relu(h)``). ``Node.merge == "skip"``.
- a *residual* (``Node.merge == "residual"``): one argument ``x`` and a learned function of it meet.
  An argument is *a function of* ``x`` when every path into it that avoids ``x`` carries no learned
  layer of its own (a path from a parameter-free side input such as an attention mask, or from
  layers that are themselves downstream of ``x``, does not count). Join kinds:

  - ``"residual"``: an add / sub (or ``mean``, ``maximum``...) of ``x`` with functions of ``x``
    (``x + f(x)``: ResNet, EfficientNet's MBConv, every transformer layer), and the *projection
    shortcut* ``proj(x) + f(x)``: both arguments functions of a common ``x``, one of them through at
    most two learned layers and no activation (a 1x1 conv and BatchNorm), the others through more;
  - ``"dense"``: a ``cat`` / ``stack`` of ``x`` with functions of ``x`` (DenseNet);
  - ``"gate"``: a ``mul`` of ``x`` with a function of ``x`` (squeeze-and-excitation).
- a *fusion point* (``Node.merge == "fusion"``): the rest, where separate branches or inputs meet:

  - ``"input"``: an argument sees a model input that no other argument sees (two inputs joined,
    or a branch carrying another input into this one);
  - ``"branch"``: all arguments see the same inputs, but come down separate learned branches
    (an Inception-style ``cat`` of parallel convolutions, an exchange between two streams).

Fusion points are further ``early`` / ``late`` / ``iterative`` (``Node.fusion``):

- ``early``: no argument has a learned layer upstream (views stacked at the input);
- ``iterative``: one of several fusion stages along the depth: another fusion point lies downstream
  of it, or upstream of it and feeding two or more of its arguments (an exchange between branches
  at every stage);
- ``late``: the rest (the branches' last features meet once, before the head).

Residuals are not fusion: a single-input ResNet, EfficientNet or BERT has no fusion point.
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


#: Additive ops: a join of ``x`` with ``f(x)`` by one of these is a residual (``"residual"``).
ADD_OPS = frozenset({"add", "iadd", "add_", "sub", "isub", "sub_"})
#: Multiplicative ops: ``x * g(x)`` is a gate (``"gate"``).
MUL_OPS = frozenset({"mul", "imul", "mul_"})
#: Join kinds of a fusion point / of a residual (``Node.join``).
FUSION_JOINS = ("input", "branch")
RESIDUAL_JOINS = ("residual", "dense", "gate")
# Nonlinear layers and ops: a projection shortcut passes through none of them.
_NONLINEAR = frozenset({
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid", "Tanh",
    "Hardswish", "Hardsigmoid", "Hardtanh", "Softplus", "Softsign", "Softmax", "LogSoftmax", "GLU", "Tanhshrink",
    "relu", "relu_", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid", "tanh",
    "hardswish", "hardsigmoid", "hardtanh", "softplus", "softmax", "log_softmax", "glu",
})


@dataclass(frozen=True)
class Merge:
    """One merge node. ``args``: per tensor argument, its producer when that descends from a model input,
    else ``None``; ``exclusive``: per argument, a bitset of the upstream nodes (the producer included)
    that no other argument sees (``0`` for ``None`` arguments); ``join``: ``"input" | "branch"`` (a
    fusion point), ``"residual" | "dense" | "gate"`` (a residual: ``x`` meets a learned function of
    itself) or ``"skip"``; ``fusion``: the kind of a fusion point (``"early" | "late" | "iterative"``),
    else ``None``; ``shortcut``: for a residual, the argument that is ``x`` (or its projection)."""

    node: int
    args: tuple[int | None, ...]
    exclusive: tuple[int, ...]
    fusion: str | None
    join: str = "skip"
    shortcut: int | None = None

    @property
    def merge(self) -> str:
        """``"fusion"``, ``"residual"`` or ``"skip"``: what ``Node.merge`` says."""
        return "fusion" if self.join in FUSION_JOINS else "residual" if self.join in RESIDUAL_JOINS else "skip"


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


def _side_learned(nodes: Sequence[Any], anc: list[int], q: int, x: int, learned: int, inputs: int) -> bool:
    """Whether a path into ``q`` that avoids ``x`` carries a learned node that descends from a model
    input and is not itself downstream of ``x``: then ``q`` is not a function of ``x`` alone."""
    seen = {x}
    stack = [q]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n != q and learned >> n & 1 and not anc[n] >> x & 1 and (anc[n] | 1 << n) & inputs:
            return True
        stack.extend(p for p in nodes[n].sources if p is not None and p not in seen)
    return False


def _between(anc: list[int], x: int, q: int) -> int:
    """Bitset of the nodes on paths from ``x`` (excluded) to ``q`` (included)."""
    out = 1 << q
    for n in bits(anc[q]):
        if anc[n] >> x & 1:
            out |= 1 << n
    return out


def _residual(nodes: Sequence[Any], anc: list[int], op: str, distinct: list[int], learned: int,
              inputs: int, descended: int) -> tuple[str, int] | None:
    """``(join, shortcut)`` when the merge of ``distinct`` producers is a residual, else ``None``."""
    # x + f(x) (and cat([x, f(x)]), x * g(x)): one argument is upstream of all others, and they are
    # functions of it.
    for x in distinct:
        others = [q for q in distinct if q != x]
        if all(anc[q] >> x & 1 and not _side_learned(nodes, anc, q, x, learned, inputs) for q in others):
            kind = "dense" if op in CAT_OPS else "gate" if op in MUL_OPS else "residual"
            return kind, x
    if op not in ADD_OPS:
        return None
    # proj(x) + f(x): the nearest common ancestor x feeds every argument alone; one argument reaches
    # it through at most two learned layers and no activation, the others through more.
    common = anc[distinct[0]]
    for q in distinct[1:]:
        common &= anc[q]
    common &= descended
    if not common:
        return None
    x = common.bit_length() - 1
    if any(_side_learned(nodes, anc, q, x, learned, inputs) for q in distinct):
        return None
    depth = {q: bin(_between(anc, x, q) & learned).count("1") for q in distinct}
    for s in distinct:
        path = _between(anc, x, s)
        linear = not any(nodes[n].type in _NONLINEAR for n in bits(path))
        if linear and depth[s] <= 2 and all(depth[q] > depth[s] for q in distinct if q != s):
            return "residual", s
    return None


def merges(nodes: Sequence[Any], anc: list[int] | None = None) -> list[Merge]:
    """Every merge node of a traced graph's ``nodes`` (:class:`~torchloupe.structure.graph.Node`), in order,
    with its join kind (see the module's docstring)."""
    anc = ancestors(nodes) if anc is None else anc
    inputs = 0
    for n in nodes:
        if n.kind == "input":
            inputs |= 1 << n.id
    learned = learned_mask(nodes)
    descended = 0  # nodes downstream of a model input (or inputs themselves)
    for n in nodes:
        if (anc[n.id] | 1 << n.id) & inputs:
            descended |= 1 << n.id
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
        join, shortcut = "skip", None
        if any(e & learned for e in excl.values()) or sum(1 for e in excl.values() if e) >= 2:
            res = _residual(nodes, anc, node.type, distinct, learned, inputs, descended)
            if res is not None:
                join, shortcut = res
            else:
                join = "input" if any(e & inputs for e in excl.values()) else "branch"
        found.append((node, args, excl, reach, join, shortcut))
    fusion_ids = [m[0].id for m in found if m[4] in FUSION_JOINS]
    out = []
    for node, args, excl, reach, join, shortcut in found:
        kind = None
        if join in FUSION_JOINS:
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
                         fusion=kind, join=join, shortcut=shortcut))
    return out
