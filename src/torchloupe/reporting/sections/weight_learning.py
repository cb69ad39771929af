"""Report section "Weight learning": how the subject's weights changed during training.

Reads ``subject.tracker`` (a :class:`~torchloupe.weights.WeightTracker` or a
:class:`~torchloupe.weights.WeightHistory`); without one the section does not apply. Computed as
:class:`WeightLearningData` (the history, and how far each snapshotted tensor moved over training
and over its last part), drawn by its ``render()``; options: :class:`WeightLearningOptions`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ...errors import UsageError
from ..base import Figure, Finding, Image, NotApplicable, SectionData, Subject, Table, Text, register
from ..options import SectionOptions, check_int

QUICK_FRAMES = 12


@dataclass(frozen=True)
class WeightLearningOptions(SectionOptions):
    """``frames``: snapshots in the animation at most (quick: at most 12), shown at ``fps`` frames per
    second; ``tensors``: rows of the table of norms and last update ratios; ``last_part``: the
    fraction of training at its end the finding reads (how much a tensor still moved there);
    ``settled``: a tensor that made less than this share of its whole change in that last part has
    settled."""

    frames: int = 20
    fps: float = 4.0
    tensors: int = 12
    last_part: float = 0.25
    settled: float = 0.1

    def check(self) -> None:
        check_int("weight_learning", "frames", self.frames, least=2)
        check_int("weight_learning", "tensors", self.tensors)
        for name, hi in (("fps", None), ("last_part", 1.0), ("settled", 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or (hi is not None and v >= hi):
                raise UsageError(f"weight_learning option {name}={v!r}: expected a number > 0"
                                 + (f" and < {hi:g}" if hi is not None else ""))


@dataclass
class WeightLearningData(SectionData):
    """What a weight tracker recorded (``history``, a :class:`~torchloupe.weights.WeightHistory`) with
    the numbers of the finding, for each tensor snapshotted at two steps or more: ``change``
    ``‖W_last − W_first‖ / ‖W_first‖`` over all of training and ``late`` ``‖W_last − W_from‖ / ‖W_first‖``
    from snapshot step ``late_from`` (the first at or after the start of the last ``last_part`` of
    training, else the one before the last) to the end. ``table``: the last norm and update ratio of
    the first ``tensors`` weight tensors; ``labels``: class names; ``frames`` / ``fps``: the animation's."""

    section: ClassVar[str] = "weight_learning"
    history: Any
    labels: list[str] | None = None
    table: list[list[str]] = field(default_factory=list)
    change: dict[str, float] = field(default_factory=dict)
    late: dict[str, float] = field(default_factory=dict)
    late_from: int | None = None
    last_part: float = 0.25
    settled: float = 0.1
    frames: int = 20
    fps: float = 4.0

    def finding(self) -> str:
        """Which tensor changed most over training, and whether it has settled."""
        h = self.history
        if not self.change:
            last = [(float(h.stat(n, "update_ratio")[-1]), n) for n in h.names if len(h.shapes.get(n, ())) >= 2]
            last = [(r, n) for r, n in last if r == r]
            why = ("nothing can be said about how far the weights moved over training, because no tensor was "
                   "snapshotted at two steps or more")
            if not last:
                return why[0].upper() + why[1:] + "."
            r, n = max(last)
            return f"{why[0].upper() + why[1:]}; the largest last update ratio is {r:.2e} ({n})."
        order = sorted(self.change, key=lambda n: (-self.change[n], n))
        top = order[0]
        total, late = self.change[top], self.late[top]
        share = late / total if total > 0 else 0.0
        end = int(h.snapshot_steps[-1])
        text = (f"{top} changed most over training: ‖W_end − W_start‖ is {total:.1%} of ‖W_start‖ "
                f"(steps {int(h.snapshot_steps[0])} to {end})")
        if len(order) > 1:
            text += f", against {self.change[order[1]]:.1%} for {order[1]}"
        state = "it has settled" if share < self.settled else "it is still moving"
        return (text + f"; {state}: from step {self.late_from} to {end} it moved {late:.1%} of ‖W_start‖, "
                f"{share:.0%} of its whole change.")

    def render(self) -> list:
        from ...render import weight_learning as wl

        h, labels = self.history, self.labels
        norms = Figure(wl.plot_norms(h), "Weight norm and update ratio ‖ΔW‖/‖W‖ per tensor (log scale); "
                       "ratios far below 1e-3 mean a layer has stalled, far above it that updates are large.")
        blocks = [
            Text(
                f"Recorded {len(h.steps)} steps (every {h.every} optimizer steps, {int(h.steps[0])} to "
                f"{int(h.steps[-1])}); full snapshots of {', '.join(h.snapshots) or 'no layer'} at "
                f"{len(h.snapshot_steps)} steps"
                + (f", {len(h.thinned)} thinned to stay within the memory budget." if h.thinned else ".")
            ),
            norms,
        ]
        head = h.head_name()
        if head is not None:
            blocks.append(Figure(wl.plot_histograms(h, head), f"Value histogram of {head} over time."))
        if len(h.snapshot_steps):
            if head is not None:
                effective = bool(h.linear_chain())
                blocks.append(Figure(wl.plot_templates(h, labels=labels),
                                     ("Effective class templates (rows of W_L···W_1, the linear path of the MLP; "
                                      "nonlinearities and biases left out)" if effective else "Class templates")
                                     + " at the start, middle and end of training (blue < 0 < red)."))
                blocks.append(Figure(wl.plot_similarity(h, labels=labels),
                                     "Cosine similarity between class weight vectors: classes still confused stay similar."))
            if wl.kernel_tensor(h, 0) is not None:
                blocks.append(Figure(wl.plot_kernels(h), "First-layer filters over time." if h.kernel_name() else
                                     "What the first layer's hidden units look for over time (their rows at the input shape)."))
            if len(h.snapshot_steps) >= 2:
                try:
                    with tempfile.TemporaryDirectory() as d:
                        path = wl.animate(h, os.path.join(d, "weights.gif"), fps=self.fps, max_frames=self.frames)
                        with open(path, "rb") as f:
                            gif = f.read()
                    blocks.append(Image(gif, "image/gif", f"Templates or filters over training (up to {self.frames} snapshots).",
                                        alt="weight learning animation"))
                except ValueError as exc:  # nothing input-shaped to animate
                    blocks.append(Text(f"No animation: {exc}"))
        if self.table:
            blocks.append(Table(["tensor", "‖W‖ at the end", "last update ratio"], self.table,
                                caption="Where training still moves the weights."))
        moved = norms
        if self.change:
            end = int(h.snapshot_steps[-1])
            rows = [[n, f"{c:.1%}", f"{self.late[n]:.1%}", f"{self.late[n] / c:.0%}" if c > 0 else "-"]
                    for n, c in self.change.items()]
            moved = Table(["tensor", "‖W_end − W_start‖ / ‖W_start‖", f"from step {self.late_from} to {end}",
                           "share of its change"], rows,
                          caption=f"How far each snapshotted tensor moved over training (steps "
                                  f"{int(h.snapshot_steps[0])} to {end}) and over its last part, relative to its "
                                  f"start; a small share means it has settled.")
            blocks.append(moved)
        blocks.append(Finding(self.finding(), moved))
        return blocks


