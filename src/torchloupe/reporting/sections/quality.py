"""Report section "Explanation quality": how right each attribution method is on this model.

One row per method (every CAM, gradient, guided backprop, deconvnet, and random maps as the
floor): pointing game (when object masks are known), deletion and insertion AUC, the
randomization sanity check, and the time per image. Curves of both tests are plotted.
"""

from __future__ import annotations

import time

import torch

from ...errors import TorchLoupeError
from ..base import Figure, NotApplicable, Subject, Table, Text, register

GUIDE = (
    "Reading guide: a good explanation points at the object (pointing game, higher is better), "
    "its most salient pixels matter to the model (deletion AUC low, insertion AUC high), and it "
    "changes when the weights are randomized (sanity check 'pass'). Random maps are the reference "
    "row; note that deleting scattered random pixels also wrecks fine texture, so on large natural "
    "images random maps can score a low deletion AUC: compare the methods among themselves there. "
    "The best value of each column is in bold."
)


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


@register(
    "quality",
    "Explanation quality",
    "Is the explanation right? Pointing game, deletion / insertion and a weight-randomization sanity check for every method.",
    90,
    cost=8,
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
    n = min(x0, int(subject.extras.get("quality_images", 1 if big else 4 if quick else 8)))
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

    rows, maps_of, times, rands, notes = [], {}, {}, {}, []
    for name, fn in list(methods.items()) + [("Random maps", None)]:
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
    dels, inss = {}, {}
    if names:
        xs, ts = x.repeat(len(names), 1, 1, 1), targets.repeat(len(names))
        d = ev.deletion_curve(subject.model, xs, stacked, ts, steps=steps, substrate="blur", output=output)
        i = ev.insertion_curve(subject.model, xs, stacked, ts, steps=steps, output=output)
        for j, name in enumerate(names):
            part = slice(j * n, (j + 1) * n)
            dels[name] = _part(d, part)
            inss[name] = _part(i, part)
    for name in names:
        sanity = "—"
        if name in rands:
            sanity = "pass" if bool(rands[name].passed.float().mean() >= 0.5) else "fail"
        pg = float(ev.pointing_game(maps_of[name], masks).float().mean()) if masks is not None else None
        rows.append([name, pg, float(dels[name].auc.mean()), float(inss[name].auc.mean()), sanity,
                     None if name == "Random maps" else times[name]])
    columns = ["method", "pointing game ↑", "deletion AUC ↓", "insertion AUC ↑", "sanity check", "ms / image"]
    if masks is None:
        columns.pop(1)
        rows = [r[:1] + r[2:] for r in rows]
    highlight = []
    real = [i for i, r in enumerate(rows) if r[0] != "Random maps"]
    for col, name in enumerate(columns):
        if "↑" in name or "↓" in name:
            vals = [(rows[i][col], i) for i in real if rows[i][col] is not None]
            if vals:
                best = (max if "↑" in name else min)(vals)[1]
                highlight.append((best, col))
    fmt = [[r[0]] + [("—" if v is None else f"{v:.3f}" if isinstance(v, float) and c != len(r) - 1
                      else f"{v:.1f}" if isinstance(v, float) else v) for c, v in enumerate(r[1:], 1)] for r in rows]
    blocks = [
        Text(GUIDE),
        Table(columns, fmt, caption=f"{n} image{'s' if n != 1 else ''}{_first_of(n, x0)}, layer {layer} for the CAMs, {steps} deletion / insertion steps onto a blurred copy, "
              f"sanity check on {len(groups)} layer groups (pass: rank correlation below 0.5 after all are randomized).",
              highlight=highlight),
        Figure(curves_figure(dels, inss), caption="Mean target probability over the images as pixels are deleted / inserted."),
    ]
    if rands:
        blocks.append(Figure(randomization_figure(rands), caption="Mean rank correlation with the trained model's map."))
    blocks.extend(Text(t) for t in notes)
    return blocks
