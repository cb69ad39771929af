"""``loupe maximize``: synthesize inputs that maximize channels / neurons / logits of a model."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ._common import (add_device_arguments, add_image_arguments, add_model_arguments, add_progress_argument,
                          positive_float, positive_int)

    p = subparsers.add_parser(
        "maximize",
        help="synthesize inputs that maximize units of a model (feature visualization)",
        description="Gradient ascent from noise on each objective (one image each, in one batch); prints "
                    "the value each unit reached against the best of random inputs and writes a PNG. The input "
                    "shape comes from --shape, else from --input files, else from the first layer. A multi-input "
                    "model takes one --input per argument: input --wrt is synthesized, the others stay fixed "
                    "to their first sample.",
    )
    add_model_arguments(p)
    p.add_argument("objectives", nargs="+", metavar="OBJECTIVE",
                   help="'layer:channel', 'layer:channel@(i,j)' or 'fc:class'; 'layer:a-b' for a channel range")
    p.add_argument("--param", default="auto", choices=["auto", "fft", "pixel", "cppn"],
                   help="parameterization (default auto: fft for images (C, H, W), pixel for other shapes)")
    p.add_argument("--steps", type=positive_int, default=256, help="optimization steps (default 256)")
    p.add_argument("--lr", type=positive_float, default=0.05, help="Adam learning rate (default 0.05)")
    p.add_argument("--shape", type=positive_int, nargs="+", metavar="N", help="input shape without batch, e.g. 3 64 64")
    add_image_arguments(p, required=False)
    p.add_argument("--wrt", default="0", metavar="N",
                   help="with several --input: the input to synthesize (position or keyword name; default 0)")
    p.add_argument("--transforms", default="standard", choices=["standard", "lucid", "none"],
                   help="robustness transforms (default standard; none for inputs that are not images)")
    add_progress_argument(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="PNG", help="write the images (with values) to this PNG")
    add_device_arguments(p, precision=None)  # gradient ascent: in the model's own dtype
    p.set_defaults(func=run)


def expand(specs: list[str]) -> list[str]:
    """``layer:a-b`` -> ``layer:a`` ... ``layer:b``; other specs as they are."""
    out = []
    for spec in specs:
        layer, _, rest = spec.rpartition(":")
        if layer and "-" in rest and "@" not in rest and rest.replace("-", "").isdigit() and not rest.startswith("-"):
            a, b = (int(v) for v in rest.split("-", 1))
            if b < a:
                from ...errors import UsageError

                raise UsageError(f"objective {spec!r}: the channel range {a}-{b} is empty; expected first-last "
                                 f"with first <= last, e.g. {layer}:{b}-{a}")
            out += [f"{layer}:{c}" for c in range(a, b + 1)]
        else:
            out.append(spec)
    return out


def domain_for(spec: str, normalize: str, channels: int = 3):
    from ..images import NORMALIZATIONS
    from ...synthesis import InputDomain
    from ._common import normalization

    name = normalization(spec, normalize)
    if name is None or channels != 3:  # the named normalizations are RGB ones
        return InputDomain()
    if name not in NORMALIZATIONS:
        from ...errors import InputError

        raise InputError(f"unknown normalization {name!r}; expected one of: auto, none, {', '.join(NORMALIZATIONS)}")
    mean, std = NORMALIZATIONS[name]
    return InputDomain(mean=tuple(mean), std=tuple(std))


def run(args: argparse.Namespace) -> int:
    import torch

    from ._common import load_model_from, model_inputs, on_cpu, output_file, place_model, resolve_device, wrt_of
    from ..bound import Held
    from ..loading import required_arguments, square_side_for
    from ...errors import UsageError
    from ...inputs import first_layer, takes_shape
    from ...synthesis import maximize

    out = output_file(args.out, "--out")  # before any of the work
    if args.shape:  # a shape that cannot fit: one line before the model is even loaded
        from ...synthesis.maximize import check_synthesis_size

        check_synthesis_size(len(expand(args.objectives)), args.shape)
    if out is not None and out.suffix.lower() != ".png":
        raise UsageError(f"--out '{out}' does not end in .png; the images are written as one PNG (e.g. --out units.png)")
    device = resolve_device(args)  # a device this machine lacks: one line, before loading the model
    torch.manual_seed(args.seed)  # model construction (random init) is the only global draw
    model = place_model(args, load_model_from(args), device)
    shape = tuple(args.shape) if args.shape else None
    target, flat = model, None
    if args.input:
        loaded = model_inputs(args, model)  # one trial forward: a model that cannot take them is one line
        loaded.inputs = loaded.inputs.to(device)
        wrt = wrt_of(args)
        x = loaded.inputs.get(wrt)
        images = loaded.image(wrt)
        if shape is None:
            flattened = images is not None and x.dim() == 2
            shape = tuple(images.shape[1:]) if flattened else tuple(x.shape[1:])
            flat = tuple(x.shape[1:]) if flattened else None
        multi = len(loaded.inputs.tensors()) > 1
        if multi or flat:
            target = Held(model, loaded.inputs if multi else None, wrt, flat)
        if multi:
            print(f"synthesizing input {wrt}; the other inputs are held at their first sample")
    else:
        needed = required_arguments(model) or []
        if len(needed) > 1:
            raise UsageError(f"{type(model).__name__}.forward({', '.join(needed)}) takes {len(needed)} inputs: give "
                             f"them with --input (one per argument); input --wrt is synthesized, the others stay "
                             f"fixed to their first sample")
        found = first_layer(model)
        side = square_side_for(found[1]) if found is not None and shape is None else None
        if side is not None:  # a flat-vector model of square images (784 = 28 x 28): synthesize the image
            s, mode = side
            shape = (1 if mode == "L" else 3, s, s)
            if not takes_shape(model, shape):
                flat = (found[1].in_features,)
                target = Held(model, None, 0, flat)
    image_shape = shape is None or len(shape) == 3
    param = args.param if args.param != "auto" else ("fft" if image_shape else "pixel")
    transforms = None if args.transforms == "none" or not image_shape else args.transforms
    if transforms == "standard" and shape:  # a model of one input size (a ViT): transforms that keep it
        from ...synthesis.maximize import standard_transforms_for

        transforms = standard_transforms_for(target, shape)
    channels = shape[0] if shape and len(shape) == 3 else 3
    res = maximize(target, expand(args.objectives), param=param, steps=args.steps, lr=args.lr,
                   input_shape=shape, transforms=transforms,
                   domain=domain_for(args.model, args.normalize, channels), seed=args.seed,
                   progress=not args.no_progress)
    res = on_cpu(res)  # printed and drawn from the CPU
    width = max(len(n) for n in res.names)
    print(f"{'objective':{width}s}  {'reached':>10s}  {'random best':>11s}  status")
    for name, f, b, _, status in res.rows():
        print(f"{name:{width}s}  {f:10.4g}  {b:11.4g}  {status}")
    if args.out:
        from ...render.png import figure_to_png
        from ...render.synthesis import units_figure

        from ..output import atomic_write, make_folder

        atomic_write(make_folder(out.parent) / out.name, figure_to_png(units_figure(res)))
        print(f"wrote {args.out}")
    return 0
