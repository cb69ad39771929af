"""Load what the command line names: models, checkpoints, images and class labels.

A *model spec* is one of:

- ``torchvision:NAME``: a torchvision model built with ``weights=None`` (random
  initialisation under a fixed seed; real weights come from ``weights=``);
- ``path/file.py:factory``: import the file and call ``factory()``;
- ``package.module:factory``: import the module and call ``factory()``;
- ``hf:DIR``: a Hugging Face model saved in the local folder ``DIR`` (``AutoModel``, offline;
  its tokenizer from the same folder, for text inputs);
- a built-in name from :data:`BUILTIN_MODELS` (modules of torchloupe add theirs
  with :func:`register_model`).

Checkpoints load with ``torch.load(..., weights_only=True)``: a file that holds
anything but tensors and plain containers is refused instead of executed.
``unsafe_pickle=True`` opts out, with a :class:`UserWarning`. Every failure is a
:class:`~torchloupe.errors.TorchLoupeError` naming the file or the spec.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import pickle
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn

from .errors import CheckpointError, InputFileError, UsageError, require

__all__ = [
    "BUILTIN_MODELS",
    "BUILTIN_PROVIDERS",
    "MODEL_SPEC_FORMS",
    "NORMALIZATIONS",
    "register_model",
    "tokenizer_for",
    "load_model",
    "build_model",
    "load_checkpoint",
    "load_weights",
    "load_images",
    "normalize_images",
    "default_normalization",
    "default_labels",
    "load_labels",
]

#: Built-in model names for ``--model``: name -> factory (a callable returning an
#: ``nn.Module``, or a lazy ``"package.module:factory"`` string imported on first use).
BUILTIN_MODELS: dict[str, Union[Callable[[], nn.Module], str]] = {}

#: Modules imported before a bare name is looked up in :data:`BUILTIN_MODELS`; each registers
#: its models with :func:`register_model` when imported (add yours here, one line).
BUILTIN_PROVIDERS: tuple[str, ...] = ("torchloupe.demo.imagenet_data", "torchloupe.demo.text_models")
_PROVIDERS_LOADED = False

# Input normalization a built-in model expects (name -> key of NORMALIZATIONS).
_BUILTIN_NORMALIZATION: dict[str, str] = {}
# Class names of a built-in model (name -> callable returning them).
_BUILTIN_LABELS: dict[str, Callable[[], Sequence[str]]] = {}
_BUILTIN_TOKENIZERS: dict[str, Callable[[], Any]] = {}

MODEL_SPEC_FORMS = (
    "torchvision:NAME (e.g. torchvision:resnet18)",
    "path/file.py:factory",
    "package.module:factory",
    "hf:DIR (a Hugging Face model folder)",
)

#: Named input normalizations: (mean, std) per RGB channel.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

_INIT_SEED = 0


def register_model(
    name: str,
    factory: Union[Callable[[], nn.Module], str],
    normalize: str | None = None,
    labels: Callable[[], Sequence[str]] | None = None,
    tokenizer: Callable[[], Any] | None = None,
) -> None:
    """Make ``name`` a built-in ``--model`` value; ``normalize`` names the input normalization it
    expects, ``labels`` returns its class names (used when no ``--labels`` file is given),
    ``tokenizer`` returns the tokenizer of a text model (a Hugging Face tokenizer: called on a
    list of strings it returns ``input_ids`` and the rest)."""
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise UsageError(f"unknown normalization {normalize!r}; expected one of: {', '.join(NORMALIZATIONS)}")
    BUILTIN_MODELS[name] = factory
    if normalize is not None:
        _BUILTIN_NORMALIZATION[name] = normalize
    if labels is not None:
        _BUILTIN_LABELS[name] = labels
    if tokenizer is not None:
        _BUILTIN_TOKENIZERS[name] = tokenizer


def tokenizer_for(spec: str) -> Any | None:
    """The tokenizer of a text model spec (a built-in that declares one, or ``hf:DIR``), else ``None``."""
    if spec.startswith("hf:"):
        transformers = require("transformers", "hf")
        folder = _hf_folder(spec)
        if not has_tokenizer_files(folder):  # transformers would build an empty tokenizer: every word [UNK]
            return None
        try:
            return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:
            raise InputFileError(f"cannot read a tokenizer from '{folder}': {type(exc).__name__}: {_first(exc)}") from exc
    if ":" in spec:
        return None
    _load_providers()
    fn = _BUILTIN_TOKENIZERS.get(spec)
    return fn() if fn is not None else None


_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                    "sentencepiece.bpe.model")


def has_tokenizer_files(folder: Path) -> bool:
    """Whether a Hugging Face model folder holds a tokenizer's vocabulary."""
    return any((Path(folder) / name).is_file() for name in _TOKENIZER_FILES)


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _hf_folder(spec: str) -> Path:
    folder = Path(spec.split(":", 1)[1]).expanduser()
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise InputFileError(f"model spec {spec!r}: '{folder}' is not a folder holding a Hugging Face model "
                             f"(config.json and its weights)")
    return folder


