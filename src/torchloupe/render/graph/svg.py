"""SVG of a :class:`ModelGraph` from the pure-Python layered layout (no Graphviz).

Boxes carry ``data-key`` (``n<id>`` for a node, ``c:<container>`` for a collapsed
container) and frames of expanded containers carry ``data-frame``, so the
interactive HTML view can hang its click handlers on this same markup.
"""

from __future__ import annotations

from html import escape

from ...errors import UsageError
from ...structure.graph import ModelGraph
from .layout import Layout, View, box_text, collapse, fit_depth, layout


FILL = {"input": "#d9f2d9", "output": "#fde2d0", "module": "#e8eefc", "op": "#fff4cc", "param": "#eeeeee",
        "container": "#d5dcf5"}
STROKE = {"input": "#4a9a4a", "output": "#d0763a", "module": "#5a78c8", "op": "#b8921a", "param": "#999999",
          "container": "#3b4f99"}
FUSION = "#d62d20"  # separate branches or inputs meeting
RESIDUAL = "#5d6678"  # a block's input added back: neutral

STYLE = """
.tl-graph text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;pointer-events:none}
.tl-graph .t{font-size:12px;font-weight:600;fill:#1d2433}
.tl-graph .s{font-size:11px;fill:#3f4859}
.tl-graph .e{fill:none;stroke:#6b7487;stroke-width:1.1;stroke-linejoin:round}
.tl-graph .ah{fill:#6b7487}
.tl-graph .e:hover{stroke:#c26a00;stroke-width:2.5}
.tl-graph .box{cursor:pointer}
.tl-graph .box:focus{outline:none}
.tl-graph .box:focus rect.body{stroke:#0a58ca;stroke-width:3}
.tl-graph .box.sel rect.body{stroke:#111;stroke-width:3.2;filter:drop-shadow(0 0 3px rgba(10,88,202,.7))}
.tl-graph .box.hit rect.body{stroke:#0a84ff;stroke-width:3.5}
.tl-graph rect.frame{fill:#5a78c8;fill-opacity:.05;stroke:#5a78c8;stroke-opacity:.45;stroke-dasharray:4 3;pointer-events:none}
.tl-graph rect.frame.folded{stroke:#3b4f99;stroke-opacity:.8;stroke-dasharray:none;stroke-width:1.5}
.tl-graph text.fl{font-size:10px;fill:#2d3c80;pointer-events:auto;cursor:pointer}
.tl-graph text.fl:hover,.tl-graph text.fl:focus{text-decoration:underline;outline:none;font-weight:600}
"""


EDGE_STYLES = ("orthogonal", "straight", "curved")


def _path(pts: list[tuple[float, float]], style: str = "orthogonal") -> str:
    """SVG path: ``pts`` already orthogonal (``Layout.routes``) for ``"orthogonal"``; for the other
    styles ``pts`` are the waypoints, joined by straight segments or smooth curves."""
    d = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
    if style == "orthogonal":  # right angles with rounded bends: a routed line, never a box's corner
        for k in range(1, len(pts) - 1):
            (ax, ay), (px, py), (bx, by) = pts[k - 1], pts[k], pts[k + 1]
            r = min(5.0, (abs(px - ax) + abs(py - ay)) / 2, (abs(bx - px) + abs(by - py)) / 2)
            sx, sy = (px > ax) - (px < ax), (py > ay) - (py < ay)
            tx, ty = (bx > px) - (bx < px), (by > py) - (by < py)
            d += f" L{px - r * sx:.1f},{py - r * sy:.1f} Q{px:.1f},{py:.1f} {px + r * tx:.1f},{py + r * ty:.1f}"
        return d + f" L{pts[-1][0]:.1f},{pts[-1][1]:.1f}"
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        my = (y0 + y1) / 2
        if style == "straight" or abs(x1 - x0) < 0.5:
            d += f" L{x1:.1f},{y1:.1f}"
        else:
            d += f" C{x0:.1f},{my:.1f} {x1:.1f},{my:.1f} {x1:.1f},{y1:.1f}"
    return d


