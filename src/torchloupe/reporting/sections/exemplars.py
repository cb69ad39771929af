"""Report section "Dataset exemplars": the samples of the subject's dataset that excite a layer's
channels most.

Computed as :class:`ExemplarsData` (the :class:`~torchloupe.synthesis.ExemplarResult`, the class of
each exemplar when the dataset has labels), drawn by its ``render()``; options:
:class:`ExemplarsOptions`. The search is the subject's shared one (``subject.shared.exemplars``), so
with the feature visualization in the same report the data is read once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..base import Figure, Finding, NotApplicable, SectionData, Subject, Table, Text, register
from ..options import SectionOptions, check_int
from .feature_vis import QUICK_SAMPLES, on_cpu, pick_channels, pick_layer, units_option


@dataclass(frozen=True)
class ExemplarsOptions(SectionOptions):
    """``channels``: the channels shown: a count (the first ones; quick: at most 3) or a list of
    channel indices; ``k``: samples per channel; ``samples``: how many samples of the subject's
    dataset are searched (the first ones; quick: at most 128); ``batch_size``: the batch size of the search."""

    channels: int | tuple[int, ...] = 4
    k: int = 5
    samples: int = 512
    batch_size: int = 64

    def check(self) -> None:
        units_option("exemplars", "channels", self.channels)
        for name in ("k", "samples", "batch_size"):
            check_int("exemplars", name, getattr(self, name))


@dataclass
class ExemplarsData(SectionData):
    """The top-``k`` dataset samples of ``channels`` of ``layer``: ``exemplars``
    (:class:`~torchloupe.synthesis.ExemplarResult`: values, dataset indices, crops), ``classes``
    ``(C, k)`` the dataset's label of each exemplar (-1: none or unknown; None when the dataset has
    no labels), ``class_names`` (the dataset's, else the model's), ``names`` (the dataset's name of
    each shown sample, e.g. its file) and ``listed``: the crops are drawn in the feature
    visualization section of the same report, so here they are listed, not drawn."""

    section: ClassVar[str] = "exemplars"
    layer: str
    channels: list[int]
    exemplars: Any
    classes: Tensor | None = None
    class_names: list[str] | None = None
    names: dict[int, str] | None = None
    listed: bool = False

    def purity(self) -> list[tuple[int, int, int]]:
        """Per channel ``(most common class, its count, labelled exemplars)`` (class -1 when none is labelled)."""
        out = []
        for j in range(len(self.channels)):
            labels = [int(c) for c, i in zip(self.classes[j], self.exemplars.indices[j]) if int(i) >= 0 and int(c) >= 0]
            if not labels:
                out.append((-1, 0, 0))
                continue
            cls, count = sorted(Counter(labels).items(), key=lambda kv: (-kv[1], kv[0]))[0]
            out.append((cls, count, len(labels)))
        return out

    def class_name(self, c: int) -> str:
        if self.class_names is not None and 0 <= c < len(self.class_names):
            return str(self.class_names[c])
        return f"class {c}"

    def finding(self) -> str:
        """What to conclude: whether each channel's top samples share a class (with labels), else how
        far each channel's top-1 stands above its k-th."""
        ex, k = self.exemplars, self.exemplars.k
        if self.classes is not None:
            rows = [(c, p) for c, p in zip(self.channels, self.purity()) if p[2]]
            if rows:
                share = sum(count / n for _, (_, count, n) in rows) / len(rows)
                each = "; ".join(f"channel {c}: {count} of {n} {self.class_name(cls)!r}" for c, (cls, count, n) in rows)
                among = f"; the dataset has {len(self.class_names)} classes" if self.class_names else ""
                verdict = ("each channel's strongest samples are mostly one class" if share >= 0.8 else
                           "their strongest samples span several classes: the channels respond to something "
                           "the classes share" if share <= 0.5 else "the channels lean to one class each, not strictly")
                return (f"In {self.layer}, on average {share:.0%} of each channel's top-{k} samples are of its most "
                        f"common class ({each}{among}): {verdict}.")
        gaps = []
        for j, c in enumerate(self.channels):
            valid = ex.indices[j] >= 0
            if int(valid.sum()) >= 2:
                v = ex.values[j][valid]
                gaps.append((float(v[0] - v[-1]), c, float(v[0]), float(v[-1]), int(valid.sum())))
        why = "the dataset gives no class labels" if self.classes is None else "no exemplar has a class label"
        if not gaps:
            return f"Nothing can be concluded about {self.layer}: {why} and no channel has two exemplars to compare."
        gaps.sort(key=lambda g: (-g[0], g[1]))
        hi, lo = gaps[0], gaps[-1]
        text = (f"Whether the channels of {self.layer} select a class cannot be said ({why}); the top-1 sample "
                f"stands furthest above the {_nth(hi[4])} in channel {hi[1]} ({hi[2]:.3g} against {hi[3]:.3g})")
        if len(gaps) > 1:
            text += f", least in channel {lo[1]} ({lo[2]:.3g} against {lo[3]:.3g})"
        return text + "."

    def render(self) -> list:
        ex, layer = self.exemplars, self.layer
        if self.listed:  # the same crops are drawn in the feature visualization: once is enough
            rows = [[f"{layer}:{c}", ", ".join(str(int(i)) for i in ex.indices[j] if int(i) >= 0),
                     ", ".join(f"{float(v):.3g}" for v, i in zip(ex.values[j], ex.indices[j]) if int(i) >= 0)]
                    for j, c in enumerate(self.channels)]
            columns = ["channel", "dataset indices, highest first", "channel mean"]
            if self.classes is not None:
                columns.append("classes")
                for j, row in enumerate(rows):
                    row.append(", ".join(self.class_name(int(c)) if int(c) >= 0 else "?"
                                         for c, i in zip(self.classes[j], ex.indices[j]) if int(i) >= 0))
            table = Table(columns, rows, caption=f"{layer}: top-{ex.k} samples per channel")
            return [
                Text(f"The top-{ex.k} crops of these channels are drawn beside their synthesized images in the "
                     f"feature visualization section; here are the dataset samples behind them (first {ex.seen} "
                     f"samples, exact running top-{ex.k}, ties broken by lower index)."),
                table,
                Finding(self.finding(), table),
            ]
        from ...render.synthesis import exemplars_figure

        fig = Figure(exemplars_figure(ex, rows=len(self.channels), k=ex.k,
                                      names=self.names.get if self.names else None),
                     caption=f"{layer}: top-{ex.k} of the first {ex.seen} samples per channel, receptive-field crops, "
                             f"value = channel mean")
        return [
            fig,
            Text(f"Exact: a running top-{ex.k} over {ex.seen} samples, ties broken by lower index; the same "
                 f"call runs under torchrun with every rank getting this result."),
            Finding(self.finding(), fig),
        ]


