"""Demo subjects of weight learning: the demo's digits MLP and linear classifier trained with a
WeightTracker (``demo.weight_run``).

The models are bit for bit the ones ``subjects/digits.py`` shows; the histories could equally be
attached there (``extras["tracker"] = digits_history(seed, hidden)``), which would make this module
unnecessary.
"""

from __future__ import annotations


def subjects(options):
    from ..weight_run import digits_subject

    return [digits_subject(options, hidden=64), digits_subject(options, hidden=0)]
