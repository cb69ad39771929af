"""Two-view data whose deciding view is known by construction, and three small fusion models.

Each sample has a *shape view* (a white shape on a dark, noisy 32 x 32 image) and a *colour view*
(a 32 x 32 image filled with one colour code). Eight classes:

- ``circle``, ``square``: decided by the shape view alone (the colour view is blank noise);
- ``red``, ``blue``: decided by the colour view alone (the shape view is blank noise);
- ``triangle+green``, ``triangle+yellow``, ``cross+green``, ``cross+yellow``: both views are needed.

Models (no biases before the head, so a blank view gives near-zero branch features and the
``"zero"`` baseline in branch space means "this view shows nothing"):

- :class:`EarlyFusion`: the two views concatenated on the channel axis, one CNN (branches ``input:0``, ``input:1``);
- :class:`LateFusion`: one CNN per view, ``torch.cat`` of their feature maps, GAP, linear head;
- :class:`IterativeFusion`: one stem per view, two stages where the branches exchange features
  (``a + mix(b)``, ``b + mix(a)``), then ``cat``, GAP, linear head.

:func:`train_fusion_model` trains one in a few seconds on CPU (cached under the user cache dir),
recording branch shares on a fixed probe batch with :class:`torchloupe.fusion.ShareTracker`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError


FUSION_CLASSES = ("circle", "square", "red", "blue", "triangle+green", "triangle+yellow", "cross+green",
                  "cross+yellow")
VIEWS = ("shape", "colour")
DECIDING_VIEW = ("shape", "shape", "colour", "colour", "both", "both", "both", "both")
_COLOURS = {"red": (0.9, 0.1, 0.1), "blue": (0.1, 0.2, 0.9), "green": (0.1, 0.8, 0.2), "yellow": (0.9, 0.85, 0.1)}
_PARTS = [("circle", None), ("square", None), (None, "red"), (None, "blue"), ("triangle", "green"),
          ("triangle", "yellow"), ("cross", "green"), ("cross", "yellow")]


def _shape_mask(kind: str, size: int, g: torch.Generator) -> Tensor:
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32) + 0.5,
                            torch.arange(size, dtype=torch.float32) + 0.5, indexing="ij")
    r = size * (0.18 + 0.1 * float(torch.rand((), generator=g)))
    cy = size / 2 + (float(torch.rand((), generator=g)) - 0.5) * (size - 2.4 * r)
    cx = size / 2 + (float(torch.rand((), generator=g)) - 0.5) * (size - 2.4 * r)
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dy ** 2 + dx ** 2 <= r ** 2
    if kind == "square":
        return (dy.abs() <= r * 0.85) & (dx.abs() <= r * 0.85)
    if kind == "triangle":
        return (dy <= r * 0.8) & (dy >= -r) & (dx.abs() <= (dy + r) * 0.6)
    if kind == "cross":
        w = r * 0.35
        return ((dy.abs() <= w) & (dx.abs() <= r)) | ((dx.abs() <= w) & (dy.abs() <= r))
    raise ValueError(kind)


def two_view_data(n: int, size: int = 32, seed: int = 0, noise: float = 0.04) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(shape_view (n,3,S,S), colour_view (n,3,S,S), labels (n,), shape_masks (n,S,S) bool)``, classes balanced."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(FUSION_CLASSES)
    labels = labels[torch.randperm(n, generator=g)]
    shape_v = torch.zeros(n, 3, size, size)
    colour_v = torch.zeros(n, 3, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i, c in enumerate(labels.tolist()):
        shape, colour = _PARTS[c]
        if shape is not None:
            m = _shape_mask(shape, size, g)
            masks[i] = m
            shape_v[i] = m.float() * (0.75 + 0.25 * float(torch.rand((), generator=g)))
        if colour is not None:
            rgb = torch.tensor(_COLOURS[colour]) * (0.8 + 0.2 * float(torch.rand((), generator=g)))
            colour_v[i] = rgb.view(3, 1, 1)
    shape_v = (shape_v + noise * torch.rand(shape_v.shape, generator=g)).clamp(0, 1)
    colour_v = (colour_v + noise * torch.rand(colour_v.shape, generator=g)).clamp(0, 1)
    return shape_v, colour_v, labels, masks


def _cnn(in_ch: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, width, 3, stride=2, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.ReLU(),
    )


class EarlyFusion(nn.Module):
    """Both views stacked on the channel axis at the input, then one CNN."""

    def __init__(self, classes: int = len(FUSION_CLASSES), width: int = 12):
        super().__init__()
        self.body = _cnn(6, width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, shape_view: Tensor, colour_view: Tensor) -> Tensor:
        x = torch.cat([shape_view, colour_view], dim=1)
        return self.head(torch.flatten(self.pool(self.body(x)), 1))


class LateFusion(nn.Module):
    """One CNN per view; their feature maps meet in ``torch.cat`` before GAP and the linear head."""

    def __init__(self, classes: int = len(FUSION_CLASSES), width: int = 8):
        super().__init__()
        self.shape_branch = _cnn(3, width)
        self.colour_branch = _cnn(3, width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * width, classes)

    def forward(self, shape_view: Tensor, colour_view: Tensor) -> Tensor:
        fused = torch.cat([self.shape_branch(shape_view), self.colour_branch(colour_view)], dim=1)
        return self.head(torch.flatten(self.pool(fused), 1))


class IterativeFusion(nn.Module):
    """A stem per view, then two stages in which each branch adds a 1x1 projection of the other."""

    def __init__(self, classes: int = len(FUSION_CLASSES), width: int = 8):
        super().__init__()
        conv = lambda i, o, s: nn.Sequential(nn.Conv2d(i, o, 3, stride=s, padding=1, bias=False), nn.ReLU())
        self.shape_stem = conv(3, width, 2)
        self.colour_stem = conv(3, width, 2)
        self.shape_stages = nn.ModuleList([conv(width, width, 2), conv(width, width, 1)])
        self.colour_stages = nn.ModuleList([conv(width, width, 2), conv(width, width, 1)])
        self.to_shape = nn.ModuleList([nn.Conv2d(width, width, 1, bias=False) for _ in range(2)])
        self.to_colour = nn.ModuleList([nn.Conv2d(width, width, 1, bias=False) for _ in range(2)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, shape_view: Tensor, colour_view: Tensor) -> Tensor:
        a, b = self.shape_stem(shape_view), self.colour_stem(colour_view)
        for i in range(2):
            a, b = self.shape_stages[i](a), self.colour_stages[i](b)
            a, b = a + self.to_shape[i](b), b + self.to_colour[i](a)
        return self.head(torch.flatten(self.pool(torch.cat([a, b], dim=1)), 1))


MODELS = {"early": EarlyFusion, "late": LateFusion, "iterative": IterativeFusion}
BRANCHES = {
    "early": {"shape": "input:0", "colour": "input:1"},
    "late": {"shape": "shape_branch", "colour": "colour_branch"},
    "iterative": {"shape": "shape_stem", "colour": "colour_stem"},
}
_VERSION = 1


def _cache_dir() -> Path:
    try:  # the foundation's cache helper, once it exists
        from . import cache as _cache  # type: ignore[attr-defined]

        return Path(_cache.cache_dir()) / "fusion"
    except (ImportError, AttributeError):
        root = os.environ.get("TORCHLOUPE_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torchloupe")
        return Path(root) / "fusion"


def _check_training_allowed(what: str) -> None:
    try:  # the demo cache's "cached only" mode (loupe demo), when it is part of the package
        from .cache import check_training_allowed
    except ImportError:
        return
    check_training_allowed(what)


def train_fusion_model(kind: str, seed: int = 0, steps: int = 400, every: int = 25, lr: float = 5e-3,
                       cache: bool = True):
    """Train (or load) the ``kind`` demo model; returns ``(model in eval mode, ShareHistory)``.

    Adam, batch 64, ``steps`` steps on 1,600 two-view samples; shares recorded every ``every`` steps
    on a fixed probe batch of 64 held-out samples (targets = true labels).
    """
    from ..fusion import ShareTracker
    from ..fusion.tracking import ShareHistory

    if kind not in MODELS:
        raise ValueError(f"kind must be one of {sorted(MODELS)}, got {kind!r}")
    path = _cache_dir() / f"{kind}-seed{seed}-steps{steps}-lr{lr:g}-v{_VERSION}.pt"
    torch.manual_seed(seed)
    model = MODELS[kind]()
    if cache and path.exists():
        from .cache import load_blob, report_unusable

        try:
            blob = load_blob(path)
            model.load_state_dict(blob["state"])
            hist = ShareHistory(steps=list(blob["steps"]), records=[dict(r) for r in blob["records"]],
                                method=blob["method"], targets=two_view_data(64, seed=seed + 1000)[2])
            return model.eval(), hist
        except (CheckpointError, KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            _check_training_allowed(path.name)  # (in cached_only(): the worker that trains it reports it)
            report_unusable(path, exc)  # garbage, truncated, empty, a folder: retrained, like the other models
            torch.manual_seed(seed)
            model = MODELS[kind]()
    if cache:
        _check_training_allowed(path.name)
    sv, cv, y, _ = two_view_data(1600, seed=seed + 1)
    pv_s, pv_c, py, _ = two_view_data(64, seed=seed + 1000)
    tracker = ShareTracker(model, (pv_s, pv_c), BRANCHES[kind], every=every, target=py)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these models are tiny: one thread is fastest, above all on a loaded machine
    try:
        for step in range(steps):
            idx = torch.randint(0, y.shape[0], (64,), generator=g)
            loss = F.cross_entropy(model(sv[idx], cv[idx]), y[idx])
            tracker.step()
            opt.zero_grad()
            loss.backward()
            opt.step()
        tracker.record(steps)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    hist = tracker.history
    if cache:
        from .cache import save_tensors

        try:
            save_tensors({"state": model.state_dict(), "steps": hist.steps, "records": hist.records,
                          "method": hist.method}, path)
        except OSError:
            pass  # a read-only cache (or a folder in the way) only costs a retrain next time
    return model, hist


def accuracy(model: nn.Module, n: int = 400, seed: int = 99) -> float:
    sv, cv, y, _ = two_view_data(n, seed=seed)
    with torch.no_grad():
        return float((model(sv, cv).argmax(1) == y).float().mean())

