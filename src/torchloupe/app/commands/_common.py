"""What every subcommand shares, written once: the model options (``--model``, ``--weights``,
``--unsafe-pickle``), inputs (``--input`` once per model argument, the files of one ``--input``
being its batch: images or tensor files, see :mod:`torchloupe.app.loading`; ``--size``,
``--normalize``, ``--labels``), what to explain (``--target``, ``--output``, ``--wrt``), checks of output paths made before any of the work, and
argparse number types.

A new subcommand is one module next to this one: ``register(subparsers)`` adding its parser
with these helpers, and ``run(args)``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ...errors import UsageError

MODEL_HELP = (
    "the model: torchvision:NAME (random init; weights from --weights), path/file.py:factory or "
    "package.module:factory (imports that Python code and calls factory(), which must return an nn.Module: "
    "this runs your own code), hf:DIR (a Hugging Face model folder, offline; Python files it ships run only "
    "with --trust-remote-code), hf-config:PATH (a config.json: the architecture without weights, graph only), "
    "or a built-in name (efficientnet-lite0, minilm)"
)


# -- the model -------------------------------------------------------------------------------

def add_model_arguments(parser) -> None:
    parser.add_argument("--model", required=True, metavar="SPEC", help=MODEL_HELP)
    parser.add_argument("--weights", metavar="CKPT",
                        help="checkpoint (.pt/.pth state dict or .safetensors) to load, with weights_only=True")
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="load a checkpoint holding arbitrary Python objects (runs its code: only for files you trust)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let an hf:DIR folder run the Python code it ships (its config's auto_map); only for "
                             "folders you trust")


def load_model_from(args, meta_ok: bool = False):
    """The model named by the parsed ``--model / --weights / --unsafe-pickle`` (and ``--meta``) options.
    ``meta_ok``: whether the command can use a model without weights (only ``loupe graph`` can)."""
    from ..models import load_model

    meta = bool(getattr(args, "meta", False))
    if not meta_ok and args.model.strip().startswith("hf-config:"):
        raise UsageError(f"--model {args.model}: hf-config: builds the architecture without weights, which only "
                         f"loupe graph can show; use hf:DIR for a saved model")
    return load_model(args.model, weights=args.weights, unsafe_pickle=args.unsafe_pickle, meta=meta,
                      trust_remote_code=getattr(args, "trust_remote_code", False))


# -- inputs ----------------------------------------------------------------------------------

INPUT_HELP = (
    "files of one model argument (images, .pt/.npy/.npz tensors); the files of one --input form the batch; "
    "repeat --input for each further argument of forward(x1, x2, ...); NAME=FILE... for a keyword argument"
)


def add_image_arguments(parser, inputs=None, required: bool = True) -> None:
    """``--input FILE...`` (repeatable: one per model argument), ``--size``, ``--normalize`` and
    ``--labels``. ``inputs``: the group ``--input`` joins (a mutually exclusive one, e.g. with
    ``--text``); without it ``--input`` is required unless ``required=False``."""
    where = parser if inputs is None else inputs
    where.add_argument("--input", nargs="+", action="append", required=inputs is None and required,
                       metavar="FILE", help=INPUT_HELP)
    parser.add_argument("--labels", metavar="FILE", help="class names: one per line, or a JSON list")
    parser.add_argument(
        "--size", type=positive_int, metavar="N",
        help="resize and center-crop images to N x N (default: 224 for ImageNet models, else their own size)",
    )
    add_normalize_argument(parser)


def add_explain_arguments(parser, wrt: bool = True) -> None:
    """``--target``, ``--output`` (and ``--wrt``): which score of which output, explained on which input."""
    parser.add_argument("--target", type=int, metavar="CLASS", help="class index (default: the predicted class)")
    parser.add_argument("--output", metavar="KEY",
                        help="the output to explain when the model returns a dict, tuple or Hugging Face output "
                             "(a key, an attribute or an index)")
    if wrt:
        parser.add_argument("--wrt", default="0", metavar="N",
                            help="the input to explain: its position (0 = the first --input) or keyword name")


def add_progress_argument(parser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def output_key(args: argparse.Namespace):
    """``--output``: an int when it is a number (a tuple index), else the key as given."""
    key = getattr(args, "output", None)
    if key is None:
        return None
    return int(key) if key.lstrip("-").isdigit() else key


def wrt_of(args: argparse.Namespace) -> int | str:
    text = str(getattr(args, "wrt", "0"))
    return int(text) if text.lstrip("-").isdigit() else text


def add_normalize_argument(parser, default: str = "auto") -> None:
    parser.add_argument(
        "--normalize", default=default, metavar="NAME",
        help="input normalization of RGB images: auto (ImageNet statistics for torchvision models), none, imagenet",
    )


def normalization(spec: str, normalize: str) -> str | None:
    """The name of the normalization ``--normalize`` asks for: ``auto`` is the model spec's own
    (ImageNet for torchvision models and built-ins that declare it), ``none`` is ``None``."""
    from ..models import default_normalization

    name = default_normalization(spec) if normalize == "auto" else normalize
    return None if name == "none" else name


def model_inputs(args: argparse.Namespace, model, check: bool = True):
    """The ``--input`` groups loaded for ``model`` (:func:`torchloupe.app.loading.load_inputs`):
    one trial forward when ``check`` (a model that cannot take them is one line, exit 2). Notes on
    what was chosen for the user (a resize, gray instead of colour) go to stderr."""
    import sys

    from ..images import NORMALIZATIONS
    from ..loading import load_inputs, parse_groups

    normalize = normalization(args.model, args.normalize)
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise UsageError(f"unknown normalization {normalize!r}; expected one of: auto, none, {', '.join(NORMALIZATIONS)}")
    size = args.size if args.size is not None else (224 if normalize == "imagenet" else None)
    loaded = load_inputs(parse_groups(args.input), model, spec=args.model, size=size, normalize=normalize,
                         check=check)
    for note in loaded.notes:
        print(f"loupe: note: {note}", file=sys.stderr)
    return loaded


def image_inputs(args: argparse.Namespace, model):
    """``(images, x)`` of a one-input model: the ``--input`` images as a ``(N, C, H, W)`` batch in
    [0, 1] for display (``None`` for tensor files), and what the model takes (see :func:`model_inputs`)."""
    loaded = model_inputs(args, model)
    return loaded.image(0), loaded.plain()


def labels_for(args: argparse.Namespace, model) -> list[str] | None:
    """Class names: ``--labels``, else the built-in model's, else ImageNet's for a torchvision
    classifier with 1000 outputs (names bundled, offline), else ``None``."""
    from ..images import load_labels
    from ..models import default_labels
    from ...targets import num_classes_of

    if args.labels:
        return load_labels(args.labels)
    labels = default_labels(args.model)
    if labels is None and args.model.startswith("torchvision:") and num_classes_of(model) == 1000:
        from ...demo.imagenet_data import imagenet_classes

        labels = imagenet_classes()
    return labels


# -- output paths, checked before any of the work -------------------------------------------

def _writable_base(path: Path) -> tuple[Path, str]:
    """The nearest existing ancestor of ``path`` and why a folder cannot be made there ('' if it can)."""
    base = path.absolute()
    while not base.exists() and base != base.parent:
        base = base.parent
    why = ("is not a directory" if not base.is_dir() else
           "is not writable" if not os.access(base, os.W_OK | os.X_OK) else "")
    return base, why


def output_folder(path: str, flag: str = "--out", into: str = "") -> Path:
    """``Path`` of an output folder, checked now without making anything: not a file nor a broken
    link, and it can be made (or written into): its nearest existing ancestor is a writable folder.
    ``into`` completes the message, "expected a folder to write {into} into"."""
    folder = Path(path)
    expected = f"expected a folder to write {into} into" if into else "expected a folder"
    if folder.is_symlink() and not folder.exists():
        raise UsageError(f"{flag} '{folder}' is a broken symbolic link; {expected}")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} '{folder}' is a file; {expected}")
    base, why = _writable_base(folder)
    if why:
        raise UsageError(f"{flag} '{folder}': cannot make this folder ('{base}' {why})")
    return folder


def output_file(path: str | None, flag: str) -> Path | None:
    """``Path`` of an output file, checked before any work: not a folder, and its folder can be made
    or written into (nearest existing ancestor a writable folder). ``None`` passes through."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} '{p}' is a folder; expected a file path")
    base, why = _writable_base(p.absolute().parent)
    if why:
        raise UsageError(f"{flag} '{p}': cannot {'make its folder' if why == 'is not a directory' else 'write there'} "
                         f"('{base}' {why})")
    return p