def _hf_model(spec: str) -> nn.Module:
    transformers = require("transformers", "hf")
    folder = _hf_folder(spec)
    from .demo.text_models import quiet_loading

    try:
        with quiet_loading(transformers):
            return transformers.AutoModel.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise InputFileError(f"cannot load the Hugging Face model in '{folder}': {type(exc).__name__}: "
                             f"{_first(exc)}") from exc


def default_labels(spec: str) -> list[str] | None:
    """Class names a built-in model declares, or ``None``."""
    if ":" in spec:
        return None
    _load_providers()
    fn = _BUILTIN_LABELS.get(spec)
    return [str(v) for v in fn()] if fn is not None else None


def _forms() -> str:
    forms = ", ".join(MODEL_SPEC_FORMS)
    names = sorted(BUILTIN_MODELS)
    return f"one of: {forms}, or a built-in name ({', '.join(names)})" if names else f"one of: {forms}"


def _load_providers() -> None:
    """Import the modules that register built-in models (once; they call :func:`register_model`)."""
    global _PROVIDERS_LOADED
    if _PROVIDERS_LOADED:
        return
    _PROVIDERS_LOADED = True
    for name in BUILTIN_PROVIDERS:
        importlib.import_module(name)


# ----------------------------------------------------------------------------- models


