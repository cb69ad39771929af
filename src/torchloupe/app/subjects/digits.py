"""The digits models as report subjects: an MLP and a linear classifier (whose weights are class templates)."""

from __future__ import annotations

from torch.utils.data import TensorDataset

from ...reporting.base import Subject
from . import cached_or_deferred
from ...demo.digits import DIGIT_CLASSES
from ...demo.weight_run import digits_run, one_per_class


MODELS = ((64, "digits MLP", ["fc1", "relu", "fc2"]), (0, "digits linear classifier", ["fc"]))


def digits_subject(seed: int, n: int, hidden: int, name: str, layers: list[str]) -> Subject:
    """The digits model with ``hidden`` units (0: the linear classifier) on ``n`` test images, one a class."""
    split, picks = one_per_class(seed, n)
    x, y = split.x_test[picks], split.y_test[picks]
    # Trained with a WeightTracker: the same weights as train_digits_model, bit for bit, plus
    # the history the "Weight learning" section draws.
    model, history = digits_run(seed, hidden=hidden)
    return Subject(
        name=name,
        model=model,
        inputs=x,
        labels=list(DIGIT_CLASSES),
        images=x,
        dataset=TensorDataset(split.x_test, split.y_test),
        layers=layers,
        targets=y,
        tracker=history,
        options={"weights": {"input_shape": (1, 8, 8)}},
    )


def digits_subjects(seed: int = 0, n: int = 8, progress: bool = True) -> list[Subject]:
    """The digits MLP and the linear classifier (trained, or loaded from the cache)."""
    return [digits_subject(seed, n, hidden, name, layers) for hidden, name, layers in MODELS]


def subjects(options: dict) -> list:
    seed = int(options.get("seed", 0))
    return [cached_or_deferred(name, lambda h=hidden, nm=name, ly=layers: digits_subject(seed, 8, h, nm, ly))
            for hidden, name, layers in MODELS]
