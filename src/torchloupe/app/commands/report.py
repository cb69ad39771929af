"""``loupe report``: one self-contained HTML report of a model on some images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import (add_device_arguments, add_explain_arguments, add_image_arguments, add_model_arguments,
                      labels_for, load_model_from, model_inputs, output_folder, output_key, place_model,
                      resolve_device, to_device)


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
    add_device_arguments(p)


def report_options(args: argparse.Namespace) -> dict:
    """The options every section gets from the command line: ``quick``, ``seed`` and ``precision``
    (autocast of the sections that only read the model, see :func:`torchloupe.reporting.build_report`)."""
    return {"quick": args.quick, "seed": args.seed, "precision": args.precision}


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
    given = p.add_mutually_exclusive_group()  # --input, --text, or --data alone (checked in run)
    add_image_arguments(p, inputs=given)
    given.add_argument("--text", nargs="+", metavar="TEXT",
                       help="sentences for a text model (minilm, hf:DIR), each one argument in quotes")
    p.add_argument("--data", metavar="DATA",
                   help="a dataset of images for the exemplars section: a folder (recursive; class sub-folders "
                        "give labels), a quoted glob or a .txt list of paths; without --input its first 8 "
                        "readable images are also the report's inputs")
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layers to show (names or globs)")
    p.add_argument("--title", help="report title")
    add_explain_arguments(p, wrt=False)
    p.add_argument("--branches", metavar="B[,B...]",
                   help="branches of a multi-branch model for the fusion section: module names (cnn1,cnn2), "
                        "named (a=cnn1,b=cnn2), or inputs (input:0,input:1)")
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
    if not (args.input or args.text or args.data):
        from ...errors import UsageError

        raise UsageError("give the report inputs: --input FILE..., --text SENTENCE... or --data DIR")
    if args.text and args.data:
        from ...errors import UsageError

        raise UsageError("--data holds images and --text sentences; give one of them")
    sections = select_sections(section_list(args.sections))  # unknown keys fail before any work
    device = resolve_device(args)  # a device this machine lacks: one line, before loading the model
    model = place_model(args, load_model_from(args), device)
    if args.layers:
        find_layers(model, list(args.layers))  # wrong names fail now, naming the closest real ones
    branches = parse_branches(args.branches, model)
    if args.text:
        subject = _text_subject(args, model)
        out = _check_runs(model, subject, args)  # a model that cannot take these inputs: one line, before the work
    else:
        data = _data_files(args)
        subject, out = _input_subject(args, model)  # loading ran the model once on the inputs
        if data is not None:
            _add_data(subject, data, args, out)
    subject.inputs = to_device(subject.inputs, device)  # the display images stay on the CPU
    _add_explain(subject, args, branches)
    _warn_label_count(subject.scores(out) if out is not None else None, subject.labels)
    import warnings

    from ...data import SkippedFilesWarning

    with warnings.catch_warnings():  # unreadable --data files: said once below, in one line
        warnings.simplefilter("ignore", SkippedFilesWarning)
        info = build_report(
            [subject], path, sections=sections, options=report_options(args),
            progress=not args.no_progress, title=args.title or f"torchloupe report: {args.model}",
            jobs=args.jobs if device.type == "cpu" else 1,  # no forking next to a GPU
        )
    print(info.summary())
    warn_failures(info)
    if subject.dataset is not None:
        from ...data import skipped_message

        skipped = skipped_message(subject.dataset)
        if skipped is not None:
            print(f"loupe: warning: {skipped}", file=sys.stderr)
    return 0


def _data_files(args: argparse.Namespace):
    """``--data``: ``(paths, labels, classes, root)`` of its image files (none opened, see
    :func:`torchloupe.data.find_images`); without ``--input`` its first 8 readable files become the
    inputs (``args.input``), loaded like ``--input`` files. ``None`` without ``--data``."""
    from ... import data
    from ...errors import InputFileError
    from ..images import read_image

    if args.data is None:
        return None
    found = data.find_images(args.data)
    if not args.input:
        first, i = [], 0
        while len(first) < 8 and i < len(found[0]):
            try:
                read_image(found[0][i], lambda im: im.load())
                first.append(str(found[0][i]))
            except InputFileError:
                pass
            i += 1
        if not first:
            raise InputFileError(f"--data '{args.data}': none of its first {i} image files can be read")
        args.input = [first]
    return found


def _add_data(subject, found, args: argparse.Namespace, out) -> None:
    """``subject.dataset``: the ``--data`` files at the inputs' size, colour mode and normalization.
    Class folders whose count is the model's output width also name the classes (unless
    ``--labels`` or the model's own do) and give the inputs' true classes when they came from ``--data``."""
    import torch

    from ... import data
    from ._common import normalization

    x = subject.inputs
    if not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] in (1, 3)):
        from ...errors import UsageError

        raise UsageError(f"--data '{args.data}' holds images, but the report's inputs are not an (N, 1 or 3, H, W) "
                         f"image batch; give --input images of the same kind")
    gray = x.shape[1] == 1
    normalize = None if gray else normalization(args.model, args.normalize)
    h, w = x.shape[-2:]
    paths, labels, classes, root = found
    subject.dataset = data.ImageFiles(paths, labels, classes, size=None if h != w else int(h),
                                      normalize=normalize, mode="L" if gray else "RGB", root=root)
    if subject.dataset.size != (w, h):  # not square: every file resized and cropped to the inputs' size
        subject.dataset.size = (int(w), int(h))
    files = subject.dataset
    scores = subject.scores(out) if out is not None else None
    if classes and isinstance(scores, torch.Tensor) and scores.dim() == 2 and scores.shape[-1] == len(classes):
        if subject.labels is None:
            subject.labels = list(classes)
        given = subject.files or []
        index = {p: i for i, p in enumerate(files.paths)}
        if given and all(f in index for f in given) and args.target is None:
            subject.targets = torch.tensor([files.labels[index[f]] for f in given], dtype=torch.long)


def _input_subject(args: argparse.Namespace, model):
    from ...reporting import Subject

    from ...errors import UsageError
    from ..output import display_name

    try:
        loaded = model_inputs(args, model)
    except UsageError as exc:
        if loading_takes_text(args.model):
            raise UsageError(f"{exc}; this model takes text: pass sentences with --text") from exc
        raise
    subject = Subject(
        name=args.model, model=model, inputs=loaded.plain(), labels=labels_for(args, model), images=loaded.image(0),
        layers=list(args.layers) if args.layers else None, output=output_key(args),
        files=[display_name(f) for files in loaded.files.values() for f in files],  # text, always
    )
    return subject, loaded.output


def parse_branches(text: str | None, model) -> dict[str, str] | None:
    """``--branches cnn1,cnn2`` -> ``{"cnn1": "cnn1", "cnn2": "cnn2"}``; ``a=cnn1,b=cnn2`` names them;
    ``input:0`` is the model's first input. Module names are checked now (closest names on a typo)."""
    if text is None:
        return None
    from ...errors import UsageError
    from ...layers import find_layer

    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, where = part.rpartition("=")
        name, where = (name or where).strip(), where.strip()
        if name in out:
            raise UsageError(f"--branches names {name!r} twice; expected each branch once")
        if not where.startswith("input:"):
            find_layer(model, where)
        elif not where[6:].isdigit():
            raise UsageError(f"--branches {part!r}: expected input:N with N the position of an input")
        out[name] = where
    if len(out) < 2:
        raise UsageError(f"--branches {text!r}: expected two or more branches, e.g. cnn1,cnn2 or a=cnn1,b=cnn2")
    return out


