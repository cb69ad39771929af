"""Report section "Architecture": the interactive graph of the model, collapsed to a legible depth."""

from __future__ import annotations

from torch import Tensor

from torchloupe.reporting.base import Html, NotApplicable, Subject, Table, Text, register


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


@register(
    "architecture",
    "Architecture",
    "How the layers connect: every module call and functional op, the shapes along each edge, parameters "
    "and mult-adds; click a container to collapse or expand it.",
)
def build(subject: Subject, options: dict):
    from torchloupe.structure import trace
    from torchloupe.render.graph.html import fragment
    from torchloupe.render.graph.layout import collapse, fit_depth
    from torchloupe.render.graph.text import fmt_count, notes

    split = _first_sample(subject.inputs)
    if split is None:
        return NotApplicable(f"inputs of type {type(subject.inputs).__name__} cannot be traced")
    args, kwargs = split
    graph = trace(subject.model, *args, **kwargs)
    depth = fit_depth(graph, budget=60)
    blocks = [
        Text(
            f"{graph.model_type}: {graph.total_params:,} parameters, {graph.total_macs:,} mult-adds per sample, "
            f"{len(graph.nodes)} nodes and {len(graph.edges)} edges traced from one forward pass"
            + ("" if depth is None else f"; shown collapsed to depth {depth} (click a box to expand it)")
            + "."
        ),
        Html(fragment(graph, depth)),
    ]
    top = collapse(graph, 0, fold_repeats=False)
    rows = [
        [b.label, b.type, "" if b.shape is None else str(tuple(b.shape)).replace(",)", ")"), fmt_count(b.params),
         fmt_count(b.macs)]
        for b in top.nodes
        if b.kind in ("module", "container")
    ]
    if rows:
        blocks.append(Table(["module", "type", "output shape", "params", "mult-adds"], rows,
                            caption="Top-level modules (one sample)"))
    joins = joins_text(graph)
    if joins:
        blocks.append(Text(joins))
    lines = notes(graph)
    if lines:
        blocks.append(Text("Noticed while tracing: " + "; ".join(lines)))
    return blocks
