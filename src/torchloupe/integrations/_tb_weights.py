"""Weight learning in TensorBoard: compact histograms, scalars and images.

Tags, per tracked tensor ``NAME``:

- ``weights/NAME`` — histogram (``bins`` buckets, from the tracker's ``histc``; a few hundred
  bytes per tensor and step instead of TensorBoard's default ~10 KB);
- ``weights_norm/NAME``, ``weights_update_ratio/NAME``, ``weights_grad_norm/NAME`` — scalars
  (update ratio and grad norm only where defined);
- ``weights_images/templates`` or ``weights_images/kernels`` — an image of the class templates
  (or first-layer kernels) at each snapshot.

:func:`log_weights` writes a whole history after the fact; :class:`TensorBoardSink` passed to
the tracker (``sinks=[TensorBoardSink(writer)]``) writes each record as it is made.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import InputTypeError
from ..weights.history import Record, WeightHistory


def _history(obj: Any) -> WeightHistory:
    if isinstance(obj, WeightHistory):
        return obj
    h = getattr(obj, "history", None)
    if isinstance(h, WeightHistory):
        return h
    raise InputTypeError(f"expected a WeightTracker or WeightHistory, got {type(obj).__name__}")


def _write_record(writer, step: int, names, stats, hist, rng, shapes, image=None, image_kind=None) -> None:
    bins = hist.shape[-1]
    t = torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:]
    for j, name in enumerate(names):
        row = stats[j].double()  # columns in tracker.STATS order
        norm, mean, std, lo_v, hi_v, ratio, gnorm = (float(v) for v in row)
        num = float(hist[j].double().sum())  # = numel
        lo, hi = (float(v) for v in rng[j].double())
        writer.add_histogram_raw(
            f"weights/{name}",
            min=lo_v,
            max=hi_v,
            num=num,
            sum=mean * num,
            sum_squares=(std * std + mean * mean) * num,
            bucket_limits=(lo + (hi - lo) * t).tolist(),
            bucket_counts=hist[j].double().tolist(),
            global_step=step,
        )
        writer.add_scalar(f"weights_norm/{name}", norm, step)
        if math.isfinite(ratio):
            writer.add_scalar(f"weights_update_ratio/{name}", ratio, step)
        if math.isfinite(gnorm):
            writer.add_scalar(f"weights_grad_norm/{name}", gnorm, step)
    if image is not None:
        writer.add_image(f"weights_images/{image_kind}", image, step, dataformats="CHW")


def _frame(history: WeightHistory, index: int, what: str):
    from ..render.weight_learning import frame_images

    try:
        frames, kind = frame_images(_one_snapshot(history, index), what)
    except ValueError:
        return None, None
    return frames[0], kind


def _one_snapshot(history: WeightHistory, index: int) -> WeightHistory:
    import dataclasses

    return dataclasses.replace(
        history,
        snapshot_steps=history.snapshot_steps[index : index + 1],
        snapshots={k: v[index : index + 1] for k, v in history.snapshots.items()},
    )


def log_weights(writer, tracker, images: str = "auto") -> int:
    """Write every record of ``tracker`` (a WeightTracker or WeightHistory) to ``writer``.

    ``writer``: a ``torch.utils.tensorboard.SummaryWriter``. ``images``: ``"auto"``,
    ``"templates"``, ``"kernels"`` or ``None`` (no images). Returns the number of steps written.
    """
    h = _history(tracker)
    snap_at = {int(s): i for i, s in enumerate(h.snapshot_steps.tolist())}
    for r, step in enumerate(h.steps.tolist()):
        image = kind = None
        if images is not None and step in snap_at:
            image, kind = _frame(h, snap_at[step], images)
        _write_record(writer, step, h.names, h.stats[r], h.hist[r], h.hist_range[r], h.shapes, image, kind)
    writer.flush()
    return len(h.steps)


class TensorBoardSink:
    """Live TensorBoard logging: pass ``sinks=[TensorBoardSink(writer)]`` to the tracker.

    Each record writes the histograms and scalars; each snapshot an image of templates /
    kernels (``images=None`` to skip). The writer is flushed on ``tracker.close()``.
    """

    def __init__(self, writer, images: str | None = "auto"):
        if not callable(getattr(writer, "add_histogram_raw", None)):
            raise InputTypeError(f"expected a SummaryWriter, got {type(writer).__name__}")
        self.writer = writer
        self.images = images

    def on_record(self, tracker, record: Record) -> None:
        image = kind = None
        if self.images is not None and record.snapshot is not None:
            h = tracker.record_history(record)
            image, kind = _frame(h, 0, self.images)
        _write_record(self.writer, record.step, record.names, record.stats, record.hist, record.hist_range,
                      tracker.shapes, image, kind)

    def close(self) -> None:
        self.writer.flush()
