"""The interactive graph's JavaScript, one copy per page (no CDN). It mirrors ``layout.py``.

``window.torchloupeGraph.scan()`` starts every ``.tl-root`` not yet started, reading its data from
the ``<script type="application/json" class="tl-data">`` island inside it; it runs on
DOMContentLoaded (or at once when the page has loaded), so a page holds the script once and any
number of graphs. Including the script twice is harmless: the second copy only scans.
"""

SCRIPT = r"""
(function(){
"use strict";
if (window.torchloupeGraph){ window.torchloupeGraph.scan(); return; }
const CHAR_W = 7.2, NODE_H = 34, V_GAP = 30, H_GAP = 18, LANE = 6, READABLE = 0.92;  // READABLE: the smallest scale whose text (.s, 11 px) shows at 10 px
const FILL = {input:"#d9f2d9", output:"#fde2d0", module:"#e8eefc", op:"#fff4cc", param:"#eeeeee", container:"#d5dcf5"};
const STROKE = {input:"#4a9a4a", output:"#d0763a", module:"#5a78c8", op:"#b8921a", param:"#999999", container:"#3b4f99"};
const FUSION = "#d62d20", RESIDUAL = "#5d6678";
function esc(s){ return String(s).replace(/&/g,"&amp;").replace(/</g,"&lt;").replace(/>/g,"&gt;").replace(/"/g,"&quot;"); }
function fmt(n){ return n ? n.toLocaleString("en-US") : "-"; }
function shp(s){ return s ? "(" + s.join(", ") + ")" : ""; }
function f1(v){ return v.toFixed(1); }
function boxText(b){
  const title = b.label + (b.count > 1 ? " ×" + b.count : "");
  let sub = (b.kind === "input" || b.kind === "output") ? b.kind : b.type;
  if (b.shape) sub += " " + shp(b.shape);
  return [title, sub];
}
function breakCycles(n, edges){
  const succ = Array.from({length: n}, () => []);
  for (const [a, b] of edges) succ[a].push(b);
  const state = new Array(n).fill(0), back = new Set();
  for (let r = 0; r < n; r++){
    if (state[r]) continue;
    const stack = [[r, 0]]; state[r] = 1;
    while (stack.length){
      const top = stack[stack.length-1], v = top[0];
      if (top[1] >= succ[v].length){ state[v] = 2; stack.pop(); continue; }
      const w = succ[v][top[1]++];
      if (state[w] === 1) back.add(v + ":" + w);
      else if (state[w] === 0){ state[w] = 1; stack.push([w, 0]); }
    }
  }
  return edges.map(([a, b]) => back.has(a + ":" + b) ? [b, a] : [a, b]);
}
function lanesOf(hops){
  const spans = new Map();
  for (const [src, x0, x1] of hops){
    const lo = Math.min(x0, x1), hi = Math.max(x0, x1), s = spans.get(src);
    if (s){ s[0] = Math.min(s[0], lo); s[1] = Math.max(s[1], hi); } else spans.set(src, [lo, hi]);
  }
  const ends = [], lane = new Map();
  const items = [...spans.entries()].sort((p, q) => (p[1][0] - q[1][0]) || (p[1][1] - q[1][1]) || (p[0] - q[0]));
  for (const [src, [lo, hi]] of items){
    let k = ends.findIndex(e => e + LANE < lo);
    if (k < 0){ k = ends.length; ends.push(hi); } else ends[k] = hi;
    lane.set(src, k);
  }
  return [lane, ends.length];
}
function layout(v){
  const n = v.nodes.length, raw = v.edges.map(e => [e[0], e[1]]), dag = breakCycles(n, raw);
  const preds = Array.from({length: n}, () => []), succ = Array.from({length: n}, () => []);
  for (const [a, b] of dag){ preds[b].push(a); succ[a].push(b); }
  const indeg = preds.map(p => p.length), ready = [], layer = new Array(n).fill(0), topo = [];
  for (let k = 0; k < n; k++) if (!indeg[k]) ready.push(k);
  while (ready.length){
    const k = ready.shift(); topo.push(k);
    for (const w of succ[k]){ layer[w] = Math.max(layer[w], layer[k] + 1); if (--indeg[w] === 0) ready.push(w); }
  }
  for (let t = topo.length - 1; t >= 0; t--){
    const q = topo[t];
    if (!preds[q].length && succ[q].length && v.nodes[q].kind !== "input")
      layer[q] = Math.max(0, Math.min(...succ[q].map(w => layer[w])) - 1);
  }
  const sizes = v.nodes.map(b => { const [t, s] = boxText(b); return [Math.max(t.length, s.length) * CHAR_W + 16, NODE_H]; });
  const lay = layer.slice(), up = [], down = [], chains = [];
  let total = n;
  const nb = (arr, k) => (arr[k] || (arr[k] = []));
  for (const [a, b] of dag){
    const chain = [a];
    for (let L = layer[a] + 1; L < layer[b]; L++){ lay.push(L); sizes.push([8, NODE_H]); chain.push(total++); }
    chain.push(b);
    for (let k = 0; k + 1 < chain.length; k++){ nb(down, chain[k]).push(chain[k+1]); nb(up, chain[k+1]).push(chain[k]); }
    chains.push(chain);
  }
  const layers = [];
  for (let k = 0; k < total; k++) (layers[lay[k]] || (layers[lay[k]] = [])).push(k);
  const nl = layers.length, rank = new Array(total);
  for (let L = 0; L < nl; L++){ layers[L] = layers[L] || []; layers[L].forEach((k, i) => rank[k] = i); }
  function sweep(Ls, nbrs){
    for (const L of Ls){
      const row = layers[L], bary = new Map();
      for (const k of row){ const ns = nbrs[k] || []; bary.set(k, ns.length ? ns.reduce((t, u) => t + rank[u], 0) / ns.length : rank[k]); }
      row.sort((p, q) => (bary.get(p) - bary.get(q)) || (rank[p] - rank[q]));
      row.forEach((k, i) => rank[k] = i);
    }
  }
  const downL = [], upL = [];
  for (let L = 1; L < nl; L++) downL.push(L);
  for (let L = nl - 2; L >= 0; L--) upL.push(L);
  for (let it = 0; it < 4; it++){ sweep(downL, up); sweep(upL, down); }
  const x = new Array(total).fill(0);
  function pack(row, desired){
    row.forEach((k, i) => {
      x[k] = desired.get(k);
      if (i){ const u = row[i-1]; x[k] = Math.max(x[k], x[u] + (sizes[u][0] + sizes[k][0]) / 2 + H_GAP); }
    });
    const shift = row.reduce((t, k) => t + desired.get(k) - x[k], 0) / row.length;
    for (const k of row) x[k] += shift;
  }
  for (const row of layers) if (row.length) pack(row, new Map(row.map(k => [k, 0])));
  for (let it = 0; it < 6; it++){
    const [Ls, nbrs] = it % 2 === 0 ? [downL, up] : [upL, down];
    for (const L of Ls){
      const row = layers[L]; if (!row.length) continue;
      const desired = new Map();
      for (const k of row){ const ns = nbrs[k] || []; desired.set(k, ns.length ? ns.reduce((t, u) => t + x[u], 0) / ns.length : x[k]); }
      pack(row, desired);
    }
  }
  let lo = Infinity, hi = -Infinity;
  for (let k = 0; k < total; k++){ lo = Math.min(lo, x[k] - sizes[k][0] / 2); hi = Math.max(hi, x[k] + sizes[k][0] / 2); }
  if (!total){ lo = 0; hi = 0; }
  const m = 20, xs = x.map(q => q - lo + m);
  const hops = Array.from({length: nl}, () => []);
  for (const chain of chains) for (let k = 0; k + 1 < chain.length; k++){
    const u = chain[k], w = chain[k+1];
    if (Math.abs(xs[u] - xs[w]) >= 0.5) hops[lay[u]].push([u, xs[u], xs[w]]);
  }
  const lanes = hops.map(lanesOf), gaps = lanes.map(l => Math.max(V_GAP, 12 + LANE * (l[1] - 1)));
  const tops = [m];
  for (let L = 1; L < nl; L++) tops.push(tops[L-1] + NODE_H + gaps[L-1]);
  const ys = lay.map(L => tops[L] + NODE_H / 2);
  const laneY = u => { const L = lay[u], [lane, count] = lanes[L]; return tops[L] + NODE_H + (gaps[L] - LANE * (count - 1)) / 2 + LANE * (lane.get(u) || 0); };
  const routes = [], ways = [];
  chains.forEach((chain, i) => {
    const a = chain[0], b = chain[chain.length-1];
    let pts = [[xs[a], ys[a] + NODE_H / 2]];
    for (let k = 0; k + 1 < chain.length; k++){
      const u = chain[k], w = chain[k+1];
      if (Math.abs(xs[u] - xs[w]) >= 0.5){ const y = laneY(u); pts.push([xs[u], y], [xs[w], y]); }
      pts.push([xs[w], ys[w] - NODE_H / 2]);
      if (w !== b) pts.push([xs[w], ys[w] + NODE_H / 2]);
    }
    let way = [[xs[a], ys[a] + NODE_H / 2]].concat(chain.slice(1, -1).map(k => [xs[k], ys[k]]), [[xs[b], ys[b] - NODE_H / 2]]);
    if (dag[i][0] !== raw[i][0]){ pts.reverse(); way.reverse(); }
    routes.push(pts); ways.push(way);
  });
  return {pos: v.nodes.map((_, k) => [xs[k], ys[k]]), size: sizes.slice(0, n), routes, ways,
          width: hi - lo + 2 * m, height: nl ? tops[nl-1] + NODE_H + m : 2 * m};
}
function pathD(style, orth, way){
  if (style === "orthogonal"){
    let d = "M" + f1(orth[0][0]) + "," + f1(orth[0][1]);
    for (let k = 1; k + 1 < orth.length; k++){  // rounded bends: a routed line, never a box's corner
      const [ax, ay] = orth[k-1], [px, py] = orth[k], [bx, by] = orth[k+1];
      const r = Math.min(5, (Math.abs(px - ax) + Math.abs(py - ay)) / 2, (Math.abs(bx - px) + Math.abs(by - py)) / 2);
      const sx = Math.sign(px - ax), sy = Math.sign(py - ay), tx = Math.sign(bx - px), ty = Math.sign(by - py);
      d += " L" + f1(px - r * sx) + "," + f1(py - r * sy) + " Q" + f1(px) + "," + f1(py) + " " + f1(px + r * tx) + "," + f1(py + r * ty);
    }
    const e = orth[orth.length-1];
    return d + " L" + f1(e[0]) + "," + f1(e[1]);
  }
  let d = "M" + f1(way[0][0]) + "," + f1(way[0][1]);
  for (let k = 0; k + 1 < way.length; k++){
    const [x0, y0] = way[k], [x1, y1] = way[k+1], my = f1((y0 + y1) / 2);
    if (style === "straight" || Math.abs(x1 - x0) < 0.5) d += " L" + f1(x1) + "," + f1(y1);
    else d += " C" + f1(x0) + "," + my + " " + f1(x1) + "," + my + " " + f1(x1) + "," + f1(y1);
  }
  return d;
}
function arrowHead(pts){
  const [x1, y1] = pts[pts.length-1], [x0, y0] = pts[pts.length-2];
  const len = Math.hypot(x1 - x0, y1 - y0) || 1, ux = (x1 - x0) / len, uy = (y1 - y0) / len;
  const bx = x1 - 7 * ux, by = y1 - 7 * uy;
  return "M" + f1(bx - 3.5 * uy) + "," + f1(by + 3.5 * ux) + " L" + f1(x1) + "," + f1(y1) + " L" + f1(bx + 3.5 * uy) + "," + f1(by - 3.5 * ux) + " z";
}
// Greedy label placement: each frame's label takes the first free corner (top left, top right,
// bottom left, bottom right) that overlaps no box and no label placed before; else it is left out.
function placeLabels(fr, rects){
  const taken = rects.slice(), out = [];
  const hit = (r) => taken.some(t => r[0] < t[2] && t[0] < r[2] && r[1] < t[3] && t[1] < r[3]);
  for (const [name, x0, y0, x1, y1, text] of fr){
    const w = text.length * 6.2 + 4, h = 12;
    const spots = [[x0 + 3, y0 + 1, "start"], [x1 - 3, y0 + 1, "end"], [x0 + 3, y1 - h - 1, "start"], [x1 - 3, y1 - h - 1, "end"],
                   [x1 + 3, y0 + 1, "start"], [x0 - 3, y0 + 1, "end"]];
    let placed = null;
    for (const [tx, ty, anchor] of spots){
      const r = anchor === "start" ? [tx, ty, tx + w, ty + h] : [tx - w, ty, tx, ty + h];
      if (hit(r)) continue;
      placed = [name, tx, ty + 10, anchor, text]; taken.push(r); break;
    }
    if (placed) out.push(placed);
  }
  return out;
}
function frameLabel(name){
  const short = name.slice(name.lastIndexOf(".") + 1);
  return (/^[0-9]+$/.test(short) || short === name) ? name : short;
}

function init(root){
  const D = JSON.parse(root.querySelector("script.tl-data").textContent);
  const $ = s => root.querySelector(s);
  const pane = $(".tl-pane"), details = $(".tl-details"), tree = $(".tl-tree"), search = $(".tl-search");
  const foldBox = $(".tl-fold"), counter = $(".tl-count"), mini = $(".tl-mini");
  const st = {depth: D.depth, collapsed: new Set(), expanded: new Set(), fold: true, unfolded: new Set()};
  let view = null, lay = null, k = 1, shown = null, selected = null;
  const HINT = details.innerHTML;
  const LEVEL = new Map();
  for (const n of D.nodes) n.scope.forEach((c, i) => { if (!LEVEL.has(c)) LEVEL.set(c, i); });
  const levelOf = name => LEVEL.has(name) ? LEVEL.get(name) : 0;
  const maxDepth = Math.max(0, ...D.nodes.map(n => n.scope.length));
  const isClosed = c => st.collapsed.has(c) || (st.depth !== null && levelOf(c) >= st.depth && !st.expanded.has(c));

  function activeRuns(){ return st.fold ? D.runs.filter(r => !st.unfolded.has(r.names[0])) : []; }
  function aliases(runs){
    const direct = D.nodes.map(n => n.id), between = new Set();
    for (const r of runs){
      const copyOf = new Map();
      r.copies.forEach((c, i) => c.forEach(m => copyOf.set(m, i)));
      for (const [s, d] of D.edges){
        const a = copyOf.get(s), b = copyOf.get(d);
        if (a !== undefined && b !== undefined && a !== b) between.add(s + ":" + d);
      }
      for (const c of r.copies.slice(1)) c.forEach((m, i) => { direct[m] = r.copies[0][i]; });
    }
    const alias = direct.map((_, n) => { while (direct[n] !== n) n = direct[n]; return n; });
    return [alias, between];
  }
  function collapse(){
    const runs = activeRuns(), [alias, between] = aliases(runs), heads = new Map(runs.map(r => [r.names[0], r]));
    const rep = [], boxes = new Map(), order = [];
    for (const n of D.nodes){
      if (alias[n.id] !== n.id) continue;
      let key = "n" + n.id;
      for (let i = 0; i < n.scope.length; i++){
        const c = n.scope[i];
        if (st.collapsed.has(c) || (st.depth !== null && i >= st.depth && !st.expanded.has(c))){ key = "c:" + c; break; }
      }
      rep[n.id] = key;
      if (boxes.has(key)) continue;
      order.push(key);
      if (key.startsWith("c:")){
        const name = key.slice(2), info = D.modules[name] || {type: "", params: 0}, r = heads.get(name);
        boxes.set(key, {key, label: r ? r.label : name, type: info.type, kind: "container", members: [], name, shape: null,
                        params: r ? r.params : info.params, macs: null, count: r ? r.names.length : 1, flags: []});
      } else {
        boxes.set(key, {key, label: n.qual || n.type, type: n.type, kind: n.kind, members: [], name: n.name,
                        shape: null, params: n.params, macs: n.macs, count: 1, flags: n.flags});
      }
    }
    for (const n of D.nodes){
      const b = boxes.get(rep[alias[n.id]]);
      b.members.push(n.id);
      if (alias[n.id] === n.id && n.shape) b.shape = n.shape;
      if (b.kind === "container" && n.macs) b.macs = (b.macs || 0) + n.macs;
    }
    const index = new Map(order.map((key, i) => [key, i])), seen = new Map();
    for (const [s, d, sh] of D.edges){
      if (between.has(s + ":" + d)) continue;
      const a = index.get(rep[alias[s]]), b = index.get(rep[alias[d]]);
      if (a !== b && !seen.has(a + ":" + b)) seen.set(a + ":" + b, [a, b, sh]);
    }
    const folds = new Map();
    for (const r of runs){
      const key = rep[r.copies[0][0]], head = r.names[0];
      if (key === "c:" + head || !key.startsWith("c:") || key.slice(2).startsWith(head + ".")) folds.set(head, r);
    }
    const hidden = [];
    for (const r of runs) hidden.push(...r.names.slice(1));
    return {nodes: order.map(key => boxes.get(key)), edges: [...seen.values()], folds, hidden};
  }
  function frames(v, L){
    const boxes = new Map();
    v.nodes.forEach((b, i) => {
      if (b.kind === "input" || b.kind === "output") return;
      let scope = D.nodes[b.members[0]].scope;
      if (b.kind === "container"){  // the containers around it that ran (not a ModuleList holding it)
        const at = scope.indexOf(b.name);
        scope = at >= 0 ? scope.slice(0, at) : [];
      }
      for (const c of scope){ if (!boxes.has(c)) boxes.set(c, []); boxes.get(c).push(i); }
    });
    const out = [];
    for (const [name, mem] of [...boxes.entries()].sort((p, q) => p[0].split(".").length - q[0].split(".").length)){
      const pad = 10 - 2 * Math.min(name.split(".").length - 1, 3);
      const x0 = Math.min(...mem.map(i => L.pos[i][0] - L.size[i][0] / 2)) - pad;
      const x1 = Math.max(...mem.map(i => L.pos[i][0] + L.size[i][0] / 2)) + pad;
      const y0 = Math.min(...mem.map(i => L.pos[i][1] - L.size[i][1] / 2)) - pad - 8;
      const y1 = Math.max(...mem.map(i => L.pos[i][1] + L.size[i][1] / 2)) + pad;
      const r = v.folds.get(name);
      out.push([name, x0, y0, x1, y1, r ? r.label + " ×" + r.names.length : frameLabel(name)]);
    }
    return out;
  }
  function svgMarkup(){
    const W = lay.width, H = lay.height;
    const p = ['<svg xmlns="http://www.w3.org/2000/svg" class="tl-graph" width="' + f1(W * k) + '" height="' + f1(H * k) +
      '" viewBox="0 0 ' + f1(W) + ' ' + f1(H) + '" role="group" aria-label="' + esc(D.model + " graph: " + view.nodes.length + " boxes") + '">'];
    const fr = frames(view, lay);
    for (const [name, x0, y0, x1, y1] of fr)
      p.push('<rect class="frame' + (view.folds.has(name) ? ' folded' : '') + '" data-frame="' + esc(name) + '" x="' + f1(x0) + '" y="' + f1(y0) + '" width="' + f1(x1 - x0) + '" height="' + f1(y1 - y0) + '" rx="8"/>');
    const rects = view.nodes.map((b, i) => [lay.pos[i][0] - lay.size[i][0] / 2, lay.pos[i][1] - NODE_H / 2, lay.pos[i][0] + lay.size[i][0] / 2, lay.pos[i][1] + NODE_H / 2]);
    for (const [name, tx, ty, anchor, text] of placeLabels(fr, rects))
      p.push('<text class="fl" tabindex="0" role="button" aria-label="collapse ' + esc(name) + '" data-frame="' + esc(name) + '" x="' + f1(tx) + '" y="' + f1(ty) + '" text-anchor="' + anchor + '">' + esc(text) + '</text>');
    lay.routes.forEach((pts, i) => {
      const sh = view.edges[i][2], tip = sh ? '<title>' + esc(shp(sh)) + '</title>' : '';
      const way = lay.ways[i];
      let d, tail;
      if (D.edgeStyle === "orthogonal" && way.length <= 2){ d = pathD("orthogonal", pts, way); tail = pts.slice(-2); }
      else if (D.edgeStyle === "straight"){ d = pathD("straight", pts, way); tail = way.slice(-2); }
      else {  // a skip over layers: an arc through its waypoints, never the outline of a box
        d = pathD("curved", pts, way);
        const [x0, y0] = way[way.length-2], [x1, y1] = way[way.length-1];
        tail = Math.abs(x1 - x0) >= 0.5 ? [[x1, (y0 + y1) / 2], [x1, y1]] : way.slice(-2);
      }
      p.push('<path class="e" d="' + d + '">' + tip + '</path><path class="ah" d="' + arrowHead(tail) + '"/>');
    });
    view.nodes.forEach((b, i) => {
      const [cx, cy] = lay.pos[i], [bw, bh] = lay.size[i], [t, s] = boxText(b), kind = b.kind in FILL ? b.kind : "module";
      let stroke = STROKE[kind], extra = "", cls = "box";
      if (b.flags.includes("residual")){ stroke = RESIDUAL; extra = ' stroke-width="2.2"'; cls += " residual"; }
      else if (b.flags.some(f => f.startsWith("fusion"))){ stroke = FUSION; extra = ' stroke-width="2.4"'; cls += " fusion"; }
      else if (b.flags.includes("data-dependent")) extra = ' stroke-dasharray="4 2" stroke-width="1.8"';
      else if (b.kind === "container" || b.flags.includes("opaque")) extra = ' stroke-width="2"';
      if (b.count > 1) cls += " folded";
      if (b.key === selected) cls += " sel";
      const what = b.kind === "container" ? (b.count > 1 ? "unfold" : "expand") : "details of";
      p.push('<g class="' + cls + '" data-key="' + esc(b.key) + '" tabindex="0" role="button" aria-label="' + esc(what + " " + t + ", " + s) + '"' +
        (b.kind === "container" ? '' : ' aria-pressed="' + (b.key === selected) + '"') + '><title>' + esc([b.label, b.type].concat(b.flags).join(" · ")) + '</title>' +
        (b.count > 1 ? '<rect class="stack" x="' + f1(cx - bw / 2 + 4) + '" y="' + f1(cy - bh / 2 - 4) + '" width="' + f1(bw) + '" height="' + bh + '" rx="5" fill="' + FILL[kind] + '" stroke="' + stroke + '"/>' : '') +
        '<rect class="body" x="' + f1(cx - bw / 2) + '" y="' + f1(cy - bh / 2) + '" width="' + f1(bw) + '" height="' + bh + '" rx="5" fill="' + FILL[kind] + '" stroke="' + stroke + '"' + extra + '/>' +
        '<text class="t" x="' + f1(cx) + '" y="' + f1(cy - 3) + '" text-anchor="middle">' + esc(t) + '</text>' +
        '<text class="s" x="' + f1(cx) + '" y="' + f1(cy + 11) + '" text-anchor="middle">' + esc(s) + '</text>' +
        (b.flags.includes("in-place") ? '<circle cx="' + f1(cx + bw / 2 - 5) + '" cy="' + f1(cy - bh / 2 + 5) + '" r="3" fill="#c26a00"/>' : "") + '</g>');
    });
    p.push('</svg>');
    return p.join("");
  }
  function maxPaneHeight(){ return Math.max(300, Math.round(window.innerHeight * 0.75)); }
  function sizePane(){
    const svg = pane.querySelector("svg");
    const h = lay.height * k + (lay.width * k > pane.clientWidth ? 18 : 2);
    pane.style.height = Math.min(h, maxPaneHeight()) + "px";
    pane.setAttribute("data-scale", k.toFixed(4));
    drawMini();
  }
  function setScale(next, px, py){
    const old = k;
    k = Math.min(4, Math.max(0.1, next));
    if (px === undefined){ px = pane.clientWidth / 2; py = pane.clientHeight / 2; }
    const sx = (pane.scrollLeft + px) * k / old - px, sy = (pane.scrollTop + py) * k / old - py;
    const svg = pane.querySelector("svg");
    svg.setAttribute("width", f1(lay.width * k)); svg.setAttribute("height", f1(lay.height * k));
    sizePane();
    pane.scrollLeft = sx; pane.scrollTop = sy;
    drawMini();
  }
  function render(){
    view = collapse(); lay = layout(view);
    pane.innerHTML = svgMarkup();
    if (shown && !view.nodes.some(b => b.key === shown)){ shown = null; details.innerHTML = HINT; }
    if (selected && !view.nodes.some(b => b.key === selected)) selected = null;
    counter.textContent = view.nodes.length + " boxes";
    pane.setAttribute("data-boxes", String(view.nodes.length));
    sizePane(); renderTree(); doSearch();
  }
  function scaleToFit(){
    const w = pane.clientWidth - 16, h = maxPaneHeight() - 16;
    return Math.min(1, w / lay.width, h / lay.height);
  }
  // "fit": the whole drawing in the pane. When that would shrink it below READABLE, repeats are
  // folded and the view collapsed to the deepest level that fits at a readable scale (the user opens
  // more from there); when even the top level is too tall, it is shown at a readable scale to scroll.
  function fit(){
    if (scaleToFit() < READABLE){
      st.fold = true; foldBox.checked = true; st.unfolded.clear(); st.collapsed.clear(); st.expanded.clear();
      let chosen = 0;
      for (let d = maxDepth; d >= 0; d--){
        st.depth = d; view = collapse(); lay = layout(view);
        if (scaleToFit() >= READABLE){ chosen = d; break; }
      }
      st.depth = chosen; render();
    }
    const w = pane.clientWidth - 16;
    setScale(Math.max(scaleToFit(), Math.min(1, READABLE, w / lay.width)));
    pane.scrollLeft = 0; pane.scrollTop = 0; drawMini();
  }
  function drawMini(){
    if (!mini || !lay) return;
    const over = lay.width * k > pane.clientWidth + 1 || lay.height * k > pane.clientHeight + 1;
    mini.hidden = !over;
    if (!over) return;
    const mw = Math.min(150, 150 * lay.width / lay.height), s = mw / lay.width, mh = lay.height * s;
    const r = view.nodes.map((b, i) => '<rect x="' + f1((lay.pos[i][0] - lay.size[i][0] / 2) * s) + '" y="' + f1((lay.pos[i][1] - NODE_H / 2) * s) +
      '" width="' + f1(Math.max(1, lay.size[i][0] * s)) + '" height="' + f1(Math.max(1, NODE_H * s)) + '" fill="' + (STROKE[b.kind] || STROKE.module) + '"/>').join("");
    const vx = pane.scrollLeft / k * s, vy = pane.scrollTop / k * s, vw = pane.clientWidth / k * s, vh = pane.clientHeight / k * s;
    mini.style.width = f1(mw + 2) + "px"; mini.style.height = f1(Math.min(mh, 220) + 2) + "px";
    mini.innerHTML = '<svg width="' + f1(mw) + '" height="' + f1(Math.min(mh, 220)) + '" viewBox="0 ' + f1(Math.max(0, Math.min(vy + vh / 2 - 110, mh - 220))) + ' ' + f1(mw) + ' ' + f1(Math.min(mh, 220)) + '">' + r +
      '<rect class="tl-mini-view" x="' + f1(vx) + '" y="' + f1(vy) + '" width="' + f1(Math.min(vw, mw)) + '" height="' + f1(vh) + '"/></svg>';
    mini.setAttribute("data-s", String(s));
  }
  function panFromMini(ev){
    const svg = mini.querySelector("svg");
    if (!svg) return;
    const s = +mini.getAttribute("data-s"), r = svg.getBoundingClientRect(), vb = svg.viewBox.baseVal;
    const mx = (ev.clientX - r.left) + vb.x, my = (ev.clientY - r.top) + vb.y;
    pane.scrollLeft = mx / s * k - pane.clientWidth / 2; pane.scrollTop = my / s * k - pane.clientHeight / 2;
    drawMini();
  }
  let miniDrag = false;
  mini.addEventListener("mousedown", ev => { miniDrag = true; panFromMini(ev); ev.preventDefault(); });
  window.addEventListener("mousemove", ev => { if (miniDrag) panFromMini(ev); });
  window.addEventListener("mouseup", () => { miniDrag = false; });
  pane.addEventListener("scroll", drawMini, {passive: true});
  function boxByKey(key){ return view ? view.nodes.find(b => b.key === key) || null : null; }
  function toggle(name){
    if (!D.modules[name]) return;
    if (isClosed(name)){ st.collapsed.delete(name); st.expanded.add(name); }
    else { st.expanded.delete(name); st.collapsed.add(name); }
    render();
    const g = pane.querySelector('[data-key="c:' + CSS.escape(name) + '"], text.fl[data-frame="' + CSS.escape(name) + '"]');
    if (g && root.contains(document.activeElement)) g.focus();
  }
  function showDetails(b){
    shown = b.key;
    const rows = [];
    const add = (a, v) => rows.push("<tr><th>" + esc(a) + "</th><td>" + esc(v) + "</td></tr>");
    add("name", b.label); add("type", b.type); add("kind", b.kind);
    if (b.count > 1) add("repeated", "×" + b.count);
    if (b.shape) add("output shape", shp(b.shape));
    if (b.kind !== "container"){
      const n = D.nodes[b.members[0]];
      add("input shapes", n.shapes_in.map(shp).join(", ") || "-");
      if (n.extra) add("config", n.extra);
      add("call", String(n.call + 1));
      add("activation bytes", fmt(n.bytes));
    }
    add("params", fmt(b.params)); add("mult-adds", fmt(b.macs));
    if (b.flags.length) add("notes", b.flags.join(", "));
    const scope = b.kind === "container" ? [] : D.nodes[b.members[0]].scope;
    const links = scope.map(c => '<button type="button" class="tl-collapse" data-container="' + esc(c) + '">collapse ' + esc(c) + '</button>').join(" ");
    details.innerHTML = "<table>" + rows.join("") + "</table>" + links;
  }
  function select(b){
    selected = b.key;
    pane.querySelectorAll(".box.sel").forEach(g => { g.classList.remove("sel"); g.setAttribute("aria-pressed", "false"); });
    const g = pane.querySelector('[data-key="' + CSS.escape(b.key) + '"]');
    if (g){ g.classList.add("sel"); g.setAttribute("aria-pressed", "true"); }
    showDetails(b);
  }
  function activate(g){
    const f = g.closest("text.fl");
    if (f){ toggle(f.getAttribute("data-frame")); return; }
    const b = boxByKey(g.getAttribute("data-key"));
    if (!b) return;
    if (b.kind === "container"){
      if (b.count > 1){ st.unfolded.add(b.name); render(); const h = pane.querySelector('[data-key="' + CSS.escape(b.key) + '"]'); if (h) h.focus(); return; }
      toggle(b.name); return;
    }
    select(b);
  }
  pane.addEventListener("click", ev => {
    if (pane._dragged) return;
    const g = ev.target.closest("text.fl, [data-key]");
    if (g) activate(g);
  });
  pane.addEventListener("keydown", ev => {
    const g = ev.target.closest && ev.target.closest("text.fl, [data-key]");
    if (!g) return;
    if (ev.key === "Enter" || ev.key === " "){ ev.preventDefault(); activate(g); return; }
    const dirs = {ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0]};
    if (!(ev.key in dirs) || !g.hasAttribute("data-key")) return;
    ev.preventDefault();
    const [dx, dy] = dirs[ev.key], i = view.nodes.findIndex(b => b.key === g.getAttribute("data-key"));
    let best = -1, bestD = Infinity;
    view.nodes.forEach((b, j) => {
      const ex = lay.pos[j][0] - lay.pos[i][0], ey = lay.pos[j][1] - lay.pos[i][1], along = ex * dx + ey * dy;
      if (j === i || along <= 0) return;
      const dist = along + 2 * Math.abs(ex * dy + ey * dx);
      if (dist < bestD){ bestD = dist; best = j; }
    });
    if (best >= 0) pane.querySelector('[data-key="' + CSS.escape(view.nodes[best].key) + '"]').focus();
  });
  pane.addEventListener("focusin", ev => {
    const g = ev.target.closest && ev.target.closest("[data-key]");
    if (!g) return;
    const r = g.getBoundingClientRect(), p = pane.getBoundingClientRect();
    if (r.left < p.left || r.right > p.right || r.top < p.top || r.bottom > p.bottom){
      pane.scrollLeft += (r.left + r.width / 2) - (p.left + pane.clientWidth / 2);
      pane.scrollTop += (r.top + r.height / 2) - (p.top + pane.clientHeight / 2);
    }
  });
  details.addEventListener("click", ev => {
    const btn = ev.target.closest("[data-container]");
    if (btn) toggle(btn.getAttribute("data-container"));
  });
  function renderTree(){
    const hidden = view.hidden;
    const inHidden = n => hidden.some(h => n === h || n.startsWith(h + "."));
    const all = Object.keys(D.modules).filter(n => n && !D.modules[n].leaf && D.modules[n].calls && LEVEL.has(n) && !inHidden(n));
    const closed = all.filter(isClosed);
    // Entries inside a collapsed container are not listed: the graph does not draw them either.
    const names = all.filter(n => !closed.some(c => n.startsWith(c + ".")));
    tree.innerHTML = names.map(n => {
      const shut = isClosed(n), short = frameLabel(n), r = view.folds.get(n);
      return '<div class="tl-item" role="button" tabindex="0" aria-expanded="' + !shut + '" style="padding-left:' + (levelOf(n) * 12) + 'px" title="' + esc(n) + '" data-tree="' + esc(n) + '">' +
        (shut ? "▸ " : "▾ ") + esc(short) + (r ? " ×" + r.names.length : "") + ' <span>' + esc(D.modules[n].type) + '</span></div>';
    }).join("");
  }
  tree.addEventListener("click", ev => { const it = ev.target.closest("[data-tree]"); if (it) toggle(it.getAttribute("data-tree")); });
  tree.addEventListener("keydown", ev => {
    const it = ev.target.closest("[data-tree]");
    if (it && (ev.key === "Enter" || ev.key === " ")){
      ev.preventDefault(); const name = it.getAttribute("data-tree"); toggle(name);
      const again = tree.querySelector('[data-tree="' + CSS.escape(name) + '"]'); if (again) again.focus();
    }
  });
  function doSearch(){
    const q = search.value.trim().toLowerCase();
    let hits = 0, first = null;
    pane.querySelectorAll("[data-key]").forEach(g => {
      const b = boxByKey(g.getAttribute("data-key"));
      const on = !!q && !!b && (b.label.toLowerCase().includes(q) || b.type.toLowerCase().includes(q) ||
        b.members.some(m => (D.nodes[m].qual || "").toLowerCase().includes(q)));
      g.classList.toggle("hit", on);
      if (on){ hits++; if (!first) first = b; }
    });
    $(".tl-hits").textContent = q ? hits + " match" + (hits === 1 ? "" : "es") : "";
    return first;
  }
  search.addEventListener("input", () => {
    const first = doSearch();
    if (!first) return;
    const i = view.nodes.indexOf(first);
    pane.scrollLeft = lay.pos[i][0] * k - pane.clientWidth / 2;
    pane.scrollTop = lay.pos[i][1] * k - pane.clientHeight / 2;
    drawMini();
  });
  foldBox.addEventListener("change", () => { st.fold = foldBox.checked; st.unfolded.clear(); render(); });
  pane.addEventListener("wheel", ev => {
    // Ctrl (or ⌘) + wheel zooms, as does a trackpad pinch; a plain wheel scrolls.
    if (!ev.ctrlKey && !ev.metaKey) return;
    ev.preventDefault();
    const r = pane.getBoundingClientRect();
    setScale(k * Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
  }, {passive: false});
  let drag = null;
  pane.addEventListener("mousedown", ev => { if (ev.button === 0) drag = {x: ev.clientX, y: ev.clientY, sl: pane.scrollLeft, st: pane.scrollTop}; pane._dragged = false; });
  window.addEventListener("mousemove", ev => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) pane._dragged = true;
    pane.scrollLeft = drag.sl - dx; pane.scrollTop = drag.st - dy;
  });
  window.addEventListener("mouseup", () => { drag = null; setTimeout(() => { pane._dragged = false; }, 0); });
  $(".tl-fit").addEventListener("click", fit);
  $(".tl-reset").addEventListener("click", () => setScale(1));
  $(".tl-zin").addEventListener("click", () => setScale(k * 1.25));
  $(".tl-zout").addEventListener("click", () => setScale(k / 1.25));
  render();
  // On load a drawing wider than its pane is scaled to the pane's width, but never below READABLE.
  const w = pane.clientWidth - 16;
  if (lay.width > w) setScale(Math.max(READABLE, w / lay.width));
  root.setAttribute("data-ready", "1");
}
function scan(){ document.querySelectorAll(".tl-root:not([data-ready])").forEach(init); }
window.torchloupeGraph = {init, scan};
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan); else scan();
})();
"""
