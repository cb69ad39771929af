"""Checkpoints for ``--weights``: read with ``torch.load(..., weights_only=True)``, so a file that
holds anything but tensors and plain containers is refused instead of executed;
``unsafe_pickle=True`` opts out, with a :class:`UserWarning`. ``.safetensors`` files read with
safetensors. Every failure is a :class:`~torchloupe.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, require


def _state_dict_of(obj: Any, path: Path, depth: int = 0) -> dict[str, Any]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping) and depth < 2:
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, (Mapping, nn.Module)):
                return _state_dict_of(inner, path, depth + 1)
        if obj and all(isinstance(k, str) for k in obj) and any(isinstance(v, Tensor) for v in obj.values()):
            return dict(obj)
    kind = type(obj).__name__
    keys = f" with keys {', '.join(map(repr, list(obj)[:5]))}" if isinstance(obj, Mapping) else ""
    raise CheckpointError(
        f"checkpoint '{path}' holds a {kind}{keys}; expected a state dict of tensors "
        f"or a dict with a 'state_dict' or 'model' entry"
    )


def load_checkpoint(path: str | Path, unsafe_pickle: bool = False) -> dict[str, Any]:
    """The state dict stored in ``path`` (``.pt``/``.pth``/``.ckpt`` via ``torch.load``, or ``.safetensors``).

    Accepts a raw state dict or a dict holding it under ``state_dict`` / ``model``.
    Loads with ``weights_only=True`` unless ``unsafe_pickle`` (which warns: the file's
    code runs). Raises :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"cannot read checkpoint '{path}': no such file")
    if not path.is_file():
        raise CheckpointError(f"cannot read checkpoint '{path}': not a file")
    if path.suffix == ".safetensors":
        st = require("safetensors.torch", "hf", package="safetensors")
        try:
            return dict(st.load_file(str(path), device="cpu"))
        except Exception as exc:
            raise CheckpointError(f"cannot read checkpoint '{path}': not a safetensors file ({exc})") from exc
    if unsafe_pickle:
        warnings.warn(
            f"loading checkpoint '{path}' with weights_only=False: any code it holds runs; "
            f"do this only for files you trust",
            UserWarning,
            stacklevel=2,
        )
    try:
        with warnings.catch_warnings():
            # torch notes protocol versions it did not write itself; that is not the user's concern here
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=not unsafe_pickle)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if not unsafe_pickle and "weights_only" in text.lower().replace(" ", "_"):
            if "GLOBAL" in text:  # a well-formed pickle naming code or classes (torch names the GLOBAL)
                raise CheckpointError(
                    f"checkpoint '{path}' holds Python objects other than tensors, so it was not loaded "
                    f"(loading it could run code); re-save it as a state dict, or pass --unsafe-pickle "
                    f"if you trust the file"
                ) from exc
            # The safe loader met bytes it does not read: a pickle torch.save did not write (Python's
            # own protocols 4 and 5 stop at their first frame), which may hold code, or damaged data.
            raise CheckpointError(
                f"cannot read checkpoint '{path}': not a file torch.save wrote (a plain pickle, which could "
                f"run code, or damaged data; the safe loader stopped at: {weights_only_reason(text)}); it was "
                f"not loaded; pass --unsafe-pickle only if you trust the file"
            ) from exc
        raise CheckpointError(f"cannot read checkpoint '{path}': corrupt pickle data ({exc})") from exc
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint '{path}': not a PyTorch checkpoint ({reason})") from exc
    return _state_dict_of(obj, path)


def weights_only_reason(text: str) -> str:
    """The line of torch's weights-only error that says what stopped it (``Unsupported operand 103``)."""
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Weights only load failed", "Check the documentation"))]
    return lines[0] if lines else "unreadable data"


def _names(keys: Sequence[str], n: int = 4) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights(model: nn.Module, path: str | Path, unsafe_pickle: bool = False) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (strict); a ``module.`` prefix (DataParallel) is dropped."""
    path = Path(path)
    state = load_checkpoint(path, unsafe_pickle=unsafe_pickle)
    own = model.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in own):
        state = {k[len("module."):]: v for k, v in state.items()}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_names(unexpected)}")
        raise CheckpointError(f"checkpoint '{path}' does not fit {type(model).__name__}: {'; '.join(parts)}")
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if isinstance(v, Tensor) and isinstance(own[k], Tensor) and v.shape != own[k].shape
    ]
    if mismatched:
        raise CheckpointError(
            f"checkpoint '{path}' does not fit {type(model).__name__}: shape mismatch (checkpoint vs model) "
            f"in {_names(mismatched, 3)}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint '{path}' does not fit {type(model).__name__}: {exc}") from exc
    return model
