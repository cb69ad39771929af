"""Branch shares over training: a callback for the user's loop.

::

    tracker = tl.fusion.ShareTracker(model, probe_x, branches={"img": "cnn", "txt": "encoder"},
                                     every=50, target=probe_labels)
    for step, (x, y) in enumerate(loader):
        ...; optimizer.step()
        tracker.step()          # records every 50 calls (and at the first call)

``tracker.history.steps`` lists the recorded steps; ``tracker.history.shares[branch]`` is
``(n_records, B)``. Each record is one :func:`contributions` call on the fixed probe batch (eval
mode for that call, the model's mode restored; no ``.grad`` is touched).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError


@dataclass
class ShareHistory:
    steps: list[int] = field(default_factory=list)
    records: list[dict[str, Tensor]] = field(default_factory=list)  # branch -> (B,) shares per record
    method: str = ""
    targets: Tensor | None = None  # the probe batch's targets when they were given as a tensor

    @property
    def shares(self) -> dict[str, Tensor]:
        if not self.records:
            return {}
        return {b: torch.stack([r[b] for r in self.records]) for b in self.records[0]}

    def mean_shares(self, mask: Tensor | None = None) -> dict[str, Tensor]:
        """branch -> ``(n_records,)`` mean share over the probe samples (those where ``mask`` is True)."""
        out = {}
        for b, s in self.shares.items():
            out[b] = (s[:, mask] if mask is not None else s).mean(1)
        return out

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)


class ShareTracker:
    """Records per-branch shares on a fixed probe batch every ``every`` calls of :meth:`step`."""

    def __init__(self, model: nn.Module, x: Any, branches: Mapping[str, str] | None = None, *, every: int = 10,
                 method: str = "auto", target: Any = None, baseline: Any = "zero", output: Any = None):
        if not isinstance(every, int) or every < 1:
            raise InputError(f"every must be a positive int, got {every!r}")
        self.model, self.x, self.branches = model, x, branches
        self.every, self.method, self.target, self.baseline = every, method, target, baseline
        self.output = output
        self.history = ShareHistory(targets=target.detach().cpu() if isinstance(target, Tensor) else None)
        self._count = 0

    def step(self) -> bool:
        """Count one training step; record when due. Returns whether it recorded."""
        step = self._count
        self._count += 1
        if step % self.every:
            return False
        self.record(step)
        return True

    def record(self, step: int) -> None:
        from .contrib import contributions

        res = contributions(self.model, self.x, self.branches, target=self.target, method=self.method,
                            baseline=self.baseline, check=False, output=self.output)
        self.history.steps.append(int(step))
        self.history.records.append({b: s.detach().cpu() for b, s in res.shares.items()})
        self.history.method = res.method
