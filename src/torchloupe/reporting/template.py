"""The one Jinja2 environment of the report: autoescape on, templates from ``reporting/templates``."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from ..errors import require


TEMPLATES = Path(__file__).with_name("templates")

#: Bidirectional controls: LRM / RLM (U+200E-200F), the embeddings and overrides (U+202A-202E) and the
#: isolates (U+2066-2069). A model-derived string holding one (a layer name with U+202E) would reorder
#: the text that follows it on the page (a name that reads as another).
BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def neutralize_bidi(value: Any) -> Any:
    """``value`` with every bidirectional control shown as visible text (``\\u202e``); markup (already
    escaped blocks) and non-strings unchanged. The report's Jinja environment applies it to every
    ``{{ ... }}`` before escaping."""
    if isinstance(value, str) and not hasattr(value, "__html__") and BIDI_CONTROLS.search(value):
        return BIDI_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    return value


@functools.lru_cache(maxsize=1)
def environment():
    jinja2 = require("jinja2", "render")

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every model-derived string is escaped; only Html blocks pass through
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=neutralize_bidi,  # the one filter every expression passes: bidi controls made visible
    )
    env.filters["seconds"] = lambda s: f"{s:.2f} s" if s < 100 else f"{s:.0f} s"
    return env


def render_html(**context: Any) -> str:
    """The full report page. Bidirectional controls that reached it another way (inside markup built
    elsewhere, data for the page's scripts) are removed: none belongs in a report."""
    return BIDI_CONTROLS.sub("", environment().get_template("report.html.j2").render(**context))


def render_template(name: str, **context: Any) -> str:
    """Markup for an :class:`~torchloupe.reporting.base.Html` block from a template file (escaping on)."""
    return environment().get_template(name).render(**context)


def render_fragment(source: str, **context: Any) -> str:
    """Markup for an :class:`~torchloupe.reporting.base.Html` block from a template string (escaping on)."""
    return environment().from_string(source).render(**context)
