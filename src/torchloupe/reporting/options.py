"""Typed options of the report and of each section.

Every section gets one options object: :class:`SectionOptions` (what all sections share:
``quick``, ``seed``, ``precision`` and the keys of the sections the subject appears in) or the
subclass the section registered (``register(..., options=CamOptions)``), whose fields are that
section's knobs with their defaults in one place instead of numbers inside its code.

Options come from two places, merged field by field, the subject's over the report's::

    build_report(subjects, "r.html", options=ReportOptions(quick=True, sections={"cam": CamOptions(max_images=2)}))
    Subject(..., options={"attention": AttentionOptions(memory="memory")})   # this model only

A plain dict works in both places (``{"quick": True, "cam": {"max_images": 2}}``); a key or field
that does not exist is refused in one line naming the closest ones, before any section runs.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

__all__ = ["SectionOptions", "ReportOptions", "COMMON"]

#: The fields every section's options have, set from the report's options.
COMMON = ("quick", "seed", "precision", "report_sections")


def _closest(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(word), known, n=3)
    if close:
        return "closest: " + ", ".join(repr(c) for c in close)
    return "expected one of: " + (", ".join(known) or "none")


class _Checked(type):
    """Options classes refuse an unknown keyword in one line naming the closest field (the dataclass's own
    ``__init__`` would say only ``unexpected keyword argument``)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
        for key in kwargs:
            if names and key not in names:
                own = [n for n in names if n not in COMMON]
                raise UsageError(f"{cls.__name__} has no option {key!r}; {_closest(key, own + list(COMMON))}")
        return super().__call__(*args, **kwargs)


@dataclass(frozen=True)
class SectionOptions(metaclass=_Checked):
    """What every section is given: ``quick`` (fewer samples and steps, for a first look),
    ``seed`` (every random draw of a section starts from it), ``precision`` (``"fp32"``, ``"bf16"``,
    ``"fp16"``: autocast of the sections that only read the model) and ``report_sections`` (the
    keys of the sections the subject appears in, so a section can leave to another what it shows).

    A section's own options subclass this. ``options["quick"]`` and ``options.get("seed")`` work as
    on the dict sections were given before options were typed.
    """

    quick: bool = False
    seed: int = 0
    precision: str = "fp32"
    report_sections: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_common(self.quick, self.seed, self.precision)
        if isinstance(self.report_sections, str) or not all(isinstance(k, str) for k in self.report_sections):
            raise UsageError(f"option report_sections={self.report_sections!r}: expected a tuple of section keys")
        self.check()

    def check(self) -> None:
        """Refuse a bad value in one line (:class:`~torchloupe.errors.UsageError`); a subclass extends it."""

    def __getitem__(self, key: str) -> Any:
        if key in self.names():
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.names() else default

    def __contains__(self, key: object) -> bool:
        return key in self.names()

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def own_names(cls) -> list[str]:
        """The fields of this section only (not :data:`COMMON`)."""
        return [n for n in cls.names() if n not in COMMON]

    def given(self) -> dict[str, Any]:
        """The fields set to something other than their default (what a merge carries over)."""
        out = {}
        for f in dataclasses.fields(self):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            value = getattr(self, f.name)
            if default is dataclasses.MISSING or not _same(value, default):
                out[f.name] = value
        return out


def _check_common(quick: Any, seed: Any, precision: Any) -> None:
    """The common options' values, one line each (``quick="no"`` would otherwise read as true)."""
    if not isinstance(quick, bool):
        raise UsageError(f"option quick={quick!r}: expected True or False")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UsageError(f"option seed={seed!r}: expected an integer")
    from ..devices import check_precision

    check_precision(precision)


def check_int(section: str, name: str, value: Any, least: int = 1, none: bool | str = False) -> None:
    """Refuse option ``name`` of ``section`` unless it is an integer >= ``least``, in one line naming
    it: every section's counts are checked here. ``none``: None is allowed too (a string says what it means)."""
    if none is not False and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        what = "a positive integer" if least == 1 else f"an integer >= {least}"
        alt = "" if none is False else " or None" if none is True else f" (or None: {none})"
        raise UsageError(f"{section} option {name}={value!r}: expected {what}{alt}")


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # tensors and other values with no plain truth value: not the default
        return a is b


