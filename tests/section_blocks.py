"""What tests of a report section read: its blocks, whether the section returned a data object
(:class:`~torchloupe.reporting.base.SectionData`, drawn by ``render()``) or blocks."""

from torchloupe.reporting.base import NotApplicable, SectionData


def blocks_of(result):
    """``result.render()`` for a data object; blocks and :class:`NotApplicable` as they are."""
    if isinstance(result, SectionData):
        return result.render()
    return result


__all__ = ["blocks_of", "NotApplicable"]
