"""The interactive HTML view of a :class:`ModelGraph`: inline JS/CSS only, nothing fetched.

A page holds the graph's script and style once (:func:`assets`) and any number of graphs
(:func:`fragment`: markup, the pure-Python drawing as the picture shown without scripts and in
print, and the graph's data in a ``<script type="application/json">`` island). The script
(``script.py``) starts every graph on DOMContentLoaded: a pane as wide as the page with
scrollbars, a minimap, zoom (buttons, Ctrl + wheel), drag to pan, "fit" (folds repeats and
collapses to a depth that fits at a readable scale), click or Enter on a container to
collapse / expand it and on a box to select it and see its details, arrow keys between boxes,
search by name, folding of repeated blocks (``×12``) and a legend of colours and marks.
:func:`to_html` writes a standalone page.
"""

from __future__ import annotations

import json
from html import escape

from .script import SCRIPT
from ...structure.graph import ModelGraph
from .layout import collapse, fit_depth, layout, node_flags, repeats
from .svg import FILL, FUSION, RESIDUAL, STROKE, STYLE, render_svg
from .text import notes


CSS = """
.tl-root{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;font-size:13px;color:#1d2433;border:1px solid #d7dce8;
  border-radius:8px;background:#fff;max-width:100%;box-sizing:border-box}
.tl-bar{display:flex;gap:8px;align-items:center;padding:6px 10px;background:#f4f6fb;border-bottom:1px solid #d7dce8;
  flex-wrap:wrap;border-radius:8px 8px 0 0}
.tl-bar input.tl-search{width:180px;padding:3px 6px}
.tl-bar .tl-count,.tl-bar .tl-hits{color:#4a5468}
.tl-bar button{font-size:12px;padding:2px 8px}
.tl-root:not([data-ready]) .tl-ctl{display:none}
.tl-stage{position:relative}
.tl-pane{overflow:auto;max-height:75vh;cursor:grab;background:#fff;position:relative}
.tl-pane > svg{display:block;margin:0 auto}
.tl-mini{position:absolute;right:14px;bottom:14px;background:rgba(255,255,255,.92);border:1px solid #aab3c5;
  border-radius:4px;padding:1px;cursor:crosshair;overflow:hidden;box-shadow:0 1px 4px rgba(0,0,0,.15)}
.tl-mini svg{display:block}
.tl-mini .tl-mini-view{fill:rgba(10,88,202,.12);stroke:#0a58ca;stroke-width:1.2}
.tl-legend{display:flex;flex-wrap:wrap;gap:4px 14px;padding:5px 10px;border-top:1px solid #d7dce8;font-size:12px;
  color:#3a4358;list-style:none;margin:0}
.tl-legend li{display:flex;align-items:center;gap:5px}
.tl-legend svg{flex:none}
.tl-side{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);border-top:1px solid #d7dce8}
.tl-tree{max-height:220px;overflow:auto;padding:6px;font-size:12px;border-left:1px solid #d7dce8}
.tl-item{cursor:pointer;white-space:nowrap;padding:1px 0}
.tl-item:hover,.tl-item:focus{background:#e3e9f8;outline:none}
.tl-item span{color:#4f596c;font-size:11px}
.tl-details{max-height:220px;overflow:auto;padding:8px;font-size:12px}
.tl-details table{border-collapse:collapse;width:100%}
.tl-details th{text-align:left;color:#4a5468;font-weight:normal;padding:2px 6px 2px 0;vertical-align:top}
.tl-details td{padding:2px 0;word-break:break-all}
.tl-details button{margin:4px 4px 0 0;font-size:11px}
.tl-notes{padding:6px 10px 6px 26px;margin:0;font-size:12px;color:#3a4358;border-top:1px solid #d7dce8;background:#fafbfd}
.tl-notes li{margin:2px 0}
@media (max-width:700px){.tl-side{grid-template-columns:1fr}.tl-tree{border-left:0;border-top:1px solid #d7dce8}}
@media print{
  .tl-bar .tl-ctl,.tl-mini,.tl-side{display:none !important}
  .tl-pane{max-height:none !important;height:auto !important;overflow:visible !important}
  .tl-pane > svg{width:100% !important;height:auto !important;max-height:none}
  .tl-root{break-inside:avoid-page}
}
""" + STYLE


def assets() -> tuple[str, str]:
    """``(css, js)`` of the interactive graph: include each once per page, before or after the graphs."""
    return CSS, SCRIPT


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
    runs = [{"names": list(r.names), "copies": [list(c) for c in r.copies], "params": r.params, "label": r.label}
            for r in repeats(graph)]
    return {"nodes": nodes, "edges": [[e.src, e.dst, list(e.shape) if e.shape else None] for e in graph.edges],
            "modules": modules, "runs": runs, "depth": depth, "model": graph.model_type, "edgeStyle": edges}


def _json(data: dict) -> str:
    # no '<' at all inside the script element: nothing in a model name can end it or open a comment
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")


def _swatch(fill: str, stroke: str, width: float = 1.2, dash: str = "", count: bool = False) -> str:
    back = f'<rect x="4" y="1" width="20" height="11" rx="2" fill="{fill}" stroke="{stroke}"/>' if count else ""
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<svg width="26" height="16" viewBox="0 0 26 16" aria-hidden="true">{back}<rect x="1" y="4" width="20" '
            f'height="11" rx="2" fill="{fill}" stroke="{stroke}" stroke-width="{width}"{d}/></svg>')


