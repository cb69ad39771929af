"""The one Jinja2 environment of the report: autoescape on, templates from ``reporting/templates``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ..errors import require


TEMPLATES = Path(__file__).with_name("templates")


@functools.lru_cache(maxsize=1)
def environment():
    jinja2 = require("jinja2", "render")

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every model-derived string is escaped; only Html blocks pass through
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seconds"] = lambda s: f"{s:.2f} s" if s < 100 else f"{s:.0f} s"
    return env


def render_html(**context: Any) -> str:
    """The full report page."""
    return environment().get_template("report.html.j2").render(**context)


def render_template(name: str, **context: Any) -> str:
    """Markup for an :class:`~torchloupe.reporting.base.Html` block from a template file (escaping on)."""
    return environment().get_template(name).render(**context)


def render_fragment(source: str, **context: Any) -> str:
    """Markup for an :class:`~torchloupe.reporting.base.Html` block from a template string (escaping on)."""
    return environment().from_string(source).render(**context)
