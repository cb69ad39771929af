"""Collapsed views of a :class:`ModelGraph` and a pure-Python layered (Sugiyama-style) layout.

:func:`repeats` finds runs of structurally identical sibling containers chained one into the
next (BERT's 12 ``encoder.layer.N``, EfficientNet's blocks of a stage): same node types, kinds,
parameter counts, shapes and inner edges. :func:`collapse` turns a graph into a :class:`View`:
containers deeper than ``depth`` (or named in ``collapsed``) become one box, and each run shows
as its first copy marked ``×k`` (a box when collapsed, a frame when expanded). :func:`layout`
places a view: longest-path layering, dummy nodes on long edges, barycentre sweeps against
crossings, x positions pulled toward their neighbours, and one horizontal lane per edge bundle
in each gap between layers (the gap grows with its lanes), so edges never stack into a block.
The interactive HTML runs the same steps in JavaScript (``script.py``) on the runs found here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ...structure.graph import ModelGraph


@dataclass
class ViewNode:
    key: str
    label: str
    type: str
    kind: str  # input / output / module / op / param / container
    members: list[int]
    name: str = ""
    shape: tuple | None = None
    params: int = 0
    macs: int | None = None
    count: int = 1
    flags: list[str] = field(default_factory=list)


@dataclass
class View:
    nodes: list[ViewNode]
    edges: list[tuple[int, int, tuple | None]]  # indices into nodes, edge shape
    folds: dict[str, "Repeat"] = field(default_factory=dict)  # folded runs shown, by head container

    def __len__(self) -> int:
        return len(self.nodes)


@dataclass(frozen=True)
class Repeat:
    """A run of ``count`` identical sibling containers, each feeding the next.

    ``names``: the containers in order; ``copies``: per container its node ids, position ``i`` of
    every copy being the same node of the block; ``params`` / ``macs``: over all copies."""

    names: tuple[str, ...]
    copies: tuple[tuple[int, ...], ...]
    params: int
    macs: int

    @property
    def head(self) -> str:
        return self.names[0]

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def label(self) -> str:
        return f"{self.names[0]} … {self.names[-1].rpartition('.')[2]}"


def join_kind(node) -> str | None:
    """``"residual"`` (a block's input added back to its output), ``"fusion"`` (separate branches or
    inputs meeting) or ``None`` for a node that joins nothing.

    Reads the structure layer's classification where it gives one (``Node.join``, or ``"residual"``
    in ``merge`` / ``fusion``); otherwise every fusion point counts as a fusion.
    """
    for attr in ("join", "merge_kind", "join_kind"):
        value = getattr(node, attr, None)
        if isinstance(value, str) and value:
            return "residual" if value == "residual" else "fusion"
    if node.merge == "residual" or node.fusion == "residual" or getattr(node, "kind", None) == "residual":
        return "residual"
    if node.merge == "fusion":
        return "fusion"
    return None


def node_flags(node) -> list[str]:
    flags = []
    if node.inplace:
        flags.append("in-place")
    if node.opaque:
        flags.append("opaque")
    kind = join_kind(node)
    if kind == "residual":
        flags.append("residual")
    elif kind == "fusion":
        flags.append(f"fusion:{node.fusion}" if node.fusion else "fusion")
    elif node.merge == "skip":
        flags.append("skip")
    if node.data_dependent:
        flags.append("data-dependent")
    if node.call:
        flags.append(f"call {node.call + 1}")
    return flags


def max_depth(graph: ModelGraph) -> int:
    return max((len(n.scope) for n in graph.nodes), default=0)


def _members(graph: ModelGraph) -> tuple[dict[str, list[int]], dict[str, str], dict[str, list[str]]]:
    """Per container: its node ids, its parent container ("" at the top), and children in order."""
    members: dict[str, list[int]] = defaultdict(list)
    parent: dict[str, str] = {}
    children: dict[str, list[str]] = defaultdict(list)
    for node in graph.nodes:
        for level, c in enumerate(node.scope):
            members[c].append(node.id)
            if c not in parent:
                parent[c] = node.scope[level - 1] if level else ""
                children[parent[c]].append(c)
    return members, parent, children


def _block_signature(graph: ModelGraph, name: str, ids: list[int], edges: list[tuple[int, int]]) -> tuple:
    index = {m: k for k, m in enumerate(ids)}
    cut = len(name)
    rows = []
    for m in ids:
        n = graph.nodes[m]
        inner = tuple(s[cut:] for s in n.scope[n.scope.index(name) + 1:])
        rows.append((n.kind, n.type, n.total_params, n.output_shapes, inner, n.name[cut:] if n.name.startswith(name + ".") else n.name))
    inner_edges = tuple(sorted((index[a], index[b]) for a, b in edges if a in index and b in index))
    return tuple(rows), inner_edges


def repeats(graph: ModelGraph, min_run: int = 3) -> list[Repeat]:
    """Runs of at least ``min_run`` identical sibling containers, each feeding the next (outermost first).

    Identical: the same node kinds, types, parameter counts, output shapes, inner scopes and
    inner edges, node for node. Runs inside a later copy of another run are left out (that copy
    is drawn as the first one).
    """
    members, parent, children = _members(graph)
    edges = [(e.src, e.dst) for e in graph.edges]
    succ: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    sig_cache: dict[str, tuple] = {}

    def sig(c: str) -> tuple:
        if c not in sig_cache:
            info = graph.modules.get(c)
            sig_cache[c] = (info.type if info else "", _block_signature(graph, c, members[c], edges))
        return sig_cache[c]

    def feeds(a: str, b: str) -> bool:
        target = set(members[b])
        return any(succ[m] & target for m in members[a])

    runs: list[Repeat] = []
    for kids in children.values():
        i = 0
        while i < len(kids):
            run = [kids[i]]
            j = i + 1
            while j < len(kids) and len(members[kids[j]]) == len(members[run[0]]) and sig(kids[j]) == sig(run[0]) \
                    and feeds(run[-1], kids[j]):
                run.append(kids[j])
                j += 1
            if len(run) >= min_run:
                copies = tuple(tuple(members[c]) for c in run)
                params = sum(graph.modules[c].total_params if c in graph.modules else 0 for c in run)
                macs = sum(graph.nodes[m].macs or 0 for copy in copies for m in copy)
                runs.append(Repeat(tuple(run), copies, params, macs))
            i = j
    runs.sort(key=lambda r: len(graph.nodes[r.copies[0][0]].scope))
    hidden: set[int] = set()
    kept = []
    for r in runs:
        if r.copies[0][0] in hidden:
            continue
        kept.append(r)
        for copy in r.copies[1:]:
            hidden.update(copy)
    return kept


def _aliases(graph: ModelGraph, runs: list[Repeat]) -> tuple[list[int], set[tuple[int, int]]]:
    """Per node the node drawn for it (itself, or its twin in the first copy of a folded run), and
    the edges running between copies of one run (drawn as the ``×k`` mark, not as lines)."""
    direct = list(range(len(graph.nodes)))
    between: set[tuple[int, int]] = set()
    for r in runs:
        copy_of = {m: k for k, copy in enumerate(r.copies) for m in copy}
        for e in graph.edges:
            a, b = copy_of.get(e.src), copy_of.get(e.dst)
            if a is not None and b is not None and a != b:
                between.add((e.src, e.dst))
        for copy in r.copies[1:]:
            for m, twin in zip(copy, r.copies[0]):
                direct[m] = twin
    alias = []
    for n in range(len(direct)):
        while direct[n] != n:  # a later copy of an outer run, then of a run inside the first copy
            n = direct[n]
        alias.append(n)
    return alias, between


def _drawn(key: str, head: str) -> bool:
    """Whether a run headed by ``head`` shows, given the view key of its first node."""
    return key == f"c:{head}" or not key.startswith("c:") or key[2:].startswith(head + ".")


def collapse(graph: ModelGraph, depth: int | None = None, collapsed: set[str] | None = None,
             expanded: set[str] | None = None, fold_repeats: bool = True, unfolded: set[str] | None = None) -> View:
    """A view with containers at scope level ``>= depth`` (and those in ``collapsed``) as one box.

    ``fold_repeats``: each run of :func:`repeats` (except those whose first container is in
    ``unfolded``) is drawn once, as its first copy marked ``×k``.
    """
    collapsed = collapsed or set()
    expanded = expanded or set()
    runs = [r for r in repeats(graph) if r.head not in (unfolded or set())] if fold_repeats else []
    alias, between = _aliases(graph, runs)
    heads = {r.head: r for r in runs}
    rep: dict[int, str] = {}
    boxes: dict[str, ViewNode] = {}
    order: list[str] = []
    for node in graph.nodes:
        if alias[node.id] != node.id:
            continue
        key = f"n{node.id}"
        for level, container in enumerate(node.scope):
            if container in collapsed or (depth is not None and level >= depth and container not in expanded):
                key = f"c:{container}"
                break
        rep[node.id] = key
        if key in boxes:
            continue
        order.append(key)
        if key.startswith("c:"):
            name = key[2:]
            info = graph.modules.get(name)
            box = ViewNode(key=key, label=name, type=info.type if info else "", kind="container", members=[],
                           name=name, params=info.total_params if info else 0)
            if name in heads:
                box.label, box.count, box.params = heads[name].label, heads[name].count, heads[name].params
            boxes[key] = box
        else:
            boxes[key] = ViewNode(key=key, label=node.qualname or node.type, type=node.type, kind=node.kind,
                                  members=[], name=node.name, params=node.total_params, macs=node.macs,
                                  flags=node_flags(node))
    for node in graph.nodes:
        key = rep[alias[node.id]]
        box = boxes[key]
        box.members.append(node.id)
        if alias[node.id] == node.id and node.output_shapes:
            box.shape = node.output_shape
        if box.kind == "container" and node.macs:
            box.macs = (box.macs or 0) + node.macs
    index = {k: i for i, k in enumerate(order)}
    nodes = [boxes[k] for k in order]
    edges: dict[tuple[int, int], tuple | None] = {}
    for e in graph.edges:
        if (e.src, e.dst) in between:
            continue
        a, b = index[rep[alias[e.src]]], index[rep[alias[e.dst]]]
        if a != b:
            edges.setdefault((a, b), e.shape)
    folds = {r.head: r for r in runs if _drawn(rep[r.copies[0][0]], r.head)}
    return View(nodes, [(a, b, s) for (a, b), s in edges.items()], folds)


def fit_depth(graph: ModelGraph, budget: int = 90) -> int | None:
    """The deepest collapse level whose view (repeats folded) has at most ``budget`` boxes
    (``None``: no collapsing)."""
    top = max_depth(graph)
    if len(collapse(graph, None)) <= budget:
        return None
    best = 0
    for d in range(top):
        if len(collapse(graph, d)) <= budget:
            best = d
        else:
            break
    return best


# ---- layout -------------------------------------------------------------------------------
CHAR_W = 7.2  # a character of the bold 12 px box title
NODE_H = 34
V_GAP = 30
H_GAP = 18
LANE = 6  # vertical distance between two horizontal edge lanes in one gap


@dataclass
class Layout:
    view: View
    pos: list[tuple[float, float]]  # box centres
    size: list[tuple[float, float]]
    routes: list[list[tuple[float, float]]]  # per view edge: an orthogonal polyline (lanes in the gaps)
    waypoints: list[list[tuple[float, float]]]  # per view edge: its ends and the long-edge dummies
    width: float
    height: float


def box_text(box: ViewNode) -> tuple[str, str]:
    title = box.label + (f" ×{box.count}" if box.count > 1 else "")
    sub = box.type if box.kind != "input" and box.kind != "output" else box.kind
    if box.shape is not None:
        sub = f"{sub} {tuple(box.shape)}".replace(",)", ")")
    return title, sub


def _break_cycles(n: int, edges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    succ = defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    state = [0] * n
    back = set()
    for root in range(n):
        if state[root]:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            v, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[v] = 2
                stack.pop()
            elif state[nxt] == 1:
                back.add((v, nxt))
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return [(b, a) if (a, b) in back else (a, b) for a, b in edges]


def _lanes(hops: list[tuple[int, float, float]]) -> tuple[dict[int, int], int]:
    """Lanes for the horizontal runs in one gap: hops ``(source, x0, x1)`` from one source share a
    lane; bundles whose x-ranges come within ``LANE`` of each other get different lanes."""
    spans: dict[int, list[float]] = {}
    for src, x0, x1 in hops:
        lo, hi = min(x0, x1), max(x0, x1)
        if src in spans:
            spans[src][0], spans[src][1] = min(spans[src][0], lo), max(spans[src][1], hi)
        else:
            spans[src] = [lo, hi]
    ends: list[float] = []  # per lane: where its last bundle ends
    lane: dict[int, int] = {}
    for src, (lo, hi) in sorted(spans.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0])):
        for k, end in enumerate(ends):
            if end + LANE < lo:
                lane[src], ends[k] = k, hi
                break
        else:
            lane[src] = len(ends)
            ends.append(hi)
    return lane, len(ends)


def layout(view: View) -> Layout:
    n = len(view.nodes)
    raw = [(a, b) for a, b, _ in view.edges]
    dag = _break_cycles(n, raw)
    preds = defaultdict(list)
    succ = defaultdict(list)
    for a, b in dag:
        preds[b].append(a)
        succ[a].append(b)
    # longest-path layering (Kahn order)
    indeg = [len(preds[v]) for v in range(n)]
    ready = [v for v in range(n) if indeg[v] == 0]
    layer = [0] * n
    topo = []
    while ready:
        v = ready.pop(0)
        topo.append(v)
        for w in succ[v]:
            layer[w] = max(layer[w], layer[v] + 1)
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.append(w)
    # sources other than graph inputs (parameters, constants) sit just above their first consumer
    for v in reversed(topo):
        if not preds[v] and succ[v] and view.nodes[v].kind != "input":
            layer[v] = max(0, min(layer[w] for w in succ[v]) - 1)
    sizes: list[tuple[float, float]] = []
    for box in view.nodes:
        title, sub = box_text(box)
        sizes.append((max(len(title), len(sub)) * CHAR_W + 16, NODE_H))
    # dummy nodes on long edges
    total = n
    chains: list[list[int]] = []
    up = defaultdict(list)  # for ordering: neighbours one layer up / down
    down = defaultdict(list)
    lay = list(layer)
    for a, b in dag:
        chain = [a]
        for L in range(layer[a] + 1, layer[b]):
            lay.append(L)
            sizes.append((8.0, NODE_H))
            chain.append(total)
            total += 1
        chain.append(b)
        for u, v in zip(chain, chain[1:]):
            down[u].append(v)
            up[v].append(u)
        chains.append(chain)
    layers: dict[int, list[int]] = defaultdict(list)
    for v in range(total):
        layers[lay[v]].append(v)
    nl = max(layers) + 1 if layers else 0
    rank = {}
    for L in range(nl):
        for i, v in enumerate(layers[L]):
            rank[v] = i

    def sweep(rng, nbrs):
        for L in rng:
            row = layers[L]
            bary = {}
            for v in row:
                ns = nbrs[v]
                bary[v] = sum(rank[u] for u in ns) / len(ns) if ns else rank[v]
            row.sort(key=lambda v: (bary[v], rank[v]))
            for i, v in enumerate(row):
                rank[v] = i

    for _ in range(4):
        sweep(range(1, nl), up)
        sweep(range(nl - 2, -1, -1), down)
    # x coordinates: pack, then pull toward neighbours keeping order and spacing
    x = [0.0] * total

    def pack(row, desired):
        for i, v in enumerate(row):
            x[v] = desired[v]
            if i:
                u = row[i - 1]
                x[v] = max(x[v], x[u] + (sizes[u][0] + sizes[v][0]) / 2 + H_GAP)
        shift = sum(desired[v] - x[v] for v in row) / len(row)
        for v in row:
            x[v] += shift

    for L in range(nl):
        pack(layers[L], {v: 0.0 for v in layers[L]})
    for it in range(6):
        rng, nbrs = (range(1, nl), up) if it % 2 == 0 else (range(nl - 2, -1, -1), down)
        for L in rng:
            row = layers[L]
            desired = {}
            for v in row:
                ns = nbrs[v]
                desired[v] = sum(x[u] for u in ns) / len(ns) if ns else x[v]
            pack(row, desired)
    lo = min((x[v] - sizes[v][0] / 2 for v in range(total)), default=0.0)
    hi = max((x[v] + sizes[v][0] / 2 for v in range(total)), default=0.0)
    margin = 20.0
    xs = [v - lo + margin for v in x]
    # one lane per bundle of horizontal runs in each gap; a gap grows with its lanes
    hops: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
    for chain in chains:
        for u, v in zip(chain, chain[1:]):
            if abs(xs[u] - xs[v]) >= 0.5:
                hops[lay[u]].append((u, xs[u], xs[v]))
    lanes = {L: _lanes(hops[L]) for L in range(nl)}
    gaps = [max(V_GAP, 12 + LANE * (lanes[L][1] - 1)) for L in range(nl)]
    tops = [margin]
    for L in range(1, nl):
        tops.append(tops[-1] + NODE_H + gaps[L - 1])
    ys = [tops[lay[v]] + NODE_H / 2 for v in range(total)]

    def lane_y(u: int) -> float:
        L = lay[u]
        lane, count = lanes[L]
        bottom = tops[L] + NODE_H
        return bottom + (gaps[L] - LANE * (count - 1)) / 2 + LANE * lane.get(u, 0)

    routes, waypoints = [], []
    for (a, b), chain, (ra, rb) in zip(dag, chains, raw):
        pts = [(xs[a], ys[a] + NODE_H / 2)]
        for u, v in zip(chain, chain[1:]):
            if abs(xs[u] - xs[v]) >= 0.5:
                y = lane_y(u)
                pts += [(xs[u], y), (xs[v], y)]
            pts.append((xs[v], ys[v] - NODE_H / 2))
            if v != b:  # a dummy: straight down through its layer
                pts.append((xs[v], ys[v] + NODE_H / 2))
        way = [(xs[a], ys[a] + NODE_H / 2)] + [(xs[v], ys[v]) for v in chain[1:-1]] + [(xs[b], ys[b] - NODE_H / 2)]
        if (a, b) != (ra, rb):  # a reversed back edge: draw it the way the data went
            pts.reverse()
            way.reverse()
        routes.append(pts)
        waypoints.append(way)
    height = (tops[-1] + NODE_H + margin) if nl else 2 * margin
    return Layout(view=view, pos=[(xs[v], ys[v]) for v in range(n)], size=sizes[:n], routes=routes,
                  waypoints=waypoints, width=hi - lo + 2 * margin, height=height)
