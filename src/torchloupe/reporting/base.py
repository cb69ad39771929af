"""What a report is made of: subjects, sections, the data sections compute, and blocks.

A *subject* is one model with its inputs (and whatever else a section may use: class labels,
display images, object masks, true classes, tokens, a dataset, a weight tracker...).

A *section* runs in two steps, **compute then render**: ``build(subject, options)`` computes and
returns a :class:`SectionData` (a small dataclass of tensors and numbers), whose ``render()`` draws
it as a list of blocks; the report keeps the data when drawing fails (the entry shows the error
and the data's numbers) and returns it (:attr:`~torchloupe.reporting.ReportInfo.data`), and a
notebook shows the same object with the same blocks (``_repr_html_``; :func:`torchloupe.reporting.section`
computes one section for one model). A small section may still return its blocks directly.
``options`` is the section's typed options object (:mod:`torchloupe.reporting.options`).

Blocks: text goes in :class:`Text`, tables in :class:`Table`, figures in :class:`Figure`, what to
conclude in :class:`Finding`, and the only raw markup (:class:`Html`) is produced by torchloupe's own
templates with escaping on. Sections never write HTML by string pasting.

A new section is one module under ``reporting/sections/`` that calls :func:`register`; where it
stands in the report is its place in :data:`torchloupe.reporting.sections.ORDER` (a section outside
torchloupe gives ``order``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from torch import Tensor, nn

from ..errors import UsageError
from .options import SectionOptions

#: ``Subject(extras={...})`` keys from before subjects had typed fields: where each now lives (a
#: field of :class:`Subject`, or ``(section, option)``). Read by :meth:`Subject.__post_init__`.
_EXTRAS = {
    "targets": "targets", "tokens": "tokens", "tracker": "tracker", "signal": "signal", "files": "files",
    "cam_layer": "cam_layer", "input_shape": ("weights", "input_shape"), "output": ("overview", "output"),
    "memory": ("attention", "memory"), "slot": ("attention", "slot"), "attend_back": ("attention", "attend_back"),
    "fusion": ("fusion", None),
}


@dataclass
class Subject:
    """One model shown in the report.

    ``inputs``: a batch tensor (or tuple of positional inputs / dict of keyword inputs);
    ``output``: where the class scores are in what the model returns (see :mod:`torchloupe.targets`).
    ``images``: ``(N, 3, H, W)`` in [0, 1] to draw overlays on; defaults to ``inputs``
    when those look like images. ``labels``: class names. ``masks``: ``(N, H, W)`` bool
    object masks when known. ``targets``: ``(N,)`` true class indices when known. ``tokens``: the
    tokens of a text or sequence input (a list of strings per sample, or one list for all).
    ``dataset``: for dataset-scale views; ``files``: where the inputs came from (shown with them).
    ``tracker``: a :class:`~torchloupe.weights.WeightTracker` (or its history) from training.
    ``signal``: ``(N, T)`` a quantity the recurrent units may track. ``cam_layer``: the layer
    the class activation maps read (else found). ``sections``: the keys of the sections this
    subject appears in (None: every section of the report), so a report on several models can
    show each where it tells something. ``options``: section options for this model only, by
    section key (see :mod:`torchloupe.reporting.options`), over the report's.

    ``extras`` is the dict of string keys subjects had before these fields; its known keys are moved
    to their field or section option, and an unknown key is refused naming the closest.
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
    targets: Any = None
    tokens: Any = None
    files: Sequence[str] | None = None
    tracker: Any = None
    signal: Tensor | None = None
    cam_layer: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.options is None:
            self.options = {}
        if not isinstance(self.options, dict):
            raise UsageError(f"subject {self.name!r}: options must be a dict of section options by section key, "
                             f"got {type(self.options).__name__}")
        extras, self.extras = dict(self.extras or {}), {}
        for key, value in extras.items():
            where = _EXTRAS.get(key)
            if where is None:
                import difflib

                close = difflib.get_close_matches(str(key), sorted(_EXTRAS), n=3)
                hint = ("closest: " + ", ".join(repr(c) for c in close)) if close else "known: " + ", ".join(sorted(_EXTRAS))
                raise UsageError(f"subject {self.name!r}: unknown extras key {key!r}; {hint} "
                                 f"(extras are kept for old code: use Subject's fields and options)")
            if isinstance(where, str):
                if getattr(self, where) is None:
                    setattr(self, where, value)
                continue
            section, option = where
            mine = self.options.get(section)
            mine = dict(mine.given()) if isinstance(mine, SectionOptions) else dict(mine or {})
            if option is None:  # a dict of the section's options ("fusion"); its "targets" are the subject's
                value = dict(value or {})
                if "targets" in value and self.targets is None:
                    self.targets = value["targets"]
                value.pop("targets", None)
                mine = {**value, **mine}
            else:
                mine.setdefault(option, value)
            self.options[section] = {k: v for k, v in mine.items() if k not in ("quick", "seed", "precision", "report_sections")}

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


class SectionData:
    """What a section computed for one subject, before any drawing (subclasses are dataclasses).

    ``render()`` returns the section's blocks (figures are drawn there, not in ``build``). In a
    notebook the object shows itself as those blocks (``_repr_html_``); in the report, when
    ``render()`` fails, the entry shows the error and :meth:`numbers`, and the object itself is in
    :attr:`~torchloupe.reporting.ReportInfo.data`.
    """

    section: ClassVar[str] = ""

    def render(self) -> list:
        raise NotImplementedError(f"{type(self).__name__}.render")

    def numbers(self) -> list[list[str]]:
        """``[field, value]`` rows: every field, tensors by shape and range (what a failed drawing shows)."""
        import dataclasses

        rows = []
        for f in dataclasses.fields(self) if dataclasses.is_dataclass(self) else ():
            rows.append([f.name, _brief(getattr(self, f.name))])
        return rows

    def _repr_html_(self) -> str:
        from .notebook import section_html

        return section_html(self)


