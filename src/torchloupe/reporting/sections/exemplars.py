"""Dataset exemplars: the samples of the subject's dataset that excite a layer's channels most."""

from __future__ import annotations

from ..base import Figure, NotApplicable, Subject, Text, register
from .feature_vis import pick_layer, subject_exemplars


@register(
    "exemplars",
    "Dataset exemplars",
    "For a few channels, the dataset samples that drive them highest (mean over positions), cropped "
    "to the receptive field of the strongest position; exact top-k over the first samples.",
    65,
)
def build(subject: Subject, options: dict):
    from ...render.synthesis import exemplars_figure

    if subject.dataset is None:
        return NotApplicable("no dataset given with this model; exemplars search a dataset (from Python: "
                             "Subject(..., dataset=...); on the command line: loupe exemplars --data)")
    picked = pick_layer(subject)
    if picked is None or picked[2] != "conv":
        return NotApplicable(f"{type(subject.model).__name__} has no spatial layer; exemplars are shown for conv channels")
    layer, width, _ = picked
    quick = bool(options.get("quick", False))
    channels = list(range(min(3 if quick else 4, width)))
    ex = subject_exemplars(subject, layer, channels, quick)
    return [
        Figure(exemplars_figure(ex, rows=len(channels), k=5, names=getattr(subject.dataset, "name", None)),
               caption=f"{layer}: top-5 of the first {ex.seen} samples per channel, receptive-field crops, "
                       f"value = channel mean"),
        Text(f"Exact: a running top-{ex.k} over {ex.seen} samples, ties broken by lower index; the same "
             f"call runs under torchrun with every rank getting this result."),
    ]
