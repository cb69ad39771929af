"""What several sections of one subject use, computed once per subject and process.

The overview, the CAM, saliency and quality sections all need the model's predictions on the
subject's inputs and the layer the CAMs read; :class:`SubjectContext` (``subject.shared``)
computes each on first use and keeps it. Sections running in forked workers each compute it
once in their process; the numbers are the same (the model runs in eval mode on the same inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .base import Subject


@dataclass(frozen=True)
class Predictions:
    """The model's output on all of the subject's inputs; ``scores`` ``(N, classes)`` float when the
    output holds class scores (else None), ``probs`` their softmax, ``top`` the predicted classes."""

    output: Any
    scores: Tensor | None
    probs: Tensor | None  # on the CPU
    top: Tensor | None  # on the scores' device

    def label(self, labels: Any, i: int) -> str:
        """The predicted class of input ``i`` by name ('class k' without names)."""
        k = int(self.top[i])
        return str(labels[k]) if labels is not None and 0 <= k < len(labels) else f"class {k}"


class SubjectContext:
    """Predictions and the CAM layer of one subject, each computed once (see the module doc)."""

    def __init__(self, subject: Subject):
        self._subject = subject
        self._predictions: Predictions | None = None
        self._cam_layer: str | Exception | None = None

    def predictions(self) -> Predictions:
        """One eval forward on the subject's inputs (copies: a model may edit its input in place)."""
        if self._predictions is None:
            from ..inputs import Inputs, check_input
            from ..probe import eval_forward

            s = self._subject
            inputs = check_input(s.model, s.inputs) if isinstance(s.inputs, Tensor) else s.inputs
            out = eval_forward(s.model, Inputs.of(inputs).map(Tensor.clone))
            scores = s.scores(out)
            probs = top = None
            if scores is not None and scores.dim() == 2:
                scores = scores.detach()
                probs = torch.softmax(scores.float(), dim=1).cpu()
                top = scores.argmax(dim=1)  # on the model's device, as targets are
            else:
                scores = None
            self._predictions = Predictions(out, scores, probs, top)
        return self._predictions

    def cam_layer(self) -> str:
        """The layer the CAM views read (:func:`torchloupe.reporting.sections.cam.find_cam_layer`
        rules), found on the subject's whole batch, so every section that cannot find one gives the
        same reason with the same input shape; a :class:`~torchloupe.errors.TorchLoupeError` is kept
        and raised again to the next section that asks."""
        if self._cam_layer is None:
            from ..errors import TorchLoupeError
            from ..inputs import Inputs
            from .sections.cam import find_cam_layer

            s = self._subject
            x = s.inputs if isinstance(s.inputs, Tensor) else Inputs.of(s.inputs)
            try:
                self._cam_layer = find_cam_layer(s, x)
            except TorchLoupeError as exc:
                self._cam_layer = exc
        if isinstance(self._cam_layer, Exception):
            raise self._cam_layer
        return self._cam_layer
