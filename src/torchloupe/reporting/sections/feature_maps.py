"""Report section "Feature maps": the most active channels of several layers, for the first sample or two.

Computed as :class:`FeatureMapsData` (per layer: its maps for the drawn samples, the picture beside
them, and the peak of every channel over the first inputs, which says which channels stay silent),
drawn by its ``render()``; options: :class:`FeatureMapsOptions`.
"""

from __future__ import annotations


from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...errors import UsageError
from ...features import feature_maps_of
from ...layers import find_layers
from ..base import Figure, Finding, NotApplicable, SectionData, Subject, Text, register
from ..options import SectionOptions, check_int

_SPATIAL = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CHANNELS = 12
QUICK_CHANNELS = 8


@dataclass(frozen=True)
class FeatureMapsOptions(SectionOptions):
    """``channels``: the tiles per figure, most active first (None: 12, 8 in quick mode);
    ``samples``: how many inputs get a figure per layer; ``max_layers``: without the subject's
    ``layers``, this many convolutions spread over the model (first and last included);
    ``inputs``: how many of the first inputs the silent-channel count reads; ``quiet``: a channel is
    *silent* when its largest absolute activation on those inputs is at most this fraction of the
    layer's strongest channel's."""

    channels: int | None = None
    samples: int = 1
    max_layers: int = 3
    inputs: int = 8
    quiet: float = 0.01

    def check(self) -> None:
        for name in ("samples", "max_layers", "inputs"):
            check_int("feature_maps", name, getattr(self, name))
        check_int("feature_maps", "channels", self.channels, none=True)
        if isinstance(self.quiet, bool) or not isinstance(self.quiet, (int, float)) or not 0 <= self.quiet < 1:
            raise UsageError(f"feature_maps option quiet={self.quiet!r}: expected a fraction in [0, 1)")

    @property
    def tiles(self) -> int:
        return self.channels if self.channels is not None else QUICK_CHANNELS if self.quick else CHANNELS


@dataclass
class LayerMaps:
    """One layer: ``maps`` its :class:`~torchloupe.features.FeatureMaps` for the drawn samples (every
    channel, on the CPU), ``pictures`` the image drawn beside each sample's maps (None: none),
    ``peaks`` ``(C,)`` each channel's largest absolute activation over the inputs read, and
    ``silent`` the channels at most ``quiet`` times the largest peak; ``negative``: the other channels
    that are never above zero on those inputs (a layer before its ReLU: they would pass nothing after it)."""

    name: str
    maps: Any
    pictures: list[Tensor | None]
    peaks: Tensor
    silent: list[int]
    negative: list[int] = field(default_factory=list)

    @property
    def strongest(self) -> int:
        return int(self.peaks.argmax())


