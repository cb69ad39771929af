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


@register(
    "architecture",
    "Architecture",
    "How the layers connect: every module call and functional op, the shapes along each edge, parameters "
    "and mult-adds; click a container to collapse or expand it.",
    20,
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
    lines = notes(graph)
    if lines:
        blocks.append(Text("Noticed while tracing: " + "; ".join(lines)))
    return blocks
