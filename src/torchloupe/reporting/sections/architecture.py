"""Report section "Architecture": the interactive graph of the model, collapsed to a legible depth.

Computed as :class:`ArchitectureData` (the traced :class:`~torchloupe.structure.graph.ModelGraph`,
the depth it is shown at, the top-level modules, where the parameters are and where branches
meet), drawn by its ``render()``; options: :class:`ArchitectureOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from ...errors import UsageError
from ..base import Finding, Html, NotApplicable, SectionData, Subject, Table, Text, register
from ..options import SectionOptions, check_int

BOXES = 60


@dataclass(frozen=True)
class ArchitectureOptions(SectionOptions):
    """``boxes``: the most boxes the graph shows at first: deeper containers are collapsed until it
    fits (click a box to expand it); ``depth``: collapse at this container depth instead (0: the
    top-level modules; None: the deepest that fits ``boxes``)."""

    boxes: int = BOXES
    depth: int | None = None

    def check(self) -> None:
        check_int("architecture", "boxes", self.boxes)
        if self.depth is not None and (not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 0):
            raise UsageError(f"architecture option depth={self.depth!r}: expected None (fit boxes) or an integer >= 0")


@dataclass
class ArchitectureData(SectionData):
    """The traced ``graph`` of one sample (:class:`~torchloupe.structure.graph.ModelGraph`), the
    ``depth`` it is shown collapsed to (None: fully expanded), the top-level modules as ``rows``
    (module, type, output shape, params, mult-adds), ``weighted``: every module with parameters of
    its own as ``(name, type, parameters)``, largest first, and ``groups`` the top-level modules'
    ``(name, parameters)``, largest first."""

    section: ClassVar[str] = "architecture"
    graph: Any
    depth: int | None
    rows: list[list[Any]] = field(default_factory=list)
    weighted: list[tuple[str, str, int]] = field(default_factory=list)
    groups: list[tuple[str, int]] = field(default_factory=list)

    def render(self) -> list:
        from ...render.graph.html import fragment
        from ...render.graph.text import notes

        g = self.graph
        graph = Html(fragment(g, self.depth))
        blocks = [
            Text(f"{g.model_type}: {g.total_params:,} parameters, {g.total_macs:,} mult-adds per sample, "
                 f"{len(g.nodes)} nodes and {len(g.edges)} edges traced from one forward pass"
                 + ("" if self.depth is None else f"; shown collapsed to depth {self.depth} (click a box to expand it)")
                 + "."),
            graph,
        ]
        table = None
        if self.rows:
            table = Table(["module", "type", "output shape", "params", "mult-adds"], self.rows,
                          caption="Top-level modules (one sample)")
            blocks.append(table)
        joins = joins_text(g)
        if joins:
            blocks.append(Text(joins))
        lines = notes(g)
        if lines:
            blocks.append(Text("Noticed while tracing: " + "; ".join(lines)))
        blocks.append(Finding(self.parameters_sentence(), table if table is not None and self.groups else graph))
        blocks.append(Finding(joins_finding(g), graph))
        return blocks

    def parameters_sentence(self) -> str:
        """How many parameters, in how many layers, and where most of them are."""
        g, total = self.graph, self.graph.total_params
        if total == 0:
            return f"{g.model_type} has no parameters: nothing it computes was learned, so there is no weight to inspect."
        layers = [w for w in self.weighted if w[0]]
        own = sum(c for n, _, c in self.weighted if not n)
        text = f"{g.model_type} has {total:,} parameters"
        if own and "" in g.modules and g.modules[""].leaf:  # the model is one layer (nn.Linear itself)
            return text + f", all in this one {g.model_type} layer."
        if not layers:
            return text + " and no layer with weights: the model holds them itself (its own nn.Parameter tensors)."
        text += f" in {_plural(len(layers), 'layer')} with weights" + (
            f" (and {own:,} held by the model itself)" if own else "")
        name, kind, count = layers[0]
        if len(layers) == 1:
            return text + f", {'all' if not own else 'the rest'} in {name} ({kind})."
        group, in_group = self.groups[0] if self.groups else (name, count)
        if group != name and in_group > count:
            where = "its" if name.startswith(group + ".") else "the"
            text += (f"; {group} holds {_share(in_group, total)} of them, and {where} largest layer, {name} ({kind}), "
                     f"alone holds {_share(count, total)} ({count:,})")
        else:
            text += f"; the largest layer, {name} ({kind}), holds {count:,} ({_share(count, total)})"
        return text + "."


def _share(part: int, total: int) -> str:
    """A share in whole percent, with a decimal where rounding would say 100% of a part or 0% of something."""
    p = 100 * part / total if total else 0.0
    if part == total or part == 0:
        return f"{p:.0f}%"
    return f"{p:.0f}%" if 10 <= p < 99.5 else f"{p:.1f}%" if 0.05 <= p < 99.95 else f"{p:.2f}%"


def _first_sample(inputs):
    """The first sample of a batch (tensor, tuple of tensors or dict of tensors): one trace is enough."""
    if isinstance(inputs, Tensor):
        return (inputs[:1],), {}
    if isinstance(inputs, dict):
        return (), {k: v[:1] if isinstance(v, Tensor) and v.dim() else v for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return tuple(v[:1] if isinstance(v, Tensor) and v.dim() else v for v in inputs), {}
    return None


_RESIDUAL_WORDS = {"residual": ("residual add", "x + f(x)"), "dense": ("dense concatenation", "cat([x, f(x)])"),
                   "gate": ("gate", "x * g(x)")}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith(("sh", "ch", "s", "x")) else "s")


def joins_text(graph) -> str | None:
    """One sentence on where tensors meet: residual joins named as such, and fusion only where separate
    branches or inputs meet (a single-input ResNet is never told that it fuses branches); ``None`` for
    a model with no join at all."""
    res, fusion = graph.residuals, graph.fusion_points
    if not res and not fusion:
        return None
    parts = []
    for kind, (word, form) in _RESIDUAL_WORDS.items():
        n = sum(1 for r in res if r.join == kind)
        if n:
            parts.append(f"{_plural(n, word)} ({form})")
    if fusion:
        counts = [(len([n for n in fusion if n.join == j]), "inputs" if j == "input" else "branches")
                  for j in ("input", "branch")]
        counts = [(n, w) for n, w in counts if n]
        names = ", ".join(n.qualname for n in fusion[:4]) + (" ..." if len(fusion) > 4 else "")
        if len(counts) == 1:
            fused = f"{_plural(len(fusion), 'fusion point')} where separate {counts[0][1]} meet ({names})"
        else:
            fused = (f"{_plural(len(fusion), 'fusion point')}: "
                     + ", ".join(f"{n} where separate {w} meet" for n, w in counts) + f" ({names})")
    else:
        fused = "no fusion point (no op joins separate branches or inputs)"
    if parts:
        return f"Joins: {', '.join(parts)}, each a tensor meeting a learned function of itself, not fusion; {fused}."
    return f"Joins: {fused}."


def joins_finding(graph) -> str:
    """What to conclude from where tensors meet: whether the model fuses separate inputs or branches
    (and where first, early / late / iterative), or only adds residuals (not fusion), or neither."""
    res, fusion = graph.residuals, graph.fusion_points
    kinds = [w for k, (w, _) in _RESIDUAL_WORDS.items() for _ in range(sum(1 for r in res if r.join == k))]
    residual = ", ".join(_plural(kinds.count(w), w) for w in dict.fromkeys(kinds))
    skips = sum(1 for n in graph.nodes if n.merge == "skip")
    if fusion:
        stages = {}
        for n in fusion:
            stages[n.fusion or "unclassified"] = stages.get(n.fusion or "unclassified", 0) + 1
        how = ", ".join(f"{c} {s}" for s, c in stages.items())
        meets = sorted({"separate inputs" if n.join == "input" else "separate branches" for n in fusion})
        if len(fusion) == 1:
            where = f"at 1 point, {fusion[0].qualname} ({how.split(' ', 1)[1]} fusion)"
        else:
            where = f"at {len(fusion)} points ({how}; the first is {fusion[0].qualname})"
        text = f"{graph.model_type} fuses {' and '.join(meets)} {where}"
        if residual:
            one = len(res) == 1
            text += f"; its {residual} {'is a residual connection' if one else 'are residual connections'}, not fusion"
        return text + "."
    if residual:
        joins = "only join is" if len(res) == 1 else "joins are"
        return (f"{graph.model_type} fuses nothing: its {joins} {residual} (a tensor meeting a learned function "
                f"of itself), and no separate inputs or branches meet.")
    tail = (f" (its {_plural(skips, 'skip join')} only combine a tensor with a parameter-free function of itself)"
            if skips else "")
    return (f"{graph.model_type} has no residual connection and no fusion point{tail}: no add, cat, mul or similar op "
            f"joins two paths, so no layer has a shortcut around it and nothing is fused.")


@register(
    "architecture",
    "Architecture",
    "How the layers connect: every module call and functional op, the shapes along each edge, parameters "
    "and mult-adds; click a container to collapse or expand it.",
    options=ArchitectureOptions,
)
def build(subject: Subject, options: ArchitectureOptions) -> ArchitectureData | NotApplicable:
    from ...render.graph.layout import collapse, fit_depth
    from ...render.graph.text import fmt_count
    from ...structure import trace

    split = _first_sample(subject.inputs)
    if split is None:
        return NotApplicable(f"inputs of type {type(subject.inputs).__name__} cannot be traced")
    args, kwargs = split
    graph = trace(subject.model, *args, **kwargs)
    depth = options.depth if options.depth is not None else fit_depth(graph, budget=options.boxes)
    top = collapse(graph, 0, fold_repeats=False)
    rows = [
        [b.label, b.type, "" if b.shape is None else str(tuple(b.shape)).replace(",)", ")"), fmt_count(b.params),
         fmt_count(b.macs)]
        for b in top.nodes
        if b.kind in ("module", "container")
    ]
    mods = [m for m in graph.modules.values() if m.name]
    weighted = sorted(((m.name, m.type, m.params) for m in graph.modules.values() if m.params > 0), key=lambda t: -t[2])
    groups = sorted(((m.name, m.total_params) for m in mods if "." not in m.name and m.total_params > 0),
                    key=lambda t: -t[1])
    return ArchitectureData(graph=graph, depth=depth, rows=rows, weighted=weighted, groups=groups)
