"""Report section "Feature fusion": fusion points, branch shares (two methods), branch maps,
channel provenance at the ``cat``, CKA similarity and shares over training.

The branches are found from the traced fusion points when none are declared: those of the last
fusion point where separate branches or inputs meet (:func:`torchloupe.fusion.branch_specs`, what
``tl.fusion.contributions(branches=None)`` uses), so ``tl.report(model, (x1, x2))`` shows a two-input
model's branches with no extras. Residual joins (``x + f(x)``, ``graph.residuals``) are not fusion
points at all; a model whose only joins are residual says so, naming them.

Options (:class:`FusionOptions`, all optional; true classes are ``subject.targets``):

- ``branches``: ``{name: spec}``, each spec a module path (``"cnn1"``, ``"features.branch_a"``) or
  ``"input:i"`` (positional model input ``i``, for early fusion); what the command line's
  ``--branches cnn1,cnn2`` (``{"cnn1": "cnn1", "cnn2": "cnn2"}``) or ``--branches a=cnn1,b=cnn2``
  (``{"a": "cnn1", "b": "cnn2"}``) puts here. Without it the branches are found as above;
- ``targets``: ``(N,)`` class indices (else the predicted class);
- ``backgrounds``: ``{branch: (N, 1|3, H, W)}`` images in [0, 1] to draw each branch's map on (else
  the image input feeding that branch, else the subject's display images, else the map alone);
- ``history``: a :class:`torchloupe.fusion.ShareHistory`; ``deciding``: per class, the branch that
  decides it (or ``"both"``); ``about``: one line shown first.

Each part (contributions, branch maps, provenance, CKA, history) is computed and drawn on its own:
a part that cannot be shown says why in one line while the others show, and a table of computed
numbers comes before the figure drawn from them, so a drawing error never loses them.
"""

from __future__ import annotations

from torchloupe.reporting.options import SectionOptions

from dataclasses import dataclass
from typing import Any

from collections.abc import Callable

import torch
from torch import Tensor

from ... import fusion
from ...errors import TorchLoupeError
from ...fusion.linearity import branch_roots
from ...fusion.points import branch_specs, points as fusion_points
from ...inputs import Inputs
from ...structure.merges import ancestors
from ...structure.tracer import record
from ..base import Figure, Finding, NotApplicable, Subject, Table, Text, register


def _draw(blocks: list, what: str, make: Callable[[], object], caption: str) -> None:
    """Append ``Figure(make(), caption)``; a drawing error becomes one line naming the figure."""
    try:
        blocks.append(Figure(make(), caption=caption))
    except Exception as exc:  # a figure that cannot be drawn must not take the computed numbers with it
        blocks.append(Text(f"The {what} figure could not be drawn ({type(exc).__name__}: {exc}); "
                           f"the numbers above are unaffected."))


def _no_fusion_reason(graph, points) -> str:
    """Why no branches were found: the model's joins are residual (named by kind), or there are none."""
    kinds = {"residual": "residual add(s) x + f(x)", "dense": "dense concatenation(s) cat([x, f(x)])",
             "gate": "gate(s) x * g(x)"}
    counts = {k: sum(1 for n in graph.residuals if n.join == k) for k in kinds}
    parts = [f"{c} {kinds[k]}" for k, c in counts.items() if c]
    if parts:
        return (f"its joins are {', '.join(parts)}: one branch meeting a function of itself, which is not "
                f"fusion of separate branches or inputs")
    if points:
        return "its fusion points do not have two arguments that come down branches of their own"
    return "no op joins tensors from separate branches or inputs"


def _image_like(t) -> bool:
    return isinstance(t, Tensor) and t.dim() == 4 and t.shape[1] in (1, 3) and t.is_floating_point()


def _backgrounds(subject: Subject, xs: Inputs, specs: dict[str, str], graph, given: dict) -> dict[str, Tensor | None]:
    """Per branch, the images its map is drawn on: given ``backgrounds``, else the one image input
    upstream of the branch (scaled to [0, 1] per sample when it is not), else the subject's display
    images, else ``None`` (the map alone)."""
    from ...render.image import normalize

    roots = branch_roots(graph, specs)
    anc = ancestors(graph.nodes)
    inputs = [n.id for n in graph.inputs]
    positional = list(xs.args)
    out: dict[str, Tensor | None] = {}
    for b in specs:
        if given.get(b) is not None:
            out[b] = given[b]
            continue
        pick = None
        r = roots.get(b)
        if r is not None:
            fed = [i for i, nid in enumerate(inputs) if nid == r or anc[r] >> nid & 1]
            if len(fed) == 1 and fed[0] < len(positional) and _image_like(positional[fed[0]]):
                t = positional[fed[0]]
                lo, hi = float(t.min()), float(t.max())
                pick = t if lo >= 0.0 and hi <= 1.0 else normalize(t)
        out[b] = pick if pick is not None else subject.display_images
    return out