def section_fields(cls: type[SectionOptions], key: str, given: Any, where: str) -> dict[str, Any]:
    """The own fields ``given`` sets for section ``key`` (a ``cls`` instance or a mapping), checked."""
    if given is None:
        return {}
    if isinstance(given, SectionOptions):
        if not isinstance(given, cls):
            raise UsageError(f"{where}: options for section {key!r} must be {cls.__name__}, got {type(given).__name__}")
        return {k: v for k, v in given.given().items() if k not in COMMON}
    if not isinstance(given, Mapping):
        raise UsageError(f"{where}: options for section {key!r} must be a {cls.__name__} or a dict, "
                         f"got {type(given).__name__}")
    own = cls.own_names()
    for name in given:
        if name not in own:
            has = f"; {_closest(name, own)}" if own else f"; section {key!r} has no options of its own"
            raise UsageError(f"{where}: section {key!r} has no option {name!r}{has}")
    return dict(given)


@dataclass(frozen=True)
class ReportOptions(metaclass=_Checked):
    """The report's options: the common ones (see :class:`SectionOptions`) and, under ``sections``,
    each section's own, by section key (a section's options class instance or a dict of its fields)."""

    quick: bool = False
    seed: int = 0
    precision: str = "fp32"
    sections: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_common(self.quick, self.seed, self.precision)
        if not isinstance(self.sections, Mapping):
            raise UsageError(f"report option sections={self.sections!r}: expected a dict of section options by "
                             f"section key, such as {{'cam': CamOptions(images=2)}}")

    @classmethod
    def of(cls, value: ReportOptions | Mapping[str, Any] | None) -> ReportOptions:
        """``value`` as :class:`ReportOptions`: a dict's keys are the common options and section keys;
        anything else is refused in one line."""
        if value is None:
            return cls()
        if isinstance(value, ReportOptions):
            return value
        if not isinstance(value, Mapping):
            raise UsageError(f"report options must be a ReportOptions or a dict, got {type(value).__name__}")
        from .base import known_sections, import_sections

        import_sections(strict=False)
        keys = {s.key for s in known_sections()}
        common, sections = {}, dict(value.get("sections") or {})
        for k, v in value.items():
            if k in ("quick", "seed", "precision"):
                common[k] = v
            elif k == "sections":
                continue
            elif k in keys:
                sections[k] = v
            else:
                known = ["quick", "seed", "precision", *sorted(keys)]
                raise UsageError(f"unknown report option {k!r}; {_closest(k, known)}")
        return cls(**common, sections=sections)

    def check(self) -> None:
        """Every section key known and every section's fields real (one line each, before any work)."""
        from .base import known_sections

        sections = {s.key: s for s in known_sections()}
        for key, given in self.sections.items():
            if key not in sections:
                raise UsageError(f"options for unknown section {key!r}; {_closest(key, sorted(sections))}")
            section_fields(sections[key].options, key, given, "report options")

    def check_subject(self, subject: Any) -> None:
        """A subject's own options: every key a known section, every field real (one line each)."""
        from .base import known_sections

        sections = {s.key: s for s in known_sections()}
        where = f"subject {getattr(subject, 'name', '?')!r}"
        for key, given in (getattr(subject, "options", None) or {}).items():
            if key not in sections:
                raise UsageError(f"{where}: options for unknown section {key!r}; {_closest(key, sorted(sections))}")
            section_fields(sections[key].options, key, given, where)

    def common(self, report_sections: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"quick": bool(self.quick), "seed": self.seed, "precision": str(self.precision),
                "report_sections": tuple(report_sections)}


def options_for(section: Any, report: ReportOptions, subject: Any, report_sections: tuple[str, ...] = ()) -> SectionOptions:
    """The options ``section`` runs with on ``subject``: the report's common options, then the report's
    options for this section, then the subject's own (``Subject.options``), field by field."""
    cls = getattr(section, "options", SectionOptions) or SectionOptions
    own = section_fields(cls, section.key, report.sections.get(section.key), "report options")
    mine = (getattr(subject, "options", None) or {}).get(section.key)
    own.update(section_fields(cls, section.key, mine, f"subject {getattr(subject, 'name', '?')!r}"))
    return cls(**report.common(report_sections), **own)
