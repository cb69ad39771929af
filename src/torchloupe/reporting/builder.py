"""Run sections on subjects and write one self-contained HTML file.

:func:`build_report` runs every selected section on every subject (timed, with a
progress bar on stderr), turns the blocks into view data (images as base64 data
URIs, tables as formatted strings) and renders them through one Jinja2 template
with autoescaping on. Nothing in the output refers to the network.

A section computes, then renders (:class:`~torchloupe.reporting.base.SectionData`): the two steps
fail apart. A section that returns :class:`NotApplicable` (or raises
:class:`~torchloupe.errors.UnsupportedModelError`) is listed in one line; one whose computing
raises shows a one-line error in its place, with the traceback folded away; one whose drawing
raises shows the error and the numbers it computed, and keeps its data object in
:attr:`ReportInfo.data`. The report always goes on.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .parallel import run_jobs, worker_count
from ..errors import InputTypeError, OutputError, UnsupportedModelError, UsageError, require
from ..files import atomic_write
from . import base
from .base import DeferredSubject, NotApplicable, Section, SectionData, Subject
from .blocks import block_view
from .options import ReportOptions, SectionOptions, options_for


DEFAULT_OPTIONS = {"quick": False, "seed": 0, "precision": "fp32"}
#: The largest report file (bytes) :meth:`ReportInfo._repr_html_` inlines into a notebook.
INLINE_LIMIT = 20 * 1024 * 1024

#: The sections that only read the model (no gradients): ``options["precision"]`` ("bf16", "fp16")
#: runs them under autocast on the subject's device (:func:`torchloupe.devices.autocast`); the
#: others (gradients, perturbations, optimisation) keep the model's own dtype.
READ_ONLY_SECTIONS = frozenset({"architecture", "feature_maps", "attention", "exemplars"})


@dataclass(frozen=True)
class SectionRun:
    """One section on one subject: ``status`` is ``"ok"``, ``"not-applicable"`` or ``"error"``."""

    section: str
    subject: str
    status: str
    seconds: float
    bytes: int = 0
    message: str = ""


@dataclass(frozen=True)
class ReportInfo:
    """What :func:`build_report` wrote: the file, its size, and time and size per section."""

    path: Path
    size: int
    seconds: float  # everything: sections, HTML rendering and writing
    runs: tuple[SectionRun, ...] = field(default_factory=tuple)
    import_errors: tuple[tuple[str, str], ...] = ()
    write_seconds: float = 0.0  # of which: rendering the HTML and writing the file
    loads: tuple[tuple[str, float], ...] = ()  # (name, seconds) of each deferred subject loaded
    #: What each section computed, by ``(section key, subject name)``: its
    #: :class:`~torchloupe.reporting.base.SectionData` (shown in a notebook as the report shows it),
    #: kept also when drawing it failed. Sections that return blocks directly have none.
    data: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per section key, summed over subjects, in report order."""
        out: dict[str, float] = {}
        for r in self.runs:
            out[r.section] = out.get(r.section, 0.0) + r.seconds
        return out

    @property
    def sizes(self) -> dict[str, int]:
        """Bytes of inline content (images, tables, text) per section key."""
        out: dict[str, int] = {}
        for r in self.runs:
            out[r.section] = out.get(r.section, 0) + r.bytes
        return out

    @property
    def errors(self) -> list[SectionRun]:
        return [r for r in self.runs if r.status == "error"]

    def summary(self) -> str:
        """Seconds per section, for the HTML, in total; failures; the path: one per line (what ``loupe`` prints)."""
        timings = self.timings
        width = max([len(k) for k in timings] + [len("total")])
        lines = [f"{key:<{width}}  {secs:6.2f} s" for key, secs in timings.items()]
        lines.append(f"{'html':<{width}}  {self.write_seconds:6.2f} s")
        lines.append(f"{'total':<{width}}  {self.seconds:6.2f} s")
        for name, secs in self.loads:
            lines.append(f"loaded {name} in {secs:.2f} s (before its sections)")
        for r in self.errors:
            lines.append(f"failed: {r.section} on {r.subject}: {r.message}")
        for module, message in self.import_errors:
            lines.append(f"failed: section module {module}: {message}")
        lines.append(f"wrote {self.path} ({_human_size(self.size)})")
        return "\n".join(lines)

    def open(self) -> bool:
        """Open the report in the default web browser (:func:`webbrowser.open` on its ``file://`` URI);
        returns what ``webbrowser`` returns (``False`` when no browser could be started)."""
        import webbrowser

        return webbrowser.open(Path(self.path).resolve().as_uri())

    def _repr_html_(self) -> str:
        """The report inline in a notebook: the file in a sandboxed ``<iframe srcdoc>`` (scripts run, but
        not with the notebook's origin), under a line with its path and size. Over
        :data:`INLINE_LIMIT` bytes, or when the file is gone, the line says so and points to :meth:`open`."""
        import html

        head = (f'<div style="font:13px sans-serif;margin:2px 0 4px">torchloupe report: '
                f'{html.escape(str(self.path))} ({_human_size(self.size)}); .open() shows it in a browser</div>')
        try:
            size = Path(self.path).stat().st_size
            text = Path(self.path).read_text(encoding="utf-8") if size <= INLINE_LIMIT else None
        except OSError as exc:
            return head + f'<div style="font:12px sans-serif">not shown inline: {html.escape(str(exc))}</div>'
        if text is None:
            return head + (f'<div style="font:12px sans-serif">not shown inline: {_human_size(size)} is over the '
                           f'{_human_size(INLINE_LIMIT)} a notebook output should carry</div>')
        return head + (f'<iframe srcdoc="{html.escape(text, quote=True)}" sandbox="allow-scripts" '
                       f'style="width:100%;height:640px;border:1px solid #ccc" title="torchloupe report"></iframe>')


