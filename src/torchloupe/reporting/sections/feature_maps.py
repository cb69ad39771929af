"""Feature maps: the most active channels of several layers, for the first sample or two."""

from __future__ import annotations

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
    if len(convs) <= 3:
        return convs
    step = (len(convs) - 1) / 2
    return [convs[round(i * step)] for i in range(3)]


@register(
    "feature_maps",
    "Feature maps",
    "What each layer passes on: the most active channels of several layers for one input, "
    "brighter = stronger activation (each tile on its own scale).",
    30,
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
    blocks = []
    skipped = []
    for name, fm in feature_maps_of(subject.model, x, layers).items():
        if fm.kind == "vector":
            skipped.append(name)
            continue
        for s in range(min(samples, fm.maps.shape[0])):
            image = images[s] if images is not None and s < len(images) else None
            fig = _figure(fm, s, channels, image)
            label = ""
            if subject.labels is not None and "targets" in subject.extras:
                label = f" (true class: {subject.labels[int(subject.extras['targets'][s])]})"
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


def _figure(fm, sample, channels, image):
    from ...render import feature_map_figure

    return feature_map_figure(fm, sample, channels, image=image)
