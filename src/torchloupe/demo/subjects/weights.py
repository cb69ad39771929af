"""Demo subjects of weight learning: the digits MLP trained with a WeightTracker (see ``demo.weight_run``)."""

from __future__ import annotations


def subjects(options):
    from ..weight_run import digits_subject

    return [digits_subject(options)]
