"""What several sections of one subject use, computed once per subject and process.

The overview, the CAM, saliency and quality sections all need the model's predictions on the
subject's inputs and the layer the CAMs read; the feature visualization and the exemplars sections
the same dataset exemplars. :class:`SubjectContext` (``subject.shared``) computes each on first use
and keeps it. Sections running in forked workers each compute it once in their process; the
numbers are the same (the model runs in eval mode on the same inputs; exemplars are exact).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    """Predictions, the CAM layer and dataset exemplars of one subject, each computed once (see the module doc)."""

    def __init__(self, subject: Subject):
        self._subject = subject
        self._predictions: Predictions | None = None
        self._cam_layer: str | Exception | None = None
        self._exemplars: list[tuple[int | None, Any]] = []  # (stop asked for, ExemplarResult)

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

    def exemplars(self, layer: str, channels: Sequence[int], stop: int | None, k: int = 5,
                  batch_size: int = 64) -> Any:
        """The exact top-``k`` samples of ``channels`` of ``layer`` over the first ``stop`` samples of
        the subject's dataset (None: all), by :func:`torchloupe.synthesis.exemplars` (mean over
        positions, with crops); None without a dataset. Computed on first use and kept: a later call
        whose answer a kept result holds exactly (some of its channels, its ``k`` or fewer, over the
        same samples: the same ``stop``, or stops both at or past the end of a dataset of known
        length) is cut from it without a new pass over the data. ``batch_size`` changes only the
        speed, never the result."""
        s = self._subject
        if s.dataset is None:
            return None
        channels = tuple(int(c) for c in channels)
        size = _samples_in(s.dataset)
        for asked, result in self._exemplars:
            if result.layer == layer and _holds(result, asked, channels, k, stop, size):
                return _narrow(result, channels, k)
        from .. import synthesis

        result = synthesis.exemplars(s.model, s.dataset, layer, k=k, channels=list(channels), stop=stop,
                                     batch_size=batch_size)
        self._exemplars.append((stop, result))
        return result


def _samples_in(data: Any) -> int | None:
    """How many samples ``data`` holds, when that is known without reading it (a map-style dataset,
    a tensor of samples, a DataLoader reading a dataset in order); else None."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler) or data.batch_size is None:
            return None
        data = data.dataset
    if isinstance(data, Tensor):
        return int(data.shape[0]) if data.dim() >= 1 else None
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        try:
            return len(data)
        except TypeError:
            return None
    return None


def _holds(result: Any, asked: int | None, channels: tuple[int, ...], k: int, stop: int | None,
           size: int | None) -> bool:
    """Whether ``result`` (a search over the first ``asked`` samples of a dataset of ``size``, None:
    not known) holds the top-``k`` of ``channels`` over the first ``stop`` samples exactly."""
    if result.k < k or not set(channels) <= set(result.channels):
        return False
    if asked == stop:
        return True
    if size is None:
        return False
    return min(size, size if asked is None else asked) == min(size, size if stop is None else stop)


def _narrow(result: Any, channels: tuple[int, ...], k: int) -> Any:
    """``result`` restricted to ``channels`` (in that order) and its first ``k`` per channel: the
    same entries, since the top-``k`` of a top-``K`` (K >= k) in a total order is the top-``k``."""
    if tuple(result.channels) == channels and result.k == k:
        return result
    import dataclasses

    rows = torch.tensor([list(result.channels).index(c) for c in channels], dtype=torch.long)

    def take(t: Tensor | None) -> Tensor | None:
        return None if t is None else t[rows.to(t.device), :k]

    return dataclasses.replace(result, channels=channels, k=k, values=take(result.values),
                               indices=take(result.indices), locations=take(result.locations),
                               boxes=take(result.boxes), sample_of=take(result.sample_of))
