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
    from ..loading import load_model

    return load_model(args.model, weights=args.weights, unsafe_pickle=args.unsafe_pickle)
