"""Report section "Explanation quality": how right each attribution method is on this model.

One row per method (every CAM, gradient, guided backprop, deconvnet, and random maps as the
floor): pointing game (when object masks are known), deletion and insertion AUC, the
randomization sanity check, and the time per image. Curves of both tests are plotted.
"""

from __future__ import annotations

from torchloupe.reporting.options import SectionOptions

import time
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import TorchLoupeError
from ..base import Figure, Finding, NotApplicable, Subject, Table, Text, register

# Thresholds below which the section says "too few to conclude" instead of giving a verdict.
MIN_RANK_IMAGES = 4  # images before a column of scores names a best method
MIN_RANK_STEPS = 10  # deletion / insertion steps before those curves name a best method
MIN_SANITY_IMAGES = 2  # images checked before the randomization check says pass / fail
DECIMALS = 3  # scores are shown, compared and tied at this many decimals
RANDOM = "Random maps"

GUIDE = (
    "Reading guide: a good explanation points at the object (pointing game, higher is better), "
    "its most salient pixels matter to the model (deletion AUC low, insertion AUC high), and it "
    "changes when the weights are randomized (sanity check 'pass'). Random maps are the reference "
    "row: a column marks its best method in bold (every method tied with it at the three decimals "
    "shown too) only when that method does better than random maps, not every method ties, and the "
    f"table rests on at least {MIN_RANK_IMAGES} images and {MIN_RANK_STEPS} deletion / insertion steps. "
    "Deleting scattered random pixels also wrecks fine texture, so on large natural images random "
    "maps can score a low deletion AUC; the column then names no best."
)


@dataclass(frozen=True)
class MethodScores:
    """One method's measured quality: mean pointing game (``None`` without object masks), mean deletion
    and insertion AUC, the sanity check per image checked (``True``: the rank correlation with the
    trained model's map fell below the threshold once every layer group was randomized; ``None``: not
    checked) and milliseconds per image (``None`` for random maps)."""

    name: str
    pointing: float | None
    deletion: float
    insertion: float
    sanity: tuple[bool, ...] | None = None
    ms: float | None = None


@dataclass(frozen=True)
class QualityTable:
    """What the section shows, decided from :class:`MethodScores` alone (no model): the table's columns,
    formatted rows, the (row, column) cells in bold, its caption and one sentence per conclusion."""

    columns: list[str]
    rows: list[list[str]]
    highlight: list[tuple[int, int]]
    caption: str
    conclusions: list[str]


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.{DECIMALS}f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _sanity_cell(checks: tuple[bool, ...] | None) -> str:
    if checks is None:
        return "—"
    if len(checks) < MIN_SANITY_IMAGES:
        return f"too few images ({len(checks)})"
    return f"{'pass' if all(checks) else 'fail'} ({sum(checks)}/{len(checks)})"


