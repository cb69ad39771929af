"""Report section "Class activation maps": every CAM method side by side on the subject's images.

Computed as :class:`CamData` (the maps of every method, the images, the predicted classes and their
probabilities), drawn by its ``render()``; options: :class:`CamOptions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ...errors import TorchLoupeError, UsageError
from ..agreement import agreement_words, pairwise_correlation
from ..base import Figure, Finding, NotApplicable, SectionData, Subject, Table, Text, register
from ..options import SectionOptions, check_int

MAX_IMAGES = 4
MASKED_MAX_FORWARDS = 512  # methods running one forward per channel and image (Score-CAM): skipped above this


@dataclass(frozen=True)
class CamOptions(SectionOptions):
    """``images``: how many of the subject's inputs get maps; ``methods``: the CAM methods' keys
    (None: every registered one, :data:`torchloupe.cam.METHODS`); ``masked_max_forwards``: a method
    that runs one forward per channel and image (Score-CAM) is skipped when it needs more than this
    (and in quick mode)."""

    images: int = MAX_IMAGES
    methods: Sequence[str] | None = None
    masked_max_forwards: int = MASKED_MAX_FORWARDS

    def check(self) -> None:
        check_int("cam", "images", self.images)
        check_int("cam", "masked_max_forwards", self.masked_max_forwards, least=0)
        if self.methods is not None:
            import difflib

            from ... import cam

            if isinstance(self.methods, (str, bytes)) or not isinstance(self.methods, Sequence) or not self.methods:
                raise UsageError(f"cam option methods={self.methods!r}: expected a non-empty list of CAM method keys "
                                 f"(or None for all: {', '.join(cam.METHODS)})")
            for m in self.methods:
                if m not in cam.METHODS:
                    close = difflib.get_close_matches(str(m), list(cam.METHODS), n=3)
                    hint = "closest: " + ", ".join(map(repr, close)) if close else "expected some of: " + ", ".join(cam.METHODS)
                    raise UsageError(f"cam option methods: unknown method {m!r}; {hint}")


@dataclass
class CamData(SectionData):
    """Every CAM method's result on the first images: ``results`` by method title
    (:class:`~torchloupe.cam.CAMResult`), the ``images`` they are drawn on, the ``layer``, the
    predicted ``targets`` with their softmax ``probs``, their ``names``, and ``notes`` (methods
    skipped or not applying, and why)."""

    section: ClassVar[str] = "cam"
    layer: str
    images: torch.Tensor
    targets: torch.Tensor
    probs: torch.Tensor  # (n,) the softmax probability of each target
    names: list[str]
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render(self) -> list:
        from ...render.cam import method_grid

        n = len(self.names)
        rows = [f"{name}, p = {float(p):.2f}" for name, p in zip(self.names, self.probs)]
        grid = Figure(method_grid(self.results, self.images, row_titles=rows),
                      caption=f"Layer {self.layer}; each row: one image and its predicted class with the softmax score.",
                      alt=f"A grid of heat maps over {n} input images, one column per CAM method "
                          f"({', '.join(self.results)}): red where the method finds evidence for the predicted "
                          f"class, blue where it finds none.")
        blocks = [grid, Table(["image", "predicted class", "score"],
                              [[i, name, round(float(p), 4)] for i, (name, p) in enumerate(zip(self.names, self.probs))])]
        blocks.extend(Text(note) for note in self.notes)
        finding = agreement(self.results)
        if not finding:  # fewer than two maps: nothing to compare, and the finding says so
            ran = f"Only {next(iter(self.results))} ran here" if self.results else "No CAM method ran here"
            finding = f"{ran}, so nothing can be concluded about whether the CAM methods agree."
        blocks.append(Finding(finding, grid))
        return blocks


def _setup(subject: Subject, count: int = MAX_IMAGES):
    """``(inputs, images, layer)``: the first images of the explained input (input 0 of a
    multi-input model, the others alongside), what to draw them on, and the CAM layer."""
    from ...inputs import Inputs

    first = subject.explained_input
    images = subject.display_images
    if not isinstance(first, torch.Tensor) or first.dim() != 4 or images is None:
        return NotApplicable("the inputs are not a batch of images")
    x = first[:count] if isinstance(subject.inputs, torch.Tensor) else Inputs.of(subject.inputs).slice(0, count)
    images = images[:count]
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
    """The layer the CAMs of a subject read: ``subject.cam_layer``, else the last of the subject's
    ``layers`` (``loupe report --layers``) whose output is a spatial map, else the default (the last
    spatial layer of the model, see :func:`torchloupe.cam.default_layer`)."""
    from ...cam import default_layer
    from ...layers import find_layers
    from ...probe import activations

    if subject.cam_layer:
        return subject.cam_layer
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
    options=CamOptions,
)
def build(subject: Subject, options: CamOptions) -> CamData | NotApplicable:
    setup = _setup(subject, options.images)
    if isinstance(setup, NotApplicable):
        return setup
    x, images, layer = setup
    from ... import cam

    preds = subject.shared.predictions()
    if preds.scores is None:
        return NotApplicable(subject.no_scores())
    n = _first(x).shape[0]
    probs, targets = preds.probs[:n], preds.top[:n]
    results, notes, keys = {}, [], []
    for key in options.methods or list(cam.METHODS):
        cls = cam.METHODS[key]
        if getattr(cls, "forward_per_channel", False):  # Score-CAM: one masked forward per channel and image
            channels = cam.to_map(_shape_of(subject.model, x, layer), _first(x).shape[2:]).shape[1]
            work = channels * _first(x).shape[0]
            if options.quick or work > options.masked_max_forwards:
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
    t = targets.cpu()
    return CamData(layer=layer, images=images.detach().cpu(), targets=t,
                   probs=probs[torch.arange(n), t].float(), names=[_label(subject, int(k)) for k in t],
                   results=results, notes=notes)


def agreement(results: dict) -> str:
    """One sentence on where the CAM methods agree: the mean pairwise Pearson correlation of their
    maps over the images, and the method farthest from the others ("" with fewer than 2 methods)."""
    names = list(results)
    if len(names) < 2:
        return ""
    maps = torch.stack([results[k].maps.detach().float().cpu().flatten(1) for k in names])  # (M, B, P)
    level, overall, outlier = agreement_words(names, pairwise_correlation(maps))
    text = (f"The {len(names)} CAM methods {level} on where the evidence is: mean pairwise correlation of their maps "
            f"{overall:.2f} over {results[names[0]].maps.shape[0]} images{outlier}")
    return text + "."


def _shape_of(model, x, layer):
    from ...probe import activations

    return activations(model, x[:1] if isinstance(x, torch.Tensor) else x.slice(0, 1), layer)[layer]
