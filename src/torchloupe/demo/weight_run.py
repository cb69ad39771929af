"""Weight learning for the demo: the demo's digits models trained with a WeightTracker.

:func:`digits_run` trains :class:`~torchloupe.demo.models.DigitsMLP` with exactly the recipe of
:func:`~torchloupe.demo.models.train_digits_model` (same split, AdamW, one-cycle schedule, 40
epochs, shuffling from the same seeded generator), calling ``tracker.step()`` after every
optimizer step, so the model that comes out is bit for bit the demo's model (a test checks
this) and the history shows how it was learned. About a second; the history and weights are
cached under the demo cache dir (:mod:`torchloupe.demo.cache`).

:func:`digits_history` is the history alone, to attach to a subject:
``Subject(..., extras={"tracker": digits_history(seed, hidden)})``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..weights.tracker import WeightHistory, WeightTracker
from .cache import cache_path, check_training_allowed, load_state, save_state
from .digits import DIGIT_CLASSES, digits_split
from .models import DIGITS_RECIPE, DigitsMLP, fit_digits


_VERSION = "v1"


def _key(seed: int, hidden: int, every: int) -> str:
    return f"weights-{DIGITS_RECIPE}-h{hidden}-seed{seed}-every{every}-{_VERSION}"


def _train(seed: int, hidden: int, every: int, sinks) -> tuple[DigitsMLP, WeightHistory]:
    """The demo's own digits recipe (``models.fit_digits``) with a tracker stepping after each update."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsMLP(hidden=hidden)
    with WeightTracker(model, every=every, input_shape=(1, 8, 8), sinks=sinks) as tracker:
        fit_digits(model, seed, progress=False, on_step=tracker.step)
    for p in model.parameters():
        p.grad = None
    return model.eval(), tracker.history


def digits_run(seed: int = 0, hidden: int = 64, every: int = 10, *, cache: bool = True,
               sinks=()) -> tuple[nn.Module, WeightHistory]:
    """``(trained DigitsMLP in eval mode, its WeightHistory)``; cached unless ``cache=False``
    or ``sinks`` are given (a live sink wants the live run)."""
    key = _key(seed, hidden, every)
    model_path, hist_path = cache_path(key + "-model"), cache_path(key + "-history")
    if cache and not sinks and model_path.exists() and hist_path.exists():
        try:
            model = load_state(DigitsMLP(hidden=hidden), model_path).eval()
            return model, WeightHistory.load(hist_path)
        except ValueError:  # CheckpointError: a stale or broken entry, train again
            pass
    if cache and not sinks:
        check_training_allowed(key)
    model, history = _train(seed, hidden, every, sinks)
    if cache:
        try:
            save_state(model, model_path)
            history.save(hist_path)
        except OSError:
            pass  # a read-only cache only costs a retrain next time
    return model, history


def digits_history(seed: int = 0, hidden: int = 64, every: int = 10) -> WeightHistory:
    """The weight-learning history of the demo's digits model (``hidden=0``: the linear classifier)."""
    return digits_run(seed, hidden, every)[1]


def one_per_class(seed: int = 0, n: int | None = None):
    """``(split, picks)``: the digits split of ``seed`` and the indices of its first test image of each
    class (0, 1, 2, ...; the first ``n``), so a batch shows different digits."""
    split = digits_split(seed=seed)
    return split, [int((split.y_test == c).nonzero()[0]) for c in range(len(DIGIT_CLASSES))][:n]