def judge(scores: list[MethodScores], *, images: int, steps: int, sanity_images: int, groups: int,
          threshold: float = 0.5, given: int | None = None, layer: str = "") -> QualityTable:
    """The table, its bold cells, caption and conclusions, by the rules the caption states.

    - Sanity check: ``pass`` only when the method's map decorrelates (rank correlation below
      ``threshold`` after all ``groups`` layer groups are randomized) on *every* image checked; a
      method that passes on some images fails, and the cell shows the count (``fail (1/2)``). With
      fewer than ``MIN_SANITY_IMAGES`` images checked the cell says so instead of a verdict.
    - Best of a scored column: the methods whose value, shown at ``DECIMALS`` decimals, equals the
      best one (ties all marked), unless every method ties, random maps do as well as the best, or
      the table rests on fewer than ``MIN_RANK_IMAGES`` images (and, for deletion / insertion, fewer
      than ``MIN_RANK_STEPS`` steps): then nothing is marked and a conclusion says why.
    """
    masks = any(s.pointing is not None for s in scores)
    metrics = ([("pointing", "pointing game ↑", "pointing game", True)] if masks else []) + [
        ("deletion", "deletion AUC ↓", "deletion AUC", False), ("insertion", "insertion AUC ↑", "insertion AUC", True)]
    columns = ["method"] + [m[1] for m in metrics] + ["sanity check", "ms / image"]
    rows = [[s.name] + [_fmt(getattr(s, m[0])) for m in metrics] + [_sanity_cell(s.sanity),
            "—" if s.ms is None else f"{s.ms:.1f}"] for s in scores]
    real = [i for i, s in enumerate(scores) if s.name != RANDOM]
    rand = next((s for s in scores if s.name == RANDOM), None)
    highlight: list[tuple[int, int]] = []
    conclusions: list[str] = []
    few = []
    if images < MIN_RANK_IMAGES:
        few.append(f"{_plural(images, 'image')} (at least {MIN_RANK_IMAGES} needed)")
    few_steps = steps < MIN_RANK_STEPS
    for col, (attr, _, label, higher) in enumerate(metrics, start=1):
        vals = {i: round(getattr(scores[i], attr), DECIMALS) for i in real if getattr(scores[i], attr) is not None}
        if not vals:
            continue
        why = few + ([f"{steps} steps (at least {MIN_RANK_STEPS} needed)"] if few_steps and attr != "pointing" else [])
        if why:
            conclusions.append(f"{label}: too few to rank the methods ({', '.join(why)}); no best is marked.")
            continue
        best = max(vals.values()) if higher else min(vals.values())
        tied = [i for i, v in vals.items() if v == best]
        r = None if rand is None or getattr(rand, attr) is None else round(getattr(rand, attr), DECIMALS)
        if r is not None and (r >= best if higher else r <= best):
            conclusions.append(f"{label}: random maps ({r:.{DECIMALS}f}) do as well as or better than every method "
                               f"(best {best:.{DECIMALS}f}); this test does not tell the methods apart here, so no "
                               f"best is marked.")
        elif len(tied) == len(vals) and len(vals) > 1:
            conclusions.append(f"{label}: all {len(vals)} methods tie at {best:.{DECIMALS}f}; no best is marked.")
        else:
            highlight.extend((i, col) for i in tied)
            who = ", ".join(scores[i].name for i in tied)
            ref = "" if r is None else f", random maps {r:.{DECIMALS}f}"
            conclusions.append(f"{label}: best {who} ({best:.{DECIMALS}f}{ref})"
                               + (f", {len(tied)} methods tied" if len(tied) > 1 else "") + ".")
    checked = [s for s in scores if s.sanity is not None]
    if checked:
        if sanity_images < MIN_SANITY_IMAGES:
            conclusions.append(f"Sanity check: too few images to conclude ({_plural(sanity_images, 'image')} "
                               f"checked, at least {MIN_SANITY_IMAGES} needed); no verdict is given.")
        else:
            passed = [s.name for s in checked if all(s.sanity)]
            failed = [s.name for s in checked if not all(s.sanity)]
            line = (f"Sanity check: {len(passed)} of {len(checked)} methods pass on all {sanity_images} images"
                    + (f"; fail: {', '.join(failed)}" if failed else "") + ".")
            conclusions.append(line)
    what = f"{_plural(images, 'image')}{_first_of(images, given or images)}"
    rule = (f"pass when the rank correlation with the trained model's map is below {threshold:g} after all {groups} "
            f"groups are randomized, on all {_plural(sanity_images, 'image')} (a method passing on some of them "
            f"fails); (k/n): the images where it is below" if sanity_images >= MIN_SANITY_IMAGES else
            f"too few images for a verdict (at least {MIN_SANITY_IMAGES} needed)")
    caption = (f"{what}{f', layer {layer} for the CAMs' if layer else ''}, {steps} deletion / insertion steps onto a "
               f"blurred copy. Sanity check on {_plural(sanity_images, 'image')} and {groups} layer groups: {rule}.")
    return QualityTable(columns, rows, highlight, caption, conclusions)


def _normalize(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1)
    return ((m - lo) / (hi - lo).clamp_min(1e-12)).float()