@dataclass(frozen=True)
class FusionOptions(SectionOptions):
    """``branches``: ``{name: spec}`` (a module path or ``"input:i"``), else found from the traced fusion
    points; ``backgrounds``: ``{branch: (N, 1|3, H, W)}`` images to draw each branch's map on;
    ``history``: a :class:`torchloupe.fusion.ShareHistory`; ``deciding``: per class, the branch that
    decides it (or ``"both"``); ``about``: one line shown first. True classes are ``Subject.targets``."""

    branches: Any = None
    backgrounds: Any = None
    history: Any = None
    deciding: Any = None
    about: str | None = None


@register("fusion", "Feature fusion",
          "Where the branches meet, how much of each prediction each branch carries, and what each branch looks at.",
          cost=4, options=FusionOptions)
def build(subject: Subject, options: FusionOptions):
    from ...render import fusion as draw

    spec = {k: getattr(options, k) for k in FusionOptions.own_names()}
    n = 24 if options.get("quick") else 48
    try:
        xs = Inputs.of(subject.inputs)
    except TorchLoupeError as exc:
        return NotApplicable(f"fusion views need tensor inputs: {exc}")
    xs = xs.slice(0, n)
    graph, values = record(subject.model, xs.slice(0, 2).args, dict(xs.slice(0, 2).kwargs), keep_values=True)
    points = fusion_points(graph)
    declared = spec.get("branches")
    if declared is not None:
        branches = {str(k): str(v) for k, v in dict(declared).items()}
        found_note = ""
    else:
        found = branch_specs(subject.model, points)
        if found is None:
            why = _no_fusion_reason(graph, points)
            return NotApplicable(
                f"{type(subject.model).__name__} has no fusion point: {why} (to name branches from Python: "
                f"Subject(..., options={{'fusion': {{'branches': {{name: module path or 'input:i'}}}}}}); "
                f"tl.fusion.find lists a model's fusion points)")
        branches, point = found
        found_note = (f"Branches found from the traced fusion point {point.name} ({point.kind}, joining "
                      f"{'separate inputs' if point.join == 'input' else 'separate branches'}): "
                      f"{', '.join(branches)}. Declare others with options={{'fusion': {{'branches': ...}}}} "
                      f"(command line: --branches).")
    B = xs.batch_size
    targets = subject.targets
    targets = None if targets is None else torch.as_tensor(targets)[:B]
    names = list(subject.labels) if subject.labels is not None else None
    out = subject.output
    blocks: list = []
    if spec.get("about"):
        blocks.append(Text(spec["about"]))
    if found_note:
        blocks.append(Text(found_note))
    joins = points  # every fusion point joins separate branches or inputs (residual joins are not among them)
    _draw(blocks, "fusion points", lambda: draw.points_figure(joins, title=f"{len(joins)} fusion point(s)"),
          "Fusion points in execution order: the op, its kind (early / late / iterative) and the modules (or "
          "inputs) feeding it, with each branch's channel range in a cat. Residual joins (x + f(x)) are not "
          "fusion and are not listed.")

    # -- contributions: numbers first (a table), then the figures drawn from them
    results: dict = {}
    try:
        first = fusion.contributions(subject.model, xs, branches, target=targets, method="auto", output=out)
        results[first.method] = first
        second = fusion.contributions(subject.model, xs, branches, target=targets, method="integrated_gradients",
                                      output=out)
        results["integrated_gradients"] = second
    except TorchLoupeError as exc:
        blocks.append(Text(f"Branch contributions could not be computed: {exc}"))
    if results:
        first = next(iter(results.values()))
        labels = first.targets
        n_cls = int(labels.max()) + 1 if labels.numel() else 0
        class_names = names if names is not None and len(names) >= n_cls else [str(i) for i in range(n_cls)]
        rows = []
        deciding = spec.get("deciding")
        for c in range(n_cls):
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
        ig = results.get("integrated_gradients")
        note = ""
        if ig is not None and ig.completeness is not None:
            note = f" Integrated gradients used {ig.steps} steps; largest completeness gap {float(ig.completeness.max()):.2e}."
        table = Table(cols, rows, caption=f"Per-class mean share of |contribution| to the class score, "
                                          f"{len(labels)} samples.{note}")
        blocks.append(table)
        shares = {b: float(first.shares[b].float().mean()) for b in branches}
        top = max(shares, key=shares.get)
        listed = ", ".join(f"{b} {100 * v:.0f}%" for b, v in sorted(shares.items(), key=lambda kv: -kv[1]))
        blocks.append(Finding(f"Branch {top} carries the most evidence for the class score: mean shares {listed} "
                              f"({first.method.replace('_', ' ')}, {len(labels)} samples).", table))
        methods = " (left) and integrated gradients (right)" if len(results) == 2 else ""
        _draw(blocks, "branch shares", lambda: draw.shares_figure(results, labels, class_names),
              f"Mean branch share per class, {first.method}{methods}; baseline '{first.baseline}' in branch-output "
              f"space. Shares are |contribution| / sum |contributions| to the class score.")
        row_names = [class_names[int(t)] for t in labels[:16]]
        _draw(blocks, "per-sample shares", lambda: draw.sample_shares_figure(results, n=16, names=row_names),
              "Per-sample shares (first 16 samples, labelled by target class).")

    # -- branch maps
    shapes = ", ".join(f"{k}: {tuple(t.shape)}" for k, t in xs.tensors())
    if not any(t.dim() == 4 for _, t in xs.tensors()):
        blocks.append(Text(f"No branch maps: Grad-CAM per branch draws over image inputs (B, C, H, W) from "
                           f"spatial (B, C, h, w) branch outputs; the inputs are {shapes}."))
    else:
        _branch_maps(blocks, subject, xs, branches, graph, spec, targets, names)
    _rest(blocks, subject, xs, branches, spec, points, joins, values, B)
    return blocks


