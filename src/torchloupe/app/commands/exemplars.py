"""``loupe exemplars``: exact top-k dataset samples per channel; runs under ``torchrun`` too.

    torchrun --nproc_per_node 4 -m torchloupe exemplars --model M --data demo:shapes --layer features.relu4
    loupe exemplars --model M --data D --layer L --start 0 --stop 5000 --save part0.pt   # a shard, or a day
    loupe exemplars --merge part0.pt part1.pt --save all.pt --out all.png                # the whole run
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers) -> None:
    from ._common import add_device_arguments, add_image_arguments, add_model_arguments, positive_int

    p = subparsers.add_parser(
        "exemplars",
        help="find the dataset samples that drive each channel of a layer highest (torchrun-ready)",
        description="Exact streaming top-k per channel over a dataset. Under torchrun each rank takes every "
                    "world-th batch and all ranks get the single-process result.",
    )
    add_model_arguments(p)
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--data", metavar="DATA",
                       help="a folder of images (searched recursively; class sub-folders give labels), a quoted "
                            "glob ('photos/**/*.jpg'), a .txt list of image paths, a .pt / .npy file holding an "
                            "(N, ...) input tensor (memory-mapped), demo:shapes[:N] or demo:digits")
    _add_resume_arguments(p, given)
    p.add_argument("--layer", help="layer name (required unless --merge)")
    p.add_argument("--k", type=positive_int, default=9)
    p.add_argument("--reduce", default="mean", choices=["mean", "max"])
    p.add_argument("--negative", action="store_true", help="samples that drive the channels lowest")
    p.add_argument("--channels", type=int, nargs="+", metavar="C", help="only these channels")
    p.add_argument("--batch-size", type=positive_int, default=64)
    add_image_arguments(p, inputs=given)  # --input: the dataset as files (one --input per model argument)
    p.set_defaults(normalize=None)  # image files: auto (the model's own); tensors and --input: none
    p.add_argument("--workers", type=_workers, default=0, metavar="N",
                   help="processes reading and decoding --data files (default: 0, in this process)")
    p.add_argument("--save", metavar="PT", help="save the result (torch.save dict) for later merging")
    p.add_argument("--out", metavar="PNG", help="write exemplar crops to this PNG (rank 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_device_arguments(p)
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


def _workers(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes (0 or more), got {text!r}")
    most = MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
    if value > most:  # each worker is a process holding a copy of the dataset object: hundreds would swamp the machine
        raise argparse.ArgumentTypeError(f"{value} worker processes on {os.cpu_count() or 1} CPUs: at most {most} "
                                         f"({MAX_WORKERS_PER_CPU} per CPU); decoding rarely needs more than one per CPU")
    return value


#: ``--workers`` above this many per CPU is refused (a typo such as 100000 would fork that many processes).
MAX_WORKERS_PER_CPU = 4


def is_file_data(spec: str) -> bool:
    """``--data`` names image files (a folder, a glob, a .txt list), not tensors nor a demo set."""
    return not spec.startswith("demo:") and Path(spec).suffix.lower() not in (".pt", ".pth", ".npy")


def image_reading(model) -> tuple[str, int | None, bool]:
    """``(mode, side, flat)``: how the model's first layer reads images, by the rule of ``--input``
    (:mod:`torchloupe.app.loading`): gray for a 1-channel ``Conv2d``; for a model whose first layer is a
    ``Linear`` of side² (or 3·side²) features and that has no convolution, square images of that side
    read as flat vectors (the 784-input MLP of 28 x 28 digits); RGB otherwise."""
    from torch import nn

    from ..loading import reading_layers, square_side_for

    readers = reading_layers(model)
    layer = readers[0][1] if readers else None
    if isinstance(layer, nn.Conv2d):
        return ("L" if layer.in_channels == 1 else "RGB"), None, False
    square = square_side_for(layer)
    if square is not None and not any(isinstance(m, nn.Conv2d) for _, m in readers):
        return square[1], square[0], True
    return "RGB", None, False


def load_data(spec: str, normalize: str | None, size: int | None = None, mode: str = "RGB"):
    """The dataset ``--data`` names: image files (:func:`torchloupe.data.images`, resized to
    ``size``), a memory-mapped tensor file (:func:`torchloupe.data.tensors`) or a demo set."""
    from ... import data
    from ...errors import InputFileError
    from ..checkpoints import weights_only_reason

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
    if is_file_data(spec):
        return data.images(spec, size=size, normalize=normalize, mode=mode)
    try:
        return data.tensors(spec, normalize=normalize)
    except InputFileError as exc:
        cause = exc.__cause__
        if cause is None or spec.lower().endswith(".npy"):
            raise
        text = str(cause)
        why = ("it holds Python objects other than tensors (not loaded: that could run code)" if "GLOBAL" in text
               else f"not a file torch.save wrote (a plain pickle, which could run code, or damaged data: "
                    f"{weights_only_reason(text)}); not loaded")
        raise InputFileError(f"cannot read data '{spec}': {why}") from cause


def _loader(dataset, batch_size: int, workers: int, device):
    """``dataset`` streamed by ``workers`` processes, pinned for a CUDA model (what exemplars reads)."""
    from torch.utils.data import DataLoader

    from ..._limits import check_memory, tensor_bytes

    size = getattr(dataset, "size", None)
    if isinstance(size, tuple) and len(size) == 2:  # image files: one batch of decoded images must fit, twice
        check_memory(2 * batch_size * tensor_bytes((3, size[1], size[0])),
                     f"a batch of {batch_size} images at {size[0]}x{size[1]} pixels",
                     hint="pass a smaller --size or --batch-size")

    if workers == 0 and (device is None or device.type != "cuda"):
        return dataset
    kw = {"collate_fn": dataset.collate_fn} if callable(getattr(dataset, "collate_fn", None)) else {}
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                      pin_memory=device is not None and device.type == "cuda", **kw)


def run(args: argparse.Namespace) -> int:
    import torch

    from ... import distributed as D
    from ._common import (load_model_from, model_inputs, normalization, on_cpu, output_file, place_model,
                          precision_context, resolve_device)
    from ..output import atomic_write, make_folder
    from ...synthesis import exemplars

    save, out = output_file(args.save, "--save"), output_file(args.out, "--out")  # before any of the work
    if args.merge:
        return _merge(args, save, out)
    missing = [flag for flag, value in (("--model", args.model), ("--layer", args.layer)) if value is None]
    if missing:
        from ...errors import UsageError

        raise UsageError(f"{' and '.join(missing)} required (only --merge runs without a model)")
    device = _rank_device(resolve_device(args))  # a device this machine lacks: one line, before loading the model
    torch.manual_seed(0)
    model = place_model(args, load_model_from(args), device)
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
        files = is_file_data(args.data)
        normalize = normalization(args.model, args.normalize or ("auto" if files else "none"))
        size = args.size if args.size is not None else (224 if files and normalize == "imagenet" else None)
        mode, side, flat = image_reading(model) if files else ("RGB", None, False)
        if flat:  # images read as the flat vectors the model takes, reshaped by a view of the model
            from ..bound import Held

            size = size or side
            target = Held(model, None, 0, ((1 if mode == "L" else 3) * size * size,))
        data = load_data(args.data, normalize, size, mode)
        _check_data(model, data, args.model)
    device = next((p.device for p in model.parameters()), None)
    with D.session(device=device):
        import warnings

        from ...data import SkippedFilesWarning, skipped_message

        with warnings.catch_warnings():  # said below in one line
            warnings.simplefilter("ignore", SkippedFilesWarning)
            with precision_context(args, device):  # batches go to the model's device (exemplars moves them)
                ex = exemplars(target, _loader(data, args.batch_size, args.workers, device), args.layer, k=args.k,
                               reduce=args.reduce, negative=args.negative, channels=args.channels,
                               batch_size=args.batch_size, start=args.start, stop=args.stop,
                               progress=not args.no_progress)
        ex = on_cpu(ex)  # printed, saved and drawn from the CPU
        rank = D.rank()
        skipped = skipped_message(data) if rank == 0 else None  # every rank's skips (merged by exemplars)
        if skipped is not None:
            print(f"loupe: warning: {skipped}", file=sys.stderr)
        named = getattr(data, "name", None)
        if rank == 0:
            print(f"{ex.layer}: top-{min(ex.k, ex.seen)} of {ex.seen} samples, reduce={ex.reduce}"
                  f"{', negative' if ex.negative else ''}, {D.world_size()} process(es)")
            for row, c in enumerate(ex.channels):
                items = ", ".join(f"#{int(i)}{' ' + named(int(i)) if named else ''} ({float(v):.4g})"
                                  for i, v in zip(ex.indices[row], ex.values[row]) if i >= 0)
                print(f"  channel {c}: {items}")
            if args.save:
                saved = ex.to_dict()  # everything, the winners' inputs included: loupe exemplars --merge reads it
                atomic_write(make_folder(save.parent) / save.name, lambda f: torch.save(saved, f))
                print(f"wrote {args.save}")
            if args.out:
                from ...render.png import figure_to_png
                from ...render.synthesis import exemplars_figure

                if shown is None and ex.samples is None:
                    shown = _drawable(data, ex.indices)
                atomic_write(make_folder(out.parent) / out.name,
                             figure_to_png(exemplars_figure(ex, rows=min(8, len(ex.channels)), dataset_images=shown,
                                                            names=named)))
                print(f"wrote {args.out}")
    return 0


def _merge(args: argparse.Namespace, save, out) -> int:
    """``--merge A.pt B.pt ...``: one result from the files ``--save`` wrote."""
    from ...errors import InputFileError
    from ...synthesis import ExemplarResult, merge

    parts = [ExemplarResult.from_dict(_read_result(path)) for path in args.merge]
    if args.layer is not None and parts[0].layer != args.layer:
        raise InputFileError(f"{args.merge[0]} holds exemplars of layer {parts[0].layer!r}, not --layer {args.layer!r}")
    _report(merge(*parts), args, save, out)
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


def _report(ex, args, save, out) -> None:
    """The merged result: printed, written to ``--save`` (mergeable again) and drawn to ``--out``."""
    import torch

    from ..output import atomic_write, make_folder

    ranges = ", ".join(f"[{a}, {b})" for a, b in ex.spans)
    print(f"{ex.layer}: top-{min(ex.k, ex.seen)} of {ex.seen} samples, reduce={ex.reduce}"
          f"{', negative' if ex.negative else ''}, merged from {len(args.merge)} files: samples {ranges}")
    for row, c in enumerate(ex.channels):
        items = ", ".join(f"#{int(i)} ({float(v):.4g})" for i, v in zip(ex.indices[row], ex.values[row]) if i >= 0)
        print(f"  channel {c}: {items}")
    if save is not None:
        saved = ex.to_dict()
        atomic_write(make_folder(save.parent) / save.name, lambda f: torch.save(saved, f))
        print(f"wrote {args.save}")
    if out is not None:
        from ...render.png import figure_to_png
        from ...render.synthesis import exemplars_figure

        atomic_write(make_folder(out.parent) / out.name,
                     figure_to_png(exemplars_figure(ex, rows=min(8, len(ex.channels)))))
        print(f"wrote {args.out}")


def _rank_device(device):
    """Under torchrun each rank takes its own GPU: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
    import os

    import torch

    local = os.environ.get("LOCAL_RANK")
    if device.type == "cuda" and device.index is None and local is not None and local.isdigit():
        return torch.device("cuda", int(local) % max(1, torch.cuda.device_count()))
    return device


