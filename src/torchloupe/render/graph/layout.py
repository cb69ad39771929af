"""Collapsed views of a :class:`ModelGraph` and a pure-Python layered (Sugiyama-style) layout.

:func:`collapse` turns a graph into a :class:`View`: containers deeper than ``depth`` (or
named in ``collapsed``) become one box; runs of identical sibling containers chained one
into the next (12 encoder layers) fold into one ``×12`` box. :func:`layout` places a view:
longest-path layering, dummy nodes on long edges, barycentre sweeps against crossings,
then x positions pulled toward their neighbours while keeping order and spacing. The
interactive HTML runs the same steps in JavaScript (``html.py``).
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

    def __len__(self) -> int:
        return len(self.nodes)


def node_flags(node) -> list[str]:
    flags = []
    if node.inplace:
        flags.append("in-place")
    if node.opaque:
        flags.append("opaque")
    if node.merge == "fusion":
        flags.append(f"fusion:{node.fusion}")
    elif node.merge == "skip":
        flags.append("skip")
    if node.data_dependent:
        flags.append("data-dependent")
    if node.call:
        flags.append(f"call {node.call + 1}")
    return flags


def max_depth(graph: ModelGraph) -> int:
    return max((len(n.scope) for n in graph.nodes), default=0)


def collapse(graph: ModelGraph, depth: int | None = None, collapsed: set[str] | None = None,
             expanded: set[str] | None = None, fold_repeats: bool = True) -> View:
    """A view with containers at scope level ``>= depth`` (and those in ``collapsed``) as one box."""
    collapsed = collapsed or set()
    expanded = expanded or set()
    rep: dict[int, str] = {}
    boxes: dict[str, ViewNode] = {}
    order: list[str] = []
    for node in graph.nodes:
        key = f"n{node.id}"
        for level, container in enumerate(node.scope):
            if container in collapsed or (depth is not None and level >= depth and container not in expanded):
                key = f"c:{container}"
                break
        rep[node.id] = key
        if key not in boxes:
            order.append(key)
            if key.startswith("c:"):
                name = key[2:]
                info = graph.modules.get(name)
                boxes[key] = ViewNode(key=key, label=name, type=info.type if info else "", kind="container",
                                      members=[], name=name, params=info.total_params if info else 0)
            else:
                boxes[key] = ViewNode(key=key, label=node.qualname or node.type, type=node.type, kind=node.kind,
                                      members=[], name=node.name, params=node.total_params, macs=node.macs,
                                      flags=node_flags(node))
        box = boxes[key]
        box.members.append(node.id)
        if node.output_shapes:
            box.shape = node.output_shape
        if box.kind == "container" and node.macs:
            box.macs = (box.macs or 0) + node.macs
    index = {k: i for i, k in enumerate(order)}
    nodes = [boxes[k] for k in order]
    edges: dict[tuple[int, int], tuple | None] = {}
    for e in graph.edges:
        a, b = index[rep[e.src]], index[rep[e.dst]]
        if a != b:
            edges.setdefault((a, b), e.shape)
    view = View(nodes, [(a, b, s) for (a, b), s in edges.items()])
    return _fold(graph, view) if fold_repeats else view


def _signature(graph: ModelGraph, box: ViewNode) -> tuple:
    return (box.type, box.params, tuple(graph.nodes[m].type for m in box.members))


def _fold(graph: ModelGraph, view: View) -> View:
    """Fold runs of >= 3 identical sibling containers, each feeding the next, into one ``×k`` box."""
    succ = defaultdict(set)
    for a, b, _ in view.edges:
        succ[a].add(b)
    parent = {}
    for i, box in enumerate(view.nodes):
        if box.kind == "container":
            parent[i] = box.name.rpartition(".")[0]
    merged: dict[int, int] = {}
    i = 0
    n = len(view.nodes)
    while i < n:
        if i not in parent:
            i += 1
            continue
        run = [i]
        sig = _signature(graph, view.nodes[i])
        j = i + 1
        while j < n:
            if j in parent and parent[j] == parent[i] and _signature(graph, view.nodes[j]) == sig and j in succ[run[-1]]:
                run.append(j)
                j += 1
            elif j not in parent and view.nodes[j].kind == "param":
                j += 1  # parameters read between blocks do not break a run
            else:
                break
        if len(run) >= 3:
            for k in run[1:]:
                merged[k] = i
        i = run[-1] + 1
    if not merged:
        return view
    keep = [k for k in range(n) if k not in merged]
    new_index = {k: t for t, k in enumerate(keep)}
    nodes = []
    for k in keep:
        box = view.nodes[k]
        members = [k2 for k2, head in merged.items() if head == k]
        if members:
            count = len(members) + 1
            last = view.nodes[members[-1]]
            box = ViewNode(key=box.key, label=f"{box.label} … {last.label.rpartition('.')[2]}", type=box.type,
                           kind="container", members=box.members + [m for k2 in members for m in view.nodes[k2].members],
                           name=box.name, shape=last.shape, params=box.params + sum(view.nodes[k2].params for k2 in members),
                           macs=(box.macs or 0) + sum(view.nodes[k2].macs or 0 for k2 in members) or None, count=count,
                           flags=box.flags)
        nodes.append(box)
    edges = {}
    for a, b, s in view.edges:
        a2, b2 = new_index[merged.get(a, a)], new_index[merged.get(b, b)]
        if a2 != b2:
            edges.setdefault((a2, b2), s)
    return View(nodes, [(a, b, s) for (a, b), s in edges.items()])


def fit_depth(graph: ModelGraph, budget: int = 90) -> int | None:
    """The deepest collapse level whose view has at most ``budget`` boxes (``None``: no collapsing)."""
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
CHAR_W = 6.6
NODE_H = 34
V_GAP = 30
H_GAP = 18


@dataclass
class Layout:
    view: View
    pos: list[tuple[float, float]]  # box centres
    size: list[tuple[float, float]]
    routes: list[list[tuple[float, float]]]  # one polyline per view edge
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
    ys = [margin + NODE_H / 2 + lay[v] * (NODE_H + V_GAP) for v in range(total)]
    routes = []
    for (a, b), chain, (ra, rb) in zip(dag, chains, raw):
        pts = [(xs[chain[0]], ys[chain[0]] + NODE_H / 2)]
        pts += [(xs[v], ys[v]) for v in chain[1:-1]]
        pts.append((xs[chain[-1]], ys[chain[-1]] - NODE_H / 2))
        if (a, b) != (ra, rb):  # a reversed back edge: draw it the way the data went
            pts.reverse()
        routes.append(pts)
    return Layout(view=view, pos=[(xs[v], ys[v]) for v in range(n)], size=sizes[:n], routes=routes,
                  width=hi - lo + 2 * margin, height=2 * margin + max(nl, 1) * (NODE_H + V_GAP) - V_GAP)
