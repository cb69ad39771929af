"""The text summary of a :class:`ModelGraph`: a table of layers, totals and notes."""

from __future__ import annotations

from ...structure.graph import ModelGraph
from .layout import box_text, collapse


def fmt_count(n: int | None) -> str:
    return "-" if not n else f"{n:,}"


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GB"


def notes(graph: ModelGraph) -> list[str]:
    """What the trace noticed, one line each."""
    lines = []
    inplace = [n.qualname + (f" (call {n.call + 1})" if n.call else "") for n in graph.nodes if n.inplace]
    if inplace:
        more = f" (+{len(inplace) - 6} more)" if len(inplace) > 6 else ""
        lines.append(f"in-place: {len(inplace)} node(s) wrote into their input: {', '.join(inplace[:6])}{more}")
    shared = [m for m in graph.modules.values() if m.calls > 1 and m.name]
    if shared:
        lines.append("called several times (one node per call): "
                     + ", ".join(f"{m.name} ×{m.calls}" for m in shared[:8]) + (" ..." if len(shared) > 8 else ""))
    opaque = [m.name for m in graph.modules.values() if m.opaque and m.calls]
    if opaque:
        more = f" (+{len(opaque) - 4} more)" if len(opaque) > 4 else ""
        lines.append(f"opaque (one node; trace(..., expand=[name]) shows the internals): {', '.join(opaque[:4])}{more}")
    for b in graph.branches:
        lines.append(f"data-dependent: {b.describe(graph)}")
    fusions = graph.fusion_points
    if fusions:
        lines.append("fusion points: " + ", ".join(f"{n.qualname} ({n.fusion})" for n in fusions[:8])
                     + (" ..." if len(fusions) > 8 else ""))
    return lines


def summary(graph: ModelGraph, depth: int | None = None) -> str:
    """A table of every node (or of the view collapsed at ``depth``), totals and notes."""
    rows = []
    if depth is None:
        for n in graph.nodes:
            name = n.qualname + (f" (call {n.call + 1})" if n.call else "")
            shape = "" if n.output_shape is None else str(n.output_shape).replace(",)", ")")
            rows.append((name, n.type if n.kind not in ("input", "output") else n.kind, shape,
                         fmt_count(n.total_params) if n.kind == "module" else "-", fmt_count(n.macs)))
    else:
        for box in collapse(graph, depth).nodes:
            title, _ = box_text(box)
            shape = "" if box.shape is None else str(tuple(box.shape)).replace(",)", ")")
            kind = box.type if box.kind not in ("input", "output") else box.kind
            rows.append((title, kind, shape, fmt_count(box.params) if box.kind in ("module", "container") else "-",
                         fmt_count(box.macs)))
    head = ("name", "type", "output shape", "params", "mult-adds")
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(5)]
    widths[0] = min(widths[0], 60)

    def line(r):
        cells = [r[0][: widths[0]].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                 r[3].rjust(widths[3]), r[4].rjust(widths[4])]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(head))
    out = [f"{graph.model_type}: {len(graph.nodes)} nodes, {len(graph.edges)} edges", rule, line(head), rule]
    out += [line(r) for r in rows]
    out.append(rule)
    act = sum(n.activation_bytes for n in graph.nodes if n.kind in ("module", "op"))
    out.append(f"Total parameters: {graph.total_params:,}")
    out.append(f"Total mult-adds: {graph.total_macs:,} (conv, linear, matmul, attention, recurrent; whole batch)")
    out.append(f"Activations: {_human_bytes(act)}")
    out += notes(graph)
    return "\n".join(out) + "\n"
