"""Dataset exemplars: the samples of the subject's dataset that excite a layer's channels most."""

from __future__ import annotations

from ..base import Figure, NotApplicable, Subject, Table, Text, register
from .feature_vis import pick_layer, subject_exemplars


@register(
    "exemplars",
    "Dataset exemplars",
    "For a few channels, the dataset samples that drive them highest (mean over positions), cropped "
    "to the receptive field of the strongest position; exact top-k over the first samples.",
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
    if "feature_vis" in options.get("report_sections", ()):  # the same crops are drawn there: once is enough
        rows = [[f"{layer}:{c}", ", ".join(str(int(i)) for i in ex.indices[j]),
                 ", ".join(f"{float(v):.3g}" for v in ex.values[j])] for j, c in enumerate(channels)]
        return [
            Text(f"The top-5 crops of these channels are drawn beside their synthesized images in the feature "
                 f"visualization section; here are the dataset samples behind them (first {ex.seen} samples, "
                 f"exact running top-{ex.k}, ties broken by lower index)."),
            Table(["channel", "dataset indices, highest first", "channel mean"], rows,
                  caption=f"{layer}: top-{ex.k} samples per channel"),
        ]
    return [
        Figure(exemplars_figure(ex, rows=len(channels), k=5, names=getattr(subject.dataset, "name", None)),
               caption=f"{layer}: top-5 of the first {ex.seen} samples per channel, receptive-field crops, "
                       f"value = channel mean"),
        Text(f"Exact: a running top-{ex.k} over {ex.seen} samples, ties broken by lower index; the same "
             f"call runs under torchrun with every rank getting this result."),
    ]