def edge_path(route: list[tuple[float, float]], way: list[tuple[float, float]], style: str):
    """``(d, tail)``: the path of one edge and the two points its arrowhead follows.

    ``"orthogonal"`` draws an edge between adjacent layers with right angles in its own lane and
    an edge skipping layers as a smooth arc through its waypoints (a skip, never the outline of a
    box); ``"curved"`` arcs every edge; ``"straight"`` joins the waypoints.
    """
    if style == "orthogonal" and len(way) <= 2:
        return _path(route, "orthogonal"), route[-2:]
    if style == "straight":
        return _path(way, "straight"), way[-2:]
    (x0, y0), (x1, y1) = way[-2], way[-1]
    tail = [(x1, (y0 + y1) / 2), (x1, y1)] if abs(x1 - x0) >= 0.5 else way[-2:]
    return _path(way, "curved"), tail


def _arrow(pts: list[tuple[float, float]]) -> str:
    """A filled arrowhead at the end of ``pts`` pointing along its last segment (no marker, no id)."""
    (x0, y0), (x1, y1) = pts[-2], pts[-1]
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 or 1.0
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    bx, by = x1 - 7 * ux, y1 - 7 * uy
    return (f"M{bx - 3.5 * uy:.1f},{by + 3.5 * ux:.1f} L{x1:.1f},{y1:.1f} "
            f"L{bx + 3.5 * uy:.1f},{by - 3.5 * ux:.1f} z")


def _shape_text(shape) -> str:
    return "" if shape is None else str(tuple(shape)).replace(",)", ")")


def _frames(graph: ModelGraph, lay: Layout) -> list[tuple[str, float, float, float, float, str]]:
    """Bounding boxes of expanded containers around their visible boxes (outermost first), with labels."""
    boxes: dict[str, list[int]] = {}
    for i, box in enumerate(lay.view.nodes):
        if box.kind in ("input", "output"):
            continue
        scope = list(graph.nodes[box.members[0]].scope)
        if box.kind == "container":  # the containers around it that ran (not a ModuleList holding it)
            scope = scope[:scope.index(box.name)] if box.name in scope else []
        for c in scope:
            boxes.setdefault(c, []).append(i)
    out = []
    for name, members in sorted(boxes.items(), key=lambda kv: kv[0].count(".")):
        xs0 = [lay.pos[i][0] - lay.size[i][0] / 2 for i in members]
        xs1 = [lay.pos[i][0] + lay.size[i][0] / 2 for i in members]
        ys0 = [lay.pos[i][1] - lay.size[i][1] / 2 for i in members]
        ys1 = [lay.pos[i][1] + lay.size[i][1] / 2 for i in members]
        pad = 10 - 2 * min(name.count("."), 3)
        run = lay.view.folds.get(name)
        label = f"{run.label} ×{run.count}" if run else _frame_label(name)
        out.append((name, min(xs0) - pad, min(ys0) - pad - 8, max(xs1) + pad, max(ys1) + pad, label))
    return out


def place_labels(frames, rects) -> list[tuple[str, float, float, str, str]]:
    """Each frame's label at the first free corner (top left, top right, bottom left, bottom right,
    then beside the frame's top, right or left) overlapping no box and no label placed before; a label with no free corner is left out (the
    frame's name stays in the module list). Returns ``(name, x, baseline y, anchor, text)``."""
    taken = [tuple(r) for r in rects]
    out = []
    for name, x0, y0, x1, y1, text in frames:
        w, h = len(text) * 6.2 + 4, 12
        for tx, ty, anchor in ((x0 + 3, y0 + 1, "start"), (x1 - 3, y0 + 1, "end"),
                               (x0 + 3, y1 - h - 1, "start"), (x1 - 3, y1 - h - 1, "end"),
                               (x1 + 3, y0 + 1, "start"), (x0 - 3, y0 + 1, "end")):  # then beside the frame
            r = (tx, ty, tx + w, ty + h) if anchor == "start" else (tx - w, ty, tx, ty + h)
            if any(r[0] < t[2] and t[0] < r[2] and r[1] < t[3] and t[1] < r[3] for t in taken):
                continue
            out.append((name, tx, ty + 10, anchor, text))
            taken.append(r)
            break
    return out


