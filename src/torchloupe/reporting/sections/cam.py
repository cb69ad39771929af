"""Report section "Class activation maps": every CAM method side by side on the subject's images."""

from __future__ import annotations

import torch

from ...errors import TorchLoupeError
from ..base import Figure, Finding, NotApplicable, Subject, Table, Text, register

MAX_IMAGES = 4
MASKED_MAX_FORWARDS = 512  # methods running one forward per channel and image (Score-CAM): skipped above this


def _setup(subject: Subject):
    """``(inputs, images, layer)``: the first images of the explained input (input 0 of a
    multi-input model, the others alongside), what to draw them on, and the CAM layer."""
    from ...inputs import Inputs

    first = subject.explained_input
    images = subject.display_images
    if not isinstance(first, torch.Tensor) or first.dim() != 4 or images is None:
        return NotApplicable("the inputs are not a batch of images")
    x = first[:MAX_IMAGES] if isinstance(subject.inputs, torch.Tensor) else Inputs.of(subject.inputs).slice(0, MAX_IMAGES)
    images = images[:MAX_IMAGES]
    try:
        layer = cam_layer(subject, x)
    except TorchLoupeError as exc:
        return NotApplicable(f"no layer with a spatial output: {exc}")
    return x, images, layer


def _first(x):
    """The explained images of what ``_setup`` returned (a tensor, or input 0 of ``Inputs``)."""
    return x if isinstance(x, torch.Tensor) else x.get(0)


def cam_layer(subject: Subject, x: torch.Tensor | None = None) -> str:
    """The layer the CAMs of a subject read, found once per subject (``subject.shared``) by
    :func:`find_cam_layer` on its whole batch (``x`` is not needed; kept for callers passing it)."""
    return subject.shared.cam_layer()


def find_cam_layer(subject: Subject, x: torch.Tensor) -> str:
    """The layer the CAMs of a subject read: ``extras["cam_layer"]``, else the last of the subject's
    ``layers`` (``loupe report --layers``) whose output is a spatial map, else the default (the last
    spatial layer of the model, see :func:`torchloupe.cam.default_layer`)."""
    from ...cam import default_layer
    from ...layers import find_layers
    from ...probe import activations

    if subject.extras.get("cam_layer"):
        return subject.extras["cam_layer"]
    if subject.layers:
        names = [n for n, _ in find_layers(subject.model, list(subject.layers))]
        outs = activations(subject.model, x[:1] if isinstance(x, torch.Tensor) else x.slice(0, 1), names)
        spatial = [n for n in names if isinstance(outs.get(n), torch.Tensor) and outs[n].dim() == 4
                   and outs[n].shape[-1] * outs[n].shape[-2] > 1]
        if spatial:
            return spatial[-1]
    return default_layer(subject.model, x)[0]


def _label(subject: Subject, t: int) -> str:
    if subject.labels is not None and 0 <= t < len(subject.labels):
        return str(subject.labels[t])
    return f"class {t}"


@register(
    "cam",
    "Class activation maps",
    "Which pixels made the network decide: every CAM method on the same images, for the predicted class.",
    50,
)
def build(subject: Subject, options: dict):
    setup = _setup(subject)
    if isinstance(setup, NotApplicable):
        return setup
    x, images, layer = setup
    from ... import cam
    from ...render.cam import method_grid

    preds = subject.shared.predictions()
    if preds.scores is None:
        return NotApplicable(subject.no_scores())
    n = _first(x).shape[0]
    probs, targets = preds.probs[:n], preds.top[:n]
    results, notes, keys = {}, [], []
    for key, cls in cam.METHODS.items():  # every registered method
        if getattr(cls, "forward_per_channel", False):  # Score-CAM: one masked forward per channel and image
            channels = cam.to_map(_shape_of(subject.model, x, layer), _first(x).shape[2:]).shape[1]
            work = channels * _first(x).shape[0]
            if options.get("quick") or work > MASKED_MAX_FORWARDS:
                notes.append(f"{cam.title_of(cls)} skipped: it needs up to {work:,} masked forwards here.")
                continue
        keys.append(key)
    try:  # all methods from one forward / backward
        compared = cam.compare(subject.model, x, keys, layer, targets, output=subject.output)
        results = {cam.title_of(r.method): r for r in compared.values()}
        notes.extend(f"{cam.title_of(k)} does not apply: {why}" for k, why in compared.skipped.items())
    except TorchLoupeError:  # one method does not apply: run them one by one to say which
        for key in keys:
            cls = cam.METHODS[key]
            try:
                results[cam.title_of(cls)] = cls(subject.model, layer)(x, targets, output=subject.output)
            except TorchLoupeError as exc:
                notes.append(f"{cam.title_of(cls)} does not apply: {exc}")
    rows = [_label(subject, int(t)) + f" (p = {float(probs[i, t]):.2f})" for i, t in enumerate(targets)]
    fig = method_grid(results, images, row_titles=rows)
    grid = Figure(fig, caption=f"Layer {layer}; each row: one image and its predicted class with the softmax score.",
                  alt=f"A grid of heat maps over {n} input images, one column per CAM method ({', '.join(results)}): "
                      f"red where the method finds evidence for the predicted class, blue where it finds none.")
    blocks = [
        grid,
        Table(
            ["image", "predicted class", "score"],
            [[i, _label(subject, int(t)), round(float(probs[i, t]), 4)] for i, t in enumerate(targets)],
        ),
    ]
    blocks.extend(Text(n) for n in notes)
    finding = agreement(results)
    if finding:
        blocks.append(Finding(finding, grid))
    return blocks


def agreement(results: dict) -> str:
    """One sentence on where the CAM methods agree: the mean pairwise Pearson correlation of their
    maps over the images, and the method farthest from the others ("" with fewer than 2 methods)."""
    names = list(results)
    if len(names) < 2:
        return ""
    maps = torch.stack([results[k].maps.detach().float().cpu().flatten(1) for k in names])  # (M, B, P)
    maps = maps - maps.mean(dim=2, keepdim=True)
    maps = maps / maps.norm(dim=2, keepdim=True).clamp_min(1e-12)
    corr = torch.einsum("mbp,nbp->mnb", maps, maps).mean(dim=2)  # (M, M): mean over images
    m = len(names)
    off = corr[~torch.eye(m, dtype=torch.bool)].reshape(m, m - 1)
    overall = float(off.mean())
    each = off.mean(dim=1)
    worst = int(each.argmin())
    level = "agree closely" if overall >= 0.8 else "mostly agree" if overall >= 0.5 else "disagree"
    text = (f"The {m} CAM methods {level} on where the evidence is: mean pairwise correlation of their maps "
            f"{overall:.2f} over {results[names[0]].maps.shape[0]} images")
    if m > 2 and float(each[worst]) < overall - 0.1:
        text += f"; {names[worst]} differs most ({float(each[worst]):.2f} on average with the others)"
    return text + "."


def _shape_of(model, x, layer):
    from ...probe import activations

    return activations(model, x[:1] if isinstance(x, torch.Tensor) else x.slice(0, 1), layer)[layer]