def _photo_quality() -> int:
    from ..render.png import PHOTO_QUALITY

    return PHOTO_QUALITY


def _human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def available_sections() -> list[Section]:
    """Every registered section in report order (section modules that fail to import are left out)."""
    return base.registered(strict=False)


def _resolve(sections: str | Iterable[str | Section]) -> tuple[list[Section], list[tuple[str, str]]]:
    if isinstance(sections, str):
        sections = ["all"] if sections == "all" else [s for s in sections.split(",") if s.strip()]
    wanted = list(sections)
    if not wanted:
        raise UsageError("no sections selected; pass 'all' or section keys")
    import_errors: list[tuple[str, str]] = []
    known: dict[str, Section] = {}
    if any(isinstance(s, str) for s in wanted):
        import_errors = base.import_sections(strict=False)
        known = {s.key: s for s in base.known_sections()}
    chosen: list[Section] = []
    for s in wanted:
        if isinstance(s, Section):
            chosen.append(s)
        elif s == "all":
            chosen.extend(known.values())
        elif isinstance(s, str) and s.strip() in known:
            chosen.append(known[s.strip()])
        else:
            import difflib

            close = difflib.get_close_matches(str(s), list(known), n=3)
            hint = ("closest: " + ", ".join(map(repr, close)) if close
                    else f"available: {', '.join(known) or 'none'}")
            raise UsageError(f"unknown report section {s!r}; {hint}")
    seen: set[str] = set()
    unique = [s for s in chosen if not (s.key in seen or seen.add(s.key))]
    return sorted(unique, key=lambda s: (s.order, s.key)), import_errors


