"""State-dict checkpoints of an earlier run, read for :meth:`WeightTracker.from_checkpoints`:
safely (``torch.load(weights_only=True)`` or safetensors), and the tensors to snapshot chosen
without a model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, LayerNotFoundError, TrackerError, require


def default_snapshot_names(sd: Mapping[str, Tensor]) -> list[str]:
    ws = [k for k, v in sd.items() if k.endswith("weight") and v.is_floating_point()]
    conv = [k for k in ws if sd[k].dim() >= 3][:1]
    lin = [k for k in ws if sd[k].dim() == 2]
    pick = conv + lin[-1:] if conv else lin[:1] + lin[-1:]
    if not conv and len(lin) >= 2 and all(sd[b].shape[1] == sd[a].shape[0] for a, b in zip(lin, lin[1:])):
        pick = lin  # an MLP's chain: its effective templates W_L ... W_1 need every layer
    out: list[str] = []
    for w in pick:
        for k in (w, w[: -len("weight")] + "bias"):
            if k in sd and k not in out:
                out.append(k)
    order = {k: i for i, k in enumerate(sd)}
    return sorted(out, key=order.__getitem__)


def names_in(sd: Mapping[str, Tensor], names) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    out = []
    for n in names:
        if not isinstance(n, str):
            raise TrackerError(f"without model=, snapshots must be parameter names, got {n!r}")
        if n not in sd:
            import difflib

            close = difflib.get_close_matches(n, list(sd), n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(repr(c) for c in close)}" if close else ""
            raise LayerNotFoundError(f"{n!r} is not a tensor of the checkpoint{hint}", n, tuple(close))
        out.append(n)
    return out


def load_state_dict(path: str) -> dict[str, Tensor]:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if path.endswith(".safetensors"):
            st = require("safetensors.torch", "hf", "safetensors")
            obj: Any = st.load_file(path)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot be read as a state dict with weights_only=True ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if isinstance(obj, nn.Module) or not isinstance(obj, Mapping) or not obj or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    ):
        what = type(obj).__name__
        if isinstance(obj, Mapping):
            bad = [k for k, v in obj.items() if not isinstance(v, Tensor)][:3]
            what = f"a {what} with non-tensor entries {bad}" if bad else f"an empty {what}"
        raise CheckpointError(
            f"{path}: is not a state dict (got {what}); expected a mapping of parameter names to "
            f"tensors, e.g. torch.save(model.state_dict(), path)"
        )
    return dict(obj)
