"""``loupe report``: one self-contained HTML report of a model on some images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run", "section_list"]

from ._model_args import add_model_arguments, load_model_from


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
        help="write an HTML report of a model on some images",
        description="Write DIR/report.html: every report section that applies to the model, on the given images.",
    )
    add_model_arguments(p)
    p.add_argument("--input", nargs="+", required=True, metavar="IMAGE", help="image files to explain")
    p.add_argument("--labels", metavar="FILE", help="class names: one per line, or a JSON list")
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layers to show (names or globs)")
    p.add_argument(
        "--size", type=int, metavar="N",
        help="resize and center-crop images to N x N (default: 224 for ImageNet models, else their own size)",
    )
    p.add_argument(
        "--normalize", default="auto", metavar="NAME",
        help="input normalization: auto (ImageNet statistics for torchvision models), none, imagenet",
    )
    p.add_argument("--title", help="report title")
    add_report_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (report.html is written there)")
    p.set_defaults(func=run)


def output_path(out: str) -> Path:
    from ..errors import UsageError

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out '{folder}' is a file; expected a folder to write report.html into")
    return folder / "report.html"


def run(args: argparse.Namespace) -> int:
    from .. import loading
    from ..inputs import first_layer
    from ..layers import find_layers
    from ..reporting import Subject, build_report, select_sections

    path = output_path(args.out)
    sections = select_sections(section_list(args.sections))  # unknown keys fail before any work
    model = load_model_from(args)
    if args.layers:
        find_layers(model, list(args.layers))  # wrong names fail now, naming the closest real ones
    normalize = loading.default_normalization(args.model) if args.normalize == "auto" else args.normalize
    size = args.size if args.size is not None else (224 if normalize == "imagenet" else None)
    found = first_layer(model)
    gray = found is not None and getattr(found[1], "in_channels", 3) == 1
    images = loading.load_images(args.input, size=size, mode="L" if gray else "RGB")
    inputs = loading.normalize_images(images, None if gray else normalize)
    labels = loading.load_labels(args.labels) if args.labels else loading.default_labels(args.model)
    subject = Subject(
        name=args.model, model=model, inputs=inputs, labels=labels, images=images,
        layers=list(args.layers) if args.layers else None,
        extras={"files": [str(p) for p in args.input]},
    )
    info = build_report(
        [subject], path, sections=sections, options={"quick": args.quick, "seed": args.seed},
        progress=not args.no_progress, title=args.title or f"torchloupe report: {args.model}", jobs=args.jobs,
    )
    print(info.summary())
    warn_failures(info)
    return 0


def warn_failures(info) -> None:
    if info.errors:
        n = len(info.errors)
        print(f"loupe: warning: {n} view{'s' if n != 1 else ''} failed; the report shows why", file=sys.stderr)
