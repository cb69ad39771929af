"""Small demo models trained on the bundled data in seconds, cached after the first run.

- :class:`ShapesCNN`: conv blocks, global average pooling and one linear layer (so the
  original CAM applies), for :func:`~torchloupe.demo.shapes.shapes_dataset`;
- :class:`DigitsMLP`: a small MLP (or a linear classifier) for scikit-learn's 8x8 digits.

Layers have readable names: ``features.conv1`` ... ``features.conv4``, ``gap``, ``fc``;
``fc1``, ``fc2`` (or ``fc``) for the digits models.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import load_or_train
from .shapes import SHAPE_CLASSES, shapes_tensors


# Bump when the architecture, data or training recipe changes: old cache files are then ignored.
SHAPES_RECIPE = "shapes-cnn-v3"
DIGITS_RECIPE = "digits-mlp-v2"

SHAPES_TRAIN = 3000
SHAPES_TEST = 1000
HELD_OUT_SEED = 1_000_003  # the held-out set is shapes_dataset(n, seed=seed + HELD_OUT_SEED)


class Standardize(nn.Module):
    """Per image: subtract each channel's mean, divide by the standard deviation over all channels.

    Unlike instance normalisation, a channel with little contrast stays small instead of
    being blown up to unit variance (noise), so colour contrast keeps its proportions.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        centred = x - x.mean(dim=(2, 3), keepdim=True)
        return centred / torch.sqrt(centred.pow(2).mean(dim=(1, 2, 3), keepdim=True) + self.eps)