def made(path: Path) -> Path:
    """``path`` (a file's) with its folder made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# -- argparse types --------------------------------------------------------------------------

def nonnegative_int(text: str, what: str = "a whole number") -> int:
    """argparse type: an integer of at least 0 (argparse turns the error into one line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected {what} of at least 0") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; expected {what} of at least 0")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (argparse turns the error into one line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


# -- device and precision (issue 19) ---------------------------------------------------------

DEVICE_HELP = ("where the model runs: auto (CUDA when available, else the CPU), cpu, cuda, cuda:N or mps "
               "(default: auto)")


def add_device_arguments(parser, precision: str | None = "autocast") -> None:
    """``--device`` and, unless ``precision`` is None, ``--precision fp32|bf16|fp16``:
    ``"autocast"`` for the commands that only read the model (autocast on the device, see
    :func:`torchloupe.devices.autocast`), ``"model"`` for gradient commands (the model, which the
    command loaded itself, is converted to that dtype and its inputs follow)."""
    parser.add_argument("--device", default="auto", metavar="DEV", help=DEVICE_HELP)
    if precision == "autocast":
        parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                            help="compute precision of the views that only read the model: autocast on the "
                                 "device in bfloat16 or float16 (default fp32: none)")
    elif precision == "model":
        parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                            help="run the model converted to bfloat16 or float16 (default fp32: the model's "
                                 "own dtype); maps come back in float32")
        parser.set_defaults(precision_converts=True)


