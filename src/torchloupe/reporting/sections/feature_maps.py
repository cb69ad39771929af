"""Feature maps: the most active channels of several layers, for the first sample or two."""

from __future__ import annotations

import torch
from torch import nn

from ...features import feature_maps_of
from ...layers import find_layers
from ..base import Figure, NotApplicable, Subject, Text, register

_SPATIAL = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _layers(subject: Subject) -> list[str]:
    """The subject's layers, or up to 3 convolutions spread over the model (first and last included)."""
    model = subject.model
    if subject.layers:
        return [n for n, _ in find_layers(model, list(subject.layers))]
    convs = [n for n, m in model.named_modules() if isinstance(m, _SPATIAL)]
    if convs:  # only layers that run in eval mode (googlenet's auxiliary heads do not)
        from ...features import layers_that_run

        convs = layers_that_run(model, subject.inputs, convs)
    if len(convs) <= 3:
        return convs
    step = (len(convs) - 1) / 2
    return [convs[round(i * step)] for i in range(3)]


@register(
    "feature_maps",
    "Feature maps",
    "What each layer passes on: the most active channels of several layers for one input, "
    "brighter = stronger activation (each tile on its own scale).",
)
def build(subject: Subject, options: dict):
    layers = _layers(subject)
    if not layers:
        return NotApplicable(f"{type(subject.model).__name__} has no convolutional layers to show feature maps of")
    quick = bool(options.get("quick", False))
    samples = 1
    channels = 8 if quick else 12
    x = subject.inputs[:samples] if hasattr(subject.inputs, "__getitem__") and hasattr(subject.inputs, "dim") else subject.inputs
    images = subject.display_images
    fed_by = _fed_by(subject, layers)
    blocks = []
    skipped = []
    for name, fm in feature_maps_of(subject.model, x, layers).items():
        if fm.kind == "vector":
            skipped.append(name)
            continue
        for s in range(min(samples, fm.maps.shape[0])):
            if fm.kind in ("sequence", "tokens"):  # (N, C, 1, L): one heat map, channels x steps
                blocks.append(Figure(_sequence_figure(name, fm, s),
                                     caption=f"{name}, sample {s}: its {fm.maps.shape[1]} channels over "
                                             f"{fm.maps.shape[-1]} steps (one colour scale for all)"))
                continue
            image = _input_image(subject, images, fed_by.get(name), s)
            fig = _figure(fm, s, channels, image)
            label = ""
            if subject.labels is not None and subject.targets is not None:
                label = f" (true class: {subject.labels[int(subject.targets[s])]})"
            blocks.append(Figure(fig, caption=f"{name}, sample {s}{label}: {fm.maps.shape[1]} channels, "
                                              f"{fm.maps.shape[-2]}x{fm.maps.shape[-1]}"))
    if not blocks:
        return NotApplicable(
            f"the chosen layers ({', '.join(layers)}) output vectors, not maps; feature maps need "
            f"convolutional or token layers"
        )
    if skipped:
        blocks.append(Text(f"Not shown (vector outputs): {', '.join(skipped)}."))
    return blocks


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
