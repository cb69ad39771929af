"""The model options every subcommand shares: ``--model``, ``--weights``, ``--unsafe-pickle``."""

from __future__ import annotations

MODEL_HELP = (
    "the model: torchvision:NAME (random init; weights from --weights), path/file.py:factory, "
    "package.module:factory, hf:DIR (a Hugging Face model folder, offline), or a built-in name "
    "(efficientnet-lite0, minilm)"
)


def add_model_arguments(parser) -> None:
    parser.add_argument("--model", required=True, metavar="SPEC", help=MODEL_HELP)
    parser.add_argument("--weights", metavar="CKPT",
                        help="checkpoint (.pt/.pth state dict or .safetensors) to load, with weights_only=True")
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="load a checkpoint holding arbitrary Python objects (runs its code: only for files you trust)")


def load_model_from(args):
    """The model named by the parsed ``--model / --weights / --unsafe-pickle`` options."""
    from ..models import load_model

    return load_model(args.model, weights=args.weights, unsafe_pickle=args.unsafe_pickle)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (argparse turns the error into one line, exit 2)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def output_file(path: str | None, flag: str):
    """``Path`` of an output file, checked before any work: not a folder, and its folder can be made
    or written into (nearest existing ancestor a writable folder). ``None`` passes through."""
    import os
    from pathlib import Path

    from ...errors import UsageError

    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} '{p}' is a folder; expected a file path")
    base = p.absolute().parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"{flag} '{p}': cannot make its folder ('{base}' is not a directory)")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} '{p}': cannot write there ('{base}' is not writable)")
    return p
