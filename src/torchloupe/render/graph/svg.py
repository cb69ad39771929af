"""SVG of a :class:`ModelGraph` from the pure-Python layered layout (no Graphviz).

Boxes carry ``data-key`` (``n<id>`` for a node, ``c:<container>`` for a collapsed
container) and frames of expanded containers carry ``data-frame``, so the
interactive HTML view can hang its click handlers on this same markup.
"""

from __future__ import annotations

import os
from html import escape

from ...errors import UsageError
from ...structure.graph import ModelGraph
from .layout import Layout, View, box_text, collapse, fit_depth, layout


FILL = {"input": "#d9f2d9", "output": "#fde2d0", "module": "#e8eefc", "op": "#fff4cc", "param": "#eeeeee",
        "container": "#d5dcf5"}
STROKE = {"input": "#4a9a4a", "output": "#d0763a", "module": "#5a78c8", "op": "#b8921a", "param": "#999999",
          "container": "#3b4f99"}

STYLE = """
.tl-graph text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;pointer-events:none}
.tl-graph .t{font-size:11px;font-weight:600;fill:#1d2433}
.tl-graph .s{font-size:9px;fill:#4a5468}
.tl-graph .e{fill:none;stroke:#7a8396;stroke-width:1.1;stroke-linejoin:round}
.tl-graph .e:hover{stroke:#e8912c;stroke-width:2.5}
.tl-graph .box{cursor:pointer}
.tl-graph .box.hit rect{stroke:#0a84ff;stroke-width:3.5}
.tl-graph rect.frame{fill:#5a78c8;fill-opacity:.05;stroke:#5a78c8;stroke-opacity:.35;stroke-dasharray:4 3;pointer-events:none}
.tl-graph text.fl{font-size:9px;fill:#3b4f99;pointer-events:auto;cursor:pointer}
.tl-graph text.fl:hover{text-decoration:underline}
"""


EDGE_STYLES = ("orthogonal", "straight", "curved")


def _path(pts: list[tuple[float, float]], style: str = "orthogonal") -> str:
    """SVG path through the route points: right-angled, straight segments, or smooth curves."""
    d = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        my = (y0 + y1) / 2
        if style == "straight" or abs(x1 - x0) < 0.5:
            d += f" L{x1:.1f},{y1:.1f}"
        elif style == "orthogonal":
            d += f" L{x0:.1f},{my:.1f} L{x1:.1f},{my:.1f} L{x1:.1f},{y1:.1f}"
        else:
            d += f" C{x0:.1f},{my:.1f} {x1:.1f},{my:.1f} {x1:.1f},{y1:.1f}"
    return d


def _shape_text(shape) -> str:
    return "" if shape is None else str(tuple(shape)).replace(",)", ")")


def _frames(graph: ModelGraph, lay: Layout) -> list[tuple[str, float, float, float, float]]:
    """Bounding boxes of expanded containers around their visible boxes (outermost first)."""
    boxes: dict[str, list[int]] = {}
    for i, box in enumerate(lay.view.nodes):
        if box.kind in ("input", "output"):
            continue
        if box.kind == "container":
            chain = box.name.split(".")
            scope = [".".join(chain[:k]) for k in range(1, len(chain))]
            scope = [s for s in scope if s in graph.modules]
        else:
            scope = list(graph.nodes[box.members[0]].scope)
        for c in scope:
            boxes.setdefault(c, []).append(i)
    out = []
    for name, members in sorted(boxes.items(), key=lambda kv: kv[0].count(".")):
        xs0 = [lay.pos[i][0] - lay.size[i][0] / 2 for i in members]
        xs1 = [lay.pos[i][0] + lay.size[i][0] / 2 for i in members]
        ys0 = [lay.pos[i][1] - lay.size[i][1] / 2 for i in members]
        ys1 = [lay.pos[i][1] + lay.size[i][1] / 2 for i in members]
        pad = 10 - 2 * min(name.count("."), 3)
        out.append((name, min(xs0) - pad, min(ys0) - pad - 4, max(xs1) + pad, max(ys1) + pad))
    return out


def _frame_label(name: str) -> str:
    """``layer2.0.downsample`` -> ``downsample`` (nested frames have little room); numeric parts keep their parent."""
    short = name.rpartition(".")[2]
    return name if short.isdigit() or short == name else short