def legend(graph: ModelGraph | None = None) -> str:
    """The key to the drawing's colours and marks (of ``graph``: only the kinds and marks it has)."""
    if graph is None:
        kinds, flags = set(FILL), {"fusion", "residual", "data-dependent", "in-place"}
    else:
        kinds = {n.kind for n in graph.nodes}
        flags = {f.partition(":")[0] for n in graph.nodes for f in node_flags(n)}
    items = [
        (_swatch(FILL["input"], STROKE["input"]), "input"),
        (_swatch(FILL["output"], STROKE["output"]), "output"),
        (_swatch(FILL["module"], STROKE["module"]), "module call"),
        (_swatch(FILL["op"], STROKE["op"]), "function (op)"),
        (_swatch(FILL["param"], STROKE["param"]), "parameter read"),
        (_swatch(FILL["container"], STROKE["container"], 2), "collapsed block (click to open)"),
        (_swatch(FILL["container"], STROKE["container"], 2, count=True), "×k: k identical blocks in a row, drawn once"),
        (_swatch(FILL["op"], FUSION, 2.4), "fusion: separate branches or inputs meet"),
        (_swatch(FILL["op"], RESIDUAL, 2.2), "residual add: a block's input added back"),
        (_swatch(FILL["module"], STROKE["module"], 1.8, "4 2"), "data-dependent: Python read its values"),
        ('<svg width="12" height="16" viewBox="0 0 12 16" aria-hidden="true"><circle cx="6" cy="8" r="3.5" '
         'fill="#c26a00"/></svg>', "in-place write"),
        (_swatch("#fff", "#111", 3), "selected"),
    ]
    needs = {"input": "input" in kinds, "output": "output" in kinds, "module call": "module" in kinds,
             "function (op)": "op" in kinds, "parameter read": "param" in kinds,
             "fusion: separate branches or inputs meet": "fusion" in flags,
             "residual add: a block's input added back": "residual" in flags,
             "data-dependent: Python read its values": "data-dependent" in flags, "in-place write": "in-place" in flags}
    return ('<ul class="tl-legend" aria-label="legend">'
            + "".join(f"<li>{mark}{escape(text)}</li>" for mark, text in items if needs.get(text, True)) + "</ul>")


def fragment(graph: ModelGraph, depth: int | None = None, edges: str = "orthogonal") -> str:
    """The graph as one ``<div>`` (markup and data, no script or style: see :func:`assets`)."""
    if depth is None:
        depth = fit_depth(graph)
    svg = render_svg(graph, layout(collapse(graph, depth)), standalone=False, edges=edges, style=False)
    items = "".join(f"<li>{escape(line)}</li>" for line in notes(graph))
    head = (f"{escape(graph.model_type)}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
            f"{graph.total_params:,} parameters, {graph.total_macs:,} mult-adds")
    return (
        f'<div class="tl-root">'
        f'<div class="tl-bar"><b>{head}</b>'
        f'<input class="tl-search tl-ctl" type="search" placeholder="search layers" aria-label="search layers">'
        f'<span class="tl-hits tl-ctl" aria-live="polite"></span><label class="tl-ctl"><input class="tl-fold" type="checkbox" checked> fold repeated blocks'
        f'</label><button type="button" class="tl-fit tl-ctl" title="show the whole graph at a readable scale">fit</button>'
        f'<button type="button" class="tl-zout tl-ctl" aria-label="zoom out">−</button>'
        f'<button type="button" class="tl-zin tl-ctl" aria-label="zoom in">+</button>'
        f'<button type="button" class="tl-reset tl-ctl" title="back to full size">100 %</button>'
        f'<span class="tl-count tl-ctl"></span></div>'
        f'<div class="tl-stage"><div class="tl-pane">{svg}</div><div class="tl-mini" hidden aria-label="minimap: click to move there"></div></div>'
        f"{legend(graph)}"
        f'<div class="tl-side tl-ctl"><div class="tl-details" aria-live="polite">Click a box (or Tab to it and press Enter) for '
        f"its details; a collapsed block opens, a container frame's label closes it, as do the entries of the module list. "
        f"Arrow keys move between boxes; Ctrl + wheel zooms, drag pans, the minimap moves the view.</div>"
        f'<div class="tl-tree" aria-label="modules"></div></div>'
        f'{"<ul class=tl-notes>" + items + "</ul>" if items else ""}'
        f'<script type="application/json" class="tl-data">{_json(graph_data(graph, depth, edges))}</script>'
        f"</div>"
    )


def to_html(graph: ModelGraph, path=None, depth: int | None = None, *, fragment: bool = False,
            edges: str = "orthogonal") -> str:
    """A self-contained HTML page (or, with ``fragment=True``, a ``<div>`` carrying its own style and
    script, for a notebook cell) of the interactive graph."""
    css, js = assets()
    body = _fragment(graph, depth, edges)
    if fragment:
        return f"<div><style>{css}</style>{body}<script>{js}</script></div>"
    page = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">"
        f"<title>{escape(graph.model_type)} graph · torchloupe</title><style>{css}</style></head>"
        f"<body style=\"margin:12px\">{body}<script>{js}</script></body></html>"
    )
    if path is not None:
        from ...files import atomic_write

        atomic_write(path, page)  # complete or not at all; a symbolic link there is replaced, not followed
    return page


_fragment = fragment
