"""Report section "Overview": the model (class, parameter count, input and output shapes) and what it predicts.

Per input: a thumbnail when the inputs are images, and the top classes with their softmax
probabilities (class names when the subject has labels; the true class when ``subject.targets``
holds it). Computed as :class:`OverviewData`, drawn by its ``render()``; options:
:class:`OverviewOptions` (``output="values"`` says that a model's output is not class scores).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...errors import UsageError, require
from ...inputs import check_input
from ..base import Finding, Html, SectionData, Subject, Table, Text, register
from ..options import SectionOptions, check_int

MAX_CARDS = 24
QUICK_CARDS = 12
TOP_K = 3
THUMB_PX = 168  # encoded size of a thumbnail (shown at half that: sharp on high-dpi screens)
OUTPUT_KINDS = ("classes", "values")


@dataclass(frozen=True)
class OverviewOptions(SectionOptions):
    """``output``: ``"values"`` for a model whose output is not class scores (a regression), said
    as such; ``"classes"`` reads it as class scores even where the overview would guess otherwise
    (None: guess). ``cards``: how many inputs get a prediction card (None: 24, 12 in quick mode);
    ``top_k``: how many classes each card lists."""

    output: str | None = None
    cards: int | None = None
    top_k: int = TOP_K

    def check(self) -> None:
        if self.output is not None and self.output not in OUTPUT_KINDS:
            raise UsageError(f"overview option output={self.output!r}: expected one of {', '.join(OUTPUT_KINDS)} or None")
        check_int("overview", "cards", self.cards, none=True)
        check_int("overview", "top_k", self.top_k)

    @property
    def card_limit(self) -> int:
        """The number of cards: ``cards``, else 24 (12 in quick mode)."""
        return self.cards if self.cards is not None else QUICK_CARDS if self.quick else MAX_CARDS


@dataclass
class OverviewData(SectionData):
    """The model (``model`` class name, ``params``, ``trainable``, the ``input`` and ``output``
    shapes, its ``device`` / dtype) and its predictions: ``top_p`` / ``top_i`` ``(N, k)`` the top-k
    softmax probabilities and classes of every input, ``targets`` ``(N,)`` the true classes (None
    when unknown), ``classes`` the number of classes scored, ``labels`` their names, ``names`` and
    ``images`` of the ``shown`` inputs that get a card. ``no_predictions``: why none are listed
    (the output is not class scores, the batch is empty), else None."""

    section: ClassVar[str] = "overview"
    model: str
    params: int
    trainable: int
    input: str
    output: str
    device: str
    no_predictions: str | None = None
    top_p: Tensor | None = None
    top_i: Tensor | None = None
    targets: Tensor | None = None
    classes: int = 0
    labels: list[str] | None = None
    names: list[str] = field(default_factory=list)
    images: Tensor | None = None
    notes: list[str] = field(default_factory=list)  # e.g. why the given true classes are not used

    @property
    def n(self) -> int:
        return 0 if self.top_i is None else len(self.top_i)

    @property
    def shown(self) -> int:
        return len(self.names)

    def render(self) -> list:
        from ..template import render_template

        blocks: list = [Table(columns=["model", "parameters", "trainable", "input", "output", "device / dtype"],
                              rows=[[self.model, self.params, self.trainable, self.input, self.output, self.device]])]
        if self.no_predictions is not None:
            blocks.append(Text(self.no_predictions))
            return blocks
        labels = self.labels
        if labels is not None and len(labels) != self.classes:
            blocks.append(Text(f"{len(labels)} class names were given, but the model scores {self.classes} classes; "
                               f"classes without a name show as 'class i'."))
        thumbs = _thumbs(self.images, self.shown) if self.images is not None else []
        cards = []
        for i in range(self.shown):
            preds = [{"label": _label(labels, int(c)), "text": _percent(float(p)), "width": f"{100 * float(p):.1f}"}
                     for p, c in zip(self.top_p[i], self.top_i[i])]
            card = {"index": i, "name": self.names[i], "preds": preds, "thumb": None, "thumb_size": (0, 0),
                    "pixelated": False, "truth": None, "correct": False}
            if thumbs:
                card["thumb"], card["thumb_size"], card["pixelated"] = thumbs[i]
            if self.targets is not None:
                t = int(self.targets[i])
                card["truth"], card["correct"] = _label(labels, t), t == int(self.top_i[i, 0])
            cards.append(card)
        cards_block = Html(render_template("predictions.html.j2", cards=cards))
        blocks.append(cards_block)
        if self.shown < self.n:
            blocks.append(Text(f"Showing the first {self.shown} of {self.n} inputs."))
        blocks.extend(Text(note) for note in self.notes)
        blocks.append(Finding(_prediction_sentence(self.top_p[:, 0], self.top_i[:, 0], labels, self.targets), cards_block))
        return blocks


def _shape(x: Any) -> str:
    if isinstance(x, Tensor):
        return "(" + ", ".join(str(d) for d in x.shape) + ")"
    if isinstance(x, (tuple, list)):
        return ", ".join(_shape(v) for v in x)
    if isinstance(x, dict):
        return ", ".join(f"{k}: {_shape(v)}" for k, v in x.items())
    return type(x).__name__


def _thumbs(images: Tensor, n: int) -> list[tuple[str, tuple[int, int], bool]]:
    """(data URI, (w, h), pixelated) per image; RGB or gray ``(N, C, H, W)`` in [0, 1]."""
    PILImage = require("PIL.Image", "render", package="pillow")
    from ...render.png import web_image
    from ..blocks import data_uri

    x = images[:n].detach().float().cpu().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    arr = (x[:, :3] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for a in arr:
        im = PILImage.fromarray(a)
        w, h = im.size
        pixelated = max(w, h) < 64
        if max(w, h) > THUMB_PX:
            s = THUMB_PX / max(w, h)
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), PILImage.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        data, mime, _ = web_image(buf.getvalue(), "lineart" if pixelated else "auto")
        out.append((data_uri(data, mime), im.size, pixelated))
    return out


def _percent(p: float) -> str:
    return "<0.1%" if p < 0.0005 else f"{100 * p:.1f}%"


def _label(labels: Any, i: int) -> str:
    if labels is not None and 0 <= i < len(labels):
        return str(labels[i])
    return f"class {i}"


def _values_not_classes(inputs: Any, logits: Tensor, options: OverviewOptions) -> str:
    """What the output holds when it is not class scores ("" when it is): ``options.output`` says
    ``"values"`` (or ``"classes"``); else a sequence input (N, T, F) whose output is (N, T) gives one
    value per step (a regression over time)."""
    if options.output is not None:
        return "values" if options.output == "values" else ""
    if isinstance(inputs, Tensor) and inputs.dim() == 3 and tuple(logits.shape) == tuple(inputs.shape[:2]):
        return "one value per input step"
    return ""


def _model_fields(model: nn.Module, inputs: Any, output: Any) -> dict[str, Any]:
    params = list(model.parameters())
    first = next(iter(params), None)
    return {"model": type(model).__name__, "params": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad), "input": _shape(inputs),
            "output": _shape(output),
            "device": f"{first.device.type} / {str(first.dtype).replace('torch.', '')}" if first is not None else "-"}


@register(
    "overview",
    "Overview",
    "The model at a glance and what it predicts for each input: its top-3 classes with softmax probabilities.",
    options=OverviewOptions,
)
def build(subject: Subject, options: OverviewOptions) -> OverviewData:
    model, inputs = subject.model, subject.inputs
    if isinstance(inputs, Tensor):
        inputs = check_input(model, inputs)
    preds = subject.shared.predictions()
    fields = _model_fields(model, inputs, preds.output)
    logits = preds.scores
    if logits is None or logits.shape[1] < 2:
        hint = "" if isinstance(preds.output, Tensor) or subject.output is not None else (
            " Pass output= (a key or an index) to say where the scores are.")
        return OverviewData(**fields, no_predictions=f"The output {_shape(preds.output)} is not a batch of class "
                                                     f"scores (N, classes), so no predictions are listed." + hint)
    kind = _values_not_classes(inputs, logits, options)
    if kind:
        return OverviewData(**fields, no_predictions=f"The output {_shape(logits)} holds {kind}, not class scores, "
                                                     f"so no predictions are listed.")
    n, classes = logits.shape
    if n == 0:
        return OverviewData(**fields, no_predictions="The batch is empty, so there are no predictions to list.")
    top_p, top_i = preds.probs.topk(min(options.top_k, classes), dim=1)
    targets, notes = subject.targets, []
    if targets is not None:
        targets = torch.as_tensor(targets).reshape(-1).long().cpu()
        if targets.numel() != n:
            notes.append(f"{targets.numel()} true classes were given for {n} inputs, so they are not used.")
            targets = None
        elif bool(((targets < 0) | (targets >= classes)).any()):
            bad = int(targets[(targets < 0) | (targets >= classes)][0])
            notes.append(f"True class {bad} is outside the {classes} classes the model scores, so the true classes "
                         f"are not used.")
            targets = None
    shown = min(n, options.card_limit)
    images = subject.display_images
    images = (images[:shown].detach().cpu() if isinstance(images, Tensor) and images.dim() == 4
              and len(images) >= shown else None)
    files = subject.files or []
    names = [os.path.basename(str(files[i])) if i < len(files) else f"input {i}" for i in range(shown)]
    return OverviewData(**fields, top_p=top_p.cpu(), top_i=top_i.cpu(), targets=targets, classes=classes,
                        labels=None if subject.labels is None else [str(v) for v in subject.labels],
                        names=names, images=images, notes=notes)


def _prediction_sentence(p: Tensor, c: Tensor, labels: Any, targets: Tensor | None) -> str:
    """What the model predicts, in one sentence: accuracy when the true classes are known, the
    classes it picks, and its least confident input."""
    n = len(c)
    counts: dict[str, int] = {}
    for k in c.tolist():
        counts[_label(labels, int(k))] = counts.get(_label(labels, int(k)), 0) + 1
    picked = sorted(counts.items(), key=lambda kv: -kv[1])
    if len(picked) > 3 and picked[0][1] == 1:  # every input a different class: the count says it
        listed = f"{len(picked)} different classes"
    elif picked[0][1] == 1:
        listed = ", ".join(name for name, _ in picked)
    else:  # the most frequent with its count of the inputs, then the others' counts
        listed = ", ".join(f"{name} ({count}{f' of {n} inputs' if j == 0 else ''})"
                           for j, (name, count) in enumerate(picked[:4])) + (", ..." if len(picked) > 4 else "")
    low = int(p.argmin())
    if len(picked) == 1 and n > 1:
        listed = f"{picked[0][0]} for all {n} inputs"
    counted = len(picked) == 1 or picked[0][1] > 1  # the list already says how many inputs there are
    head = (f"Top-1 correct on {int((c == targets).sum())} of {n} inputs" if targets is not None
            else f"Predicts {listed}" + ("" if counted else f" over {n} input{'s' if n != 1 else ''}"))
    tail = f"; least confident: input {low}, {_label(labels, int(c[low]))} at {_percent(float(p[low]))}"
    if targets is not None:
        head += f" (predicted: {listed})"
    return head + tail + "."
