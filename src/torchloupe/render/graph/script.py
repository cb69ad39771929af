"""The interactive graph's JavaScript (inline; no CDN). It mirrors ``layout.py``: collapse, fold, layout."""

SCRIPT = r"""
(function(){
"use strict";
const root = document.currentScript.parentElement;
const D = JSON.parse(root.querySelector("script.tl-data").textContent);
const pane = root.querySelector(".tl-pane");
const details = root.querySelector(".tl-details");
const tree = root.querySelector(".tl-tree");
const search = root.querySelector(".tl-search");
const foldBox = root.querySelector(".tl-fold");
const counter = root.querySelector(".tl-count");
const st = {depth: D.depth, collapsed: new Set(), expanded: new Set(), fold: true, unfolded: new Set()};
let view = null, lay = null, zoom = {x: 0, y: 0, k: 1};
let shown = null;  // the key of the box whose details are in the panel
const HINT = details.innerHTML;
const CHAR_W = 6.6, NODE_H = 34, V_GAP = 30, H_GAP = 18;
const FILL = {input:"#d9f2d9", output:"#fde2d0", module:"#e8eefc", op:"#fff4cc", param:"#eeeeee", container:"#d5dcf5"};
const STROKE = {input:"#4a9a4a", output:"#d0763a", module:"#5a78c8", op:"#b8921a", param:"#999999", container:"#3b4f99"};
function esc(s){ return String(s).replace(/&/g,"&amp;").replace(/</g,"&lt;").replace(/>/g,"&gt;").replace(/"/g,"&quot;"); }
function fmt(n){ return n ? n.toLocaleString("en-US") : "-"; }
function shp(s){ return s ? "(" + s.join(", ") + ")" : ""; }

function collapsedAt(c, level){
  return st.collapsed.has(c) || (st.depth !== null && level >= st.depth && !st.expanded.has(c));
}
function collapse(){
  const rep = [], boxes = new Map(), order = [];
  for (const n of D.nodes){
    let key = "n" + n.id;
    for (let i = 0; i < n.scope.length; i++){ if (collapsedAt(n.scope[i], i)){ key = "c:" + n.scope[i]; break; } }
    rep[n.id] = key;
    if (!boxes.has(key)){
      order.push(key);
      if (key.startsWith("c:")){
        const name = key.slice(2), info = D.modules[name] || {type: "", params: 0};
        boxes.set(key, {key, label: name, type: info.type, kind: "container", members: [], name, shape: null,
                        params: info.params, macs: null, count: 1, flags: []});
      } else {
        boxes.set(key, {key, label: n.qual || n.type, type: n.type, kind: n.kind, members: [], name: n.name,
                        shape: null, params: n.params, macs: n.macs, count: 1, flags: n.flags});
      }
    }
    const b = boxes.get(key);
    b.members.push(n.id);
    if (n.shape) b.shape = n.shape;
    if (b.kind === "container" && n.macs) b.macs = (b.macs || 0) + n.macs;
  }
  const index = new Map(order.map((k, i) => [k, i]));
  const nodes = order.map(k => boxes.get(k));
  const seen = new Map();
  for (const [s, d, sh] of D.edges){
    const a = index.get(rep[s]), b = index.get(rep[d]);
    if (a !== b && !seen.has(a + ":" + b)) seen.set(a + ":" + b, [a, b, sh]);
  }
  let v = {nodes, edges: [...seen.values()]};
  if (st.fold) v = fold(v);
  return v;
}
function sig(b){ return b.type + "|" + b.params + "|" + b.members.map(m => D.nodes[m].type).join(","); }
function fold(v){
  const succ = v.nodes.map(() => new Set());
  for (const [a, b] of v.edges) succ[a].add(b);
  const parent = new Map();
  v.nodes.forEach((b, i) => { if (b.kind === "container") parent.set(i, b.name.slice(0, Math.max(0, b.name.lastIndexOf(".")))); });
  const merged = new Map(), n = v.nodes.length;
  let i = 0;
  while (i < n){
    if (!parent.has(i)){ i++; continue; }
    const run = [i], s = sig(v.nodes[i]);
    let j = i + 1;
    while (j < n){
      if (parent.has(j) && parent.get(j) === parent.get(i) && sig(v.nodes[j]) === s && succ[run[run.length-1]].has(j)){ run.push(j); j++; }
      else if (!parent.has(j) && v.nodes[j].kind === "param"){ j++; }
      else break;
    }
    if (run.length >= 3 && !st.unfolded.has(v.nodes[i].key)) for (const k of run.slice(1)) merged.set(k, i);
    i = run[run.length-1] + 1;
  }
  if (!merged.size) return v;
  const keep = [], newIndex = new Map();
  for (let k = 0; k < n; k++) if (!merged.has(k)){ newIndex.set(k, keep.length); keep.push(k); }
  const nodes = keep.map(k => {
    const b = v.nodes[k], rest = [...merged.entries()].filter(([, h]) => h === k).map(([k2]) => k2);
    if (!rest.length) return b;
    const last = v.nodes[rest[rest.length-1]];
    return Object.assign({}, b, {label: b.label + " … " + last.label.split(".").pop(), count: rest.length + 1,
      members: b.members.concat(...rest.map(r => v.nodes[r].members)), shape: last.shape,
      params: b.params + rest.reduce((t, r) => t + v.nodes[r].params, 0)});
  });
  const seen = new Map();
  for (const [a, b, s] of v.edges){
    const a2 = newIndex.get(merged.has(a) ? merged.get(a) : a), b2 = newIndex.get(merged.has(b) ? merged.get(b) : b);
    if (a2 !== b2 && !seen.has(a2 + ":" + b2)) seen.set(a2 + ":" + b2, [a2, b2, s]);
  }
  return {nodes, edges: [...seen.values()]};
}
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
function layout(v){
  const n = v.nodes.length, raw = v.edges.map(e => [e[0], e[1]]), dag = breakCycles(n, raw);
  const preds = Array.from({length: n}, () => []), succ = Array.from({length: n}, () => []);
  for (const [a, b] of dag){ preds[b].push(a); succ[a].push(b); }
  const indeg = preds.map(p => p.length), ready = [], layer = new Array(n).fill(0);
  for (let k = 0; k < n; k++) if (!indeg[k]) ready.push(k);
  while (ready.length){
    const k = ready.shift();
    for (const w of succ[k]){ layer[w] = Math.max(layer[w], layer[k] + 1); if (--indeg[w] === 0) ready.push(w); }
  }
  for (let q = n - 1; q >= 0; q--){
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
  const m = 20, xs = x.map(q => q - lo + m), ys = lay.map(L => m + NODE_H / 2 + L * (NODE_H + V_GAP));
  const routes = chains.map((chain, i) => {
    const pts = [[xs[chain[0]], ys[chain[0]] + NODE_H / 2]];
    for (const k of chain.slice(1, -1)) pts.push([xs[k], ys[k]]);
    const l = chain[chain.length-1]; pts.push([xs[l], ys[l] - NODE_H / 2]);
    if (dag[i][0] !== raw[i][0]) pts.reverse();
    return pts;
  });
  return {pos: v.nodes.map((_, k) => [xs[k], ys[k]]), size: sizes.slice(0, n), routes,
          width: hi - lo + 2 * m, height: 2 * m + Math.max(nl, 1) * (NODE_H + V_GAP) - V_GAP};
}
function pathD(pts){
  let d = "M" + pts[0][0].toFixed(1) + "," + pts[0][1].toFixed(1);
  for (let k = 0; k + 1 < pts.length; k++){
    const [x0, y0] = pts[k], [x1, y1] = pts[k+1], my = ((y0 + y1) / 2).toFixed(1);
    if (D.edgeStyle === "straight" || Math.abs(x1 - x0) < 0.5) d += " L" + x1.toFixed(1) + "," + y1.toFixed(1);
    else if (D.edgeStyle === "orthogonal") d += " L" + x0.toFixed(1) + "," + my + " L" + x1.toFixed(1) + "," + my + " L" + x1.toFixed(1) + "," + y1.toFixed(1);
    else d += " C" + x0.toFixed(1) + "," + my + " " + x1.toFixed(1) + "," + my + " " + x1.toFixed(1) + "," + y1.toFixed(1);
  }
  return d;
}
function frames(v, L){
  const boxes = new Map();
  v.nodes.forEach((b, i) => {
    if (b.kind === "input" || b.kind === "output") return;
    let scope;
    if (b.kind === "container"){
      const parts = b.name.split("."); scope = [];
      for (let k = 1; k < parts.length; k++){ const s = parts.slice(0, k).join("."); if (s in D.modules) scope.push(s); }
    } else scope = D.nodes[b.members[0]].scope;
    for (const c of scope){ if (!boxes.has(c)) boxes.set(c, []); boxes.get(c).push(i); }
  });
  const out = [];
  for (const [name, mem] of [...boxes.entries()].sort((p, q) => p[0].split(".").length - q[0].split(".").length)){
    const pad = 10 - 2 * Math.min(name.split(".").length - 1, 3);
    const x0 = Math.min(...mem.map(i => L.pos[i][0] - L.size[i][0] / 2)) - pad;
    const x1 = Math.max(...mem.map(i => L.pos[i][0] + L.size[i][0] / 2)) + pad;
    const y0 = Math.min(...mem.map(i => L.pos[i][1] - L.size[i][1] / 2)) - pad - 4;
    const y1 = Math.max(...mem.map(i => L.pos[i][1] + L.size[i][1] / 2)) + pad;
    out.push([name, x0, y0, x1, y1]);
  }
  return out;
}
function frameLabel(name){
  const short = name.slice(name.lastIndexOf(".") + 1);
  return (/^[0-9]+$/.test(short) || short === name) ? name : short;
}
function render(){
  view = collapse(); lay = layout(view);
  const p = ['<svg xmlns="http://www.w3.org/2000/svg" class="tl-graph" width="100%" height="100%">',
    '<style>' + D.style + '</style>',
    '<defs><marker id="tl-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7a8396"/></marker></defs>',
    '<g class="viewport">'];
  const fr = frames(view, lay);
  for (const [name, x0, y0, x1, y1] of fr)
    p.push('<rect class="frame" data-frame="' + esc(name) + '" x="' + x0 + '" y="' + y0 + '" width="' + (x1 - x0) + '" height="' + (y1 - y0) + '" rx="8"/>');
  for (const [name, x0, y0, x1] of fr){
    const right = fr.filter(f => name.startsWith(f[0] + ".")).length % 2 === 1;  // nesting among the frames drawn
    p.push('<text class="fl" data-frame="' + esc(name) + '" x="' + (right ? x1 - 4 : x0 + 4) + '" y="' + (y0 + 9) + '" text-anchor="' + (right ? "end" : "start") + '">' + esc(frameLabel(name)) + '</text>');
  }
  lay.routes.forEach((pts, i) => {
    const sh = view.edges[i][2];
    p.push('<path class="e" d="' + pathD(pts) + '" marker-end="url(#tl-arrow)">' + (sh ? '<title>' + esc(shp(sh)) + '</title>' : '') + '</path>');
  });
  view.nodes.forEach((b, i) => {
    const [cx, cy] = lay.pos[i], [bw, bh] = lay.size[i], [t, s] = boxText(b), kind = b.kind in FILL ? b.kind : "module";
    let stroke = STROKE[kind], extra = "";
    if (b.flags.some(f => f.startsWith("fusion"))){ stroke = "#e8412c"; extra = ' stroke-width="2.2"'; }
    else if (b.flags.includes("data-dependent")) extra = ' stroke-dasharray="4 2" stroke-width="1.8"';
    else if (b.kind === "container" || b.flags.includes("opaque")) extra = ' stroke-width="2"';
    p.push('<g class="box" data-key="' + esc(b.key) + '"><title>' + esc([b.label, b.type].concat(b.flags).join(" · ")) + '</title>' +
      '<rect x="' + (cx - bw / 2) + '" y="' + (cy - bh / 2) + '" width="' + bw + '" height="' + bh + '" rx="5" fill="' + FILL[kind] + '" stroke="' + stroke + '"' + extra + '/>' +
      '<text class="t" x="' + cx + '" y="' + (cy - 3) + '" text-anchor="middle">' + esc(t) + '</text>' +
      '<text class="s" x="' + cx + '" y="' + (cy + 10) + '" text-anchor="middle">' + esc(s) + '</text>' +
      (b.flags.includes("in-place") ? '<circle cx="' + (cx + bw / 2 - 5) + '" cy="' + (cy - bh / 2 + 5) + '" r="3" fill="#e8912c"/>' : "") + '</g>');
  });
  p.push('</g></svg>');
  pane.innerHTML = p.join("");
  attach();
  if (shown && !view.nodes.some(b => b.key === shown)){ shown = null; details.innerHTML = HINT; }
  counter.textContent = view.nodes.length + " boxes";
  pane.setAttribute("data-boxes", String(view.nodes.length));
  renderTree(); doSearch();
}
function svgEl(){ return pane.querySelector("svg"); }
function applyZoom(){
  const g = pane.querySelector("g.viewport");
  if (g) g.setAttribute("transform", "translate(" + zoom.x + "," + zoom.y + ") scale(" + zoom.k + ")");
}
function attach(){
  const svg = svgEl();
  if (!svg) return;
  svg.setAttribute("width", "100%"); svg.setAttribute("height", "100%"); svg.removeAttribute("viewBox");
  applyZoom();
}
function boxByKey(key){
  if (view) return view.nodes.find(b => b.key === key) || null;
  return null;
}
function toggle(name){
  const info = D.modules[name];
  if (!info) return;
  const level = name.split(".").length - 1;
  const isCollapsed = st.collapsed.has(name) || (st.depth !== null && levelOf(name) >= st.depth && !st.expanded.has(name));
  if (isCollapsed){ st.collapsed.delete(name); st.expanded.add(name); }
  else { st.expanded.delete(name); st.collapsed.add(name); }
  render();
}
const LEVEL = new Map();
for (const n of D.nodes) n.scope.forEach((c, i) => { if (!LEVEL.has(c)) LEVEL.set(c, i); });
function levelOf(name){ return LEVEL.has(name) ? LEVEL.get(name) : 0; }
function showDetails(b){
  shown = b.key;
  const rows = [];
  const add = (k, v) => rows.push("<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>");
  add("name", b.label); add("type", b.type); add("kind", b.kind);
  if (b.count > 1) add("repeated", "×" + b.count);
  if (b.shape) add("output shape", shp(b.shape));
  if (b.kind !== "container" && b.members.length === 1){
    const n = D.nodes[b.members[0]];
    add("input shapes", n.shapes_in.map(shp).join(", ") || "-");
    if (n.extra) add("config", n.extra);
    add("call", String(n.call + 1));
    add("activation bytes", fmt(n.bytes));
  }
  add("params", fmt(b.params)); add("mult-adds", fmt(b.macs));
  if (b.flags.length) add("notes", b.flags.join(", "));
  let scope = b.kind === "container" ? [] : D.nodes[b.members[0]].scope;
  const links = scope.map(c => '<button type="button" class="tl-collapse" data-container="' + esc(c) + '">collapse ' + esc(c) + '</button>').join(" ");
  details.innerHTML = "<table>" + rows.join("") + "</table>" + links;
}
pane.addEventListener("click", ev => {
  if (pane._dragged) return;
  const f = ev.target.closest("text.fl");
  if (f){ toggle(f.getAttribute("data-frame")); return; }
  const g = ev.target.closest("[data-key]");
  if (!g){ return; }
  if (!view) view = collapse();
  const b = boxByKey(g.getAttribute("data-key"));
  if (!b) return;
  if (b.kind === "container"){
    if (b.count > 1){ st.unfolded.add(b.key); render(); return; }
    toggle(b.name); return;
  }
  showDetails(b);
});
details.addEventListener("click", ev => {
  const btn = ev.target.closest("[data-container]");
  if (btn) toggle(btn.getAttribute("data-container"));
});
function renderTree(){
  const all = Object.keys(D.modules).filter(n => n && !D.modules[n].leaf && D.modules[n].calls && LEVEL.has(n));
  const isClosed = n => st.collapsed.has(n) || (st.depth !== null && levelOf(n) >= st.depth && !st.expanded.has(n));
  const closedSet = all.filter(isClosed);
  // Entries inside a collapsed container are not listed: the graph does not draw them either.
  const names = all.filter(n => !closedSet.some(c => n.startsWith(c + ".")));
  tree.innerHTML = names.map(n => {
    const lvl = levelOf(n), closed = isClosed(n);
    const short = n.slice(n.lastIndexOf(".") + 1);
    return '<div class="tl-item" style="padding-left:' + (lvl * 12) + 'px" title="' + esc(n) + '" data-tree="' + esc(n) + '">' + (closed ? "▸ " : "▾ ") + esc(short) + ' <span>' + esc(D.modules[n].type) + '</span></div>';
  }).join("");
}
tree.addEventListener("click", ev => {
  const it = ev.target.closest("[data-tree]");
  if (it) toggle(it.getAttribute("data-tree"));
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
  root.querySelector(".tl-hits").textContent = q ? hits + " match" + (hits === 1 ? "" : "es") : "";
  return first;
}
search.addEventListener("input", () => {
  const first = doSearch();
  if (!first) return;
  // Centre the first match: its box as drawn (the page's first layout or a re-layout here).
  const g = pane.querySelector('[data-key="' + CSS.escape(first.key) + '"]');
  if (!g) return;
  const bb = g.getBBox(), r = pane.getBoundingClientRect();
  zoom.x = r.width / 2 - (bb.x + bb.width / 2) * zoom.k; zoom.y = r.height / 2 - (bb.y + bb.height / 2) * zoom.k;
  applyZoom();
});
foldBox.addEventListener("change", () => { st.fold = foldBox.checked; st.unfolded.clear(); render(); });
pane.addEventListener("wheel", ev => {
  // Ctrl (or ⌘) + wheel zooms, as does a trackpad pinch; a plain wheel scrolls the page past the graph.
  if (!ev.ctrlKey && !ev.metaKey) return;
  ev.preventDefault();
  const r = pane.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
  const k = Math.min(4, Math.max(0.1, zoom.k * Math.exp(-ev.deltaY * 0.0015)));
  zoom.x = px - (px - zoom.x) * k / zoom.k; zoom.y = py - (py - zoom.y) * k / zoom.k; zoom.k = k; applyZoom();
}, {passive: false});
let drag = null;
pane.addEventListener("mousedown", ev => { drag = {x: ev.clientX, y: ev.clientY, zx: zoom.x, zy: zoom.y}; pane._dragged = false; });
window.addEventListener("mousemove", ev => {
  if (!drag) return;
  const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
  if (Math.abs(dx) + Math.abs(dy) > 3) pane._dragged = true;
  zoom.x = drag.zx + dx; zoom.y = drag.zy + dy; applyZoom();
});
window.addEventListener("mouseup", () => { drag = null; setTimeout(() => { pane._dragged = false; }, 0); });
root.querySelector(".tl-reset").addEventListener("click", () => { zoom = {x: 0, y: 0, k: 1}; applyZoom(); });
// Scale the drawing to the pane: "fit" shows all of it; on load only a drawing wider than its pane
// is scaled down (to the pane's width), so nothing is cut off at the right and text stays readable.
function fit(both){
  const g = pane.querySelector("g.viewport");
  if (!g) return;
  const bb = g.getBBox(), r = pane.getBoundingClientRect();
  if (!bb.width || !bb.height || !r.width || !r.height) return;
  const pad = 8, k = Math.min(1, (r.width - 2 * pad) / bb.width, both ? (r.height - 2 * pad) / bb.height : Infinity);
  zoom = {x: pad - bb.x * k, y: pad - bb.y * k, k: k}; applyZoom();
}
root.querySelector(".tl-fit").addEventListener("click", () => fit(true));
// The first picture is the Python layout already in the page; interactions re-lay out here.
view = collapse();
attach();
fit(false);
counter.textContent = view.nodes.length + " boxes";
pane.setAttribute("data-boxes", String(view.nodes.length));
renderTree();
root.setAttribute("data-ready", "1");
})();
"""
