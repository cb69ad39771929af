"""Report section "Guided backpropagation / deconvnet": input-space gradients of the predicted class."""

from __future__ import annotations

import warnings

import torch

from ...errors import TorchLoupeError
from ..base import Figure, NotApplicable, Subject, Text, register

MAX_IMAGES = 4


@register(
    "saliency",
    "Guided backpropagation / deconvnet",
    "The predicted class's gradient projected back to the pixels: plain, guided, deconvnet and guided Grad-CAM.",
    cost=1.5,
)
def build(subject: Subject, options: dict):
    x = subject.inputs
    images = subject.display_images
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() in (2, 3) and x.shape[0] > 0:
        return _non_image(subject, x[:MAX_IMAGES])
    first = subject.explained_input
    if not isinstance(first, torch.Tensor) or first.dim() != 4 or images is None:
        return NotApplicable("the inputs are not a batch of images, flat vectors (N, F) or sequences (N, T, F)")
    if not isinstance(x, torch.Tensor):  # a multi-input model: input 0 is explained, the others held
        from ...inputs import Inputs

        x = Inputs.of(x)
    x, images = (x[:MAX_IMAGES] if isinstance(x, torch.Tensor) else x.slice(0, MAX_IMAGES)), images[:MAX_IMAGES]
    from ...cam import GradCAM
    from ...render.cam import plot_saliency

    got = _gradients(subject, x)
    if isinstance(got, NotApplicable):
        return got
    targets, columns, notes = got
    try:  # saliency.guided_gradcam's product, reusing the guided backprop above
        from .cam import cam_layer

        cam = GradCAM(subject.model, cam_layer(subject, x))(x, targets, output=subject.output)
        gb = columns["guided backprop"]
        columns["guided Grad-CAM"] = gb * cam.maps.unsqueeze(1).to(gb.dtype)
    except TorchLoupeError as exc:
        notes.append(f"guided Grad-CAM does not apply: {exc}")
    labels = subject.labels
    rows = [str(labels[int(t)]) if labels is not None and int(t) < len(labels) else f"class {int(t)}" for t in targets]
    fig = plot_saliency(images, columns, row_titles=rows)
    return [Figure(fig, caption="Gray = 0; brighter / darker = positive / negative gradient (99th percentile scaled). "
                   "On deep networks the deconvnet map is nearly image-independent (Nie et al. 2018, "
                   "https://arxiv.org/abs/1805.07039): a known property of the method, not a fault."),
            *[Text(n) for n in notes]]


def _gradients(subject: Subject, x):
    """``(targets, {method: gradient}, notes)``: the predicted classes of ``x`` and the plain, guided and
    deconvnet gradients of them (the notes name rectifiers without a guided rule); or why not."""
    from ... import saliency

    preds = subject.shared.predictions()  # x is the first inputs of the subject's batch
    if preds.scores is None:
        return NotApplicable(subject.no_scores())
    n = x.shape[0] if isinstance(x, torch.Tensor) else x.batch_size
    targets, out = preds.top[:n], subject.output
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", saliency.GuidedFallbackWarning)
        columns = {
            "gradient": saliency.gradient(subject.model, x, targets, output=out),
            "guided backprop": saliency.guided_backprop(subject.model, x, targets, output=out),
            "deconvnet": saliency.deconvnet(subject.model, x, targets, output=out),
        }
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, saliency.GuidedFallbackWarning)})
    return targets, columns, notes


def _non_image(subject: Subject, x: torch.Tensor):
    """Flat vectors ``(N, F)`` and sequences ``(N, A, B)``: the same three gradients, drawn as images
    when a vector holds one (784 -> 1 x 28 x 28), else as maps over steps and features."""
    from ...inputs import first_layer
    from ...render.figures import sequence_panels_figure
    from ...render.image import image_shape, normalize

    got = _gradients(subject, x)
    if isinstance(got, NotApplicable):
        return got
    targets, columns, fallbacks = got
    notes = [Text(n) for n in fallbacks]
    labels = subject.labels
    names = [str(labels[int(t)]) if labels is not None and int(t) < len(labels) else f"class {int(t)}" for t in targets]
    shape = image_shape(x.shape[1]) if x.dim() == 2 else None
    if shape is not None:  # flat vectors that are images: drawn as the images they hold
        from ...render.cam import plot_saliency

        imgs = x.reshape(len(x), *shape)
        lo, hi = float(imgs.min()), float(imgs.max())
        imgs = imgs if lo >= 0.0 and hi <= 1.0 else normalize(imgs)
        fig = plot_saliency(imgs, {k: v.reshape(len(v), *shape) for k, v in columns.items()}, row_titles=names)
        return [Figure(fig, caption=f"The inputs are flat vectors of {x.shape[1]} values, drawn as the "
                                    f"{shape[1]}x{shape[2]} images they hold (a guess from the size: "
                                    f"pass Subject(images=...) to draw others). Gray = 0; brighter / darker = "
                                    f"positive / negative gradient (99th percentile scaled)."), *notes]
    first = first_layer(subject.model)
    channels_first = x.dim() == 3 and first is not None and isinstance(first[1], torch.nn.Conv1d)
    if x.dim() == 2:  # (N, F): one row per sample
        panels = {k: v[:, :] for k, v in columns.items()}
        fig = sequence_panels_figure(panels, ylabel="sample", xlabel="feature", row_labels=names,
                                     title="input gradients of the predicted class, one row per sample")
        what = "each row a sample, each column an input feature"
    else:  # (N, C, L) for a Conv1d, else (N, T, F): drawn as features x steps, sample 0
        panels = {k: (v[0] if channels_first else v[0].transpose(0, 1)) for k, v in columns.items()}
        fig = sequence_panels_figure(panels, ylabel="input channel" if channels_first else "feature",
                                     xlabel="step", title=f"sample 0 ({names[0]}): input gradients over steps")
        what = ("input channels (rows) over steps (columns), as the Conv1d reads them" if channels_first else
                "features (rows) over steps (columns)")
    return [Figure(fig, caption=f"Saliency of the predicted class on {tuple(x.shape[1:])} inputs: {what}. "
                                f"Blue < 0 < red, each panel on its own scale (stated in its title)."), *notes]