def _block(cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class ShapesCNN(nn.Module):
    """norm -> conv1 (5x5, stride 2) -> pool1 -> conv2 -> conv3 -> pool3 -> conv4 -> gap -> fc.

    Every conv is followed by BatchNorm and ReLU (``bn1``, ``relu1``, ...). ``norm``
    (:class:`Standardize`) removes each image's colour offset and contrast, so the network
    sees shape rather than colour. Input ``(N, 3, H, W)`` in [0, 1]; at 64 px the maps are
    32 (``conv1``), 16 (``conv2``, ``conv3``) and 8 (``conv4``) pixels wide.
    ``features.relu4`` is the last conv layer (the one CAM methods use).
    """

    def __init__(self, classes: int = len(SHAPE_CLASSES), width: int = 12):
        super().__init__()
        w = width
        layers: list[tuple[str, nn.Module]] = [("norm", Standardize())]
        spec = [(3, w, 5, 2), (w, 2 * w, 3, 1), (2 * w, 4 * w, 3, 1), (4 * w, 4 * w, 3, 1)]
        for i, (cin, cout, k, stride) in enumerate(spec, start=1):
            conv, bn, relu = _block(cin, cout, k, stride)
            layers += [(f"conv{i}", conv), (f"bn{i}", bn), (f"relu{i}", relu)]
            if i in (1, 3):
                layers.append((f"pool{i}", nn.MaxPool2d(2)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.gap(self.features(x)), 1))


class DigitsMLP(nn.Module):
    """flatten -> fc1 -> relu -> fc2 on ``(N, 1, 8, 8)`` digits in [0, 1]; ``hidden=0`` gives a
    linear classifier ``flatten -> fc`` whose weight rows are exact class templates."""

    def __init__(self, classes: int = 10, hidden: int = 64, pixels: int = 64):
        super().__init__()
        self.hidden = hidden
        self.flatten = nn.Flatten()
        if hidden:
            self.fc1 = nn.Linear(pixels, hidden)
            self.relu = nn.ReLU()
            self.fc2 = nn.Linear(hidden, classes)
        else:
            self.fc = nn.Linear(pixels, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.flatten(x)
        if self.hidden:
            return self.fc2(self.relu(self.fc1(x)))
        return self.fc(x)


@dataclass(frozen=True)
class TrainLog:
    """What :func:`fit` did: epochs, seconds, final training loss, held-out accuracy."""

    epochs: int
    seconds: float
    loss: float
    accuracy: float | None


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (eval mode; the mode is restored)."""
    was = model.training
    model.eval()
    try:
        hits = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(y), batch))
    finally:
        model.train(was)
    return hits / max(1, len(y))


def fit(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float,
    batch: int = 64,
    seed: int = 0,
    weight_decay: float = 1e-4,
    flips: bool = False,
    test: tuple[Tensor, Tensor] | None = None,
    progress: bool = True,
    desc: str = "training",
    on_step: Callable[[], object] | None = None,
) -> TrainLog:
    """Train ``model`` in place with AdamW and a one-cycle schedule; a tqdm bar on stderr.

    Randomness (shuffling, flips) comes from a generator seeded with ``seed``; the global
    RNG is not touched. ``on_step()`` runs after every ``optimizer.step()`` (e.g. a
    :class:`~torchloupe.weights.WeightTracker`'s ``step``).
    """
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = (len(y) + batch - 1) // batch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25)
    start = time.perf_counter()
    loss = torch.zeros(())
    model.train()
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, unit="step", file=sys.stderr, disable=not progress, leave=False)
    try:
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), batch):
                idx = order[i : i + batch]
                xb = x[idx]
                if xb.dtype == torch.uint8:
                    xb = xb.float().div_(255.0)
                if flips:
                    flip = torch.rand(len(idx), generator=g) < 0.5
                    xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
                loss = F.cross_entropy(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if on_step is not None:
                    on_step()
                sched.step()
                bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    finally:
        bar.close()
        model.eval()
        for p in model.parameters():
            p.grad = None
    acc = accuracy(model, *test) if test is not None else None
    return TrainLog(epochs, time.perf_counter() - start, float(loss.detach()), acc)


def shapes_splits(seed: int = 0, size: int = 64, n_train: int = SHAPES_TRAIN, n_test: int = SHAPES_TEST):
    """``(train, held_out)`` shapes sets as :class:`~torchloupe.demo.shapes.ShapesTensors`.

    The held-out set uses seed ``seed + 1_000_003``, so it never shares an image with training.
    """
    return shapes_tensors(n_train, size=size, seed=seed), shapes_tensors(n_test, size=size, seed=seed + HELD_OUT_SEED)


def _default_threads() -> int:
    """One thread: measured faster for this small CNN on the shared 2-core machine, loaded or not.

    Same process recipe, one run each (load average in brackets): 1 thread 29.9 s (1.5),
    2 threads 42.3 s (1.7-2.3); under load 5-7: 1 thread 44 s, 2 threads 236-319 s
    (spin-waiting). Pass ``threads=2`` to override.
    """
    return 1


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (default: :func:`_default_threads`), then restore."""
    old = torch.get_num_threads()
    want = n if n is not None else _default_threads()
    if want < 1:
        raise ValueError(f"threads must be a positive int, got {n!r}")
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_shapes_model(
    seed: int = 0, *, progress: bool = True, retrain: bool = False, epochs: int = 12, threads: int | None = None
) -> ShapesCNN:
    """A :class:`ShapesCNN` trained on the shapes set (cached; eval mode).

    Trains on 3,000 64 px images for ``epochs`` epochs (AdamW, one-cycle learning rate up
    to 5e-3, batch 64, horizontal flips; 29.9 s including the data on one thread of the
    shared 2-core machine) and reaches 98.5-99% accuracy on the 1,000 held-out images of
    :func:`shapes_splits`. The weights are cached
    under ``shapes-cnn-v3-seed{seed}`` (plus ``-e{epochs}`` when not the default).
    ``threads``: torch threads for training (default 1, measured fastest; see ``_default_threads``).
    """
    key = f"{SHAPES_RECIPE}-seed{seed}" + ("" if epochs == 12 else f"-e{epochs}")

    def build() -> ShapesCNN:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return ShapesCNN()

    def train(model: ShapesCNN) -> None:
        with _threads(threads):
            train_set, _ = shapes_splits(seed, n_test=0)
            fit(model, train_set.images, train_set.labels, epochs=epochs, lr=5e-3, seed=seed, flips=True,
                progress=progress, desc="training shapes CNN")

    return load_or_train(key, build, train, retrain=retrain)


def fit_digits(model: DigitsMLP, seed: int = 0, *, progress: bool = True, threads: int | None = None,
               on_step: Callable[[], object] | None = None) -> TrainLog:
    """The demo's digits recipe (also used with a weight tracker by :mod:`torchloupe.demo.weight_run`)."""
    from .digits import digits_split

    with _threads(threads or 1):  # a tiny model: more threads only add overhead
        split = digits_split(seed=seed)
        return fit(model, split.x_train, split.y_train, epochs=25, lr=1e-2, batch=64, seed=seed,
                   weight_decay=1e-3, progress=progress, on_step=on_step,
                   desc="training digits MLP" if model.hidden else "training digits linear")


def train_digits_model(
    seed: int = 0, *, hidden: int = 64, progress: bool = True, retrain: bool = False, threads: int | None = None
) -> DigitsMLP:
    """A :class:`DigitsMLP` trained on the digits train split (cached; eval mode; a few seconds).

    ``hidden=64`` (default): ``fc1 -> relu -> fc2``, 98.7% test accuracy (seed 0);
    ``hidden=0``: a linear classifier ``fc`` (its rows are class templates), 95.3%.
    Split: :func:`torchloupe.demo.digits.digits_split` with ``seed``.
    """

    if not isinstance(hidden, int) or hidden < 0:
        raise ValueError(f"hidden must be a non-negative int, got {hidden!r}")
    key = f"{DIGITS_RECIPE}-h{hidden}-seed{seed}"

    def build() -> DigitsMLP:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return DigitsMLP(hidden=hidden)

    def train(model: DigitsMLP) -> None:
        fit_digits(model, seed, progress=progress, threads=threads)

    return load_or_train(key, build, train, retrain=retrain)
