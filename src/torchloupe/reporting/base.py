"""What a report is made of: subjects, sections and blocks.

A *subject* is one model with its inputs (and whatever else a section may use:
class labels, display images, object masks, a dataset, a weight tracker...).
A *section* is a function ``build(subject, options) -> list[Block] | NotApplicable``
registered with :func:`register`; the report runs every section on every
subject and lays the blocks out. Sections compute with the compute layer and
draw with :mod:`torchloupe.render`; they never write HTML by string pasting:
text goes in :class:`Text`, tables in :class:`Table`, and the only raw markup
(:class:`Html`) is produced by torchloupe's own templates with escaping on.

A new section is one module under ``reporting/sections/`` that calls :func:`register`
with its key, title and order: the modules are found by :func:`import_sections`, with no list
to edit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from torch import Tensor, nn


@dataclass
class Subject:
    """One model shown in the report.

    ``inputs``: a batch tensor (or tuple of positional inputs / dict of keyword inputs);
    ``output``: where the class scores are in what the model returns (see :mod:`torchloupe.targets`).
    ``images``: ``(N, 3, H, W)`` in [0, 1] to draw overlays on; defaults to ``inputs``
    when those look like images. ``labels``: class names. ``masks``: ``(N, H, W)`` bool
    object masks when known. ``dataset``: for dataset-scale views. ``extras``: anything
    a section documents that it reads (e.g. ``"tracker"``). ``sections``: the keys of the
    sections this subject appears in (None: every section of the report), so a report
    on several models can show each where it tells something.
    """

    name: str
    model: nn.Module
    inputs: Any
    labels: Sequence[str] | None = None
    images: Tensor | None = None
    masks: Tensor | None = None
    dataset: Any = None
    layers: Sequence[str] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    sections: Sequence[str] | None = None
    output: Any = None

    @property
    def shared(self) -> Any:
        """What several sections of this subject use, computed once: the predictions and the CAM
        layer (:class:`~torchloupe.reporting.context.SubjectContext`)."""
        ctx = self.__dict__.get("_shared")
        if ctx is None:
            from .context import SubjectContext

            ctx = self.__dict__["_shared"] = SubjectContext(self)
        return ctx

    def scores(self, out: Any) -> Tensor | None:
        """The ``(N, classes)`` scores in an output of this model, by :mod:`torchloupe.targets`' rules
        (``output``: a key, an index or a callable for models that return a dict, a tuple or a
        Hugging Face output); ``None`` when the output holds no floating ``(N, classes)`` scores."""
        from ..errors import TargetError
        from ..targets import Target

        try:
            scores = Target(None, self.output).scores_of(out)
        except TargetError:
            return None
        return scores if scores.is_floating_point() else None

    def no_scores(self) -> str:
        """Why a class section does not apply when :meth:`scores` finds none."""
        if self.output is not None:
            return f"output={self.output!r} does not give (N, classes) scores"
        return "the model's output is not (N, classes) scores (for a dict or tuple output, pass output=KEY or INDEX)"

    @property
    def explained_input(self) -> Any:
        """The input the class sections explain: the inputs themselves when they are one tensor, else
        the first floating-point input of a multi-input model (:meth:`~torchloupe.inputs.Inputs.resolve`)."""
        from ..errors import InputError
        from ..inputs import Inputs

        if isinstance(self.inputs, Tensor):
            return self.inputs
        try:
            return Inputs.of(self.inputs).get(None)
        except InputError:
            return None

    @property
    def display_images(self) -> Tensor | None:
        if self.images is not None:
            return self.images
        x = self.explained_input
        if isinstance(x, Tensor) and x.dim() == 4 and x.shape[1] in (1, 3) and x.is_floating_point():
            if x.numel() == 0:
                return x
            lo, hi = float(x.min()), float(x.max())
            if lo >= 0.0 and hi <= 1.0:
                return x
        return None


@dataclass
class DeferredSubject:
    """A subject made only when its sections run, for a model that is slow to load.

    ``load()`` returns the :class:`Subject`. All of this subject's sections run as one job,
    so with ``jobs`` > 1 the load happens once, in a worker process, while the other workers
    already run other subjects' sections: a large pretrained model or a heavy import no longer
    holds up the start (``loupe demo`` loads MiniLM this way). With one job it loads in this
    process when its turn comes. ``name`` and ``sections`` are needed before loading (table of
    contents, schedule) and are the ones the report shows; a failing ``load`` turns each of
    the subject's sections into an error entry, not a failed report.
    """

    name: str
    load: Callable[[], Subject]
    sections: Sequence[str] | None = None


@dataclass
class Figure:
    """A matplotlib ``Figure`` (rendered to an inline image or SVG), with a caption.

    ``alt``: what the figure shows, for a reader who cannot see it (not the caption again; the
    default says the figure's size in panels). ``kind``: how its pixels are encoded:
    ``"photo"`` lossy WebP, ``"lineart"`` lossless, ``"auto"`` by content
    (:func:`torchloupe.render.png.web_image`); ``quality``: the lossy quality (None: the page's).
    """

    figure: Any
    caption: str = ""
    format: str = "png"  # or "svg"
    alt: str = ""
    kind: str = "auto"
    quality: int | None = None


@dataclass
class Image:
    """Already encoded image bytes (PNG, GIF, SVG, JPEG, WebP) with a caption; ``kind`` as for :class:`Figure`."""

    data: bytes
    mime: str = "image/png"
    caption: str = ""
    alt: str = ""
    kind: str = "auto"
    quality: int | None = None


@dataclass
class Table:
    """A table of plain values; ``highlight`` marks (row, col) cells to emphasise."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    highlight: Sequence[tuple[int, int]] = ()


@dataclass
class Text:
    """A paragraph of plain text (escaped when written)."""

    text: str


@dataclass
class Html:
    """Markup produced by torchloupe's own renderers (already escaped), with its scripts inline."""

    markup: str


@dataclass
class Finding:
    """What to conclude from a section, in one sentence: listed at the end of the section and in
    the summary at the top of the report, linked to ``ref`` (a block of the same section: the
    figure or table the sentence is read from; None: the section's entry)."""

    text: str
    ref: Any = None


@dataclass
class Details:
    """Blocks shown on demand (a closed ``<details>``): a full-size matrix under its summary."""

    summary: str
    blocks: Sequence[Any] = ()


@dataclass
class NotApplicable:
    """The section does not apply to this subject; ``reason`` is shown in one line."""

    reason: str


Block = Union[Figure, Image, Table, Text, Html, Details, Finding]


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    blurb: str  # one line: what the reader sees
    order: int
    build: Callable[[Subject, dict], Union[Sequence[Block], NotApplicable]]
    cost: float = 1.0  # relative time, only to start the slow sections first when they run in parallel


_REGISTRY: dict[str, Section] = {}


def register(key: str, title: str, blurb: str, order: int, cost: float = 1.0):
    """Decorator registering ``build(subject, options)`` as a report section.

    ``cost``: its time relative to a typical section (measured on the demo); a parallel
    report starts the costly ones first so no worker is left with a long one at the end.
    """

    def deco(fn):
        _REGISTRY[key] = Section(key=key, title=title, blurb=blurb, order=order, build=fn, cost=float(cost))
        return fn

    return deco


def import_sections(strict: bool = True) -> list[tuple[str, str]]:
    """Import every module of ``reporting.sections`` (name order): each registers its sections with
    :func:`register`, so a new section is one module there and nothing else. ``strict``: a module
    that fails to import raises; otherwise it is left out and ``(module, "Type: first line")``
    returned for it."""
    import importlib
    import pkgutil

    from . import sections

    failures = []
    for info in sorted(pkgutil.iter_modules(sections.__path__), key=lambda i: i.name):
        name = f"{sections.__name__}.{info.name}"
        if strict:
            importlib.import_module(name)
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # a peer's broken module must not take the whole report down
            text = str(exc).strip()
            failures.append((info.name, f"{type(exc).__name__}: {text.splitlines()[0] if text else '(no message)'}"))
    return failures


def known_sections() -> list[Section]:
    """The sections registered so far (by the modules imported), in report order."""
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.key))


def registered(strict: bool = True) -> list[Section]:
    """All sections, in report order (imports every module of ``reporting.sections``; with
    ``strict=False`` those that fail to import are left out)."""
    import_sections(strict)
    return known_sections()