def _nth(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def dataset_labels(data: Any, indices: Sequence[int]) -> dict[int, int] | None:
    """The class label of each of ``indices`` in ``data`` (-1 where it has none), or None when the
    dataset gives no labels: ``.labels`` (:class:`~torchloupe.data.ImageFiles`), ``.targets``
    (torchvision), a ``TensorDataset``'s second tensor, else the second element of an item
    ``(x, label, ...)`` when it is an integer."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler, TensorDataset

    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler):
            return None
        data = data.dataset
    if not isinstance(data, Dataset) or isinstance(data, IterableDataset):
        return None
    indices = sorted({int(i) for i in indices if int(i) >= 0})

    def as_label(v: Any) -> int | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, Tensor) and v.numel() == 1 and not v.is_floating_point() and v.dtype != torch.bool:
            return int(v)
        return None

    table = None
    for attr in ("labels", "targets"):
        value = getattr(data, attr, None)
        if isinstance(value, (list, tuple, Tensor)) and len(value) == len(data):
            table = value
            break
    if table is None and isinstance(data, TensorDataset) and len(data.tensors) >= 2:
        t = data.tensors[1]
        if t.dim() == 1 and not t.is_floating_point() and t.dtype != torch.bool:
            table = t
    if table is not None:
        out = {i: as_label(table[i]) for i in indices}
    else:
        out = {}
        for i in indices:
            item = data[i]
            out[i] = as_label(item[1]) if isinstance(item, (tuple, list)) and len(item) >= 2 else None
    if not out or any(v is None for v in out.values()) or all(v < 0 for v in out.values()):
        return None
    return out


@register(
    "exemplars",
    "Dataset exemplars",
    "For a few channels, the dataset samples that drive them highest (mean over positions), cropped "
    "to the receptive field of the strongest position; exact top-k over the first samples.",
    options=ExemplarsOptions,
    shares="exemplars",  # the search of feature_vis: one process computes it once
)
def build(subject: Subject, options: ExemplarsOptions) -> ExemplarsData | NotApplicable:
    if subject.dataset is None:
        return NotApplicable("no dataset given with this model; exemplars search a dataset (from Python: "
                             "Subject(..., dataset=...); on the command line: loupe exemplars --data)")
    picked = pick_layer(subject)
    if picked is None or picked[2] != "conv":
        return NotApplicable(f"{type(subject.model).__name__} has no spatial layer; exemplars are shown for conv channels")
    layer, width, _ = picked
    quick = bool(options.quick)
    channels = pick_channels("exemplars", "channels", options.channels, width, layer, quick)
    stop = min(options.samples, QUICK_SAMPLES) if quick else options.samples
    ex = on_cpu(subject.shared.exemplars(layer, channels, stop, k=options.k, batch_size=options.batch_size))
    shown = [int(i) for i in ex.indices.flatten() if int(i) >= 0]
    labels = dataset_labels(subject.dataset, shown)
    classes = None
    if labels is not None:
        classes = torch.tensor([[labels.get(int(i), -1) if int(i) >= 0 else -1 for i in row] for row in ex.indices],
                               dtype=torch.long).reshape(ex.indices.shape)
    class_names = getattr(subject.dataset, "classes", None)
    class_names = [str(c) for c in class_names] if isinstance(class_names, (list, tuple)) else (
        [str(c) for c in subject.labels] if subject.labels is not None else None)
    name_of = getattr(subject.dataset, "name", None)
    names = {i: str(name_of(i)) for i in sorted(set(shown))} if callable(name_of) else None
    return ExemplarsData(layer=layer, channels=channels, exemplars=ex, classes=classes, class_names=class_names,
                         names=names, listed="feature_vis" in options.report_sections)
