"""Strings in figures are drawn as they are: no matplotlib mathtext on model-derived text.

A label such as ``$\\frac{a$`` (a class name, a layer name, a token) would be read as mathtext and break
the drawing; ``$x$`` would come out as math. Every figure of :mod:`torchloupe.render` is a
:func:`figure_class` figure: when drawn, every text in it (titles, axis labels, legends, ``ax.text``,
annotations, tick labels given as strings) is drawn with ``parse_math=False`` (matplotlib >= 3.5),
except the tick labels matplotlib's own number formatters write (log-scale ``10^-2`` ticks use mathtext).
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import require

__all__ = ["figure_class", "plain_text"]


def plain_text(fig: Any) -> Any:
    """Turn mathtext off on every text of ``fig`` but the number formatters' tick labels; returns ``fig``."""
    text_mod = require("matplotlib.text", "render")
    ticker = require("matplotlib.ticker", "render")
    # matplotlib's number formatters, which may write mathtext themselves; labels given as strings come
    # through FixedFormatter (FuncFormatter since matplotlib 3.10) and are the model's
    numbers = (ticker.ScalarFormatter, ticker.LogFormatter, ticker.LogitFormatter, ticker.EngFormatter,
               ticker.PercentFormatter)
    numeric: set[int] = set()
    for ax in fig.get_axes():
        for axis in (getattr(ax, "xaxis", None), getattr(ax, "yaxis", None), getattr(ax, "zaxis", None)):
            if axis is None:
                continue
            # get_*ticklabels() makes the labels of the current ticks now (draw reuses them)
            major, minor = axis.get_majorticklabels(), axis.get_minorticklabels()
            if isinstance(axis.get_major_formatter(), numbers):
                numeric.update(id(t) for t in major)
            if isinstance(axis.get_minor_formatter(), numbers):
                numeric.update(id(t) for t in minor)
            numeric.add(id(axis.get_offset_text()))
    for t in fig.findobj(text_mod.Text):
        if id(t) not in numeric:
            t.set_parse_math(False)
    return fig


def figure_class() -> type:
    """``matplotlib.figure.Figure`` whose :meth:`draw` first applies :func:`plain_text` (a missing
    matplotlib is one line naming the pip command, as everywhere in render)."""
    return _plain_class(require("matplotlib.figure", "render").Figure)


@functools.lru_cache(maxsize=2)
def _plain_class(base: type) -> type:
    class PlainFigure(base):
        """A matplotlib ``Figure`` that draws its strings without mathtext (see :mod:`torchloupe.render.plain`)."""

        def draw(self, renderer):
            plain_text(self)
            return super().draw(renderer)

    PlainFigure.__module__ = __name__
    PlainFigure.__qualname__ = "PlainFigure"
    return PlainFigure