def _branch_maps(blocks, subject, xs, branches, graph, spec, targets, names) -> None:
    from ...render import fusion as draw

    try:
        small = xs.slice(0, 4)
        bm = fusion.branch_maps(subject.model, small, branches, target=None if targets is None else targets[:4],
                                output=subject.output)
        bgs = _backgrounds(subject, small, branches, graph, spec.get("backgrounds") or {})
        bgs = {b: (None if v is None else v[:4]) for b, v in bgs.items()}
        tnames = names or []
        row_names = [tnames[int(t)] if int(t) < len(tnames) else f"class {int(t)}" for t in bm.targets[:4]]
        _draw(blocks, "branch maps", lambda: draw.branch_maps_figure(bgs, bm.maps, n=4, row_names=row_names),
              "Grad-CAM from each branch's own channels at its output, normalized jointly per sample (a dark map: "
              "that branch carried little of this prediction), drawn on the input that feeds the branch.")
    except TorchLoupeError as exc:
        blocks.append(Text(f"No branch maps: {exc}"))


def _rest(blocks, subject, xs, branches, spec, points, joins, values, B) -> None:
    """Channel provenance at the last 4-D cat, CKA and the shares over training."""
    from ...render import fusion as draw

    # -- channel provenance at the last 4-D cat
    cats = [p for p in joins if p.op in ("cat", "concat", "concatenate") and p.output_shape and len(p.output_shape) == 4]
    if cats:
        p = cats[-1]
        fused = values[p.node][0]
        ranges: dict[str, tuple[int, int]] = {}
        for i in p.inputs:  # one row per argument, even when two share a label
            key, k = i.label, 2
            while key in ranges:
                key, k = f"{i.label} ({k})", k + 1
            ranges[key] = i.channels
        _draw(blocks, "channel provenance",
              lambda: draw.provenance_figure(fused, ranges, title=f"channels of {p.name} (sample 0)"),
              "Channel provenance at the cat: the strongest channels each branch contributes to the fused tensor.")
    # -- CKA
    if B >= 4:
        try:
            cka = fusion.similarity(subject.model, xs, branches)
            _draw(blocks, "CKA", lambda: draw.cka_figure(cka),
                  f"Linear CKA (unbiased minibatch HSIC) between branch outputs and the fused tensor at {cka.point}: "
                  f"how alike the representations are, not what they contribute.")
        except TorchLoupeError as exc:
            blocks.append(Text(f"No CKA panel: {exc}"))
    else:
        blocks.append(Text(f"No CKA panel: linear CKA needs at least 4 samples, the report has {B}."))

    history = spec.get("history")
    if history is not None and history.steps:
        groups = None
        deciding = spec.get("deciding")
        if deciding and history.targets is not None:
            views = list(dict.fromkeys(deciding))
            groups = {f"decided by {v}": torch.tensor([deciding[int(t)] == v for t in history.targets]) for v in views}
        _draw(blocks, "shares over training", lambda: draw.share_curves_figure(history, groups),
              f"Mean branch share on a fixed probe batch during training ({history.method}), recorded by "
              f"tl.fusion.ShareTracker.")
