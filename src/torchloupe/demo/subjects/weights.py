"""Demo subject of weight learning: the demo's digits MLP trained with a WeightTracker (``demo.weight_run``).

The model is bit for bit the one ``subjects/digits.py`` shows; the history could equally be
attached there (``extras["tracker"] = digits_history(seed)``), which would make this module unnecessary.
"""

from __future__ import annotations


def subjects(options):
    from ..weight_run import digits_subject

    return [digits_subject(options)]