def on_cpu(value: Any) -> Any:
    """``value`` with its tensors (in dicts and dataclass fields, frozen ones too) detached and on the
    CPU: what a :class:`SectionData` keeps, so it pickles small and draws without the model's device."""
    import dataclasses

    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: on_cpu(getattr(value, f.name)) for f in dataclasses.fields(value)
                                             if f.init and isinstance(getattr(value, f.name), (Tensor, dict))})
    return value


def _brief(value: Any, limit: int = 160) -> str:
    """A short plain description of a value: a tensor's shape, dtype and range; else its repr, cut."""
    if isinstance(value, Tensor):
        text = f"tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
        if value.numel() and value.is_floating_point():
            v = value.detach().float()
            text += f" in [{float(v.min()):.4g}, {float(v.max()):.4g}]"
        elif value.numel() and value.numel() <= 16:
            text += f" {value.tolist()}"
        return text
    if isinstance(value, SectionData):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Section:
    """A registered section. ``build(subject, options)`` returns a :class:`SectionData` (or blocks,
    or :class:`NotApplicable`); ``options`` is its options class (:class:`SectionOptions` or a subclass)."""

    key: str
    title: str
    blurb: str  # one line: what the reader sees
    order: int
    build: Callable[[Subject, Any], Union[SectionData, Sequence[Block], NotApplicable]]
    cost: float = 1.0  # relative time, only to start the slow sections first when they run in parallel
    options: type = SectionOptions
    shares: str | None = None  # sections of one subject with the same value run in one process (shared work)


_REGISTRY: dict[str, Section] = {}


def register(key: str, title: str, blurb: str, order: int | None = None, cost: float = 1.0,
             options: type = SectionOptions, shares: str | None = None):
    """Decorator registering ``build(subject, options)`` as a report section.

    Its place: torchloupe's own sections stand where :data:`torchloupe.reporting.sections.ORDER`
    lists them (``order`` must then be left out); another section gives ``order``, a number among
    theirs (10, 20, ...: :func:`order_of` for a key). ``cost``: its time relative to a typical
    section (measured on the demo); a parallel report starts the costly ones first so no worker is
    left with a long one at the end. ``options``: the section's options class (a
    :class:`SectionOptions` subclass whose fields are its knobs). ``shares``: a name for work this
    section shares with others through ``subject.shared`` (``"exemplars"``); the sections of one
    subject that share it run in one process of a parallel report, so the work is done once.
    """
    if not (isinstance(options, type) and issubclass(options, SectionOptions)):
        raise UsageError(f"section {key!r}: options must be a SectionOptions subclass, got {options!r}")

    def deco(fn):
        import functools

        from .sections import ORDER

        @functools.wraps(fn)
        def build(subject, opts=None):
            if not isinstance(opts, options):  # a dict (or nothing) from a direct call: typed, with the subject's own
                import dataclasses

                from .options import section_fields

                mine = (getattr(subject, "options", None) or {}).get(key)
                opts = dataclasses.replace(coerce_options(options, key, opts),
                                           **section_fields(options, key, mine, f"subject {subject.name!r}"))
            return fn(subject, opts)

        if key in ORDER and order is not None:
            raise UsageError(f"section {key!r} stands where sections.ORDER lists it; leave order out")
        place = order_of(key) if key in ORDER else order
        if place is None:
            raise UsageError(f"section {key!r} is not in torchloupe.reporting.sections.ORDER; give order=N "
                             f"(built-in sections: {', '.join(f'{k}={order_of(k)}' for k in ORDER)})")
        _REGISTRY[key] = Section(key=key, title=title, blurb=blurb, order=int(place), build=build, cost=float(cost),
                                 options=options, shares=shares)
        return build

    return deco


def coerce_options(cls: type, key: str, opts: Any) -> SectionOptions:
    """``opts`` as section ``key``'s options class ``cls``: an instance as it is, a dict of common and
    own fields (unknown ones refused in one line), None for the defaults."""
    from .options import COMMON, section_fields

    if isinstance(opts, cls):
        return opts
    if opts is None:
        return cls()
    if isinstance(opts, SectionOptions):  # another class: its common fields, and its own when they fit
        common = {k: getattr(opts, k) for k in COMMON}
        return cls(**common, **section_fields(cls, key, {k: v for k, v in opts.given().items() if k not in COMMON},
                                               "options"))
    if not isinstance(opts, dict):
        raise UsageError(f"section {key!r}: options must be a {cls.__name__} or a dict, got {type(opts).__name__}")
    common = {k: (tuple(v) if k == "report_sections" else v) for k, v in opts.items() if k in COMMON}
    return cls(**common, **section_fields(cls, key, {k: v for k, v in opts.items() if k not in COMMON}, "options"))


def order_of(key: str) -> int:
    """Where a built-in section stands: 10 for the first in :data:`~torchloupe.reporting.sections.ORDER`, 20 ..."""
    from .sections import ORDER

    return 10 * (ORDER.index(key) + 1)


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


def section_of(key: str) -> Section | None:
    """The registered section with this key (None when no module registered it)."""
    return _REGISTRY.get(key)


def known_sections() -> list[Section]:
    """The sections registered so far (by the modules imported), in report order."""
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.key))


def registered(strict: bool = True) -> list[Section]:
    """All sections, in report order (imports every module of ``reporting.sections``; with
    ``strict=False`` those that fail to import are left out)."""
    import_sections(strict)
    return known_sections()