# --quick on large inputs (ImageNet-size models, where every method costs forwards at full size):
# the most used methods only.
QUICK_LARGE = ("Grad-CAM", "Grad-CAM++", "LayerCAM", "Gradient", "Guided backprop")


def explainers(model, x: torch.Tensor, layer: str, quick: bool, only: tuple[str, ...] | None = None,
               output=None) -> dict:
    """name -> fn(model, x, targets) -> (N, H, W) maps in [0, 1]; all methods of tl.cam and tl.saliency
    (those running a forward per channel, Score-CAM, unless ``quick``), or those named in ``only``."""
    from ... import cam, saliency

    out = {}
    for cls in cam.METHODS.values():
        if (getattr(cls, "forward_per_channel", False) and quick) or (only is not None and cam.title_of(cls) not in only):
            continue
        out[cam.title_of(cls)] = lambda m, inp, t, cls=cls: cls(m, layer)(inp, t, output=output).maps
    for name, fn in (("Gradient", saliency.gradient), ("Guided backprop", saliency.guided_backprop),
                     ("Deconvnet", saliency.deconvnet)):
        if only is not None and name not in only:
            continue
        out[name] = lambda m, inp, t, fn=fn: _normalize(fn(m, inp, t, output=output).abs().sum(1))
    return out


def _first_of(n: int, given: int) -> str:
    """" (the first of 3 given)" when the table covers fewer images than the subject has."""
    return f" (the first of {given} given)" if n < given else ""


def _part(r, part: slice):
    """The rows ``part`` of a :class:`~torchloupe.evaluate.CurveResult`."""
    from dataclasses import replace

    return replace(r, curves=r.curves[part], auc=r.auc[part], targets=r.targets[part])


@dataclass(frozen=True)
class QualityOptions(SectionOptions):
    """``images``: how many inputs the quality measures run on (None: 8; 4 in quick mode; 1 above 128x128 px)."""

    images: int | None = None

