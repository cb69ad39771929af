"""Graphviz ``dot`` text of a :class:`ModelGraph`, for those who have Graphviz."""

from __future__ import annotations

from ...structure.graph import ModelGraph
from .layout import box_text, collapse


def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: ModelGraph, depth: int | None = None) -> str:
    view = collapse(graph, depth)
    lines = [f"digraph {_dot_str(graph.model_type or 'model')} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fb", fontname="Helvetica", fontsize=10];']
    for i, box in enumerate(view.nodes):
        title, sub = box_text(box)
        fill = {"input": "#dff0d8", "output": "#fbe3d6", "op": "#fff6d5", "container": "#e3e8f7",
                "param": "#eeeeee"}.get(box.kind, "#f4f6fb")
        lines.append(f"  n{i} [label={_dot_str(title + chr(10) + sub)}, fillcolor={_dot_str(fill)}];")
    for a, b, shape in view.edges:
        label = "" if shape is None else f" [label={_dot_str(str(tuple(shape)).replace(',)', ')'))}, fontsize=8]"
        lines.append(f"  n{a} -> n{b}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"