def render_svg(graph: ModelGraph, lay: Layout, *, standalone: bool = True, edges: str = "orthogonal") -> str:
    if edges not in EDGE_STYLES:
        raise UsageError(f"edges must be one of {', '.join(EDGE_STYLES)}, got {edges!r}")
    w, h = lay.width, lay.height
    parts = []
    if standalone:
        parts.append('<?xml version="1.0" encoding="UTF-8"?>\n')
    parts.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tl-graph" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {w:.0f} {h:.0f}">'
    )
    parts.append(f"<style>{STYLE}</style>")
    parts.append(
        '<defs><marker id="tl-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7a8396"/></marker></defs>'
    )
    parts.append('<rect width="100%" height="100%" fill="#ffffff"/><g class="viewport">')
    frames = _frames(graph, lay)
    for name, x0, y0, x1, y1 in frames:
        parts.append(
            f'<rect class="frame" data-frame="{escape(name)}" x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" '
            f'height="{y1 - y0:.1f}" rx="8"/>'
        )
    names = [f[0] for f in frames]
    for name, x0, y0, x1, y1 in frames:
        # Nested frames share their top edge: alternate the label between the left and right corners
        # by nesting among the frames drawn (not by dots: "encoder" holds "encoder.layer.0" directly).
        right = sum(name.startswith(other + ".") for other in names) % 2 == 1
        tx, anchor = (x1 - 4, "end") if right else (x0 + 4, "start")
        parts.append(
            f'<text class="fl" data-frame="{escape(name)}" x="{tx:.1f}" y="{y0 + 9:.1f}" text-anchor="{anchor}">'
            f"{escape(_frame_label(name))}</text>"
        )
    for pts, (_, _, shape) in zip(lay.routes, lay.view.edges):
        tip = f"<title>{escape(_shape_text(shape))}</title>" if shape is not None else ""
        parts.append(f'<path class="e" d="{_path(pts, edges)}" marker-end="url(#tl-arrow)">{tip}</path>')
    for i, box in enumerate(lay.view.nodes):
        (cx, cy), (bw, bh) = lay.pos[i], lay.size[i]
        title, sub = box_text(box)
        kind = box.kind if box.kind in FILL else "module"
        stroke = STROKE[kind]
        extra = ""
        if any(f.startswith("fusion") for f in box.flags):
            stroke, extra = "#e8412c", ' stroke-width="2.2"'
        elif "data-dependent" in box.flags:
            extra = ' stroke-dasharray="4 2" stroke-width="1.8"'
        elif box.kind == "container" or "opaque" in box.flags:
            extra = ' stroke-width="2"'
        tip = escape(" · ".join([box.label, box.type, *box.flags]))
        parts.append(
            f'<g class="box" data-key="{escape(box.key)}"><title>{tip}</title>'
            f'<rect x="{cx - bw / 2:.1f}" y="{cy - bh / 2:.1f}" width="{bw:.1f}" height="{bh:.1f}" rx="5" '
            f'fill="{FILL[kind]}" stroke="{stroke}"{extra}/>'
            f'<text class="t" x="{cx:.1f}" y="{cy - 3:.1f}" text-anchor="middle">{escape(title)}</text>'
            f'<text class="s" x="{cx:.1f}" y="{cy + 10:.1f}" text-anchor="middle">{escape(sub)}</text>'
        )
        if "in-place" in box.flags:
            parts.append(f'<circle cx="{cx + bw / 2 - 5:.1f}" cy="{cy - bh / 2 + 5:.1f}" r="3" fill="#e8912c"/>')
        parts.append("</g>")
    parts.append("</g></svg>")
    return "".join(parts)


def to_svg(graph: ModelGraph, path=None, depth: int | None = None, view: View | None = None,
           edges: str = "orthogonal") -> str:
    """The graph as SVG text (collapsed to a legible depth unless ``depth`` is given); written to ``path``.

    ``edges``: ``"orthogonal"`` (right angles), ``"straight"`` or ``"curved"``.
    """
    if view is None:
        view = collapse(graph, depth if depth is not None else fit_depth(graph))
    svg = render_svg(graph, layout(view), edges=edges)
    if path is not None:
        with open(os.fspath(path), "w", encoding="utf-8") as fh:
            fh.write(svg)
    return svg
