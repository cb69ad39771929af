"""Models the demo report shows: one module per family, each exposing ``subjects(options) -> list``.

``loupe demo`` imports every module here (in name order) and shows every subject they return:
:class:`~torchloupe.reporting.Subject` objects, or
:class:`~torchloupe.reporting.DeferredSubject` objects for models that are slow to make.
``options`` is a dict with at least ``quick`` (bool) and ``seed`` (int).

The built-in families return a model that is not in the demo cache yet as a deferred subject
(:func:`cached_or_deferred`): the report worker that runs its sections trains it, while the
other worker already runs other models' sections, so a cold cache costs about the slowest
model's training plus its sections rather than all training before any section.

A module may also expose ``train(options) -> None``: train and cache its models and nothing
more. The demo runs these in worker processes before making the subjects, side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...reporting.base import DeferredSubject, Subject

__all__ = ["cached_or_deferred"]


def cached_or_deferred(name: str, make: Callable[[], Subject], sections: Sequence[str] | None = None) -> Subject | DeferredSubject:
    """``make()`` when every model it needs is in the demo cache; otherwise a
    :class:`DeferredSubject` named ``name`` that trains them (``make()``) where its sections run."""
    from ...demo.cache import NotCached, cached_only

    try:
        with cached_only():
            return make()
    except NotCached:
        return DeferredSubject(name, make, sections)
