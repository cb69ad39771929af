"""``loupe exemplars``: exact top-k dataset samples per channel; runs under ``torchrun`` too.

    torchrun --nproc_per_node 4 -m torchloupe exemplars --model M --data demo:shapes --layer features.relu4
    loupe exemplars --model M --data D --layer L --start 0 --stop 5000 --save part0.pt   # a shard, or a day
    loupe exemplars --merge part0.pt part1.pt --save all.pt --out all.png                # the whole run
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from ._common import add_image_arguments, add_model_arguments, positive_int

    p = subparsers.add_parser(
        "exemplars",
        help="find the dataset samples that drive each channel of a layer highest (torchrun-ready)",
        description="Exact streaming top-k per channel over a dataset. Under torchrun each rank takes every "
                    "world-th batch and all ranks get the single-process result.",
    )
    add_model_arguments(p)
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--data", metavar="DATA",
                       help="demo:shapes[:N], demo:digits, or a .pt file holding an (N, ...) input tensor")
    _add_resume_arguments(p, given)
    p.add_argument("--layer", help="layer name")
    p.add_argument("--k", type=positive_int, default=9)
    p.add_argument("--reduce", default="mean", choices=["mean", "max"])
    p.add_argument("--negative", action="store_true", help="samples that drive the channels lowest")
    p.add_argument("--channels", type=int, nargs="+", metavar="C", help="only these channels")
    p.add_argument("--batch-size", type=positive_int, default=64)
    add_image_arguments(p, inputs=given)  # --input: the dataset as files (one --input per model argument)
    p.set_defaults(normalize="none")
    p.add_argument("--save", metavar="PT", help="save the result (torch.save dict) for later merging")
    p.add_argument("--out", metavar="PNG", help="write exemplar crops to this PNG (rank 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def _add_resume_arguments(p, given) -> None:
    """``--merge`` (with ``--data`` / ``--input``: one of them), ``--start`` / ``--stop``; ``--model`` and
    ``--layer`` are required unless merging (checked in :func:`run`)."""

    def index(text: str) -> int:
        if not text.isdigit():
            raise argparse.ArgumentTypeError(f"expected a sample index (an integer >= 0), got {text!r}")
        return int(text)

    given.add_argument("--merge", nargs="+", metavar="PT",
                       help="combine results written by --save (shards, nodes, or runs over --start/--stop ranges) "
                            "into one, without running a model")
    p.add_argument("--start", type=index, default=0, metavar="I", help="first sample index (default 0)")
    p.add_argument("--stop", type=index, metavar="I", help="stop before this sample index (default: the end)")
    next(a for a in p._actions if a.dest == "model").required = False


def load_data(spec: str, normalize: str | None):
    import warnings

    import torch
    from torch.utils.data import TensorDataset

    from ...errors import InputFileError
    from ..checkpoints import weights_only_reason
    from ..images import normalize_images

    if spec.startswith("demo:shapes"):
        from ...demo import shapes_dataset

        parts = spec.split(":")
        if len(parts) > 3 or (len(parts) == 3 and not parts[2].isdigit()) or parts[1] != "shapes":
            raise InputFileError(f"data {spec!r}: expected demo:shapes or demo:shapes:N with N a count of images")
        n = int(parts[2]) if len(parts) == 3 else 512
        return shapes_dataset(n, size=64, seed=0)
    if spec == "demo:digits":
        from ...demo import digits_dataset

        return digits_dataset()
    path = Path(spec)
    if not path.is_file():
        raise InputFileError(f"data {spec!r} is not a file nor demo:shapes / demo:digits")
    try:
        with warnings.catch_warnings():  # torch notes pickle protocols it did not write; not the user's concern
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            x = torch.load(path, map_location="cpu", weights_only=True)  # never runs code a file holds
    except Exception as exc:
        text = str(exc)
        why = ("it holds Python objects other than tensors (not loaded: that could run code)" if "GLOBAL" in text
               else f"not a file torch.save wrote (a plain pickle, which could run code, or damaged data: "
                    f"{weights_only_reason(text)}); not loaded")
        raise InputFileError(f"cannot read data '{spec}': {why}") from exc
    if not isinstance(x, torch.Tensor):
        raise InputFileError(f"{spec!r} holds a {type(x).__name__}; expected one (N, ...) tensor")
    if normalize is not None and x.dim() == 4:
        x = normalize_images(x, normalize)
    return TensorDataset(x)


def run(args: argparse.Namespace) -> int:
    import torch

    from ... import distributed as D
    from ...errors import UsageError
    from ._common import load_model_from, model_inputs, normalization, output_file
    from ...synthesis import exemplars

    save, out = output_file(args.save, "--save"), output_file(args.out, "--out")  # before any of the work
    if args.merge:
        return _merge(args, save, out)
    missing = [flag for flag, value in (("--model", args.model), ("--layer", args.layer)) if value is None]
    if missing:
        raise UsageError(f"{' and '.join(missing)} required (only --merge runs without a model)")
    torch.manual_seed(0)
    model = load_model_from(args)
    here = next((p.device for p in model.parameters()), torch.device("cpu"))
    if D.local_device(here) != here:  # under torchrun a CUDA model runs on cuda:LOCAL_RANK, one GPU a rank
        model = model.to(D.local_device(here))
    target, shown = model, None
    if args.input:
        from ..bound import Indexed, index_dataset
        from torch.utils.data import TensorDataset

        loaded = model_inputs(args, model)  # one trial forward: a model that cannot take them is one line
        shown = loaded.image(0)
        if loaded.inputs.single:
            data = TensorDataset(loaded.inputs.args[0])
        else:  # several inputs: stream sample indices through a view of the model that gathers them
            target, data = Indexed(model, loaded.inputs), index_dataset(loaded.inputs.batch_size)
    else:
        data = load_data(args.data, normalization(args.model, args.normalize))
        _check_data(model, data, args.model)
    with D.session(device=next((p.device for p in model.parameters()), None)):
        ex = exemplars(target, data, args.layer, k=args.k, reduce=args.reduce, negative=args.negative,
                       channels=args.channels, batch_size=args.batch_size, start=args.start, stop=args.stop,
                       progress=not args.no_progress)
        if D.rank() == 0:
            _report(ex, args, save, out, shown, data, D.world_size())
    return 0


def _merge(args: argparse.Namespace, save, out) -> int:
    """``--merge A.pt B.pt ...``: one result from the files ``--save`` wrote."""
    from ...errors import InputFileError
    from ...synthesis import ExemplarResult, merge

    parts = [ExemplarResult.from_dict(_read_result(path)) for path in args.merge]
    if args.layer is not None and parts[0].layer != args.layer:
        raise InputFileError(f"{args.merge[0]} holds exemplars of layer {parts[0].layer!r}, not --layer {args.layer!r}")
    _report(merge(*parts), args, save, out, None, None, None)
    return 0


def _read_result(path: str) -> dict:
    import warnings

    import torch

    from ...errors import InputFileError
    from ..checkpoints import weights_only_reason

    if not Path(path).is_file():
        raise InputFileError(f"--merge {path!r} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            d = torch.load(path, map_location="cpu", weights_only=True)  # never runs code a file holds
    except Exception as exc:
        raise InputFileError(f"cannot read --merge {path!r}: not a result loupe exemplars --save wrote "
                             f"({weights_only_reason(str(exc))})") from exc
    if not isinstance(d, dict) or d.get("format") != "torchloupe.exemplars/1":
        raise InputFileError(f"--merge {path!r} is not a result loupe exemplars --save wrote")
    return d


def _report(ex, args, save, out, shown, data, world: int | None) -> None:
    """Print the top-k per channel; write ``--save`` (the result, mergeable) and ``--out`` (a PNG)."""
    import torch

    from ._common import made

    ranges = ", ".join(f"[{a}, {b})" for a, b in ex.spans)
    who = f", {world} process(es)" if world is not None else f", merged from {len(args.merge)} files: samples {ranges}"
    print(f"{ex.layer}: top-{min(ex.k, ex.seen)} of {ex.seen} samples, reduce={ex.reduce}"
          f"{', negative' if ex.negative else ''}{who}")
    for row, c in enumerate(ex.channels):
        items = ", ".join(f"#{int(i)} ({float(v):.4g})" for i, v in zip(ex.indices[row], ex.values[row]) if i >= 0)
        print(f"  channel {c}: {items}")
    if save is not None:
        torch.save(ex.to_dict(), made(save))
        print(f"wrote {args.save}")
    if out is not None:
        from ...render.png import figure_to_png
        from ...render.synthesis import exemplars_figure

        if shown is None and ex.samples is None and data is not None:
            shown = _drawable(data)
        made(out).write_bytes(figure_to_png(exemplars_figure(ex, rows=min(8, len(ex.channels)),
                                                             dataset_images=shown)))
        print(f"wrote {args.out}")


def _drawable(data):
    """The dataset's inputs when they are images (``(N, 1 or 3, H, W)``), else ``None``."""
    import torch

    tensors = getattr(data, "tensors", None)
    x = tensors[0] if tensors else None
    if isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] in (1, 3) and x.is_floating_point():
        lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
        return (x - lo) / (hi - lo).clamp_min(1e-12)
    return None


def _check_data(model, data, spec: str) -> None:
    """One trial forward on the first two samples of ``--data`` before the work (one line, exit 2)."""
    import torch

    from ...inputs import Inputs
    from ..loading import check_forward

    first = [data[i] for i in range(min(2, len(data)))] if hasattr(data, "__len__") and len(data) else []
    if not first:
        return
    xs = [item[0] if isinstance(item, (tuple, list)) else item for item in first]
    if all(isinstance(x, torch.Tensor) for x in xs):
        check_forward(model, Inputs.of(torch.stack(xs)), spec=spec)