def _history(subject: Subject) -> Any:
    obj = subject.tracker
    if obj is None:
        return None
    from ...weights.tracker import WeightHistory

    return obj if isinstance(obj, WeightHistory) else obj.history


def movement(history: Any, last_part: float) -> tuple[dict[str, float], dict[str, float], int | None]:
    """``(change, late, late_from)`` of every tensor with two or more snapshots (float64): ``change``
    ``‖W_last − W_first‖ / ‖W_first‖``, ``late`` ``‖W_last − W_from‖ / ‖W_first‖`` where ``W_from`` is the
    snapshot at step ``late_from``, the first at or after the last ``last_part`` of the snapshotted
    steps began (the one before the last when none is). Tensors that start at zero are left out."""
    steps = history.snapshot_steps
    if len(steps) < 2:
        return {}, {}, None
    s0, s1 = float(steps[0]), float(steps[-1])
    begin = s1 - last_part * (s1 - s0)
    j = next(i for i, s in enumerate(steps.tolist()) if s >= begin)
    j = min(j, len(steps) - 2)
    change, late = {}, {}
    for name, snaps in history.snapshots.items():
        if not snaps.is_floating_point() or snaps.shape[0] != len(steps):
            continue
        first, last, mid = (snaps[i].double() for i in (0, -1, j))
        base = float(torch.linalg.vector_norm(first))
        if base == 0:
            continue
        change[name] = float(torch.linalg.vector_norm(last - first)) / base
        late[name] = float(torch.linalg.vector_norm(last - mid)) / base
    return change, late, int(steps[j])


@register(
    "weight_learning",
    "Weight learning",
    "How the weights moved in training: norms, update sizes, value histograms, class templates forming.",
    cost=3,
    options=WeightLearningOptions,
)
def build(subject: Subject, options: WeightLearningOptions) -> WeightLearningData | NotApplicable:
    h = _history(subject)
    if h is None:
        return NotApplicable("no WeightTracker recorded this model's training (from Python: a "
                             "tl.weights.WeightTracker in the training loop, given as Subject(..., tracker=...))")
    if len(h.steps) < 2:
        return NotApplicable(f"the tracker recorded {len(h.steps)} step; weight learning needs two or more")
    table = [
        [name, f"{float(h.stat(name, 'norm')[-1]):.3g}", f"{float(h.stat(name, 'update_ratio')[-1]):.2e}"]
        for name in h.names
        if len(h.shapes.get(name, ())) >= 2
    ][: options.tensors]
    change, late, late_from = movement(h, options.last_part)
    return WeightLearningData(
        history=h, labels=list(subject.labels) if subject.labels is not None else None, table=table,
        change=change, late=late, late_from=late_from, last_part=options.last_part, settled=options.settled,
        frames=min(options.frames, QUICK_FRAMES) if options.quick else options.frames, fps=float(options.fps))