def resolve_device(args: argparse.Namespace):
    """The ``torch.device`` of ``--device``, checked against this machine before the model is
    loaded: a device not here is one line naming it and the available ones (exit status 2)."""
    from ...devices import parse_device

    return parse_device(getattr(args, "device", "auto"))


def place_model(args: argparse.Namespace, model, device):
    """The model the command loaded, moved to ``device`` (and, for ``--precision`` of gradient
    commands, converted to that dtype). Only for models the CLI loaded: the API never moves a
    user's model."""
    from ...devices import PRECISIONS

    if any(p.is_meta for p in model.parameters()):  # no weights to move (loupe graph --meta)
        return model
    model = model.to(device)
    dtype = PRECISIONS.get(getattr(args, "precision", "fp32"))
    if dtype is not None and _converts(args):
        model = model.to(dtype)
    return model


def _converts(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "precision_converts", False))


def to_device(value, device):
    """Tensors of ``value`` (a tensor, an :class:`~torchloupe.inputs.Inputs`, a tuple / list / dict
    of them) on ``device``; anything else as it is."""
    import torch

    from ...inputs import Inputs

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Inputs):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def precision_context(args: argparse.Namespace, device):
    """Autocast of ``--precision`` on ``device`` for the views that only read the model (a no-op
    for fp32 and for commands whose ``--precision`` converts the model instead)."""
    from ...devices import autocast

    precision = getattr(args, "precision", "fp32")
    return autocast(device, "fp32" if _converts(args) else precision)


def on_cpu(value):
    """``value`` with every tensor on the CPU and floating ones in float32 (bfloat16 has no numpy
    form), for drawing and saving: a tensor, a tuple / list / dict of them, or a result dataclass
    (its tensor fields replaced, frozen ones included). Anything else as it is."""
    import dataclasses

    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach()
        return (t.float() if t.is_floating_point() and t.dtype != torch.float64 else t).cpu()
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(on_cpu(v) for v in value)
    if isinstance(value, list):
        return [on_cpu(v) for v in value]
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: on_cpu(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
                   and isinstance(getattr(value, f.name), (torch.Tensor, tuple, list, dict))}
        return dataclasses.replace(value, **changes) if changes else value
    return value
