"""``loupe maximize``: synthesize inputs that maximize channels / neurons / logits of a model."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ._common import add_model_arguments, add_normalize_argument, positive_float, positive_int

    p = subparsers.add_parser(
        "maximize",
        help="synthesize inputs that maximize units of a model (feature visualization)",
        description="Gradient ascent from noise on each objective (one image each, in one batch); prints "
                    "the value each unit reached against the best of random inputs and writes a PNG.",
    )
    add_model_arguments(p)
    p.add_argument("objectives", nargs="+", metavar="OBJECTIVE",
                   help="'layer:channel', 'layer:channel@(i,j)' or 'fc:class'; 'layer:a-b' for a channel range")
    p.add_argument("--param", default="fft", choices=["fft", "pixel", "cppn"], help="parameterization (default fft)")
    p.add_argument("--steps", type=positive_int, default=256, help="optimization steps (default 256)")
    p.add_argument("--lr", type=positive_float, default=0.05, help="Adam learning rate (default 0.05)")
    p.add_argument("--shape", type=positive_int, nargs="+", metavar="N", help="input shape without batch, e.g. 3 64 64")
    add_normalize_argument(p)
    p.add_argument("--transforms", default="standard", choices=["standard", "lucid", "none"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="PNG", help="write the images (with values) to this PNG")
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


def domain_for(spec: str, normalize: str):
    from ..images import NORMALIZATIONS
    from ...synthesis import InputDomain
    from ._common import normalization

    name = normalization(spec, normalize)
    if name is None:
        return InputDomain()
    if name not in NORMALIZATIONS:
        from ...errors import InputError

        raise InputError(f"unknown normalization {name!r}; expected one of: auto, none, {', '.join(NORMALIZATIONS)}")
    mean, std = NORMALIZATIONS[name]
    return InputDomain(mean=tuple(mean), std=tuple(std))


def run(args: argparse.Namespace) -> int:
    import torch

    from ._common import load_model_from, made, output_file
    from ...synthesis import maximize

    out = output_file(args.out, "--out")  # before any of the work
    torch.manual_seed(args.seed)  # model construction (random init) is the only global draw
    model = load_model_from(args)
    transforms = None if args.transforms == "none" else args.transforms
    if transforms == "standard" and args.shape:  # a model of one input size (a ViT): transforms that keep it
        from ...synthesis.maximize import standard_transforms_for

        transforms = standard_transforms_for(model, args.shape)
    res = maximize(model, expand(args.objectives), param=args.param, steps=args.steps, lr=args.lr,
                   input_shape=tuple(args.shape) if args.shape else None,
                   transforms=transforms,
                   domain=domain_for(args.model, args.normalize), seed=args.seed)
    width = max(len(n) for n in res.names)
    print(f"{'objective':{width}s}  {'reached':>10s}  {'random best':>11s}  status")
    for name, f, b, _, status in res.rows():
        print(f"{name:{width}s}  {f:10.4g}  {b:11.4g}  {status}")
    if args.out:
        from ...render.png import figure_to_png
        from ...render.synthesis import units_figure

        made(out).write_bytes(figure_to_png(units_figure(res)))
        print(f"wrote {args.out}")
    return 0