@dataclass
class FeatureMapsData(SectionData):
    """The ``layers`` shown (:class:`LayerMaps`), the layers ``skipped`` (vector outputs), ``tiles``
    per figure, ``inputs`` the number of inputs the peaks read, ``quiet`` the silence threshold and
    ``truth`` the true class name of each drawn sample (None when unknown)."""

    section: ClassVar[str] = "feature_maps"
    layers: list[LayerMaps]
    tiles: int
    inputs: int
    quiet: float
    truth: list[str | None] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def render(self) -> list:
        blocks: list = []
        for layer in self.layers:
            fm, first = layer.maps, None
            for s in range(fm.maps.shape[0]):
                if fm.kind in ("sequence", "tokens"):  # (N, C, 1, L): one heat map, channels x steps
                    fig = Figure(_sequence_figure(layer.name, fm, s),
                                 caption=f"{layer.name}, sample {s}: its {fm.maps.shape[1]} channels over "
                                         f"{fm.maps.shape[-1]} steps (one colour scale for all)")
                else:
                    truth = self.truth[s] if s < len(self.truth) else None
                    label = f" (true class: {truth})" if truth is not None else ""
                    fig = Figure(_figure(fm, s, self.tiles, layer.pictures[s]),
                                 caption=f"{layer.name}, sample {s}{label}: {fm.maps.shape[1]} channels, "
                                         f"{fm.maps.shape[-2]}x{fm.maps.shape[-1]}")
                blocks.append(fig)
                if s == 0:
                    first = fig
            blocks.append(Finding(self.silence_sentence(layer), first))
        if self.skipped:
            blocks.append(Text(f"Not shown (vector outputs): {', '.join(self.skipped)}."))
        return blocks

    def silence_sentence(self, layer: LayerMaps) -> str:
        """How many of the layer's channels stay silent on the inputs read, against its strongest."""
        c, n = len(layer.peaks), self.inputs
        on = f"on {'this input' if n == 1 else f'these {n} inputs'}"
        top = float(layer.peaks.max()) if c else 0.0
        if top == 0.0:
            return f"{layer.name}: all {c} channels are exactly zero {on}, so this layer passes nothing on for them."
        strongest = layer.strongest
        k = len(layer.silent)
        if k == 0:
            weakest = int(layer.peaks.argmin())
            low = float(layer.peaks[weakest])
            below = " (below zero)" if strongest in layer.negative else ""  # its largest |activation| is negative
            return (f"{layer.name}: all {c} channels respond {on}; the strongest, ch {strongest}{below}, peaks at {top:.3g}, "
                    f"the weakest, ch {weakest}, at {low:.3g} ({_percent(low / top)} of it)"
                    + self.negative_clause(layer) + ".")
        listed = ", ".join(str(i) for i in layer.silent[:8]) + (" ..." if k > 8 else "")
        zero = int((layer.peaks[layer.silent] == 0).sum())
        near = f"at most {100 * self.quiet:g}% of that peak"
        how = ("exactly zero" if zero == k else near if zero == 0 else f"{zero} exactly zero, the others {near}")
        stay = "stays" if k == 1 else "stay"
        return (f"{layer.name}: {k} of {c} channels {stay} silent {on} (ch {listed}: {how}) against a peak of "
                f"{top:.3g} on ch {strongest}: filters that pass nothing on here, dead or unused by these inputs"
                + self.negative_clause(layer) + ".")

    @staticmethod
    def negative_clause(layer: LayerMaps) -> str:
        """The channels never above zero, said when there are any: after a ReLU they pass nothing either."""
        k = len(layer.negative)
        if not k:
            return ""
        listed = ", ".join(str(i) for i in layer.negative[:8]) + (" ..." if k > 8 else "")
        return (f"; {k} {'other channel is' if k == 1 else 'other channels are'} never above zero (ch {listed}): "
                f"after a ReLU {'it passes' if k == 1 else 'they pass'} nothing either")


def _percent(p: float) -> str:
    return f"{100 * p:.0f}%" if p >= 0.1 else f"{100 * p:.2g}%"


def _layers(subject: Subject, most: int = 3) -> list[str]:
    """The subject's layers, or up to ``most`` convolutions spread over the model (first and last included)."""
    model = subject.model
    if subject.layers:
        return [n for n, _ in find_layers(model, list(subject.layers))]
    convs = [n for n, m in model.named_modules() if isinstance(m, _SPATIAL)]
    if convs:  # only layers that run in eval mode (googlenet's auxiliary heads do not)
        from ...features import layers_that_run

        convs = layers_that_run(model, subject.inputs, convs)
    if len(convs) <= most:
        return convs
    if most == 1:
        return convs[-1:]
    step = (len(convs) - 1) / (most - 1)
    return [convs[round(i * step)] for i in range(most)]


@register(
    "feature_maps",
    "Feature maps",
    "What each layer passes on: the most active channels of several layers for one input, "
    "brighter = stronger activation (each tile on its own scale).",
    options=FeatureMapsOptions,
)
def build(subject: Subject, options: FeatureMapsOptions) -> FeatureMapsData | NotApplicable:
    layers = _layers(subject, options.max_layers)
    if not layers:
        return NotApplicable(f"{type(subject.model).__name__} has no convolutional layers to show feature maps of")
    read = max(options.samples, options.inputs)
    if isinstance(subject.inputs, Tensor):
        x = subject.inputs[:read]
    else:
        from ...inputs import Inputs

        x = Inputs.of(subject.inputs).slice(0, read)
    if _batch(x) == 0:
        return NotApplicable("the batch is empty: there are no feature maps to show")
    images = subject.display_images
    fed_by = _fed_by(subject, layers)
    shown, skipped = [], []
    for name, fm in feature_maps_of(subject.model, x, layers).items():
        if fm.kind == "vector":
            skipped.append(name)
            continue
        n = fm.maps.shape[0]
        samples = min(options.samples, n)
        flat = fm.maps.detach().float().transpose(0, 1).reshape(fm.maps.shape[1], -1)  # (C, everything else)
        if flat.numel():
            lowest, highest = flat.aminmax(dim=1)
            peaks, highest = torch.maximum(highest, -lowest).cpu(), highest.cpu()  # largest |activation|, largest
        else:
            peaks = highest = torch.zeros(fm.maps.shape[1])
        top = float(peaks.max()) if len(peaks) else 0.0
        silent = [int(i) for i in torch.nonzero(peaks <= options.quiet * top).flatten()] if top > 0 else []
        negative = [int(i) for i in torch.nonzero(highest <= 0).flatten() if int(i) not in silent]
        drawn = replace(fm, maps=fm.maps[:samples].cpu(), order=fm.order[:samples].cpu(),
                        stats={k: v[:samples].cpu() for k, v in fm.stats.items()})
        pictures = [None if fm.kind in ("sequence", "tokens") else _input_image(subject, images, fed_by.get(name), s)
                    for s in range(samples)]
        pictures = [p.detach().cpu() if isinstance(p, Tensor) else p for p in pictures]
        shown.append(LayerMaps(name, drawn, pictures, peaks, silent, negative))
    if not shown:
        return NotApplicable(
            f"the chosen layers ({', '.join(layers)}) output vectors, not maps; feature maps need "
            f"convolutional or token layers"
        )
    truth = []
    for s in range(options.samples):
        t = subject.targets
        ok = subject.labels is not None and t is not None and s < len(t)
        truth.append(str(subject.labels[int(t[s])]) if ok else None)
    return FeatureMapsData(layers=shown, tiles=options.tiles, inputs=_batch(x), quiet=float(options.quiet),
                           truth=truth, skipped=skipped)