def _resolve_attr(module: Any, attr: str, where: str) -> Any:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            candidates = sorted(
                n
                for n, v in vars(module).items()
                if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module.__name__
            )
            close = difflib.get_close_matches(attr, candidates, n=3, cutoff=0.4) or candidates[:5]
            hint = f"; callables there: {', '.join(close)}" if close else ""
            raise UsageError(f"{where} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    return obj


def _call_factory(factory: Any, what: str) -> nn.Module:
    if isinstance(factory, nn.Module):
        return factory
    if not callable(factory):
        raise UsageError(f"{what} is a {type(factory).__name__}, expected a function returning an nn.Module")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_INIT_SEED)
            model = factory()
    except Exception as exc:
        raise UsageError(f"calling {what} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(f"{what} returned a {type(model).__name__}, expected an nn.Module")
    return model


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise InputFileError(f"model file '{path}' does not exist")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_torchloupe_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputFileError(f"cannot import model file '{path}': not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise InputFileError(f"cannot import model file '{path}': {type(exc).__name__}: {exc}") from exc
    return module


def _torchvision_model(name: str) -> nn.Module:
    require("torchvision", "demo")
    import torchvision.models as tvm

    available = tvm.list_models()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else f"; e.g. {', '.join(available[:5])}"
        raise UsageError(f"torchvision has no model {name!r}{hint}")
    import inspect

    kwargs = {"weights": None}
    if "weights_backbone" in inspect.signature(tvm.get_model_builder(name)).parameters:
        kwargs["weights_backbone"] = None  # segmentation / detection models: no backbone download either
    return _call_factory(lambda: tvm.get_model(name, **kwargs), f"torchvision model {name!r}")


def build_model(spec: str) -> nn.Module:
    """The model ``spec`` names, freshly built (random init under a fixed seed, no weights loaded)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"model spec must be a non-empty string, got {spec!r}; expected {_forms()}")
    spec = spec.strip()
    if ":" not in spec:
        _load_providers()
    if spec in BUILTIN_MODELS:
        factory = BUILTIN_MODELS[spec]
        if isinstance(factory, str):
            mod_name, _, attr = factory.partition(":")
            factory = _resolve_attr(importlib.import_module(mod_name), attr, f"module {mod_name!r}")
        return _call_factory(factory, f"built-in model {spec!r}")
    if spec.startswith("torchvision:"):
        return _torchvision_model(spec.split(":", 1)[1])
    if spec.startswith("hf:"):
        return _hf_model(spec)
    if ":" in spec:
        target, _, attr = spec.rpartition(":")
        if not attr.replace(".", "").replace("_", "a").isalnum():
            raise UsageError(f"model spec {spec!r}: {attr!r} is not a Python name; expected {_forms()}")
        if target.endswith(".py"):
            module = _import_file(Path(target))
            return _call_factory(_resolve_attr(module, attr, f"model file '{target}'"), f"'{target}:{attr}'")
        if all(part.isidentifier() for part in target.split(".")):
            try:
                module = importlib.import_module(target)
            except ImportError as exc:
                raise UsageError(f"cannot import module {target!r} of model spec {spec!r}: {exc}") from exc
            return _call_factory(_resolve_attr(module, attr, f"module {target!r}"), f"'{target}:{attr}'")
    close = difflib.get_close_matches(spec, list(BUILTIN_MODELS), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(f"unknown model spec {spec!r}{hint}; expected {_forms()}")


def default_normalization(spec: str) -> str | None:
    """The input normalization a spec's model expects by default: ImageNet statistics for
    torchvision models and built-ins that declare it, none otherwise."""
    if spec.startswith("torchvision:"):
        return "imagenet"
    if ":" not in spec:
        _load_providers()
    return _BUILTIN_NORMALIZATION.get(spec)


def load_model(spec: str, weights: str | Path | None = None, unsafe_pickle: bool = False) -> nn.Module:
    """Build the model ``spec`` names, load ``weights`` (a checkpoint path) into it, return it in eval mode."""
    model = build_model(spec)
    if weights is not None:
        load_weights(model, weights, unsafe_pickle=unsafe_pickle)
    return model.eval()


# ----------------------------------------------------------------------------- checkpoints


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


# ----------------------------------------------------------------------------- images and labels


def normalize_images(x: Tensor, normalize: str | tuple | None) -> Tensor:
    """``(x - mean) / std`` per channel, as a new tensor; ``normalize`` is a name in
    :data:`NORMALIZATIONS`, a ``(mean, std)`` pair of 3-tuples, or ``None`` (returns ``x``)."""
    if normalize is None or normalize == "none":
        return x
    if isinstance(normalize, str):
        if normalize not in NORMALIZATIONS:
            raise UsageError(
                f"unknown normalization {normalize!r}; expected one of: none, {', '.join(NORMALIZATIONS)}"
            )
        mean, std = NORMALIZATIONS[normalize]
    else:
        try:
            mean, std = normalize
            mean_t = torch.as_tensor(mean, dtype=x.dtype).reshape(-1)
            std_t = torch.as_tensor(std, dtype=x.dtype).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"normalization must be a name or a (mean, std) pair, got {normalize!r}") from exc
        if mean_t.numel() != x.shape[1] or std_t.numel() != x.shape[1] or bool((std_t <= 0).any()):
            raise UsageError(
                f"normalization {normalize!r} needs {x.shape[1]} means and {x.shape[1]} positive stds"
            )
        mean, std = mean_t.tolist(), std_t.tolist()
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def load_images(
    paths: Sequence[str | Path],
    size: int | None = None,
    normalize: str | tuple | None = None,
    mode: str = "RGB",
) -> Tensor:
    """Read images with Pillow into one ``(N, 3, H, W)`` float batch in [0, 1] (before ``normalize``).

    ``mode="L"`` reads them as gray, ``(N, 1, H, W)``. ``size``: resize the shorter side to ``size`` and center-crop to ``size x size``.
    Without it, images keep their size when all agree; otherwise each is center-cropped
    to a square of the smallest side among them. Unreadable files raise
    :class:`InputFileError` naming the file.
    """
    pil = require("PIL.Image", "render", package="pillow")
    if mode not in ("RGB", "L"):
        raise UsageError(f"image mode must be 'RGB' or 'L', got {mode!r}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise UsageError("no input images given; expected at least one image file")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise UsageError(f"image size must be a positive integer, got {size!r}")
    images = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputFileError(f"cannot read image '{p}': no such file")
        try:
            with pil.open(p) as im:
                im.load()
                images.append(im.convert(mode))
        except Exception as exc:
            reason = "not an image Pillow can read" if isinstance(exc, pil.UnidentifiedImageError) else str(exc)
            raise InputFileError(f"cannot read image '{p}': {reason}") from exc
    sizes = {im.size for im in images}
    if size is None and len(sizes) > 1:
        size = min(min(im.size) for im in images)
    if size is not None:
        images = [_resize_crop(im, size, pil) for im in images]
    import numpy as np

    arrays = np.stack([np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], -1) for im in images])
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255.0).contiguous()  # (N, C, H, W)
    return normalize_images(x, normalize)


def _resize_crop(im: Any, size: int, pil: Any) -> Any:
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), pil.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def load_labels(path: str | Path) -> list[str]:
    """Class names from a text file (one per line) or JSON (a list, or ``{"0": name}`` /
    ``{"0": [wnid, name]}`` as in ImageNet's class index file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputFileError(f"cannot read labels '{path}': no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read labels '{path}': {exc}") from exc
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"cannot read labels '{path}': invalid JSON ({exc})") from exc
        if isinstance(data, dict):
            try:
                items = sorted(((int(k), v) for k, v in data.items()), key=lambda kv: kv[0])
            except ValueError as exc:
                raise InputFileError(f"cannot read labels '{path}': JSON object keys must be class indices") from exc
            if [k for k, _ in items] != list(range(len(items))):
                raise InputFileError(f"cannot read labels '{path}': class indices must run 0..{len(items) - 1}")
            data = [v[-1] if isinstance(v, list) and v else v for _, v in items]
        if not isinstance(data, list) or not all(isinstance(v, (str, int, float)) for v in data):
            raise InputFileError(f"cannot read labels '{path}': expected a JSON list of class names")
        labels = [str(v) for v in data]
    else:
        labels = [line.strip() for line in text.splitlines()]
        while labels and not labels[-1]:
            labels.pop()
    if not labels:
        raise InputFileError(f"cannot read labels '{path}': the file holds no class names")
    return labels
