"""Models the demo report shows: one module per family, each exposing ``subjects(options) -> list[Subject]``.

``loupe demo`` imports every module here (in name order) and shows every subject they return.
``options`` is a dict with at least ``quick`` (bool) and ``seed`` (int). Each module trains
(or loads from the cache) its small models in a few seconds.

A module may also expose ``train(options) -> None``: train and cache its models and nothing
more (a quick load once cached). The demo runs these in worker processes at the start, side by
side, so a cold cache costs the slowest family's training rather than the sum of all of them.
"""
