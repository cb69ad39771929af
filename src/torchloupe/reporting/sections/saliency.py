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
    55,
    cost=1.5,
)
def build(subject: Subject, options: dict):
    x = subject.inputs
    images = subject.display_images
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or images is None:
        return NotApplicable("the inputs are not a batch of images")
    x, images = x[:MAX_IMAGES], images[:MAX_IMAGES]
    from ... import saliency
    from ...cam import GradCAM
    from ...probe import eval_forward
    from ...render.cam import plot_saliency

    scores = subject.scores(eval_forward(subject.model, x))
    if scores is None:
        return NotApplicable(subject.no_scores())
    targets = scores.argmax(dim=1)
    out = subject.output
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", saliency.GuidedFallbackWarning)
        columns = {
            "gradient": saliency.gradient(subject.model, x, targets, output=out),
            "guided backprop": saliency.guided_backprop(subject.model, x, targets, output=out),
            "deconvnet": saliency.deconvnet(subject.model, x, targets, output=out),
        }
        try:  # saliency.guided_gradcam's product, reusing the guided backprop above
            from .cam import cam_layer

            cam = GradCAM(subject.model, cam_layer(subject, x))(x, targets, output=out)
            gb = columns["guided backprop"]
            columns["guided Grad-CAM"] = gb * cam.maps.unsqueeze(1).to(gb.dtype)
        except TorchLoupeError as exc:
            notes.append(f"guided Grad-CAM does not apply: {exc}")
    notes.extend(sorted({str(w.message) for w in caught if issubclass(w.category, saliency.GuidedFallbackWarning)}))
    labels = subject.labels
    rows = [str(labels[int(t)]) if labels is not None and int(t) < len(labels) else f"class {int(t)}" for t in targets]
    fig = plot_saliency(images, columns, row_titles=rows)
    return [Figure(fig, caption="Gray = 0; brighter / darker = positive / negative gradient (99th percentile scaled). "
                   "On deep networks the deconvnet map is nearly image-independent (Nie et al. 2018, "
                   "https://arxiv.org/abs/1805.07039): a known property of the method, not a fault."),
            *[Text(n) for n in notes]]
