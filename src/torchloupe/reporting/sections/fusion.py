"""Report section "Feature fusion": fusion points, branch shares (two methods), branch maps,
channel provenance at the ``cat``, CKA similarity and shares over training.

The branches are found from the traced fusion points when none are declared: those of the last
fusion point where separate branches or inputs meet (:func:`torchloupe.fusion.branch_specs`, what
``tl.fusion.contributions(branches=None)`` uses), so ``tl.report(model, (x1, x2))`` shows a two-input
model's branches with no extras. Residual joins (``x + f(x)``, ``graph.residuals``) are not fusion
points at all; a model whose only joins are residual says so, naming them.

Computed as :class:`FusionData` (the fusion points, each method's contributions, the branch maps and
their backgrounds, the fused channels at the cat, CKA, the shares over training), drawn by its
``render()``. Options (:class:`FusionOptions`, all optional; true classes are ``subject.targets``):

- ``branches``: ``{name: spec}``, each spec a module path (``"cnn1"``, ``"features.branch_a"``) or
  ``"input:i"`` (positional model input ``i``, for early fusion); what the command line's
  ``--branches cnn1,cnn2`` (``{"cnn1": "cnn1", "cnn2": "cnn2"}``) or ``--branches a=cnn1,b=cnn2``
  (``{"a": "cnn1", "b": "cnn2"}``) puts here. Without it the branches are found as above;
- ``backgrounds``: ``{branch: (N, 1|3, H, W)}`` images in [0, 1] to draw each branch's map on (else
  the image input feeding that branch, else the subject's display images, else the map alone);
- ``history``: a :class:`torchloupe.fusion.ShareHistory`; ``deciding``: per class, the branch that
  decides it (or ``"both"``); ``about``: one line shown first;
- ``samples`` (half in quick mode), ``map_samples``, ``sample_rows``: how many samples the shares,
  the branch maps and the per-sample shares use.

Each part (contributions, branch maps, provenance, CKA, history) is computed on its own and drawn
on its own: a part that cannot be computed or drawn says why in one line while the others show, and
a table of computed numbers comes before the figure drawn from them, so a drawing error never loses
them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import fusion
from ...errors import TorchLoupeError, UsageError
from ...fusion.linearity import branch_roots
from ...fusion.points import branch_specs, points as fusion_points
from ...inputs import Inputs
from ...structure.merges import ancestors
from ...structure.tracer import record
from ..base import Figure, Finding, NotApplicable, SectionData, Subject, Table, Text, register
from ..base import on_cpu
from ..options import SectionOptions, check_int


@dataclass(frozen=True)
class FusionOptions(SectionOptions):
    """``branches``: ``{name: spec}`` (a module path or ``"input:i"``), else found from the traced fusion
    points; ``backgrounds``: ``{branch: (N, 1|3, H, W)}`` images to draw each branch's map on;
    ``history``: a :class:`torchloupe.fusion.ShareHistory`; ``deciding``: per class, the branch that
    decides it (or ``"both"``); ``about``: one line shown first. True classes are ``Subject.targets``.

    ``samples``: the samples whose branch contributions are computed (half of them in quick mode);
    ``map_samples``: the samples drawn with their branch maps; ``sample_rows``: the samples drawn in
    the per-sample shares."""

    branches: Any = None
    backgrounds: Any = None
    history: Any = None
    deciding: Any = None
    about: str | None = None
    samples: int = 48
    map_samples: int = 4
    sample_rows: int = 16

    def check(self) -> None:
        for name in ("samples", "map_samples", "sample_rows"):
            check_int("fusion", name, getattr(self, name))
        if self.branches is not None and (not isinstance(self.branches, Mapping) or not self.branches):
            raise UsageError(f"fusion option branches={self.branches!r}: expected a dict {{name: module path or "
                             f"'input:i'}}")
        if self.backgrounds is not None and not isinstance(self.backgrounds, Mapping):
            raise UsageError(f"fusion option backgrounds: expected a dict {{branch: (N, 1|3, H, W) images}}, got "
                             f"{type(self.backgrounds).__name__}")
        if self.history is not None and not hasattr(self.history, "steps"):
            raise UsageError(f"fusion option history: expected a tl.fusion.ShareHistory, got {type(self.history).__name__}")
        if self.deciding is not None and (isinstance(self.deciding, str) or not hasattr(self.deciding, "__getitem__")):
            raise UsageError(f"fusion option deciding={self.deciding!r}: expected per class the branch that decides "
                             f"it (a list, or a dict by class index)")
        if self.about is not None and not isinstance(self.about, str):
            raise UsageError(f"fusion option about: expected one line of text, got {type(self.about).__name__}")

    @property
    def sample_count(self) -> int:
        """The samples the contributions use: ``samples``, half of it in quick mode."""
        return max(1, self.samples // 2) if self.quick else self.samples


@dataclass
class FusionData(SectionData):
    """What the fusion section computed: the ``branches`` ``{name: spec}`` (``found`` says from which
    fusion point when they were not declared), the fusion ``points``; ``results`` each method's
    :class:`~torchloupe.fusion.FusionResult` on ``samples`` samples (``contrib_error`` why there are
    none) with ``class_names`` and ``deciding``; ``maps`` the branch maps
    (:class:`~torchloupe.fusion.BranchMaps`, ``maps_note`` why there are none) over ``backgrounds``
    with ``map_names`` (the target of each row); ``fused`` ``(C, h, w)`` sample 0 of the last 4-D
    ``cat`` named ``cat_name``, each argument's channel ``ranges``; ``cka``
    (:class:`~torchloupe.fusion.CKAResult`, ``cka_note`` why there is none); ``history``
    (:class:`~torchloupe.fusion.ShareHistory`)."""

    section: ClassVar[str] = "fusion"
    branches: dict[str, str]
    points: list
    samples: int
    about: str | None = None
    found: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    contrib_error: str = ""
    class_names: list[str] = field(default_factory=list)
    deciding: Any = None
    maps: Any = None
    maps_note: str = ""
    backgrounds: dict[str, Tensor | None] = field(default_factory=dict)
    map_names: list[str] = field(default_factory=list)
    fused: Tensor | None = None
    cat_name: str = ""
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    cka: Any = None
    cka_note: str = ""
    history: Any = None
    sample_rows: int = 16

    def render(self) -> list:
        """The blocks, each figure drawn on its own: one that fails says why in one line, the others and
        every table and finding still show."""
        from ...render import fusion as draw

        blocks: list = []
        if self.about:
            blocks.append(Text(self.about))
        if self.found:
            blocks.append(Text(self.found))
        points = self.points
        _draw(blocks, "fusion points", lambda: draw.points_figure(points, title=f"{len(points)} fusion point(s)"),
              "Fusion points in execution order: the op, its kind (early / late / iterative) and the modules (or "
              "inputs) feeding it, with each branch's channel range in a cat. Residual joins (x + f(x)) are not "
              "fusion and are not listed.")
        # -- contributions: numbers first (a table and what to conclude), then the figures drawn from them
        if self.contrib_error:
            blocks.append(Text(f"Branch contributions could not be computed: {self.contrib_error}"))
        if self.results:
            results = self.results
            first = next(iter(results.values()))
            labels = first.targets
            table = Table(self._share_columns(), self._share_rows(),
                          caption=f"Per-class mean share of |contribution| to the class score, {len(labels)} samples."
                                  f"{self._ig_note()}")
            blocks.append(table)
            blocks.append(Finding(shares_finding(first), table))
            methods = " (left) and integrated gradients (right)" if len(results) == 2 else ""
            names = self.class_names
            _draw(blocks, "branch shares", lambda: draw.shares_figure(results, labels, names),
                  f"Mean branch share per class, {first.method}{methods}; baseline '{first.baseline}' in branch-output "
                  f"space. Shares are |contribution| / sum |contributions| to the class score.")
            rows = self.sample_rows
            row_names = [names[int(t)] for t in labels[:rows]]
            _draw(blocks, "per-sample shares", lambda: draw.sample_shares_figure(results, n=rows, names=row_names),
                  f"Per-sample shares (first {rows} samples, labelled by target class).")
        # -- branch maps
        if self.maps is not None:
            bm, bgs, n, row_names = self.maps, self.backgrounds, self.maps.targets.shape[0], self.map_names
            _draw(blocks, "branch maps", lambda: draw.branch_maps_figure(bgs, bm.maps, n=n, row_names=row_names),
                  "Grad-CAM from each branch's own channels at its output, normalized jointly per sample (a dark map: "
                  "that branch carried little of this prediction), drawn on the input that feeds the branch.")
        elif self.maps_note:
            blocks.append(Text(self.maps_note))
        # -- channel provenance at the last 4-D cat
        if self.fused is not None:
            fused, ranges, name = self.fused, self.ranges, self.cat_name
            _draw(blocks, "channel provenance",
                  lambda: draw.provenance_figure(fused, ranges, title=f"channels of {name} (sample 0)"),
                  "Channel provenance at the cat: the strongest channels each branch contributes to the fused tensor.")
        # -- CKA
        if self.cka is not None:
            cka = self.cka
            before = len(blocks)
            _draw(blocks, "CKA", lambda: draw.cka_figure(cka),
                  f"Linear CKA (unbiased minibatch HSIC) between branch outputs and the fused tensor at {cka.point}: "
                  f"how alike the representations are, not what they contribute.")
            text = cka_finding(cka)
            if text:
                blocks.append(Finding(text, blocks[before]))
        elif self.cka_note:
            blocks.append(Text(self.cka_note))
        # -- shares over training
        history = self.history
        if history is not None and history.steps:
            groups = None
            deciding = self.deciding
            if deciding and history.targets is not None:
                views = list(dict.fromkeys(deciding))
                groups = {f"decided by {v}": torch.tensor([deciding[int(t)] == v for t in history.targets]) for v in views}
            before = len(blocks)
            _draw(blocks, "shares over training", lambda: draw.share_curves_figure(history, groups),
                  f"Mean branch share on a fixed probe batch during training ({history.method}), recorded by "
                  f"tl.fusion.ShareTracker.")
            text = history_finding(history)
            if text:
                blocks.append(Finding(text, blocks[before]))
        if not self.results and not any(isinstance(b, Finding) for b in blocks):
            why = self.contrib_error or "no contributions were computed"
            blocks.append(Finding(f"Nothing can be concluded about which branch carries the prediction: {why}."))
        return blocks

    # -- the shares table -------------------------------------------------------------------------------
    def _share_columns(self) -> list[str]:
        cols = ["class"] + (["deciding view"] if self.deciding else [])
        for m in self.results:
            cols += [f"{b} ({m.replace('_', ' ')})" for b in self.branches]
        return cols

    def _share_rows(self) -> list[list]:
        labels = next(iter(self.results.values())).targets
        rows = []
        for c in range(len(self.class_names)):
            sel = labels == c
            if not bool(sel.any()):
                continue
            row = [self.class_names[c]] + ([self.deciding[c]] if self.deciding else [])
            for res in self.results.values():
                row += [f"{float(res.shares[b][sel].mean()):.2f}" for b in self.branches]
            rows.append(row)
        return rows

    def _ig_note(self) -> str:
        ig = self.results.get("integrated_gradients")
        if ig is None or ig.completeness is None:
            return ""
        return f" Integrated gradients used {ig.steps} steps; largest completeness gap {float(ig.completeness.max()):.2e}."


def _draw(blocks: list, what: str, make: Callable[[], object], caption: str) -> None:
    """Append ``Figure(make(), caption)``; a drawing error becomes one line naming the figure."""
    try:
        blocks.append(Figure(make(), caption=caption))
    except Exception as exc:  # a figure that cannot be drawn must not take the computed numbers with it
        blocks.append(Text(f"The {what} figure could not be drawn ({type(exc).__name__}: {exc}); "
                           f"the numbers above are unaffected."))


# -- findings -----------------------------------------------------------------------------------------
def shares_finding(result: Any) -> str:
    """The branch with the largest mean share of |contribution| to the class score, and every branch's share."""
    shares = {b: float(s.float().mean()) for b, s in result.shares.items()}
    top = max(shares, key=shares.get)
    listed = ", ".join(f"{b} {100 * v:.0f}%" for b, v in sorted(shares.items(), key=lambda kv: -kv[1]))
    return (f"Branch {top} carries the most evidence for the class score: mean shares {listed} "
            f"({result.method.replace('_', ' ')}, {result.targets.numel()} samples).")


