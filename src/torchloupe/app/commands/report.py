"""``loupe report``: one self-contained HTML report of a model on some images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import add_image_arguments, add_model_arguments, image_inputs, labels_for, load_model_from, output_folder


def section_list(values: list[str] | None) -> list[str] | str:
    """``--sections a b,c`` -> ["a", "b", "c"]; nothing or ``all`` -> "all"."""
    keys = [k.strip() for v in (values or []) for k in v.split(",") if k.strip()]
    return "all" if not keys or keys == ["all"] else keys


def add_report_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``loupe report`` and ``loupe demo``."""
    p.add_argument("--sections", nargs="+", metavar="KEY", help="section keys to include (default: all)")
    p.add_argument("--quick", action="store_true", help="cheaper settings for every section")
    p.add_argument("--seed", type=int, default=0, help="seed for every section (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--jobs", type=_jobs, default="auto", metavar="N",
        help="worker processes for the sections (default: auto, one per CPU up to 4; 1 runs them in order)",
    )


def _jobs(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of processes or 'auto', got {text!r}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write an HTML report of a model on some images (or sentences, for a text model)",
        description="Write DIR/report.html: every report section that applies to the model, on the given images "
                    "(or, with --text, sentences for a text model).",
    )
    add_model_arguments(p)
    given = p.add_mutually_exclusive_group(required=True)
    add_image_arguments(p, inputs=given)
    given.add_argument("--text", nargs="+", metavar="TEXT",
                       help="sentences for a text model (minilm, hf:DIR), each one argument in quotes")
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layers to show (names or globs)")
    p.add_argument("--title", help="report title")
    add_report_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (report.html is written there)")
    p.set_defaults(func=run)


def output_path(out: str) -> Path:
    """``DIR/report.html`` of ``--out DIR``, the folder checked before any of the work."""
    return output_folder(out, "--out", into="report.html") / "report.html"


def run(args: argparse.Namespace) -> int:
    from ...layers import find_layers
    from ...reporting import build_report, select_sections

    path = output_path(args.out)
    sections = select_sections(section_list(args.sections))  # unknown keys fail before any work
    model = load_model_from(args)
    if args.layers:
        find_layers(model, list(args.layers))  # wrong names fail now, naming the closest real ones
    subject = _text_subject(args, model) if args.text else _image_subject(args, model)
    out = _check_runs(model, subject, args)  # a model that cannot take these inputs: one line, before the work
    _warn_label_count(subject.labels, out)
    info = build_report(
        [subject], path, sections=sections, options={"quick": args.quick, "seed": args.seed},
        progress=not args.no_progress, title=args.title or f"torchloupe report: {args.model}", jobs=args.jobs,
    )
    print(info.summary())
    warn_failures(info)
    return 0


def _image_subject(args: argparse.Namespace, model):
    from ...reporting import Subject

    images, inputs = image_inputs(args, model)
    return Subject(
        name=args.model, model=model, inputs=inputs, labels=labels_for(args, model), images=images,
        layers=list(args.layers) if args.layers else None,
        extras={"files": [str(p) for p in args.input]},
    )


def _text_subject(args: argparse.Namespace, model):
    from .. import models
    from ..text import text_batch
    from ...errors import UsageError
    from ...reporting import Subject

    tokenizer = models.tokenizer_for(args.model)
    if tokenizer is None:
        raise UsageError(f"--text needs a text model with a tokenizer (minilm, or hf:DIR for a Hugging Face "
                         f"model folder); {args.model!r} has none: give it images with --input")
    texts = [t for t in args.text if t.strip()]
    if not texts:
        raise UsageError("--text got only empty strings; expected one or more sentences")
    inputs, tokens = text_batch(tokenizer, texts)
    return Subject(
        name=args.model, model=model, inputs=inputs, layers=list(args.layers) if args.layers else None,
        labels=labels_for(args, model), extras={"tokens": tokens},
    )


def _check_runs(model, subject, args: argparse.Namespace) -> None:
    """One forward of the first input before any section: a model that cannot take these inputs is
    a one-line error (exit 2) instead of a report whose every view failed."""
    import torch

    from ...errors import UsageError
    from ...inputs import expected_input, flattens_first
    from ...probe import eval_forward

    x = subject.inputs
    # A copy: a model that edits its input in place must not change what the sections see.
    first = {k: v[:1].clone() for k, v in x.items()} if isinstance(x, dict) else x[:1].clone()
    try:
        return eval_forward(model, first)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shape = ({k: tuple(v.shape) for k, v in x.items()} if isinstance(x, dict) else tuple(x.shape))
        want = expected_input(model)
        hint = f"; its first layer wants {want}" if want else ""
        if args.input and getattr(args, "text", None) is None and loading_takes_text(args.model):
            hint += "; this model takes text: pass sentences with --text"
        elif isinstance(x, torch.Tensor) and x.dim() == 4 and want and want.count(",") == 1:
            hint += (" (flat vectors: --size N makes each image N x N, C*N*N features)" if flattens_first(model)
                     else " (flat vectors, while loupe report gives images: start the model with nn.Flatten())")
        raise UsageError(f"{args.model} cannot take the given inputs {shape}: {type(exc).__name__}: {text}{hint}") from exc


def loading_takes_text(spec: str) -> bool:
    from .. import models

    try:
        if spec.startswith("hf:"):
            return models.has_tokenizer_files(Path(spec.split(":", 1)[1]).expanduser())
        return models.tokenizer_for(spec) is not None
    except Exception:
        return False


def _warn_label_count(labels, out) -> None:
    """Class names whose count is not the model's output width (from the pre-flight forward): say
    so on stderr (the report falls back to class numbers where names are missing)."""
    import torch

    n = int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None
    if labels is not None and n is not None and len(labels) != n:
        print(f"loupe: warning: {len(labels)} class names for a model with {n} outputs; classes without a "
              f"name are shown by number", file=sys.stderr)


def warn_failures(info) -> None:
    if info.errors:
        n = len(info.errors)
        print(f"loupe: warning: {n} view{'s' if n != 1 else ''} failed; the report shows why", file=sys.stderr)
