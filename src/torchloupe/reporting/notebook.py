"""One report section in a notebook: what it computed, drawn with the report's own blocks.

A :class:`~torchloupe.reporting.base.SectionData` shows itself (``_repr_html_``) as the blocks its
``render()`` returns, written by the same template macros as the report page (``blocks.html.j2``),
with a small inline style; scripts of interactive views (graph, token view) are written inline, so
they run in a trusted notebook. :func:`section` computes one section for one model, the way the
report does, and returns that object::

    cams = tl.reporting.section("cam", model, x, labels=names)
    cams            # in a notebook: the CAM grid, its table and what to conclude
    cams.results    # the tensors
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

__all__ = ["section", "section_html", "blocks_html"]

_STYLE = """<style>
.tl-nb{font:14px/1.45 system-ui,sans-serif;color:#1a1a1a;max-width:1100px}
.tl-nb h4{margin:.4em 0 .2em;font-size:14px}
.tl-nb .blocks{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.tl-nb figure{margin:0;max-width:100%}.tl-nb img{max-width:100%;height:auto}
.tl-nb figcaption{font-size:13px;color:#333}.tl-nb table{border-collapse:collapse;font-size:13px}
.tl-nb th,.tl-nb td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:left}.tl-nb td.num{text-align:right}
.tl-nb td.hl{background:#fff3b0}.tl-nb .error{color:#8b0000}.tl-nb .conclude{border-left:3px solid #2b6cb0;padding-left:8px}
</style>"""

_RUN = re.compile(r'<script type="text/x-tl-run" data-asset="([^"]+)"></script>')


def blocks_html(blocks: list, title: str = "") -> str:
    """HTML of a list of report blocks (findings listed last, as the report's "What to conclude")."""
    from .assets import shared_assets
    from .builder import block_views
    from .template import environment

    views = block_views(list(blocks), None)
    assets: dict[str, tuple[str, str]] = {}
    from .builder import collect_assets

    collect_assets(views, assets)
    shown = [v for v in views if v["kind"] != "finding"]
    findings = [v["text"] for v in views if v["kind"] == "finding"]
    template = environment().from_string(
        '{% from "blocks.html.j2" import block %}'
        '<div class="blocks">{% for b in views %}{{ block(b, "nb") }}{% endfor %}</div>'
        '{% if findings %}<div class="conclude"><h4>What to conclude</h4><ul>'
        '{% for f in findings %}<li>{{ f }}</li>{% endfor %}</ul></div>{% endif %}')
    body = template.render(views=shown, findings=findings)
    body = _RUN.sub(lambda m: f"<script>{assets[m.group(1)][1]}</script>" if m.group(1) in assets else "", body)
    styles = "".join(f"<style>{text}</style>" for kind, text in assets.values() if kind == "style")
    css, js = shared_assets(body)
    head = f"<h4>{_html.escape(title)}</h4>" if title else ""
    return (f'{_STYLE}{styles}{f"<style>{css}</style>" if css else ""}<div class="tl-nb">{head}{body}</div>'
            + (f"<script>{js}</script>" if js else ""))


def section_html(data: Any) -> str:
    """A :class:`SectionData` as HTML: its blocks, or the error and its numbers when drawing fails."""
    from .base import section_of

    sec = section_of(getattr(data, "section", ""))
    title = sec.title if sec is not None else type(data).__name__
    try:
        blocks = data.render()
    except Exception as exc:
        from .base import Table, Text

        first = (str(exc).strip().splitlines() or ["(no message)"])[0]
        blocks = [Text(f"Drawing failed: {type(exc).__name__}: {first}"),
                  Table(["field", "value"], data.numbers(), caption=f"What {title} computed")]
    return blocks_html(blocks, title)


def section(key: str, model: Any, inputs: Any = None, *, options: Any = None, **subject_kwargs: Any) -> Any:
    """Compute report section ``key`` for one model, as the report would, and return its data object
    (a :class:`~torchloupe.reporting.base.SectionData`, drawn when a notebook shows it).

    ``inputs`` and further keywords are those of :class:`~torchloupe.reporting.base.Subject`
    (``labels``, ``images``, ``targets``, ``tokens``, ``dataset`` ...); ``options``: the section's
    options (its options class or a dict of its fields). A section that does not apply raises
    :class:`~torchloupe.errors.UnsupportedModelError` with its reason; one that returns blocks
    directly gives them wrapped in a :class:`Blocks` data object.
    """
    import torch

    from ..errors import UnsupportedModelError
    from .base import NotApplicable, SectionData, Subject
    from .builder import precision_for, select_sections
    from .options import ReportOptions, SectionOptions, options_for, section_fields

    sec = select_sections([key])[0]  # an unknown key: one line naming the closest
    name = subject_kwargs.pop("name", None) or type(model).__name__
    subject = Subject(name=name, model=model, inputs=inputs, **subject_kwargs)
    common = {}
    if isinstance(options, SectionOptions):
        common = {k: getattr(options, k) for k in ("quick", "seed", "precision")}
    elif isinstance(options, dict):
        common = {k: options[k] for k in ("quick", "seed", "precision") if k in options}
        options = {k: v for k, v in options.items() if k not in common}
    own = section_fields(sec.options, key, options, "options")  # a typo named as the caller wrote it
    opts = options_for(sec, ReportOptions(**common, sections={key: own} if own else {}), subject, (key,))
    with torch.random.fork_rng(devices=[]), precision_for(sec, subject, opts):
        torch.manual_seed(int(opts.seed))
        result = sec.build(subject, opts)
    if isinstance(result, NotApplicable):
        raise UnsupportedModelError(f"section {key!r} does not apply to {name}: {result.reason}")
    if isinstance(result, SectionData):
        return result
    return Blocks(list(result), key)


class Blocks:
    """The blocks of a section that returns them directly (no data object): shown as the report shows them."""

    def __init__(self, blocks: list, section: str = ""):
        self.blocks = blocks
        self.section = section

    def render(self) -> list:
        return list(self.blocks)

    def _repr_html_(self) -> str:
        from .base import section_of

        sec = section_of(self.section)
        return blocks_html(self.blocks, sec.title if sec is not None else "")
