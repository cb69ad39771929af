"""The shapes CNN as a report subject: held-out images with their object masks."""

from __future__ import annotations

from ...reporting.base import Subject
from . import cached_or_deferred
from ...demo.models import SHAPES_TEST, HELD_OUT_SEED, train_shapes_model
from ...demo.shapes import SHAPE_CLASSES, shapes_dataset


NAME = "shapes CNN"


def shapes_subject(seed: int = 0, n: int = 8, progress: bool = True) -> Subject:
    """The trained :class:`~torchloupe.demo.models.ShapesCNN` on the first ``n`` held-out images
    (every class among any 5 in a row), with masks, class names and the held-out set as dataset."""
    model = train_shapes_model(seed, progress=progress)
    held_out = shapes_dataset(SHAPES_TEST, size=64, seed=seed + HELD_OUT_SEED)
    batch = shapes_dataset(n, size=64, seed=seed + HELD_OUT_SEED).tensors()  # = held_out's first n
    images, labels, masks = batch.images[:n], batch.labels[:n], batch.masks[:n]
    return Subject(
        name=NAME,
        model=model,
        inputs=images,
        labels=list(SHAPE_CLASSES),
        images=images,
        masks=masks,
        dataset=held_out,
        layers=["features.relu1", "features.relu2", "features.relu3", "features.relu4"],
        targets=labels,
    )


def subjects(options: dict) -> list:
    seed, progress = int(options.get("seed", 0)), bool(options.get("progress", True))
    return [cached_or_deferred(NAME, lambda: shapes_subject(seed, n=8, progress=progress))]