@register(
    "quality",
    "Explanation quality",
    "Is the explanation right? Pointing game, deletion / insertion and a weight-randomization sanity check for every method.",
    cost=8,
    options=QualityOptions,
)
def build(subject: Subject, options: dict):
    import warnings

    from ... import cam
    from ... import evaluate as ev
    from .cam import cam_layer
    from ...probe import eval_forward
    from ...render.quality import curves_figure, randomization_figure

    x = subject.inputs
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or subject.display_images is None:
        return NotApplicable("the inputs are not a batch of images")
    quick = bool(options.get("quick"))
    big = x.shape[-1] * x.shape[-2] > 128 * 128
    x0 = x.shape[0]
    n = min(x0, int(options.images or (1 if big else 4 if quick else 8)))
    x = x[:n]
    scores = subject.scores(eval_forward(subject.model, x))
    if scores is None:
        return NotApplicable(subject.no_scores())
    targets = scores.argmax(1)
    output = subject.output
    try:
        layer = cam_layer(subject, x)
    except TorchLoupeError as exc:
        return NotApplicable(f"no layer with a spatial output: {exc}")
    # Large inputs (ImageNet-size models) get coarser curves and sanity steps to stay within seconds.
    steps = 5 if big else 16 if quick else 24
    groups = ev.layer_groups(subject.model, 2 if big else 4 if quick else 6)
    masks = subject.masks[:n] if subject.masks is not None else None
    methods = explainers(subject.model, x, layer, quick or big, QUICK_LARGE if quick and big else None, output)
    g = torch.Generator().manual_seed(int(options.get("seed", 0)))
    random_maps = torch.rand(n, *x.shape[-2:], generator=g)

    maps_of, times, rands, notes = {}, {}, {}, []
    for name, fn in list(methods.items()) + [(RANDOM, None)]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                maps_of[name] = random_maps if fn is None else fn(subject.model, x, targets)
                times[name] = (time.perf_counter() - t0) / n * 1000
        except TorchLoupeError as exc:
            notes.append(f"{name}: {exc}")
            maps_of.pop(name, None)
    # The sanity check of every method on the same randomized copies of the model.
    k = min(n, 2)
    checked = {name: fn for name, fn in methods.items() if name in maps_of}
    # The CAMs of each randomized copy from one shared forward / backward (tl.cam.compare).
    keys = {cam.title_of(cls): key for key, cls in cam.METHODS.items() if cam.title_of(cls) in checked}
    grouped = {name: fn for name, fn in checked.items() if name not in keys}
    if keys:
        grouped["CAMs"] = lambda m, inp, t: {cam.title_of(r.method): r.maps for r in cam.compare(m, inp, list(keys.values()), layer, t, output=output).values()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            given = {name: maps_of[name][:k] for name in grouped if name in maps_of}
            if keys:
                given["CAMs"] = {name: maps_of[name][:k] for name in keys}
            rands = ev.randomization_check(subject.model, x[:k], grouped, target=targets[:k], blocks=groups,
                                           original=given, output=output)
            rands = {name: rands[name] for name in checked}  # table order
        except TorchLoupeError:  # one method fails on a randomized copy: check them one by one
            for name, fn in checked.items():
                try:
                    rands[name] = ev.randomization_check(subject.model, x[:k], fn, target=targets[:k], blocks=groups,
                                                         original=maps_of[name][:k], output=output)
                except TorchLoupeError as exc:
                    notes.append(f"{name} (sanity check): {exc}")
    # Every method's maps in one batch per test: fewer, fuller forwards than one call per method.
    names = list(maps_of)
    stacked = torch.cat([maps_of[m].reshape(n, *maps_of[m].shape[-2:]).float().cpu() for m in names]) if names else None
    # Pixels are ranked on maps rounded to 1e-5 of their [0, 1] range: methods equal in exact arithmetic
    # (CAM, Grad-CAM, HiResCAM after global average pooling and a linear layer) differ by ~1e-7 of
    # float rounding, which would otherwise reorder near-tied pixels and draw them as different curves.
    if stacked is not None:
        stacked = _normalize(stacked).mul(1e5).round().div(1e5)
    dels, inss = {}, {}
    if names:
        xs, ts = x.repeat(len(names), 1, 1, 1), targets.repeat(len(names))
        d = ev.deletion_curve(subject.model, xs, stacked, ts, steps=steps, substrate="blur", output=output)
        i = ev.insertion_curve(subject.model, xs, stacked, ts, steps=steps, output=output)
        for j, name in enumerate(names):
            part = slice(j * n, (j + 1) * n)
            dels[name] = _part(d, part)
            inss[name] = _part(i, part)
    threshold = next(iter(rands.values())).threshold if rands else 0.5
    scores = [
        MethodScores(
            name,
            float(ev.pointing_game(maps_of[name], masks).float().mean()) if masks is not None else None,
            float(dels[name].auc.mean()), float(inss[name].auc.mean()),
            tuple(bool(v) for v in rands[name].passed.tolist()) if name in rands else None,
            None if name == RANDOM else times[name])
        for name in names
    ]
    table = judge(scores, images=n, steps=steps, sanity_images=k, groups=len(groups), threshold=threshold, given=x0,
                  layer=layer)
    shown = Table(table.columns, table.rows, caption=table.caption, highlight=table.highlight)
    blocks = [
        Text(GUIDE),
        shown,
        Figure(curves_figure(dels, inss), caption="Mean target probability over the images as pixels are deleted / inserted."),
    ]
    if rands:
        blocks.append(Figure(randomization_figure(rands), caption=(
            f"Mean rank correlation with the trained model's map over the {_plural(k, 'image')} checked; the markers "
            f"at the right are each image's final value: a method passes only when all of them are below the dotted "
            f"line.")))
    blocks.extend(Text(t) for t in notes)
    # what to conclude, read from the table: at the end of the section and in the report's summary
    blocks.extend(Finding(line, shown) for line in table.conclusions)
    return blocks