def _drawable(data, indices):
    """``{index: image in [0, 1]}`` of the exemplars (``indices``) when the dataset's inputs are
    images (``(1 or 3, H, W)``), else ``None``; read one by one, never the whole dataset."""
    import torch

    from ...data import ImageFiles

    shown = {}
    for i in sorted({int(i) for i in indices.flatten().tolist() if i >= 0}):
        if isinstance(data, ImageFiles):
            shown[i] = data.image(i)
            continue
        item = data[i]
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not (isinstance(x, torch.Tensor) and x.dim() == 3 and x.shape[0] in (1, 3) and x.is_floating_point()):
            return None
        lo, hi = x.min(), x.max()
        shown[i] = (x - lo) / (hi - lo).clamp_min(1e-12)
    return shown


def _check_data(model, data, spec: str) -> None:
    """One trial forward on the first two samples of ``--data`` before the work (one line, exit 2)."""
    import torch

    from ...inputs import Inputs
    from ..loading import check_forward

    from ...data import Skipped

    first = []
    for i in range(min(64, len(data)) if hasattr(data, "__len__") else 0):  # two readable samples
        item = data[i]
        if not isinstance(item, Skipped):
            first.append(item)
        if len(first) == 2:
            break
    if not first:
        return
    xs = [item[0] if isinstance(item, (tuple, list)) else item for item in first]
    if all(isinstance(x, torch.Tensor) for x in xs):
        check_forward(model, Inputs.of(torch.stack(xs)), spec=spec)
