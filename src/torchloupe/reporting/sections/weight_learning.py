"""Report section "Weight learning": how the subject's weights changed during training.

Reads ``subject.extras["tracker"]`` (a :class:`~torchloupe.weights.WeightTracker` or a
:class:`~torchloupe.weights.WeightHistory`); without one the section does not apply.
"""

from __future__ import annotations

import os
import tempfile

from torchloupe.reporting.base import Figure, Image, NotApplicable, Table, Text, register


def _history(subject):
    obj = subject.tracker
    if obj is None:
        return None
    from torchloupe.weights.tracker import WeightHistory

    return obj if isinstance(obj, WeightHistory) else obj.history


@register(
    "weight_learning",
    "Weight learning",
    "How the weights moved in training: norms, update sizes, value histograms, class templates forming.",
    cost=3,
)
def build(subject, options):
    h = _history(subject)
    if h is None:
        return NotApplicable("no WeightTracker recorded this model's training (from Python: a "
                             "tl.weights.WeightTracker in the training loop, given as Subject(..., tracker=...))")
    if len(h.steps) < 2:
        return NotApplicable(f"the tracker recorded {len(h.steps)} step; weight learning needs two or more")
    from torchloupe.render import weight_learning as wl

    labels = subject.labels
    blocks = [
        Text(
            f"Recorded {len(h.steps)} steps (every {h.every} optimizer steps, {int(h.steps[0])} to "
            f"{int(h.steps[-1])}); full snapshots of {', '.join(h.snapshots) or 'no layer'} at "
            f"{len(h.snapshot_steps)} steps"
            + (f", {len(h.thinned)} thinned to stay within the memory budget." if h.thinned else ".")
        ),
        Figure(wl.plot_norms(h), "Weight norm and update ratio ‖ΔW‖/‖W‖ per tensor (log scale); "
               "ratios far below 1e-3 mean a layer has stalled, far above it that updates are large."),
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
                    frames = 12 if options.get("quick") else 20
                    path = wl.animate(h, os.path.join(d, "weights.gif"), fps=4, max_frames=frames)
                    with open(path, "rb") as f:
                        gif = f.read()
                blocks.append(Image(gif, "image/gif", f"Templates or filters over training (up to {frames} snapshots).",
                                    alt="weight learning animation"))
            except ValueError as exc:  # nothing input-shaped to animate
                blocks.append(Text(f"No animation: {exc}"))
    last = [
        (name, f"{float(h.stat(name, 'norm')[-1]):.3g}", f"{float(h.stat(name, 'update_ratio')[-1]):.2e}")
        for name in h.names
        if len(h.shapes.get(name, ())) >= 2
    ][:12]
    if last:
        blocks.append(Table(["tensor", "‖W‖ at the end", "last update ratio"], last,
                            caption="Where training still moves the weights."))
    return blocks