def _add_explain(subject, args: argparse.Namespace, branches: dict[str, str] | None) -> None:
    """``--target`` (the inputs' class: shown as the true class, explained by the fusion shares),
    ``--output`` and ``--branches`` into the subject."""
    import torch

    from ...inputs import Inputs

    if args.output is not None:
        subject.output = output_key(args)
    n = Inputs.of(subject.inputs).batch_size
    targets = None if args.target is None else torch.full((n,), int(args.target), dtype=torch.long)
    if targets is not None:
        subject.targets = targets
    if branches is not None:
        subject.options["fusion"] = {"branches": branches}


def _text_subject(args: argparse.Namespace, model):
    from .. import models
    from ..text import text_batch
    from ...errors import UsageError
    from ...reporting import Subject

    tokenizer = models.tokenizer_for(args.model, trust_remote_code=getattr(args, "trust_remote_code", False))
    if tokenizer is None:
        raise UsageError(f"--text needs a text model with a tokenizer (minilm, or hf:DIR for a Hugging Face "
                         f"model folder); {args.model!r} has none: give it images with --input")
    texts = [t for t in args.text if t.strip()]
    if not texts:
        raise UsageError("--text got only empty strings; expected one or more sentences")
    inputs, tokens = text_batch(tokenizer, texts)
    return Subject(
        name=args.model, model=model, inputs=inputs, layers=list(args.layers) if args.layers else None,
        labels=labels_for(args, model), tokens=tokens,
    )


def _check_runs(model, subject, args: argparse.Namespace):
    """One forward of the first two texts before any section: a model that cannot take them is a
    one-line error (exit 2) instead of a report whose every view failed."""
    from ...inputs import Inputs
    from ..loading import check_forward

    return check_forward(model, Inputs.of(subject.inputs), spec=args.model)


def loading_takes_text(spec: str) -> bool:
    from .. import models

    try:
        if spec.startswith("hf:"):
            return models.has_tokenizer_files(Path(spec.split(":", 1)[1]).expanduser())
        return models.tokenizer_for(spec) is not None
    except Exception:
        return False


def _warn_label_count(scores, labels) -> None:
    """Class names whose count is not the model's output width (from the pre-flight forward): say
    so on stderr (the report falls back to class numbers where names are missing)."""
    import torch

    n = int(scores.shape[-1]) if isinstance(scores, torch.Tensor) and scores.dim() == 2 else None
    if labels is not None and n is not None and len(labels) != n:
        print(f"loupe: warning: {len(labels)} class names for a model with {n} outputs; classes without a "
              f"name are shown by number", file=sys.stderr)


def warn_failures(info) -> None:
    if info.errors:
        n = len(info.errors)
        print(f"loupe: warning: {n} view{'s' if n != 1 else ''} failed; the report shows why", file=sys.stderr)