def _batch(x: Any) -> int:
    return int(x.shape[0]) if isinstance(x, Tensor) else int(x.batch_size)


def _fed_by(subject: Subject, layers: list[str]) -> dict[str, list[int] | None]:
    """For a model with several inputs: ``{layer: indices of the inputs upstream of it}``, from one
    traced forward of a single sample (which view a layer of a two-branch model sees). One input:
    empty (every layer sees it)."""
    xs = subject.inputs
    if not isinstance(xs, (tuple, list)) or len(xs) < 2:
        return {}
    from ...structure.merges import ancestors
    from ...structure.tracer import record

    try:  # only which input feeds which layer is wanted: scalars and flags pass as they are
        graph, _ = record(subject.model, tuple(t[:1] if isinstance(t, torch.Tensor) and t.dim() else t for t in xs))
    except Exception:  # best effort: without the trace every layer is shown beside the display image
        return {}
    inputs = [n.id for n in graph.nodes if n.kind == "input"]
    anc = ancestors(graph.nodes)
    out: dict[str, list[int] | None] = {}
    for n in graph.nodes:
        if n.kind == "module" and n.name in layers and n.name not in out and len(inputs) == len(xs):
            out[n.name] = [i for i, nid in enumerate(inputs) if anc[n.id] >> nid & 1]
    return out


def _input_image(subject: Subject, images, fed: list[int] | None, s: int):
    """The picture beside a layer's maps: the display image, or for a layer of a multi-input model
    fed by one image-shaped input other than the first, that input; none when several feed it."""
    if fed is None:
        return images[s] if images is not None and s < len(images) else None
    if len(fed) != 1:
        return None
    if fed[0] == 0 and images is not None and s < len(images):
        return images[s]
    t = subject.inputs[fed[0]]
    if isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[1] in (1, 3) and t.is_floating_point() \
            and float(t[s].min()) >= 0.0 and float(t[s].max()) <= 1.0:
        return t[s]
    return None


def _figure(fm, sample, channels, image):
    from ...render import feature_map_figure

    n = min(channels, fm.maps.shape[1]) + (image is not None)
    return feature_map_figure(fm, sample, channels, image=image, ncols=mosaic_columns(n))


def mosaic_columns(n: int, widest: int = 7) -> int:
    """Columns for ``n`` tiles that leave the fewest empty places in the last row (then the fewest
    rows), from 4 to ``widest``: 13 tiles as 7 + 6, not 4 + 4 + 4 + 1 (a mosaic without blank space)."""
    if n <= 4:
        return max(1, n)
    return min(range(4, widest + 1), key=lambda c: ((-n) % c, -(-n // c), -c))


def _sequence_figure(name, fm, sample):
    from ...render.figures import sequence_map_figure

    values = fm.maps[sample, :, 0, :]  # (C, L) in channel order
    if fm.channels is not None and len(fm.channels) == values.shape[0]:
        order = torch.as_tensor(fm.channels).argsort()
        values, labels = values[order], [str(int(c)) for c in torch.as_tensor(fm.channels)[order]]
    else:
        labels = None
    return sequence_map_figure(values, title=f"{name}: channels over steps, sample {sample}", row_labels=labels)
