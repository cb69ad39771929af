"""A weight-learning run for the demo: a digits MLP trained in about a second with a WeightTracker.

:func:`digits_run` trains (or loads from the cache) ``Flatten -> Linear(64, 32) -> ReLU ->
Linear(32, 10)`` on scikit-learn's bundled 8x8 digits with plain SGD, recording every 10 steps,
and returns the model and its :class:`~torchloupe.weights.WeightHistory`. :func:`digits_subject`
wraps it as a report :class:`~torchloupe.reporting.base.Subject` with ``extras["tracker"]``.
The cache lives in ``$TORCHLOUPE_CACHE`` or the user cache dir (``~/.cache/torchloupe``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..weights.tracker import WeightHistory, WeightTracker

__all__ = ["digits_run", "digits_subject", "digits_mlp", "DIGIT_CLASSES"]

DIGIT_CLASSES = tuple(str(i) for i in range(10))
_VERSION = 1


def _cache_dir() -> Path:
    try:  # the demo's shared cache helpers, when present
        from .cache import cache_dir  # type: ignore[attr-defined]

        return Path(cache_dir())
    except (ImportError, AttributeError):
        pass
    root = os.environ.get("TORCHLOUPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torchloupe"
    )
    return Path(root)


def digits_mlp(seed: int = 0) -> nn.Module:
    """The untrained MLP (seeded init): ``(N, 1, 8, 8) -> (N, 10)``."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / m.in_features**0.5
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 * bound - bound)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 2 * bound - bound)
    return model


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from ..errors import require

    require("sklearn", "demo", "scikit-learn")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target)


def digits_run(seed: int = 0, steps: int = 300, every: int = 10, cache: bool = True,
               sinks=()) -> tuple[nn.Module, WeightHistory]:
    """Train the digits MLP for ``steps`` SGD steps with a tracker; ``(model in eval mode, history)``."""
    path = _cache_dir() / f"weights-digits-mlp-s{seed}-n{steps}-e{every}-v{_VERSION}.pt"
    model = digits_mlp(seed)
    if cache and not sinks and path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["model"])
            hist_path = path.with_suffix(".history.pt")
            return model.eval(), WeightHistory.load(hist_path)
        except (OSError, KeyError, RuntimeError, ValueError):
            pass  # a stale or broken cache entry: train again
    x, y = _digits()
    g = torch.Generator().manual_seed(seed)
    train = torch.randperm(len(x), generator=g)[: len(x) * 4 // 5]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    with WeightTracker(model, every=every, input_shape=(1, 8, 8), sinks=sinks) as tracker:
        for _ in range(steps):
            idx = train[torch.randint(0, len(train), (64,), generator=g)]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tracker.step()
    for p in model.parameters():
        p.grad = None
    history = tracker.history
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict()}, path)
        history.save(path.with_suffix(".history.pt"))
    return model.eval(), history


def digits_subject(options: dict | None = None):
    """The digits MLP with its weight-learning history, as a report Subject."""
    from ..reporting.base import Subject

    options = options or {}
    seed = int(options.get("seed", 0))
    model, history = digits_run(seed=seed)
    x, y = _digits()
    pick = torch.arange(0, len(x), max(1, len(x) // 16))[:16]
    images = x[pick]
    return Subject(
        name="Digits MLP (weight learning)",
        model=model,
        inputs=images,
        labels=list(DIGIT_CLASSES),
        images=images.repeat(1, 3, 1, 1),
        extras={"tracker": history, "targets": y[pick]},
    )
