"""The HTML report: sections run on subjects, laid out in one self-contained file.

``tl.report(model, inputs, "report.html")`` reports on one model;
:func:`build_report` on several :class:`Subject` objects (what ``loupe demo`` does).
Sections are modules under ``reporting/sections/`` registering themselves with
:func:`register`; see :mod:`torchloupe.reporting.base`.
"""

from __future__ import annotations

from .base import (
    Block,
    DeferredSubject,
    Details,
    Figure,
    Finding,
    Html,
    Image,
    NotApplicable,
    Section,
    SectionData,
    Subject,
    Table,
    Text,
    register,
    registered,
)
from .builder import ReportInfo, SectionRun, available_sections, build_report, report, select_sections
from .notebook import section
from .options import ReportOptions, SectionOptions

__all__ = [
    "report",
    "build_report",
    "section",
    "ReportOptions",
    "SectionOptions",
    "SectionData",
    "ReportInfo",
    "SectionRun",
    "available_sections",
    "select_sections",
    "Subject",
    "DeferredSubject",
    "Section",
    "Block",
    "Figure",
    "Image",
    "Table",
    "Text",
    "Html",
    "Details",
    "Finding",
    "NotApplicable",
    "register",
    "registered",
]