def _frame_label(name: str) -> str:
    """``layer2.0.downsample`` -> ``downsample`` (nested frames have little room); numeric parts keep their parent."""
    short = name.rpartition(".")[2]
    return name if short.isdigit() or short == name else short


def render_svg(graph: ModelGraph, lay: Layout, *, standalone: bool = True, edges: str = "orthogonal",
               style: bool = True) -> str:
    """The drawing; ``style=False`` leaves the CSS to the page (the interactive view's shared style)."""
    if edges not in EDGE_STYLES:
        raise UsageError(f"edges must be one of {', '.join(EDGE_STYLES)}, got {edges!r}")
    w, h = lay.width, lay.height
    parts = []
    if standalone:
        parts.append('<?xml version="1.0" encoding="UTF-8"?>\n')
    parts.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tl-graph" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="{escape(graph.model_type)} graph: {len(lay.view)} boxes">'
    )
    if style:
        parts.append(f"<style>{STYLE}</style>")
    if standalone:
        parts.append('<rect width="100%" height="100%" fill="#ffffff"/>')
    frames = _frames(graph, lay)
    for name, x0, y0, x1, y1, _ in frames:
        folded = " folded" if name in lay.view.folds else ""
        parts.append(
            f'<rect class="frame{folded}" data-frame="{escape(name)}" x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" '
            f'height="{y1 - y0:.1f}" rx="8"/>'
        )
    rects = [(x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2) for (x, y), (bw, bh) in zip(lay.pos, lay.size)]
    for name, tx, ty, anchor, text in place_labels(frames, rects):
        parts.append(
            f'<text class="fl" data-frame="{escape(name)}" x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}">'
            f"{escape(text)}</text>"
        )
    for route, way, (_, _, shape) in zip(lay.routes, lay.waypoints, lay.view.edges):
        d, tail = edge_path(route, way, edges)
        tip = f"<title>{escape(_shape_text(shape))}</title>" if shape is not None else ""
        parts.append(f'<path class="e" d="{d}">{tip}</path><path class="ah" d="{_arrow(tail)}"/>')
    for i, box in enumerate(lay.view.nodes):
        (cx, cy), (bw, bh) = lay.pos[i], lay.size[i]
        title, sub = box_text(box)
        kind = box.kind if box.kind in FILL else "module"
        stroke = STROKE[kind]
        extra = ""
        if "residual" in box.flags:
            stroke, extra = RESIDUAL, ' stroke-width="2.2"'
        elif any(f.startswith("fusion") for f in box.flags):
            stroke, extra = FUSION, ' stroke-width="2.4"'
        elif "data-dependent" in box.flags:
            extra = ' stroke-dasharray="4 2" stroke-width="1.8"'
        elif box.kind == "container" or "opaque" in box.flags:
            extra = ' stroke-width="2"'
        tip = escape(" · ".join([box.label, box.type, *box.flags]))
        stack = ""
        if box.count > 1:
            stack = (f'<rect class="stack" x="{cx - bw / 2 + 4:.1f}" y="{cy - bh / 2 - 4:.1f}" width="{bw:.1f}" '
                     f'height="{bh:.1f}" rx="5" fill="{FILL[kind]}" stroke="{stroke}"/>')
        parts.append(
            f'<g class="box" data-key="{escape(box.key)}"><title>{tip}</title>{stack}'
            f'<rect class="body" x="{cx - bw / 2:.1f}" y="{cy - bh / 2:.1f}" width="{bw:.1f}" height="{bh:.1f}" rx="5" '
            f'fill="{FILL[kind]}" stroke="{stroke}"{extra}/>'
            f'<text class="t" x="{cx:.1f}" y="{cy - 3:.1f}" text-anchor="middle">{escape(title)}</text>'
            f'<text class="s" x="{cx:.1f}" y="{cy + 11:.1f}" text-anchor="middle">{escape(sub)}</text>'
        )
        if "in-place" in box.flags:
            parts.append(f'<circle cx="{cx + bw / 2 - 5:.1f}" cy="{cy - bh / 2 + 5:.1f}" r="3" fill="#c26a00"/>')
        parts.append("</g>")
    parts.append("</svg>")
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
        from ...files import atomic_write

        atomic_write(path, svg)  # complete or not at all; a symbolic link there is replaced, not followed
    return svg