def select_sections(sections: str | Iterable[str | Section] = "all") -> list[Section]:
    """Resolve ``"all"``, a comma-separated string or a list of keys / :class:`Section` objects, in report order."""
    return _resolve(sections)[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _slug(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    if len(slug) > limit:  # cut at a word boundary when there is one
        cut = slug[: limit + 1].rsplit("-", 1)[0]
        slug = cut if limit // 2 <= len(cut) <= limit else slug[:limit].rstrip("-")
    return slug or "x"


def _unique_slugs(names: Sequence[str]) -> list[str]:
    out, used = [], set()
    for name in names:
        slug = base_slug = _slug(name)
        i = 2
        while slug in used:
            slug, i = f"{base_slug}-{i}", i + 1
        used.add(slug)
        out.append(slug)
    return out


def precision_for(section: Section, subject: Subject, options: SectionOptions):
    """Autocast of ``options.precision`` on the subject's device for a read-only section."""
    from ..devices import autocast

    precision = str(options.precision)
    if section.key not in READ_ONLY_SECTIONS:
        precision = "fp32"
    device = next((p.device for p in subject.model.parameters()), torch.device("cpu"))
    return autocast(device, precision)


def _run_one(section: Section, subject: Subject, options: SectionOptions) -> tuple[str, Any, Any]:
    """Run one section: ``(status, payload, data)``: ("ok", views, data) | ("not-applicable", reason, None)
    | ("error", (line, traceback), data). ``data``: the section's :class:`SectionData` (None when it
    returned blocks, or failed while computing); when only drawing it failed, the status is "error"
    and the payload's views show the numbers it holds."""
    data = None
    try:
        with torch.random.fork_rng(devices=[]), precision_for(section, subject, options):
            torch.manual_seed(int(options.seed))
            result = section.build(subject, options)
            if isinstance(result, NotApplicable):
                return "not-applicable", result.reason, None
            if result is None:
                raise TypeError(f"section {section.key!r} returned None; expected SectionData, a list of blocks "
                                f"or NotApplicable")
            if isinstance(result, SectionData):
                data = result
                try:
                    result = data.render()
                except Exception as exc:  # drawing failed: the computed numbers are still shown and kept
                    line = f"{type(exc).__name__}: {_first_line(exc)}"
                    return "error", (f"drawing failed: {line}", "".join(traceback.format_exception(exc)),
                                     block_views([base.Table(["field", "value"], data.numbers(),
                                                        caption=f"What {section.title} computed "
                                                                f"({type(data).__name__}), not drawn")], options)), data
        return "ok", block_views(list(result), options), data
    except UnsupportedModelError as exc:
        return "not-applicable", _first_line(exc), None
    except Exception as exc:  # isolate: one failing view never kills the report
        line = f"{type(exc).__name__}: {_first_line(exc)}"
        return "error", (line, "".join(traceback.format_exception(exc))), data


def _packed(data: Any) -> bytes | None:
    """``data`` pickled to travel back from a worker process, once (the pool then sends bytes); None
    when it does not pickle (its views still travel) or there is none. :func:`_unpacked` reverses it."""
    if data is None:
        return None
    import pickle

    try:
        return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None


def _unpacked(data: Any) -> Any:
    """A section's data as :func:`_packed` sent it (bytes), or as it is when it did not travel."""
    if isinstance(data, bytes):
        import pickle

        return pickle.loads(data)
    return data


_BLOCKS = (base.Figure, base.Image, base.Table, base.Text, base.Html, base.Details, base.Finding)


def block_views(blocks: list, options: Any) -> list[dict[str, Any]]:
    """The views of a section's blocks, each on its own: a block that fails to render becomes an
    error view naming it, and the other blocks (the section's computed data) are kept. A
    :class:`~torchloupe.reporting.base.Finding`'s ``ref`` becomes the index of the block it names."""
    index = {id(b): i for i, b in enumerate(blocks)}
    views = []
    for b in blocks:
        try:
            view = block_view(b, options)
        except UsageError:  # a bad block (unknown format): the section's own fault, said as such
            raise
        except Exception as exc:
            if not isinstance(b, _BLOCKS):  # not a block at all
                raise
            line = f"{type(exc).__name__}: {_first_line(exc)}"
            what = getattr(b, "caption", "") or type(b).__name__
            view = {"kind": "error", "text": f"This {type(b).__name__.lower()} could not be drawn ({what}): {line}",
                    "traceback": "".join(traceback.format_exception(exc)), "bytes": 0}
        if view["kind"] == "finding" and isinstance(b, base.Finding) and b.ref is not None:
            view["ref"] = index.get(id(b.ref))
        views.append(view)
    return views


def collect_assets(views: list[dict[str, Any]], into: dict[str, tuple[str, str]]) -> None:
    """Move the scripts and styles of the Html views (also inside Details) into ``into``: one copy each."""
    for v in views:
        if v["kind"] == "html":
            into.update(v.pop("assets", {}))
        elif v["kind"] == "details":
            collect_assets(v["blocks"], into)


def _weight(subject: Subject | DeferredSubject) -> float:
    """How heavy a subject's sections tend to be: log10 of its parameter count plus input size
    (a deferred subject, not loaded yet, counts as heavy: its load is why it was deferred)."""
    import math

    if isinstance(subject, DeferredSubject):
        return 8.0
    size = sum(p.numel() for p in subject.model.parameters())
    if isinstance(subject.inputs, torch.Tensor):
        size += subject.inputs.numel()
    return math.log10(size + 10)


def _shown_in(subjects: Sequence[Subject], chosen: Sequence[Section]) -> list[set[str] | None]:
    """Each subject's ``sections`` as a set of keys (None: all); unknown keys raise UsageError."""
    import difflib

    known = {s.key for s in chosen} | {s.key for s in base.known_sections()}
    out: list[set[str] | None] = []
    for subject in subjects:
        keys = subject.sections
        if keys is None:
            out.append(None)
            continue
        keys = {keys} if isinstance(keys, str) else set(keys)
        for key in sorted(keys - known):
            close = difflib.get_close_matches(str(key), sorted(known), n=3)
            hint = f"; closest: {', '.join(repr(c) for c in close)}" if close else f"; available: {', '.join(sorted(known))}"
            raise UsageError(f"subject {subject.name!r} lists unknown section {key!r} in its sections{hint}")
        out.append(keys)
    return out


def _check_subjects(subjects: Sequence[Subject | DeferredSubject] | Subject | DeferredSubject) -> list:
    if isinstance(subjects, (Subject, DeferredSubject)):
        subjects = [subjects]
    subjects = list(subjects)
    if not subjects:
        raise UsageError("no subjects to report on; expected at least one Subject (a model with inputs)")
    names: set[str] = set()
    for s in subjects:
        if getattr(s, "name", None) in names:
            raise UsageError(f"two subjects are named {s.name!r}; give each its own name (the report and "
                             f"ReportInfo.data tell them apart by name)")
        names.add(getattr(s, "name", None))
        if isinstance(s, DeferredSubject):
            if not callable(s.load):
                raise InputTypeError(f"deferred subject {s.name!r}: load must be callable, got {type(s.load).__name__}")
            continue
        if not isinstance(s, Subject):
            raise InputTypeError(f"expected torchloupe.reporting.Subject objects, got {type(s).__name__}")
        if not isinstance(s.model, nn.Module):
            raise UnsupportedModelError(f"subject {s.name!r}: model must be an nn.Module, got {type(s.model).__name__}")
    return subjects


def _load(deferred: DeferredSubject) -> Subject:
    """``deferred.load()``, checked: a :class:`Subject` with an ``nn.Module`` model."""
    subject = deferred.load()
    if not isinstance(subject, Subject) or not isinstance(subject.model, nn.Module):
        what = type(subject.model).__name__ if isinstance(subject, Subject) else type(subject).__name__
        raise TypeError(f"deferred subject {deferred.name!r}: load() must return a Subject with an nn.Module model, got {what}")
    return subject


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (a file name that was not UTF-8, read by Python with
    ``surrogateescape``) becomes U+FFFD instead of failing the report after all its work."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").encode("utf-8")


def build_report(
    subjects: Sequence[Subject | DeferredSubject] | Subject | DeferredSubject,
    path: str | os.PathLike,
    sections: str | Iterable[str | Section] = "all",
    options: ReportOptions | dict | None = None,
    progress: bool = True,
    title: str | None = None,
    jobs: int | str = 1,
) -> ReportInfo:
    """Run ``sections`` on every subject and write one self-contained HTML file to ``path``.

    ``options``: a :class:`~torchloupe.reporting.options.ReportOptions` (or a dict of its fields and
    of section keys): ``quick``, ``seed``, ``precision`` (``"fp32"``, ``"bf16"``, ``"fp16"``: runs the
    sections that only read the model, :data:`READ_ONLY_SECTIONS`, under autocast on the model's
    device) and each section's own typed options; a subject's ``options`` override them for it.
    Unknown keys and fields are refused in one line before any section runs. Subjects' models and inputs
    may be on any device (the sections compute there and draw from the CPU).
    ``jobs``: processes to run the sections in (``"auto"``: one per CPU, at most 4). More than
    one forks this process (Linux only, and not once CUDA is in use: then it runs in order),
    so call it from a script rather than from a process holding locks or open connections;
    ``seconds`` per section then add up the workers' time. Returns a :class:`ReportInfo` with
    the path, file size and per-section timings.
    """
    tqdm = require("tqdm", "render").tqdm

    from .assets import inline_shared_assets
    from .template import render_html

    subjects = _check_subjects(subjects)
    chosen, import_errors = _resolve(sections)
    ropts = ReportOptions.of(options)
    ropts.check()
    from ..devices import check_precision

    check_precision(ropts.precision)  # a bad name: one line, before any section runs
    path = Path(path)
    if path.exists() and path.is_dir():
        raise UsageError(f"report path '{path}' is a directory; expected a file path such as '{path / 'report.html'}'")

    start = time.perf_counter()
    subject_slugs = _unique_slugs([s.name for s in subjects])
    section_slugs = _unique_slugs([s.key for s in chosen])
    runs: list[SectionRun] = []
    views: list[dict[str, Any]] = []
    shown = _shown_in(subjects, chosen)
    tasks = [(a, b) for a in range(len(chosen)) for b in range(len(subjects))
             if shown[b] is None or chosen[a].key in shown[b]]
    for subject in subjects:  # every subject's section options checked (one line) before any section runs
        if isinstance(subject, Subject):
            ropts.check_subject(subject)
    for a, b in tasks:
        if isinstance(subjects[b], Subject):
            options_for(chosen[a], ropts, subjects[b])
    # One job per task, except that a deferred subject's tasks form one job, so it loads once, and a
    # subject's sections that share work (Section.shares: the exemplar search of feature visualization
    # and exemplars) form one job, so the subject's shared context computes it once in one process.
    groups: list[list[int]] = []
    group_of: dict[object, int] = {}
    for t, (a, b) in enumerate(tasks):
        key = b if isinstance(subjects[b], DeferredSubject) else (b, chosen[a].shares) if chosen[a].shares else None
        if key is None:
            groups.append([t])
            continue
        if key not in group_of:
            group_of[key] = len(groups)
            groups.append([])
        groups[group_of[key]].append(t)
    # Deferred subjects first (their load is the longest single piece), then slowest first, so
    # no worker is left alone with a long section at the end.
    weights = [_weight(s) for s in subjects]

    def cost(g: int) -> tuple[bool, float]:
        first = tasks[groups[g][0]][1]
        return (not isinstance(subjects[first], DeferredSubject),
                -sum(chosen[tasks[t][0]].cost * weights[tasks[t][1]] for t in groups[g]))

    order = sorted(range(len(groups)), key=cost)
    workers = worker_count(jobs, len(groups))

    def job(g: int) -> tuple[list[tuple[int, tuple[str, Any, Any, float]]], tuple[str | None, float, str] | None]:
        subject, load = subjects[tasks[groups[g][0]][1]], None
        if isinstance(subject, DeferredSubject):
            t0 = time.perf_counter()
            try:
                subject = _load(subject)
            except Exception as exc:  # every section of this subject shows the load error
                line = f"loading the model failed: {type(exc).__name__}: {_first_line(exc)}"
                failed = ("error", (line, "".join(traceback.format_exception(exc))), None, 0.0)
                return [(t, failed) for t in groups[g]], (None, time.perf_counter() - t0, line)
            load = (type(subject.model).__name__, time.perf_counter() - t0, "")
        out = []
        for t in groups[g]:
            t0 = time.perf_counter()
            b = tasks[t][1]  # the sections this subject appears in: a section can leave to another what it shows
            keys = tuple(chosen[a].key for a, bb in tasks if bb == b)
            try:
                sopts = options_for(chosen[tasks[t][0]], ropts, subject, keys)
            except UsageError as exc:  # a deferred subject's own options, seen only once it loaded
                status, payload, data = "error", (f"UsageError: {_first_line(exc)}", ""), None
            else:
                status, payload, data = _run_one(chosen[tasks[t][0]], subject, sopts)
            out.append((t, (status, payload, _packed(data) if workers > 1 else data, time.perf_counter() - t0)))
        return out, load

    results: dict[tuple[int, int], tuple[str, Any, Any, float]] = {}
    loads: dict[int, tuple[str | None, float, str]] = {}
    bar = tqdm(
        total=len(tasks), desc="report", unit="view", file=sys.stderr,
        disable=not progress, dynamic_ncols=True, leave=True,
    )
    try:
        with contextlib.closing(run_jobs(job, order, workers)) as finished:  # closed (workers stopped) on any exit
            for g, (done, load) in finished:
                for t, result in done:
                    results[tasks[t]] = result
                a, b = tasks[groups[g][0]]
                if load is not None:
                    loads[b] = load
                bar.set_postfix_str(f"{chosen[a].key} · {subjects[b].name}"[:60], refresh=False)
                bar.update(len(done))
    finally:
        bar.close()
    model_names = [type(s.model).__name__ if isinstance(s, Subject) else (loads.get(b, (None,))[0] or "not loaded")
                   for b, s in enumerate(subjects)]

    assets: dict[str, tuple[str, str]] = {}  # one copy of each script and style of the Html blocks
    findings: list[list[dict[str, str]]] = [[] for _ in subjects]
    kept: dict[tuple[str, str], Any] = {}
    for a, (section, sslug) in enumerate(zip(chosen, section_slugs)):
        sview: dict[str, Any] = {
            "key": section.key, "title": section.title, "blurb": section.blurb,
            "anchor": f"s-{sslug}", "entries": [], "na": [], "seconds": 0.0,
        }
        for b, (subject, subslug) in enumerate(zip(subjects, subject_slugs)):
            if (a, b) not in results:  # the subject is not shown in this section
                continue
            status, payload, data, secs = results[a, b]
            if data is not None:
                kept[section.key, subject.name] = _unpacked(data)
            sview["seconds"] += secs
            item = {"subject": subject.name, "model": model_names[b], "slug": subslug,
                    "anchor": f"s-{sslug}--{subslug}", "status": status}
            if status == "ok":
                item["blocks"] = [v for v in payload if v["kind"] != "finding"]
                item["findings"] = []
                collect_assets(payload, assets)
                for i, v in enumerate(payload):
                    if v["kind"] == "finding":
                        href = item["anchor"]
                        if v["ref"] is not None and payload[v["ref"]]["kind"] != "finding":
                            href = payload[v["ref"]]["id"] = f"fig-{item['anchor'][2:]}-{v['ref']}"
                        finding = {"text": v["text"], "href": href, "section": section.title}
                        item["findings"].append(finding)
                        findings[b].append(finding)
                nbytes = sum(v.get("bytes", 0) for v in payload)
                sview["entries"].append(item)
                runs.append(SectionRun(section.key, subject.name, status, secs, nbytes))
            elif status == "not-applicable":
                sview["na"].append({"subject": subject.name, "reason": payload, "slug": subslug})
                runs.append(SectionRun(section.key, subject.name, status, secs, 0, payload))
            else:
                item["error"], item["traceback"] = payload[0], payload[1]
                if len(payload) > 2:  # drawing failed: the numbers computed are shown instead
                    item["blocks"] = payload[2]
                sview["entries"].append(item)
                runs.append(SectionRun(section.key, subject.name, status, secs, 0, payload[0]))
        sview["models"] = " ".join([e["slug"] for e in sview["entries"]] + [n["slug"] for n in sview["na"]])
        views.append(sview)

    seconds = time.perf_counter() - start
    if title is None:
        names = ", ".join(s.name for s in subjects[:4]) + (", ..." if len(subjects) > 4 else "")
        title = f"torchloupe report: {names}"
    from .._version import __version__

    html = render_html(
        title=title,
        sections=views,
        subjects=[{"name": s.name, "model": model_names[b], "slug": subject_slugs[b], "findings": findings[b]}
                  for b, s in enumerate(subjects)],
        styles=[text for kind, text in assets.values() if kind == "style"],
        scripts=[(key, text) for key, (kind, text) in assets.items() if kind == "script"],
        photo_quality=_photo_quality(),
        loads=[{"subject": subjects[b].name, "seconds": secs, "error": err} for b, (_, secs, err) in sorted(loads.items())],
        import_errors=import_errors,
        runs=runs,
        seconds=seconds,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
    )
    html = inline_shared_assets(html)  # the graph's and the token view's script and style, once
    data = _utf8(html)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write '{path}': cannot make its folder ({exc.strerror or exc})", exc.errno) from exc
    atomic_write(path, data)  # complete or not at all; a symbolic link there is replaced, not followed
    total = time.perf_counter() - start
    return ReportInfo(path=path, size=len(data), seconds=total, runs=tuple(runs), import_errors=tuple(import_errors),
                      write_seconds=total - seconds, data=kept,
                      loads=tuple((subjects[b].name, secs) for b, (_, secs, err) in sorted(loads.items()) if not err))


def report(
    model: nn.Module,
    inputs: Any,
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    sections: str | Iterable[str | Section] = "all",
    *,
    options: dict | None = None,
    progress: bool = True,
    jobs: int | str = 1,
    title: str | None = None,
    name: str | None = None,
    **subject_kwargs: Any,
) -> ReportInfo:
    """Write one self-contained HTML report of ``model`` on ``inputs`` to ``path``.

    ``inputs``: a batch ``(N, C, H, W)`` (or a tuple / dict of model inputs); ``labels``:
    class names; further keywords become :class:`Subject` fields (``images``, ``masks``,
    ``dataset``, ``layers``, ``extras``). ``jobs``: see :func:`build_report`. Returns :class:`ReportInfo`,
    which a notebook shows as the report itself (a sandboxed ``<iframe>``) and whose ``.open()`` opens
    the file in a web browser.
    """
    from .preflight import check_report_call

    inputs = check_report_call(model, inputs, path)  # model, inputs and path: one line each, before any section
    if labels is not None:
        labels = [str(x) for x in labels]
    subject = Subject(name=name or type(model).__name__, model=model, inputs=inputs, labels=labels, **subject_kwargs)
    return build_report([subject], path, sections=sections, options=options, progress=progress, title=title,
                        jobs=jobs)