def cka_finding(cka: Any) -> str:
    """The branch whose output the fused features resemble most (linear CKA), and how alike the
    branches are to each other ("" without a fused row or with a NaN)."""
    names = list(cka.names)
    if len(names) < 3 or names[-1] != "fused":
        return ""
    m = cka.matrix.detach().double().cpu()
    k = len(names) - 1
    sim = {names[i]: float(m[-1, i]) for i in range(k)}
    if any(v != v for v in sim.values()):  # NaN: a constant feature
        return ""
    top = max(sim, key=sim.get)
    rest = ", ".join(f"{b} {v:.2f}" for b, v in sorted(sim.items(), key=lambda kv: -kv[1]) if b != top)
    pairs = [(float(m[i, j]), names[i], names[j]) for i in range(k) for j in range(i + 1, k)]
    v, a, b = max(pairs)
    alike = "alike" if v >= 0.8 else "partly alike" if v >= 0.5 else "unlike each other"
    pair = f"the most alike branches, {a} and {b}, are" if k > 2 else f"the outputs of {a} and {b} are"
    return (f"The fused features at {cka.point} resemble {top}'s output most (linear CKA {sim[top]:.2f}; {rest}), and "
            f"{pair} {alike} (CKA {v:.2f}); CKA measures similarity, not contribution.")


