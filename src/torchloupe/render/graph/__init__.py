"""Views of a :class:`~torchloupe.structure.ModelGraph`: pure-Python strings, no matplotlib.

``layout`` (repeated blocks, collapsed views and the layered layout), ``svg``, ``html`` (the
interactive view: ``assets()`` is its style and script, once per page, ``fragment(graph)`` one
graph's markup and data; its script is ``script``), ``text`` (the summary table) and ``dot``
(Graphviz text).
``ModelGraph.summary() / to_svg() / to_html() / to_dot()`` call into these.
"""

from __future__ import annotations

from .dot import to_dot
from .html import assets, fragment, to_html
from .layout import collapse, fit_depth, layout, repeats
from .svg import to_svg
from .text import summary

__all__ = ["to_dot", "to_html", "to_svg", "summary", "collapse", "fit_depth", "layout", "repeats", "assets",
           "fragment"]
