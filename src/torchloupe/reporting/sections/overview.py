"""Overview: the model (class, parameter count, input and output shapes) and what it predicts.

Per input: a thumbnail when the inputs are images, and the top-3 classes with
their softmax probabilities (class names when the subject has labels; the true
class when ``subject.extras["targets"]`` holds it). A subject whose output is
not class scores says so with ``subject.extras["output"] = "values"``.
"""

from __future__ import annotations

from torchloupe.reporting.options import SectionOptions

from dataclasses import dataclass

import os

import io
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import require
from ...inputs import check_input
from ..base import Finding, Html, NotApplicable, Subject, Table, Text, register
from ..blocks import data_uri
from ..template import render_template

MAX_CARDS = 24
QUICK_CARDS = 12
TOP_K = 3
THUMB_PX = 168  # encoded size of a thumbnail (shown at half that: sharp on high-dpi screens)


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


def _values_not_classes(subject: Subject, inputs: Any, logits: Tensor, options: Any = None) -> str:
    """What the output holds when it is not class scores ("" when it is): a subject may say
    ``extras["output"] = "values"``; a sequence input (N, T, F) whose output is (N, T) gives one
    value per step (a regression over time)."""
    kind = getattr(options, "output", None)
    if kind is not None:
        return "values" if kind == "values" else ""
    if isinstance(inputs, Tensor) and inputs.dim() == 3 and tuple(logits.shape) == tuple(inputs.shape[:2]):
        return "one value per input step"
    return ""


def _model_table(model: nn.Module, inputs: Any, output: Any) -> Table:
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    first = next(iter(params), None)
    where = f"{first.device.type} / {str(first.dtype).replace('torch.', '')}" if first is not None else "-"
    return Table(
        columns=["model", "parameters", "trainable", "input", "output", "device / dtype"],
        rows=[[type(model).__name__, total, trainable, _shape(inputs), _shape(output), where]],
    )


@dataclass(frozen=True)
class OverviewOptions(SectionOptions):
    """``output``: ``"values"`` for a model whose output is not class scores (a regression), said as such."""

    output: str | None = None

@register(
    "overview",
    "Overview",
    "The model at a glance and what it predicts for each input: its top-3 classes with softmax probabilities.",
    options=OverviewOptions,
)
def build(subject: Subject, options: dict) -> list | NotApplicable:
    model, inputs = subject.model, subject.inputs
    if isinstance(inputs, Tensor):
        inputs = check_input(model, inputs)
    preds = subject.shared.predictions()
    output = preds.output
    blocks: list = [_model_table(model, inputs, output)]
    logits = preds.scores
    if logits is None or logits.shape[1] < 2:
        what = _shape(output)
        hint = "" if isinstance(output, Tensor) or subject.output is not None else (
            " Pass output= (a key or an index) to say where the scores are.")
        blocks.append(Text(f"The output {what} is not a batch of class scores (N, classes), so no predictions are listed."
                           + hint))
        return blocks
    kind = _values_not_classes(subject, inputs, logits, options)
    if kind:
        blocks.append(Text(f"The output {_shape(logits)} holds {kind}, not class scores, so no predictions are listed."))
        return blocks

    n, classes = logits.shape
    if n == 0:
        blocks.append(Text("The batch is empty, so there are no predictions to list."))
        return blocks
    probs = preds.probs
    k = min(TOP_K, classes)
    top_p, top_i = probs.topk(k, dim=1)
    labels = subject.labels
    if labels is not None and len(labels) != classes:
        blocks.append(Text(f"{len(labels)} class names were given, but the model scores {classes} classes; "
                           f"classes without a name show as 'class i'."))
    targets = subject.targets
    if targets is not None:
        targets = torch.as_tensor(targets).reshape(-1).long().cpu()
        if targets.numel() != n:
            targets = None

    limit = QUICK_CARDS if options.quick else MAX_CARDS
    shown = min(n, limit)
    images = subject.display_images
    thumbs = _thumbs(images, shown) if isinstance(images, Tensor) and images.dim() == 4 and len(images) >= shown else []
    cards = []
    for i in range(shown):
        preds = [
            {"label": _label(labels, int(c)), "text": _percent(float(p)), "width": f"{100 * float(p):.1f}"}
            for p, c in zip(top_p[i], top_i[i])
        ]
        files = subject.files or []
        name = os.path.basename(str(files[i])) if i < len(files) else f"input {i}"  # loupe report: the file
        card = {"index": i, "name": name, "preds": preds, "thumb": None, "thumb_size": (0, 0), "pixelated": False,
                "truth": None, "correct": False}
        if thumbs:
            card["thumb"], card["thumb_size"], card["pixelated"] = thumbs[i]
        if targets is not None:
            t = int(targets[i])
            card["truth"], card["correct"] = _label(labels, t), t == int(top_i[i, 0])
        cards.append(card)
    cards_block = Html(render_template("predictions.html.j2", cards=cards))
    blocks.append(cards_block)
    notes = []
    if shown < n:
        notes.append(f"Showing the first {shown} of {n} inputs.")
    if notes:
        blocks.append(Text(" ".join(notes)))
    blocks.append(Finding(_prediction_sentence(top_p[:, 0], top_i[:, 0], labels, targets), cards_block))
    return blocks


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
    else:
        listed = ", ".join(f"{name} ({count})" for name, count in picked[:4]) + (", ..." if len(picked) > 4 else "")
    low = int(p.argmin())
    head = (f"Top-1 correct on {int((c == targets).sum())} of {n} inputs" if targets is not None
            else f"Predicts {listed} over {n} input{'s' if n != 1 else ''}")
    tail = f"; least confident: input {low}, {_label(labels, int(c[low]))} at {_percent(float(p[low]))}"
    if targets is not None:
        head += f" (predicted: {listed})"
    return head + tail + "."
