"""The interactive HTML view of a :class:`ModelGraph`: one self-contained page, inline JS/CSS only.

The first picture is the pure-Python layout (``svg.py``) already in the page; the inline
script (``script.py``) adds pan and zoom (wheel, drag), click a container's frame label
(or its entry in the module tree) to collapse it and its box to expand it, click a node for
its details, search by name, and folding of repeated blocks (``×12``).
"""

from __future__ import annotations

import json
import os
from html import escape

from .script import SCRIPT
from ...structure.graph import ModelGraph
from .layout import collapse, fit_depth, layout, node_flags
from .svg import STYLE, render_svg
from .text import notes


CSS = """
.tl-root{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;font-size:13px;color:#1d2433;border:1px solid #d7dce8;
  border-radius:8px;overflow:hidden;background:#fff}
.tl-bar{display:flex;gap:10px;align-items:center;padding:6px 10px;background:#f4f6fb;border-bottom:1px solid #d7dce8;
  flex-wrap:wrap}
.tl-bar input.tl-search{width:200px;padding:3px 6px}
.tl-bar .tl-count,.tl-bar .tl-hits{color:#5a6478}
.tl-body{display:flex;height:72vh;min-height:420px}
.tl-tree{width:230px;overflow:auto;border-right:1px solid #d7dce8;padding:6px;font-size:12px}
.tl-item{cursor:pointer;white-space:nowrap;padding:1px 0}
.tl-item:hover{background:#eef2fb}
.tl-item span{color:#8a93a6;font-size:11px}
.tl-pane{flex:1;overflow:hidden;position:relative;cursor:grab;background:#fff}
.tl-details{width:260px;overflow:auto;border-left:1px solid #d7dce8;padding:8px;font-size:12px}
.tl-details table{border-collapse:collapse;width:100%}
.tl-details th{text-align:left;color:#5a6478;font-weight:normal;padding:2px 6px 2px 0;vertical-align:top}
.tl-details td{padding:2px 0;word-break:break-all}
.tl-details button{margin:4px 4px 0 0;font-size:11px}
.tl-notes{padding:6px 10px;margin:0;font-size:12px;color:#3a4358;border-top:1px solid #d7dce8;background:#fafbfd}
.tl-notes li{margin:2px 0}
"""


def graph_data(graph: ModelGraph, depth: int | None, edges: str = "orthogonal") -> dict:
    nodes = []
    for n in graph.nodes:
        nodes.append({
            "id": n.id, "name": n.name, "qual": n.qualname, "type": n.type, "kind": n.kind, "scope": list(n.scope),
            "shape": list(n.output_shape) if n.output_shape is not None else None,
            "shapes_in": [list(s) for s in n.input_shapes], "params": n.total_params, "macs": n.macs,
            "flags": node_flags(n), "extra": n.extra, "call": n.call, "bytes": n.activation_bytes,
        })
    modules = {m.name: {"type": m.type, "params": m.total_params, "calls": m.calls, "leaf": m.leaf}
               for m in graph.modules.values()}
    return {"nodes": nodes, "edges": [[e.src, e.dst, list(e.shape) if e.shape else None] for e in graph.edges],
            "modules": modules, "depth": depth, "style": STYLE, "model": graph.model_type, "edgeStyle": edges}


def _json(data: dict) -> str:
    # no '<' at all inside the script element: nothing in a model name can end it or open a comment
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")


def fragment(graph: ModelGraph, depth: int | None = None, edges: str = "orthogonal") -> str:
    """The interactive graph as one ``<div>`` (style and script inline) for embedding."""
    if depth is None:
        depth = fit_depth(graph)
    svg = render_svg(graph, layout(collapse(graph, depth)), standalone=False, edges=edges)
    items = "".join(f"<li>{escape(line)}</li>" for line in notes(graph))
    head = (f"{escape(graph.model_type)}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
            f"{graph.total_params:,} parameters, {graph.total_macs:,} mult-adds")
    return (
        f'<div class="tl-root"><style>{CSS}</style>'
        f'<div class="tl-bar"><b>{head}</b>'
        f'<input class="tl-search" type="search" placeholder="search layers" aria-label="search layers">'
        f'<span class="tl-hits"></span><label><input class="tl-fold" type="checkbox" checked> fold repeated blocks'
        f'</label><button type="button" class="tl-fit" title="show the whole graph">fit</button>'
        f'<button type="button" class="tl-reset" title="back to full size">reset zoom</button><span class="tl-count"></span></div>'
        f'<div class="tl-body"><div class="tl-tree"></div><div class="tl-pane">{svg}</div>'
        f'<div class="tl-details">Click a box for details; click a container frame\'s label (or an entry on the left)'
        f" to collapse it, a collapsed box to expand it. Ctrl + wheel zooms, drag pans.</div></div>"
        f'{"<ul class=tl-notes>" + items + "</ul>" if items else ""}'
        f'<script type="application/json" class="tl-data">{_json(graph_data(graph, depth, edges))}</script>'
        f"<script>{SCRIPT}</script></div>"
    )


def to_html(graph: ModelGraph, path=None, depth: int | None = None, *, fragment: bool = False,
            edges: str = "orthogonal") -> str:
    """A self-contained HTML page (or, with ``fragment=True``, a ``<div>``) of the interactive graph."""
    body = _fragment(graph, depth, edges)
    if fragment:
        return body
    page = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">"
        f"<title>{escape(graph.model_type)} graph · torchloupe</title></head>"
        f"<body style=\"margin:12px\">{body}</body></html>"
    )
    if path is not None:
        with open(os.fspath(path), "w", encoding="utf-8") as fh:
            fh.write(page)
    return page


_fragment = fragment
