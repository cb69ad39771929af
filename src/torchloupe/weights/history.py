"""What a :class:`~torchloupe.weights.WeightTracker` recorded: :class:`Record` (one step, as
handed to sinks) and :class:`WeightHistory` (every step, as tensors; saved to and loaded from
one file, ``.pt`` or ``.safetensors``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, LayerNotFoundError, TrackerError


#: Columns of ``WeightHistory.stats`` (last axis), in order.
STATS = ("norm", "mean", "std", "min", "max", "update_ratio", "grad_norm")

FORMAT_VERSION = 1


def _load_reason(exc: BaseException) -> str:
    """One line for why ``torch.load`` failed: torch's several-paragraph ``weights_only`` text
    becomes the object it met and what to do."""
    import re

    text = str(exc)
    if "weights_only" in text or "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f"a {found.group(1)} object" if found else "Python objects other than tensors"
        return (f"it holds {what} (unpickling it could run code), not loaded; a file from WeightHistory.save "
                f"holds only tensors; for a file you trust: WeightHistory.load(path, unsafe=True), which "
                f"is torch.load(weights_only=False)")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@dataclass(frozen=True)
class Record:
    """What one recorded step adds, as handed to sinks (``sink.on_record(tracker, record)``).

    ``stats``: ``(n, 7)`` float32 columns :data:`STATS`; ``hist``: ``(n, bins)``;
    ``hist_range``: ``(n, 2)`` the ``[lo, hi]`` the histogram spans; ``snapshot``:
    ``{name: tensor}`` CPU copies when this step was snapshotted, else ``None``.
    """

    step: int
    names: tuple[str, ...]
    stats: Tensor
    hist: Tensor
    hist_range: Tensor
    snapshot: dict[str, Tensor] | None


@dataclass(frozen=True)
class WeightHistory:
    """Everything a :class:`WeightTracker` recorded, as tensors.

    ``steps``: ``(R,)`` int64 recorded steps. ``names``: tracked tensors, in model order.
    ``stats``: ``(R, n, 7)`` float32, columns :data:`STATS` (see :meth:`stat`).
    ``hist``: ``(R, n, bins)`` counts; ``hist_range``: ``(R, n, 2)`` their ``[lo, hi]``.
    ``snapshot_steps``: ``(S,)`` steps with full snapshots; ``snapshots``: ``{name: (S, *shape)}``
    (``history[name]``). ``thinned``: steps whose snapshots were dropped to stay in ``budget``
    bytes. ``input_shape``: the model's input shape without batch, when known (templates).
    """

    steps: Tensor
    names: tuple[str, ...]
    stats: Tensor
    hist: Tensor
    hist_range: Tensor
    snapshot_steps: Tensor
    snapshots: dict[str, Tensor]
    thinned: tuple[int, ...] = ()
    every: int = 1
    budget: int = 0
    input_shape: tuple[int, ...] | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    # -- access ---------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Tensor:
        """Full snapshots of ``name``: ``(len(snapshot_steps), *shape)``. A name without snapshots
        raises ``KeyError``, what a subscript raises, naming the snapshotted tensors and the closest."""
        if name not in self.snapshots:
            import difflib

            close = difflib.get_close_matches(name, list(self.snapshots) + list(self.names), n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(repr(c) for c in close)}" if close else ""
            raise KeyError(
                f"{name!r} has no snapshots; snapshotted: {', '.join(self.snapshots) or 'none'}{hint}"
            )
        return self.snapshots[name]

    def __contains__(self, name: object) -> bool:
        return name in self.snapshots

    def index(self, name: str) -> int:
        """Position of tracked tensor ``name`` along the ``n`` axis of ``stats`` / ``hist``;
        :class:`~torchloupe.errors.LayerNotFoundError` (a ``LookupError``) naming the closest names."""
        try:
            return self.names.index(name)
        except ValueError:
            import difflib

            close = difflib.get_close_matches(name, list(self.names), n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(repr(c) for c in close)}" if close else ""
            raise LayerNotFoundError(f"{name!r} is not a tracked tensor{hint}", name, tuple(close)) from None

    def stat(self, name: str, which: str) -> Tensor:
        """``(R,)`` values of statistic ``which`` (one of :data:`STATS`) for tensor ``name``."""
        if which not in STATS:
            raise TrackerError(f"unknown statistic {which!r}; expected one of {', '.join(STATS)}")
        return self.stats[:, self.index(name), STATS.index(which)]

    def bin_edges(self, name: str) -> Tensor:
        """``(R, bins + 1)`` histogram bin edges of ``name`` at each recorded step."""
        rng = self.hist_range[:, self.index(name)].double()
        t = torch.linspace(0, 1, self.hist.shape[-1] + 1, dtype=torch.float64)
        return rng[:, :1] + (rng[:, 1:] - rng[:, :1]) * t

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors of this history."""
        ts = [self.steps, self.stats, self.hist, self.hist_range, self.snapshot_steps, *self.snapshots.values()]
        return sum(t.numel() * t.element_size() for t in ts)


    # -- files ----------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "format": "torchloupe.WeightHistory",
            "version": FORMAT_VERSION,
            "names": list(self.names),
            "snapshot_names": list(self.snapshots),
            "thinned": list(self.thinned),
            "every": self.every,
            "budget": self.budget,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
        }

    def _tensors(self) -> dict[str, Tensor]:
        out = {
            "steps": self.steps,
            "stats": self.stats,
            "hist": self.hist,
            "hist_range": self.hist_range,
            "snapshot_steps": self.snapshot_steps,
        }
        for name, t in self.snapshots.items():
            out[f"snapshot/{name}"] = t
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path``: safetensors when it ends in ``.safetensors``, else ``torch.save``
        of tensors, strings and numbers only (readable with ``weights_only=True``)."""
        from ..files import atomic_write

        path = os.fspath(path)
        meta = json.dumps(self._meta())
        if path.endswith(".safetensors"):
            from ..errors import require

            st = require("safetensors.torch", "hf", "safetensors")
            atomic_write(path, st.save(self._tensors(), metadata={"torchloupe": meta}))
        else:  # written whole or not at all
            blob = {"torchloupe": meta, "tensors": self._tensors()}
            atomic_write(path, lambda f: torch.save(blob, f))

    @classmethod
    def load(cls, path: str | os.PathLike, unsafe: bool = False) -> "WeightHistory":
        """Read a file written by :meth:`save` (``torch.load(weights_only=True)`` or safetensors).

        A file holding Python objects other than tensors is refused in one line (unpickling them
        could run code); ``unsafe=True`` loads it with ``weights_only=False``, only for a file you trust.
        """
        path = os.fspath(path)
        try:
            if path.endswith(".safetensors"):
                from ..errors import require

                st = require("safetensors.torch", "hf", "safetensors")
                from safetensors import safe_open

                with safe_open(path, framework="pt") as f:
                    meta_s = (f.metadata() or {}).get("torchloupe")
                tensors = st.load_file(path)
            else:
                obj = torch.load(path, map_location="cpu", weights_only=not unsafe)
                if not isinstance(obj, dict) or "torchloupe" not in obj:
                    raise CheckpointError(f"{path}: not a torchloupe WeightHistory file")
                meta_s, tensors = obj["torchloupe"], obj["tensors"]
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot read a WeightHistory ({_load_reason(exc)})") from exc
        if meta_s is None:
            raise CheckpointError(f"{path}: not a torchloupe WeightHistory file (no metadata)")
        meta = json.loads(meta_s)
        if meta.get("format") != "torchloupe.WeightHistory":
            raise CheckpointError(f"{path}: not a torchloupe WeightHistory file")
        return cls(
            steps=tensors["steps"],
            names=tuple(meta["names"]),
            stats=tensors["stats"],
            hist=tensors["hist"],
            hist_range=tensors["hist_range"],
            snapshot_steps=tensors["snapshot_steps"],
            snapshots={n: tensors[f"snapshot/{n}"] for n in meta["snapshot_names"]},
            thinned=tuple(meta["thinned"]),
            every=meta["every"],
            budget=meta["budget"],
            input_shape=tuple(meta["input_shape"]) if meta["input_shape"] is not None else None,
            shapes={k: tuple(v) for k, v in meta["shapes"].items()},
        )

    # -- views ----------------------------------------------------------------------------
    def head_name(self) -> str | None:
        """The classifier head's weight: the last 2-D snapshotted ``*.weight``."""
        two_d = [n for n in self.snapshots if n.endswith("weight") and len(self.shapes.get(n, ())) == 2]
        return two_d[-1] if two_d else None

    def kernel_name(self) -> str | None:
        """The first snapshotted convolution weight (3-D or more)."""
        for n in self.snapshots:
            if n.endswith("weight") and len(self.shapes.get(n, ())) >= 3:
                return n
        return None

    def linear_chain(self) -> list[str]:
        """Snapshotted 2-D weights that chain from the input to the head (an MLP), else ``[]``.

        The chain is complete when each weight's ``in_features`` equals the previous one's
        ``out_features`` and the first one reads the (flattened) input.
        """
        two_d = [n for n in self.snapshots if n.endswith("weight") and len(self.shapes.get(n, ())) == 2]
        if len(two_d) < 2 or self.kernel_name() is not None:
            return []
        for a, b in zip(two_d, two_d[1:]):
            if self.shapes[b][1] != self.shapes[a][0]:
                return []
        if not self.reads_input(two_d[0]):
            return []
        return two_d

    def reads_input(self, name: str) -> bool:
        """Whether the 2-D weight ``name`` reads the model's (flattened) input, so its rows are
        input-space templates: its ``in_features`` equals the size of ``input_shape`` when that is
        known, else it is the first weight the history knows (model order)."""
        shape = self.shapes.get(name, ())
        if len(shape) != 2:
            return False
        if self.input_shape is not None:
            return math.prod(self.input_shape) == shape[1]
        weights = [n for n, s in self.shapes.items() if n.endswith("weight") and len(s) >= 2]
        return bool(weights) and weights[0] == name

    def _repr_html_(self) -> str:
        """The default figure inline in a notebook, under a one-line summary (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import html_of

        return html_of(self)

    def _repr_png_(self) -> bytes | None:
        """The default figure as PNG, for notebook front ends that show images (:mod:`torchloupe.render.notebook`)."""
        from ..render.notebook import png_of

        return png_of(self)
