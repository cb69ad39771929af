"""The digits models as report subjects: an MLP and a linear classifier (whose weights are class templates)."""

from __future__ import annotations

from torch.utils.data import TensorDataset

from ...reporting.base import Subject
from ..digits import DIGIT_CLASSES, digits_split
from ..weight_run import digits_run

__all__ = ["subjects", "digits_subjects", "train"]


def digits_subjects(seed: int = 0, n: int = 8, progress: bool = True) -> list[Subject]:
    split = digits_split(seed=seed)
    # One test image per class first (0, 1, 2, ...), so the batch shows different digits.
    picks = [int((split.y_test == c).nonzero()[0]) for c in range(len(DIGIT_CLASSES))][:n]
    x, y = split.x_test[picks], split.y_test[picks]
    test_set = TensorDataset(split.x_test, split.y_test)
    out = []
    for hidden, name, layers in ((64, "digits MLP", ["fc1", "relu", "fc2"]), (0, "digits linear classifier", ["fc"])):
        # Trained with a WeightTracker: the same weights as train_digits_model, bit for bit, plus
        # the history the "Weight learning" section draws.
        model, history = digits_run(seed, hidden=hidden)
        out.append(
            Subject(
                name=name,
                model=model,
                inputs=x,
                labels=list(DIGIT_CLASSES),
                images=x,
                dataset=test_set,
                layers=layers,
                extras={"targets": y, "input_shape": (1, 8, 8), "seed": seed, "tracker": history},
            )
        )
    return out


TRAIN_SECONDS = 3  # cold-cache training time on one thread; the demo starts the slowest first


def train(options: dict) -> None:
    """Train and cache both digits models with their weight histories."""
    for hidden in (64, 0):
        digits_run(int(options.get("seed", 0)), hidden=hidden)


def subjects(options: dict) -> list[Subject]:
    return digits_subjects(int(options.get("seed", 0)), progress=bool(options.get("progress", True)))
