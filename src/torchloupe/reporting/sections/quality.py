"""Report section "Explanation quality": how right each attribution method is on this model.

One row per method (every CAM, gradient, guided backprop, deconvnet, and random maps as the
floor): pointing game (when object masks are known), deletion and insertion AUC, the
randomization sanity check, and the time per image. Curves of both tests are plotted.

Computed as :class:`QualityData` (every image's scores per method, the random-map baseline, the
sanity check's rank correlations), whose verdicts :func:`judge` decides from those numbers alone
by the rules the table's caption states; drawn by its ``render()``; options: :class:`QualityOptions`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ...errors import TorchLoupeError, UsageError
from ..base import Figure, Finding, NotApplicable, SectionData, Subject, Table, Text, register
from ..options import SectionOptions, check_int

# The defaults of the thresholds below which the section says "too few to conclude" instead of a verdict
# (QualityOptions' min_rank_images, min_rank_steps, min_sanity_images, decimals).
MIN_RANK_IMAGES = 4  # images before a column of scores names a best method
MIN_RANK_STEPS = 10  # deletion / insertion steps before those curves name a best method
MIN_SANITY_IMAGES = 2  # images checked before the randomization check says pass / fail
DECIMALS = 3  # scores are shown, compared and tied at this many decimals
RANDOM = "Random maps"
SUBSTRATE = "blur"  # what deleted pixels become (the caption says "onto a blurred copy")
# Pixels are ranked on maps rounded to 1 / RANK_RESOLUTION of their [0, 1] range (see build).
RANK_RESOLUTION = 1e5

# --quick on large inputs (ImageNet-size models, where every method costs forwards at full size):
# the most used methods only.
QUICK_LARGE = ("Grad-CAM", "Grad-CAM++", "LayerCAM", "Gradient", "Guided backprop")


@dataclass(frozen=True)
class QualityOptions(SectionOptions):
    """The quality section's knobs. Three size classes give the defaults of ``images``, ``steps`` and
    ``groups``, in this order in each ``*_by_size``: full, quick mode, and large inputs (more than
    ``large_pixels`` pixels, ImageNet-size models where every method costs forwards at full size;
    quick or not).

    ``images``: how many of the subject's inputs are measured (None: ``images_by_size``, 8 / 4 / 1).
    ``steps``: deletion / insertion steps (None: ``steps_by_size``, 24 / 16 / 5).
    ``groups``: how many layer groups the randomization cascade re-initialises, from the output down
    (None: ``groups_by_size``, 6 / 4 / 2). ``large_pixels``: H x W above which an input is large (128 x 128).
    ``sanity_images``: the first images the sanity check runs on (2). ``threshold``: a method passes
    the sanity check on an image when the rank correlation of its map with the trained model's falls
    below this once every group is randomized (0.5, Adebayo et al.'s reading). ``random_draws``:
    sets of random maps per image the baseline row averages (1). ``min_rank_images`` and
    ``min_rank_steps``: the images and steps a column needs before it names a best method (4, 10);
    ``min_sanity_images``: the images checked before the sanity check gives a verdict (2);
    ``decimals``: scores are shown, compared and tied at this many decimals (3). ``margin``: a column
    names a best method only when it beats random maps by at least this much AUC or pointing score
    (0.02); closer than that, the difference is within what another draw of random maps or images moves.
    """

    images: int | None = None
    steps: int | None = None
    groups: int | None = None
    images_by_size: Sequence[int] = (8, 4, 1)
    steps_by_size: Sequence[int] = (24, 16, 5)
    groups_by_size: Sequence[int] = (6, 4, 2)
    large_pixels: int = 128 * 128
    sanity_images: int = 2
    threshold: float = 0.5
    random_draws: int = 1
    min_rank_images: int = MIN_RANK_IMAGES
    min_rank_steps: int = MIN_RANK_STEPS
    min_sanity_images: int = MIN_SANITY_IMAGES
    decimals: int = DECIMALS
    margin: float = 0.02

    def check(self) -> None:
        check_int("quality", "images", self.images, none="by size, images_by_size")
        check_int("quality", "steps", self.steps, none="by size, steps_by_size")
        check_int("quality", "groups", self.groups, none="by size, groups_by_size")
        for name in ("images_by_size", "steps_by_size", "groups_by_size"):
            value = getattr(self, name)
            if (isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
                raise UsageError(f"quality option {name}={value!r}: expected 3 positive integers (full, quick, large)")
        for name in ("large_pixels", "sanity_images", "random_draws", "min_rank_images", "min_rank_steps",
                     "min_sanity_images"):
            check_int("quality", name, getattr(self, name))
        check_int("quality", "decimals", self.decimals, least=0)
        m = self.margin
        if not isinstance(m, (int, float)) or isinstance(m, bool) or not 0.0 <= m < 1.0:
            raise UsageError(f"quality option margin={m!r}: expected a score difference in [0, 1)")
        t = self.threshold
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not -1.0 < t <= 1.0:
            raise UsageError(f"quality option threshold={t!r}: expected a rank correlation in (-1, 1]")

    def sizes(self, shape: Sequence[int]) -> tuple[int, int, int, bool]:
        """``(images, steps, groups, large)`` for inputs of ``shape`` ``(N, C, H, W)``: the ones given,
        else those of the size class (``images`` not capped at N here)."""
        large = int(shape[-1]) * int(shape[-2]) > self.large_pixels
        size = 2 if large else 1 if self.quick else 0
        return (self.images or self.images_by_size[size], self.steps or self.steps_by_size[size],
                self.groups or self.groups_by_size[size], large)


def _count_inputs(x: Any) -> str:
    """How many tensor inputs a tuple or dict of model inputs holds, in words ("several" when unknown)."""
    from ...errors import InputError
    from ...inputs import Inputs

    try:
        return str(len(Inputs.of(x).tensors()))
    except InputError:
        return "several"


def _number_word(n: int) -> str:
    words = ("zero", "one", "two", "three", "four", "five", "six")
    return words[n] if 0 <= n < len(words) else str(n)


def guide(options: QualityOptions | None = None) -> str:
    """How to read the table (the text above it), with the thresholds ``options`` uses."""
    o = options or QualityOptions()
    return (
        "Reading guide: a good explanation points at the object (pointing game, higher is better), "
        "its most salient pixels matter to the model (deletion AUC low, insertion AUC high), and it "
        "changes when the weights are randomized (sanity check 'pass'). Random maps are the reference "
        "row: a column marks its best method in bold (every method tied with it at the "
        f"{_number_word(o.decimals)} decimals shown too) only when that method beats random maps by at least "
        f"{o.margin:g}, "
        f"not every method ties, and the table rests on at least {o.min_rank_images} images and "
        f"{o.min_rank_steps} deletion / insertion steps. "
        "Deleting scattered random pixels also wrecks fine texture, so on large natural images random "
        "maps can score a low deletion AUC; the column then names no best."
    )


GUIDE = guide()



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
    formatted rows, the (row, column) cells in bold, its caption and one sentence per conclusion; and
    the decisions themselves: ``verdicts`` the sanity check per method checked ("pass", "fail" or "too
    few images"), ``best`` per scored column (its label: "pointing game", "deletion AUC", "insertion
    AUC") the methods marked best (every one tied with the best, or none), ``undecided`` per column (and
    "sanity check") why no best or verdict is given."""

    columns: list[str]
    rows: list[list[str]]
    highlight: list[tuple[int, int]]
    caption: str
    conclusions: list[str]
    verdicts: dict[str, str] = field(default_factory=dict)
    best: dict[str, tuple[str, ...]] = field(default_factory=dict)
    undecided: dict[str, str] = field(default_factory=dict)


def _fmt(v: float | None, decimals: int = DECIMALS) -> str:
    return "—" if v is None else f"{v:.{decimals}f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _verdict(checks: tuple[bool, ...], least: int) -> str:
    return "too few images" if len(checks) < least else "pass" if all(checks) else "fail"


def _sanity_cell(checks: tuple[bool, ...] | None, least: int = MIN_SANITY_IMAGES) -> str:
    if checks is None:
        return "—"
    if len(checks) < least:
        return f"too few images ({len(checks)})"
    return f"{_verdict(checks, least)} ({sum(checks)}/{len(checks)})"


def judge(scores: list[MethodScores], *, images: int, steps: int, sanity_images: int, groups: int,
          threshold: float | None = None, given: int | None = None, layer: str = "",
          options: QualityOptions | None = None) -> QualityTable:
    """The table, its bold cells, caption and conclusions, by the rules the caption states (the
    thresholds are ``options``'; ``threshold`` defaults to its ``threshold``).

    - Sanity check: ``pass`` only when the method's map decorrelates (rank correlation below
      ``threshold`` after all ``groups`` layer groups are randomized) on *every* image checked; a
      method that passes on some images fails, and the cell shows the count (``fail (1/2)``). With
      fewer than ``min_sanity_images`` images checked the cell says so instead of a verdict.
    - Best of a scored column: the methods whose value, shown at ``decimals`` decimals, equals the
      best one (ties all marked), unless every method ties, random maps come within ``margin`` of the best, or
      the table rests on fewer than ``min_rank_images`` images (and, for deletion / insertion, fewer
      than ``min_rank_steps`` steps): then nothing is marked and a conclusion says why.
    """
    o = options or QualityOptions()
    dec = o.decimals
    threshold = o.threshold if threshold is None else threshold
    masks = any(s.pointing is not None for s in scores)
    metrics = ([("pointing", "pointing game ↑", "pointing game", True)] if masks else []) + [
        ("deletion", "deletion AUC ↓", "deletion AUC", False), ("insertion", "insertion AUC ↑", "insertion AUC", True)]
    columns = ["method"] + [m[1] for m in metrics] + ["sanity check", "ms / image"]
    rows = [[s.name] + [_fmt(getattr(s, m[0]), dec) for m in metrics] + [_sanity_cell(s.sanity, o.min_sanity_images),
            "—" if s.ms is None else f"{s.ms:.1f}"] for s in scores]
    real = [i for i, s in enumerate(scores) if s.name != RANDOM]
    rand = next((s for s in scores if s.name == RANDOM), None)
    highlight: list[tuple[int, int]] = []
    conclusions: list[str] = []
    best: dict[str, tuple[str, ...]] = {}
    undecided: dict[str, str] = {}
    if not real:
        conclusions.append("No attribution method applies to this model, so nothing can be concluded about "
                           "their quality.")
    few = []
    if images < o.min_rank_images:
        few.append(f"{_plural(images, 'image')} (at least {o.min_rank_images} needed)")
    few_steps = steps < o.min_rank_steps
    for col, (attr, _, label, higher) in enumerate(metrics, start=1):
        vals = {i: round(getattr(scores[i], attr), dec) for i in real if getattr(scores[i], attr) is not None}
        if not vals:
            continue
        best[label] = ()
        why = few + ([f"{steps} steps (at least {o.min_rank_steps} needed)"] if few_steps and attr != "pointing" else [])
        if why:
            undecided[label] = f"too few to rank the methods ({', '.join(why)})"
            conclusions.append(f"{label}: {undecided[label]}; no best is marked.")
            continue
        top = max(vals.values()) if higher else min(vals.values())
        tied = [i for i, v in vals.items() if v == top]
        r = None if rand is None or getattr(rand, attr) is None else round(getattr(rand, attr), dec)
        if r is not None and ((top - r) < o.margin if higher else (r - top) < o.margin):
            undecided[label] = (f"random maps ({r:.{dec}f}) do as well as or better than every method "
                                f"(best {top:.{dec}f})" if (r >= top if higher else r <= top) else
                                f"random maps ({r:.{dec}f}) come within {o.margin:g} of the best method "
                                f"({top:.{dec}f})")
            conclusions.append(f"{label}: {undecided[label]}; this test does not tell the methods apart here, so no "
                               f"best is marked.")
        elif len(tied) == len(vals) and len(vals) > 1:
            undecided[label] = f"all {len(vals)} methods tie at {top:.{dec}f}"
            conclusions.append(f"{label}: {undecided[label]}; no best is marked.")
        else:
            highlight.extend((i, col) for i in tied)
            best[label] = tuple(scores[i].name for i in tied)
            ref = "" if r is None else f", random maps {r:.{dec}f}"
            conclusions.append(f"{label}: best {', '.join(best[label])} ({top:.{dec}f}{ref})"
                               + (f", {len(tied)} methods tied" if len(tied) > 1 else "") + ".")
    checked = [s for s in scores if s.sanity is not None]
    verdicts = {s.name: _verdict(s.sanity, o.min_sanity_images) for s in checked}
    enough = sanity_images >= o.min_sanity_images
    if checked:
        if not enough:
            undecided["sanity check"] = (f"too few images to conclude ({_plural(sanity_images, 'image')} checked, "
                                         f"at least {o.min_sanity_images} needed)")
            conclusions.append(f"Sanity check: {undecided['sanity check']}; no verdict is given.")
        else:
            passed = [s.name for s in checked if verdicts[s.name] == "pass"]
            failed = [s.name for s in checked if verdicts[s.name] != "pass"]
            line = (f"Sanity check: {len(passed)} of {len(checked)} methods pass on all {sanity_images} images"
                    + (f"; fail: {', '.join(failed)}" if failed else "") + ".")
            conclusions.append(line)
    what = f"{_plural(images, 'image')}{_first_of(images, given or images)}"
    rule = (f"pass when the rank correlation with the trained model's map is below {threshold:g} after all {groups} "
            f"groups are randomized, on all {_plural(sanity_images, 'image')} (a method passing on some of them "
            f"fails); (k/n): the images where it is below" if enough else
            f"too few images for a verdict (at least {o.min_sanity_images} needed)")
    caption = (f"{what}{f', layer {layer} for the CAMs' if layer else ''}, {steps} deletion / insertion steps onto a "
               f"blurred copy. Sanity check on {_plural(sanity_images, 'image')} and {groups} layer groups: {rule}.")
    return QualityTable(columns, rows, highlight, caption, conclusions, verdicts, best, undecided)


def _first_of(n: int, given: int) -> str:
    """" (the first of 3 given)" when the table covers fewer images than the subject has."""
    return f" (the first of {given} given)" if n < given else ""


@dataclass
class QualityData(SectionData):
    """What the quality section measured on the first ``images`` of the subject's ``given`` inputs.

    ``deletion`` / ``insertion``: per method in table order, and last under ``"Random maps"`` the
    baseline, each image's :class:`~torchloupe.evaluate.CurveResult` (``curves`` ``(B, steps + 1)``,
    ``auc`` ``(B,)``; the baseline's B rows are ``random_draws`` sets of maps of every image, set after
    set); ``pointing``: per method (baseline included), each image's pointing-game hit ``(B,)`` bool
    (None without object masks); ``sanity``: per method checked, the
    :class:`~torchloupe.evaluate.RandomizationResult` on the first ``sanity_images`` images
    (``similarity`` ``(k, groups)``: the rank correlation with the trained model's map after each layer
    group is randomized, from the output down); ``ms``: milliseconds per image; ``steps``, ``groups``,
    ``layer`` (the CAMs'), ``notes`` (methods that do not apply, and why), ``options`` (the thresholds
    the verdicts use).

    Decided from those numbers alone by :func:`judge`, the rules the table's caption states:
    ``scores`` (each method's means, :class:`MethodScores`), ``verdicts`` (the sanity check per method:
    "pass" when the last correlation is below ``options.threshold`` on every image checked, else
    "fail", or "too few images"), ``best`` (per column label, every method tied with the best, or
    none), ``undecided`` (per column label and "sanity check": why no best or verdict is given:
    too few images or steps, random maps as good, every method tied) and ``conclusions``.
    """

    section: ClassVar[str] = "quality"
    layer: str
    images: int
    given: int
    steps: int
    groups: int
    sanity_images: int
    deletion: dict[str, Any]
    insertion: dict[str, Any]
    pointing: dict[str, torch.Tensor] | None = None
    sanity: dict[str, Any] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    options: QualityOptions = field(default_factory=QualityOptions)
    scores: list[MethodScores] = field(init=False, repr=False)
    verdicts: dict[str, str] = field(init=False)
    best: dict[str, tuple[str, ...]] = field(init=False)
    undecided: dict[str, str] = field(init=False)
    conclusions: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.scores = [self.method_scores(name) for name in self.deletion]
        t = self.table()
        self.verdicts, self.best, self.undecided, self.conclusions = t.verdicts, t.best, t.undecided, t.conclusions

    def method_scores(self, name: str) -> MethodScores:
        """``name``'s means over the images (the baseline's over every draw too) and its sanity check
        per image: the last rank correlation below the threshold."""
        hits = None if self.pointing is None else float(self.pointing[name].float().mean())
        checks = None
        if name in self.sanity:
            checks = tuple(bool(v) for v in (self.sanity[name].similarity[:, -1] < self.options.threshold).tolist())
        return MethodScores(name, hits, float(self.deletion[name].auc.float().mean()),
                            float(self.insertion[name].auc.float().mean()), checks,
                            None if name == RANDOM else self.ms.get(name))

    @property
    def baseline(self) -> MethodScores | None:
        """The random-map baseline's row (None when it was not measured)."""
        return next((s for s in self.scores if s.name == RANDOM), None)

    def table(self) -> QualityTable:
        return judge(self.scores, images=self.images, steps=self.steps, sanity_images=self.sanity_images,
                     groups=self.groups, threshold=self.options.threshold, given=self.given, layer=self.layer,
                     options=self.options)

    def render(self) -> list:
        from ...render.quality import curves_figure, randomization_figure

        t = self.table()
        shown = Table(t.columns, t.rows, caption=t.caption, highlight=t.highlight)
        methods = [n for n in self.deletion if n != RANDOM]
        blocks = [
            Text(guide(self.options)),
            shown,
            Figure(curves_figure(self.deletion, self.insertion),
                   caption="Mean target probability over the images as pixels are deleted / inserted.",
                   alt=f"Two panels of curves, one line per method ({', '.join(methods)}) and a dashed gray line for "
                       f"random maps: the target class probability as the most salient pixels are deleted (left) "
                       f"or revealed (right) in {self.steps} steps."),
        ]
        if self.sanity:
            blocks.append(Figure(randomization_figure(self.sanity), caption=(
                f"Mean rank correlation with the trained model's map over the {_plural(self.sanity_images, 'image')} "
                f"checked; the markers at the right are each image's final value: a method passes only when all of "
                f"them are below the dotted line."),
                alt=f"One line per method checked ({len(self.sanity)}): the rank correlation of its map with the trained "
                    f"model's as {self.groups} layer groups are re-initialised from the output down, and open diamonds "
                    f"for each image's final value against a dotted line at {self.options.threshold:g}."))
        blocks.extend(Text(t) for t in self.notes)
        # what to conclude, read from the table: at the end of the section and in the report's summary
        blocks.extend(Finding(line, shown) for line in t.conclusions)
        return blocks


def _normalize(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1)
    return ((m - lo) / (hi - lo).clamp_min(1e-12)).float()


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


def _part(r, part: slice):
    """The rows ``part`` of a :class:`~torchloupe.evaluate.CurveResult`, on the CPU and on their own
    (a view would pickle the whole batch's storage)."""
    return dataclasses.replace(r, curves=r.curves[part].cpu().clone(), auc=r.auc[part].cpu().clone(),
                               targets=r.targets[part].cpu().clone(), fractions=r.fractions.cpu().clone())


def _cpu(r):
    """A :class:`~torchloupe.evaluate.RandomizationResult` with its tensors on the CPU."""
    return dataclasses.replace(r, similarity=r.similarity.detach().cpu(), original=r.original.detach().cpu(),
                               passed=r.passed.cpu())


@register(
    "quality",
    "Explanation quality",
    "Is the explanation right? Pointing game, deletion / insertion and a weight-randomization sanity check for every method.",
    cost=8,
    options=QualityOptions,
)
def build(subject: Subject, options: QualityOptions) -> QualityData | NotApplicable:
    import warnings

    from ... import cam
    from ... import evaluate as ev
    from .cam import cam_layer

    x = subject.inputs
    if not isinstance(x, torch.Tensor):
        return NotApplicable(f"the quality measures perturb one image batch, and this model takes "
                             f"{_count_inputs(x)} inputs; deleting pixels of one while the others stay says "
                             f"little about the explanation (the fusion section shows what each input carries)")
    if x.dim() != 4 or subject.display_images is None:
        return NotApplicable("the inputs are not a batch of images")
    quick = bool(options.quick)
    count, steps, group_count, big = options.sizes(x.shape)
    x0 = x.shape[0]
    n = min(x0, count)
    x = x[:n]
    preds = subject.shared.predictions()  # the one forward every class section shares
    if preds.scores is None:
        return NotApplicable(subject.no_scores())
    targets = preds.top[:n]
    output = subject.output
    try:
        layer = cam_layer(subject, x)
    except TorchLoupeError as exc:
        return NotApplicable(f"no layer with a spatial output: {exc}")
    groups = ev.layer_groups(subject.model, group_count)
    masks = subject.masks[:n] if subject.masks is not None else None
    methods = explainers(subject.model, x, layer, quick or big, QUICK_LARGE if quick and big else None, output)
    g = torch.Generator().manual_seed(int(options.seed))
    random_maps = torch.rand(options.random_draws * n, *x.shape[-2:], generator=g)  # draw after draw

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
    k = min(n, options.sanity_images)
    checked = {name: fn for name, fn in methods.items() if name in maps_of}
    # The CAMs of each randomized copy from one shared forward / backward (tl.cam.compare).
    keys = {cam.title_of(cls): key for key, cls in cam.METHODS.items() if cam.title_of(cls) in checked}
    grouped = {name: fn for name, fn in checked.items() if name not in keys}
    if keys:
        grouped["CAMs"] = lambda m, inp, t: {cam.title_of(r.method): r.maps for r in cam.compare(m, inp, list(keys.values()), layer, t, output=output).values()}
    check = dict(target=targets[:k], blocks=groups, threshold=float(options.threshold), output=output)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            given = {name: maps_of[name][:k] for name in grouped if name in maps_of}
            if keys:
                given["CAMs"] = {name: maps_of[name][:k] for name in keys}
            rands = ev.randomization_check(subject.model, x[:k], grouped, original=given, **check)
            rands = {name: _cpu(rands[name]) for name in checked}  # table order
        except TorchLoupeError:  # one method fails on a randomized copy: check them one by one
            for name, fn in checked.items():
                try:
                    rands[name] = _cpu(ev.randomization_check(subject.model, x[:k], fn, original=maps_of[name][:k],
                                                              **check))
                except TorchLoupeError as exc:
                    notes.append(f"{name} (sanity check): {exc}")
    # Every method's maps in one batch per test: fewer, fuller forwards than one call per method.
    names = list(maps_of)
    flat = {m: maps_of[m].reshape(-1, *maps_of[m].shape[-2:]).float().cpu() for m in names}
    # Pixels are ranked on maps rounded to 1e-5 of their [0, 1] range: methods equal in exact arithmetic
    # (CAM, Grad-CAM, HiResCAM after global average pooling and a linear layer) differ by ~1e-7 of
    # float rounding, which would otherwise reorder near-tied pixels and draw them as different curves.
    dels, inss, hits = {}, {}, {}
    if names:
        stacked = _normalize(torch.cat([flat[m] for m in names])).mul(RANK_RESOLUTION).round().div(RANK_RESOLUTION)
        rows = stacked.shape[0] // n  # every method's maps are a whole number of batches (random: one per draw)
        xs, ts = x.repeat(rows, 1, 1, 1), targets.repeat(rows)
        d = ev.deletion_curve(subject.model, xs, stacked, ts, steps=steps, substrate=SUBSTRATE, output=output)
        i = ev.insertion_curve(subject.model, xs, stacked, ts, steps=steps, output=output)
        start = 0
        for name in names:
            part = slice(start, start + flat[name].shape[0])
            start = part.stop
            dels[name], inss[name] = _part(d, part), _part(i, part)
            if masks is not None:
                reps = flat[name].shape[0] // n
                hits[name] = ev.pointing_game(maps_of[name].reshape(flat[name].shape), masks.repeat(reps, 1, 1)).cpu()
    return QualityData(layer=layer, images=n, given=x0, steps=steps, groups=len(groups), sanity_images=k,
                       deletion=dels, insertion=inss, pointing=hits if masks is not None else None, sanity=rands,
                       ms={name: t for name, t in times.items() if name != RANDOM}, notes=notes, options=options)
