"""Report section "Feature fusion": fusion points, branch shares (two methods), branch maps,
channel provenance at the ``cat``, CKA similarity and shares over training.

Reads ``subject.extras["fusion"]``, a dict with ``branches`` (``{name: "module.path" | "input:i"}``,
required) and optionally ``targets`` (``(N,)`` class indices, else the predicted class),
``backgrounds`` (``{branch: (N, 3, H, W)}`` images to draw each branch's map on), ``history``
(a :class:`torchloupe.fusion.ShareHistory`), ``deciding`` (per class, the branch that decides it,
or ``"both"``) and ``about`` (one line).
"""

from __future__ import annotations

import torch

from ... import fusion
from ...errors import TorchLoupeError
from ...fusion.points import points as fusion_points
from ...structure.tracer import record
from ..base import Figure, NotApplicable, Subject, Table, Text, register


def _inputs(subject: Subject, n: int) -> tuple:
    x = subject.inputs
    xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    return tuple(t[:n] for t in xs)


@register("fusion", "Feature fusion",
          "Where the branches meet, how much of each prediction each branch carries, and what each branch looks at.",
          80, cost=4)
def build(subject: Subject, options: dict):
    from ...render import fusion as draw

    spec = (subject.extras or {}).get("fusion")
    if not spec or "branches" not in spec:
        return NotApplicable("no branches declared (from Python: Subject(..., extras={'fusion': {'branches': "
                             "{name: module path}}}); tl.fusion.find lists a model's fusion points)")
    branches = dict(spec["branches"])
    n = 24 if options.get("quick") else 48
    xs = _inputs(subject, n)
    B = xs[0].shape[0]
    targets = spec.get("targets")
    targets = None if targets is None else torch.as_tensor(targets)[:B]
    names = list(subject.labels) if subject.labels is not None else None
    blocks = []
    if spec.get("about"):
        blocks.append(Text(spec["about"]))

    graph, values = record(subject.model, tuple(t[:2] for t in xs), keep_values=True)
    points = fusion_points(graph)
    blocks.append(Figure(draw.points_figure(points, title=f"{len(points)} fusion point(s)"),
                         caption="Fusion points in execution order: the op, its kind (early / late / iterative) and "
                                 "the modules (or inputs) feeding it, with each branch's channel range in a cat."))

    try:
        first = fusion.contributions(subject.model, xs, branches, target=targets, method="auto")
        second = fusion.contributions(subject.model, xs, branches, target=targets, method="integrated_gradients")
    except TorchLoupeError as exc:
        return blocks + [Text(f"contributions could not be computed: {exc}")]
    results = {first.method: first, "integrated_gradients": second}
    labels = first.targets
    class_names = names or [str(i) for i in range(int(labels.max()) + 1)]
    blocks.append(Figure(draw.shares_figure(results, labels, class_names),
                         caption=f"Mean branch share per class, {first.method} (left) and integrated gradients "
                                 f"(right); baseline '{first.baseline}' in branch-output space. Shares are "
                                 f"|contribution| / sum |contributions| to the class score."))
    rows = []
    deciding = spec.get("deciding")
    for c in range(len(class_names)):
        sel = labels == c
        if not bool(sel.any()):
            continue
        row = [class_names[c]] + ([deciding[c]] if deciding else [])
        for res in results.values():
            row += [f"{float(res.shares[b][sel].mean()):.2f}" for b in branches]
        rows.append(row)
    cols = ["class"] + (["deciding view"] if deciding else [])
    for m in results:
        cols += [f"{b} ({m.replace('_', ' ')})" for b in branches]
    gap = float(second.completeness.max()) if second.completeness is not None else float("nan")
    blocks.append(Table(cols, rows, caption=f"Per-class mean shares. Integrated gradients used {second.steps} steps; "
                                            f"largest completeness gap {gap:.2e}."))
    row_names = [class_names[int(t)] for t in labels[:16]]
    blocks.append(Figure(draw.sample_shares_figure(results, n=16, names=row_names),
                         caption="Per-sample shares (first 16 samples, labelled by target class)."))

    backgrounds = spec.get("backgrounds") or {}
    try:
        bm = fusion.branch_maps(subject.model, tuple(t[:4] for t in xs), branches,
                                target=None if targets is None else targets[:4])
        bgs = {b: backgrounds.get(b, subject.display_images)[:4] for b in branches}
        if all(v is not None for v in bgs.values()):
            blocks.append(Figure(draw.branch_maps_figure(bgs, bm.maps, n=4, row_names=row_names[:4]),
                                 caption="Grad-CAM from each branch's own channels at its output, normalized jointly "
                                         "per sample (a dark map: that branch carried little of this prediction)."))
    except TorchLoupeError as exc:
        blocks.append(Text(f"no branch maps: {exc}"))

    cats = [p for p in points if p.op in ("cat", "concat", "concatenate") and p.output_shape and len(p.output_shape) == 4]
    if cats:
        p = cats[-1]
        fused = values[p.node][0]
        ranges: dict[str, tuple[int, int]] = {}
        for i in p.inputs:  # one row per argument, even when two share a label
            key, k = i.label, 2
            while key in ranges:
                key, k = f"{i.label} ({k})", k + 1
            ranges[key] = i.channels
        blocks.append(Figure(draw.provenance_figure(fused, ranges, title=f"channels of {p.name} (sample 0)"),
                             caption="Channel provenance at the cat: the strongest channels each branch contributes "
                                     "to the fused tensor."))
    try:
        cka = fusion.similarity(subject.model, xs, branches)
        blocks.append(Figure(draw.cka_figure(cka),
                             caption=f"Linear CKA (unbiased minibatch HSIC) between branch outputs and the fused tensor "
                                     f"at {cka.point}: how alike the representations are, not what they contribute."))
    except TorchLoupeError as exc:
        blocks.append(Text(f"no CKA panel: {exc}"))

    history = spec.get("history")
    if history is not None and history.steps:
        groups = None
        if deciding and history.targets is not None:
            views = list(dict.fromkeys(deciding))
            groups = {f"decided by {v}": torch.tensor([deciding[int(t)] == v for t in history.targets]) for v in views}
        blocks.append(Figure(draw.share_curves_figure(history, groups),
                             caption=f"Mean branch share on a fixed probe batch during training "
                                     f"({history.method}), recorded by tl.fusion.ShareTracker."))
    return blocks
