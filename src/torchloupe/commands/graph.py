"""``loupe graph``: trace a model and write its graph as HTML, SVG, text, ONNX or TensorBoard events."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

import torch

from ..errors import CheckpointError, InputError, InputFileError

__all__ = ["register", "run", "load_model"]

FORMATS = ("html", "svg", "txt", "dot", "onnx", "tensorboard")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "graph",
        help="trace a model and draw how its layers connect",
        description="Trace one forward pass of a model and write its graph (no Graphviz needed).",
    )
    p.add_argument("--model", required=True,
                   help="torchvision:NAME (random weights), package.module:factory, or path/to/file.py:factory")
    p.add_argument("--checkpoint", help="state dict to load into the model (loaded with weights_only=True)")
    p.add_argument("--input-shape", action="append", required=True,
                   help="comma-separated shape of one input, e.g. 1,3,224,224 (repeat for several inputs)")
    p.add_argument("--input-dtype", default="float32", choices=("float32", "float64", "int64"),
                   help="dtype of the generated inputs (int64: token ids in [0, 100))")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--format", default="html,svg,txt", help=f"comma-separated, any of: {', '.join(FORMATS)}")
    p.add_argument("--depth", type=int, default=None, help="collapse containers below this depth (default: fit)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def load_model(spec: str) -> torch.nn.Module:
    """Build a model from ``torchvision:NAME``, ``module:factory`` or ``file.py:factory``."""
    if ":" not in spec:
        raise InputError(f"--model {spec!r} must look like torchvision:resnet18, package.module:factory "
                         f"or path/to/file.py:factory")
    source, _, attr = spec.rpartition(":")
    if source == "torchvision":
        import torchvision

        try:
            return torchvision.models.get_model(attr, weights=None)
        except (ValueError, KeyError) as exc:
            raise InputError(f"torchvision has no model {attr!r}") from exc
    if source.endswith(".py"):
        if not os.path.isfile(source):
            raise InputFileError(f"model file {source!r} does not exist")
        mod_spec = importlib.util.spec_from_file_location(f"_loupe_model_{abs(hash(source))}", source)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(source)
        except ImportError as exc:
            raise InputError(f"cannot import {source!r} for --model {spec!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise InputError(f"{source!r} has no attribute {attr!r}")
    model = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"--model {spec!r} gave a {type(model).__name__}, expected an nn.Module")
    return model


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise InputError(f"--input-shape {text!r} must be comma-separated integers like 1,3,224,224") from exc
    if not shape or any(s <= 0 for s in shape):
        raise InputError(f"--input-shape {text!r} must be positive integers like 1,3,224,224")
    return shape


def run(args: argparse.Namespace) -> int:
    from ..structure import export_onnx, trace

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise InputError(f"--format {', '.join(bad)} is not one of {', '.join(FORMATS)}")
    shapes = [_shape(s) for s in args.input_shape]
    model = load_model(args.model)
    if args.checkpoint:
        try:
            state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise CheckpointError(f"cannot load checkpoint {args.checkpoint!r}: {exc}") from exc
    gen = torch.Generator().manual_seed(args.seed)
    if args.input_dtype == "int64":
        inputs = [torch.randint(0, 100, s, generator=gen) for s in shapes]
    else:
        inputs = [torch.rand(s, generator=gen, dtype=getattr(torch, args.input_dtype)) for s in shapes]
    os.makedirs(args.out, exist_ok=True)
    graph = trace(model, *inputs)
    written = []
    for fmt in formats:
        if fmt == "html":
            path = os.path.join(args.out, "graph.html")
            graph.to_html(path, depth=args.depth)
        elif fmt == "svg":
            path = os.path.join(args.out, "graph.svg")
            graph.to_svg(path, depth=args.depth)
        elif fmt == "txt":
            path = os.path.join(args.out, "graph.txt")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(graph.summary(depth=args.depth))
        elif fmt == "dot":
            path = os.path.join(args.out, "graph.dot")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(graph.to_dot(depth=args.depth))
        elif fmt == "onnx":
            path = export_onnx(model, *inputs, path=os.path.join(args.out, "model.onnx"))
        else:
            from torch.utils.tensorboard import SummaryWriter

            from ..structure.tensorboard import add_graph

            path = os.path.join(args.out, "tensorboard")
            writer = SummaryWriter(path)
            try:
                add_graph(writer, model, *inputs)
            finally:
                writer.close()
        written.append(path)
    print(f"{graph.model_type}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
          f"{graph.total_params:,} parameters")
    for path in written:
        print(f"wrote {path}")
    sys.stdout.flush()
    return 0
