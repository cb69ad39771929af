"""``loupe graph``: trace a model and write its graph as HTML, SVG, text, ONNX or TensorBoard events."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from ...errors import MissingDependencyError, UnsupportedModelError, UsageError
from ._common import (nonnegative_int, add_device_arguments, add_image_arguments, add_model_arguments, add_progress_argument,
                      load_model_from, output_folder, place_model, precision_context, resolve_device)


FORMATS = ("html", "svg", "txt", "dot", "onnx", "tensorboard")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "graph",
        help="trace a model and draw how its layers connect",
        description="Trace one forward pass of a model and write its graph (no Graphviz needed).",
    )
    add_model_arguments(p)
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--input-shape", action="append",
                       help="comma-separated shape of one input, e.g. 1,3,224,224 (repeat for several inputs)")
    add_image_arguments(p, inputs=given)  # or real inputs: one --input per model argument
    p.add_argument("--input-dtype", default=None, choices=("float32", "float64", "int64"),
                   help="dtype of the generated inputs (int64: token ids in [0, 100)); default: int64 when the "
                        "model's first layer is an embedding, else float32")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--format", default="html,svg,txt", help=f"comma-separated, any of: {', '.join(FORMATS)}")
    p.add_argument("--depth", type=_depth, default=None, help="collapse containers below this depth (default: fit)")
    p.add_argument("--edges", default="orthogonal", choices=("orthogonal", "straight", "curved"),
                   help="how edges are drawn in html and svg (default: orthogonal)")
    p.add_argument("--expand", action="append", default=[], metavar="NAME",
                   help="show the internals of an opaque module (a name or a class such as MultiheadAttention)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated inputs (default: 0)")
    p.add_argument("--meta", action="store_true",
                   help="build the model on the meta device: shapes, parameter counts and the graph without "
                        "allocating weights (for models too large to load; hf-config:PATH always is)")
    add_progress_argument(p)
    add_device_arguments(p)
    p.set_defaults(func=run)


def _depth(text: str) -> int:
    """argparse type of --depth: an int of at least 0 (0: the top level)."""
    return nonnegative_int(text, "a depth (0: the top level)")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise UsageError(f"--input-shape {text!r} must be comma-separated integers like 1,3,224,224") from exc
    if not shape or any(s <= 0 for s in shape):
        raise UsageError(f"--input-shape {text!r} must be positive integers like 1,3,224,224")
    return shape


def run(args: argparse.Namespace) -> int:
    from ...structure import export_onnx, trace

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"--format {', '.join(bad)} is not one of {', '.join(FORMATS)}")
    from ..loading import check_forward
    from ...inputs import Inputs

    shapes = [_shape(s) for s in args.input_shape] if args.input_shape else []
    if shapes:  # generated inputs and one traced forward over them: refused in one line when they cannot fit
        from ..._limits import check_memory, tensor_bytes

        dtype = getattr(torch, args.input_dtype or "float32")
        check_memory(sum(tensor_bytes(s, dtype) for s in shapes) * 4,
                     f"--input-shape {' '.join(','.join(map(str, s)) for s in shapes)}", hint="use a smaller shape")
    output_folder(args.out, "--out", into="the graph")
    device = resolve_device(args)  # a device this machine lacks: one line, before loading the model
    model = place_model(args, load_model_from(args, meta_ok=True), device)  # a meta model stays on meta
    from ..models import is_meta

    if args.input_dtype is None:  # token ids for a model whose first layer is an embedding, else float32
        from ...inputs import first_layer

        found = first_layer(model)
        args.input_dtype = "int64" if found is not None and isinstance(found[1], torch.nn.Embedding) else "float32"

    meta = is_meta(model)
    if meta:
        unable = [f for f in formats if f in ("onnx", "tensorboard")]
        if unable:
            raise UsageError(f"--format {', '.join(unable)}: a model on the meta device has no weights to export; "
                             f"use html, svg, txt or dot")
    if args.input:
        from ._common import model_inputs

        if meta:  # the files give the shapes; the forward runs on meta copies
            given = model_inputs(args, model, check=False).inputs.map(lambda t: t.to("meta"))
            check_forward(model, given, spec=args.model, batched=False)
        else:
            given = model_inputs(args, model).inputs  # one trial forward: a model that cannot take them is one line
    else:
        gen = torch.Generator().manual_seed(args.seed)
        dtype = torch.int64 if args.input_dtype == "int64" else getattr(torch, args.input_dtype)
        if meta:  # shapes only: a meta model takes meta tensors
            made = [torch.empty(s, dtype=dtype, device="meta") for s in shapes]
        elif args.input_dtype == "int64":
            made = [torch.randint(0, 100, s, generator=gen) for s in shapes]
        else:
            made = [torch.rand(s, generator=gen, dtype=dtype) for s in shapes]
        given = Inputs(tuple(made), {})
        check_forward(model, given, spec=args.model, batched=False)
    if not meta:  # generated on the CPU with its generator: the same values on every device
        given = given.to(device)
    inputs, kwargs = list(given.args), dict(given.kwargs)
    from ..output import make_folder, output_set

    make_folder(args.out)
    with precision_context(args, device if not meta else "cpu"):
        graph = trace(model, *inputs, expand=args.expand, **kwargs)
    written, failed = [], []
    with output_set() as write:  # a failed or stopped run leaves none of its new files
        for fmt in formats:
            if fmt == "html":
                path = os.path.join(args.out, "graph.html")
                write(path, graph.to_html(None, depth=args.depth, edges=args.edges))
            elif fmt == "svg":
                path = os.path.join(args.out, "graph.svg")
                write(path, graph.to_svg(None, depth=args.depth, edges=args.edges))
            elif fmt == "txt":
                path = os.path.join(args.out, "graph.txt")
                write(path, graph.summary(depth=args.depth))
            elif fmt == "dot":
                path = os.path.join(args.out, "graph.dot")
                write(path, graph.to_dot(depth=args.depth))
            elif fmt == "onnx":
                try:
                    with write.writing(os.path.join(args.out, "model.onnx")) as onnx_path:
                        path = export_onnx(model, *inputs, path=onnx_path, **kwargs)
                except (UnsupportedModelError, MissingDependencyError) as exc:
                    if len(formats) == 1:
                        raise  # nothing else asked for: the one-line error, exit status 2
                    failed.append(f"onnx not written: {exc}")  # the other formats are still written
                    continue
            else:
                from torch.utils.tensorboard import SummaryWriter

                from ...integrations.tensorboard import add_graph

                path = os.path.join(args.out, "tensorboard")
                writer = SummaryWriter(path)
                try:
                    add_graph(writer, model, *inputs, **kwargs)
                finally:
                    writer.close()
            written.append(path)
    print(f"{graph.model_type}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
          f"{graph.total_params:,} parameters" + (" (meta device: no weights allocated)" if meta else ""))
    for path in written:
        print(f"wrote {path}")
    sys.stdout.flush()
    for line in failed:
        print(line, file=sys.stderr)
    return 0