def history_finding(history: Any) -> str:
    """The branch whose mean share changed most between the first and the last recorded step."""
    means = history.mean_shares()
    if not means or len(history.steps) < 2:
        return ""
    change = {b: (float(v[0]), float(v[-1])) for b, v in means.items()}
    b, (x, y) = max(change.items(), key=lambda kv: abs(kv[1][1] - kv[1][0]))
    how = "rose" if y > x else "fell" if y < x else "stayed"
    return (f"Over training (steps {history.steps[0]} to {history.steps[-1]}), {b}'s mean share changed most: it {how} "
            f"from {x:.2f} to {y:.2f} on the probe batch.")


# -- build --------------------------------------------------------------------------------------------


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


def _backgrounds(subject: Subject, xs: Inputs, specs: dict[str, str], graph, given: Mapping) -> dict[str, Tensor | None]:
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


@register("fusion", "Feature fusion",
          "Where the branches meet, how much of each prediction each branch carries, and what each branch looks at.",
          cost=4, options=FusionOptions)
def build(subject: Subject, options: FusionOptions) -> FusionData | NotApplicable:
    try:
        xs = Inputs.of(subject.inputs)
    except TorchLoupeError as exc:
        return NotApplicable(f"fusion views need tensor inputs: {exc}")
    xs = xs.slice(0, options.sample_count)
    graph, values = record(subject.model, xs.slice(0, 2).args, dict(xs.slice(0, 2).kwargs), keep_values=True)
    points = fusion_points(graph)
    found_note = ""
    if options.branches is not None:
        branches = {str(k): str(v) for k, v in dict(options.branches).items()}
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
    # every fusion point joins separate branches or inputs (residual joins are not among them)
    data = FusionData(branches=branches, points=list(points), samples=B, about=options.about or None, found=found_note,
                      deciding=options.deciding, history=options.history, sample_rows=options.sample_rows)
    # -- contributions
    try:
        first = fusion.contributions(subject.model, xs, branches, target=targets, method="auto", output=out)
        data.results[first.method] = on_cpu(first)
        second = fusion.contributions(subject.model, xs, branches, target=targets, method="integrated_gradients",
                                      output=out)
        data.results["integrated_gradients"] = on_cpu(second)
    except TorchLoupeError as exc:
        data.contrib_error = str(exc)
    if data.results:
        labels = next(iter(data.results.values())).targets
        n_cls = int(labels.max()) + 1 if labels.numel() else 0
        data.class_names = names if names is not None and len(names) >= n_cls else [str(i) for i in range(n_cls)]
    # -- branch maps
    shapes = ", ".join(f"{k}: {tuple(t.shape)}" for k, t in xs.tensors())
    if not any(t.dim() == 4 for _, t in xs.tensors()):
        data.maps_note = (f"No branch maps: Grad-CAM per branch draws over image inputs (B, C, H, W) from "
                          f"spatial (B, C, h, w) branch outputs; the inputs are {shapes}.")
    else:
        k = options.map_samples
        try:
            small = xs.slice(0, k)
            bm = fusion.branch_maps(subject.model, small, branches, target=None if targets is None else targets[:k],
                                    output=out)
            bgs = _backgrounds(subject, small, branches, graph, options.backgrounds or {})
            data.maps = on_cpu(bm)
            data.backgrounds = {b: (None if v is None else v[:k].detach().cpu()) for b, v in bgs.items()}
            tnames = names or []
            data.map_names = [tnames[int(t)] if int(t) < len(tnames) else f"class {int(t)}" for t in bm.targets[:k]]
        except TorchLoupeError as exc:
            data.maps_note = f"No branch maps: {exc}"
    # -- channel provenance at the last 4-D cat
    cats = [p for p in points if p.op in ("cat", "concat", "concatenate") and p.output_shape and len(p.output_shape) == 4]
    if cats:
        p = cats[-1]
        data.fused = values[p.node][0].detach().cpu()
        data.cat_name = p.name
        for i in p.inputs:  # one row per argument, even when two share a label
            key, j = i.label, 2
            while key in data.ranges:
                key, j = f"{i.label} ({j})", j + 1
            data.ranges[key] = i.channels
    # -- CKA
    if B >= 4:
        try:
            data.cka = on_cpu(fusion.similarity(subject.model, xs, branches))
        except TorchLoupeError as exc:
            data.cka_note = f"No CKA panel: {exc}"
    else:
        data.cka_note = f"No CKA panel: linear CKA needs at least 4 samples, the report has {B}."
    return data


__all__ = ["FusionOptions", "FusionData", "build"]
