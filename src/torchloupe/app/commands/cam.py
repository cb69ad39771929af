"""``loupe cam``: class activation maps of a model on some images, as overlays and a small HTML page."""

from __future__ import annotations

import sys

import argparse
import html

from ...cam import METHODS
from ._common import (add_device_arguments, add_explain_arguments, add_image_arguments, add_model_arguments,
                      add_progress_argument, labels_for, load_model_from, model_inputs, on_cpu, output_folder, output_key,
                      place_model, resolve_device, wrt_of)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cam",
        help="write CAM overlays (Grad-CAM, Score-CAM, ...) of a model on some images",
        description="Write DIR/<image>_<method>.png overlays, DIR/grid.png and DIR/index.html. A multi-input "
                    "model takes one --input per argument; --wrt picks the input the maps are laid on.",
    )
    add_model_arguments(p)
    add_image_arguments(p)
    p.add_argument("--method", default="gradcam", metavar="M[,M...]",
                   help=f"comma-separated: all, {', '.join(METHODS)} (default: gradcam)")
    p.add_argument("--layer", nargs="+", metavar="LAYER", help="layer name(s) or glob (default: the last spatial map)")
    add_explain_arguments(p)
    add_progress_argument(p)
    p.add_argument("--save", metavar="PT", help="also save the maps (torch.save dict: method -> maps, raw, targets)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_device_arguments(p, precision="model")
    p.set_defaults(func=run)


def _methods(spec: str) -> list[str]:
    from ...errors import UsageError

    names = [m.strip().lower() for m in spec.split(",") if m.strip()]
    if names == ["all"]:
        return list(METHODS)
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise UsageError(f"unknown --method {', '.join(repr(b) for b in bad) or repr(spec)}; expected all or any of: {', '.join(METHODS)}")
    return names


def _unique_stems(paths) -> list[str]:
    """File stems for the overlay names, made unique (``img``, ``img-2``...) so that images of the
    same name in different folders do not overwrite each other's overlays; valid UTF-8 always."""
    from ..output import unique_stems

    return unique_stems(paths)


def run(args: argparse.Namespace) -> int:
    import torch

    from ...cam import title_of
    from ...errors import UsageError
    from ...render.cam import method_grid
    from ...render.image import overlay
    from ...render.png import figure_to_png, to_png
    from ...targets import Target

    from urllib.parse import quote

    from ._common import output_file
    from ..output import display_name, make_folder, output_set

    methods = _methods(args.method)
    out = output_folder(args.out)
    save = output_file(args.save, "--save")
    device = resolve_device(args)  # a device this machine lacks: one line, before loading the model
    model = place_model(args, load_model_from(args), device)
    layer = args.layer if args.layer is None or len(args.layer) > 1 else args.layer[0]
    cams = {m: METHODS[m](model, layer) for m in methods}  # bad layer names fail here, before any forward
    loaded = model_inputs(args, model)  # one trial forward: a model that cannot take them is one line
    wrt = wrt_of(args)
    inputs = loaded.inputs.to(device)
    explained = inputs.get(wrt)  # a bad --wrt is one line naming the inputs
    images = loaded.image(wrt)
    if images is None:  # tensor files: draw on the input itself when it is (N, C, H, W) with 1 or 3 channels
        if not (isinstance(explained, torch.Tensor) and explained.dim() == 4 and explained.shape[1] in (1, 3)):
            raise UsageError(f"--wrt {wrt}: input of shape {tuple(explained.shape)} is not a batch of images "
                             f"(N, 1 or 3, H, W) to draw the maps on; loupe cam draws on images (loupe report "
                             f"shows saliency over other inputs)")
        lo = explained.amin((1, 2, 3), keepdim=True)
        hi = explained.amax((1, 2, 3), keepdim=True)
        images = ((explained - lo) / (hi - lo).clamp_min(1e-12)).float().cpu()
    if args.layer is None:  # the default layer, found now: a model without a spatial map is one line
        from ...errors import TorchLoupeError

        try:
            next(iter(cams.values())).layers(inputs, wrt=wrt)
        except TorchLoupeError as exc:
            raise UsageError(f"{str(exc).replace('; pass layer= explicitly', '')}: CAMs need a layer whose output "
                             f"is a spatial map (a convolution); name one with --layer") from exc
    labels = labels_for(args, model)
    output = output_key(args)
    with torch.no_grad():
        from ...probe import eval_forward

        scores = Target(None, output).scores_of(eval_forward(model, inputs))
    probs = scores.float().softmax(dim=1).cpu()
    target = args.target if args.target is not None else probs.argmax(dim=1)
    # one forward and backward for all; a method that cannot apply (CAM without GAP + Linear) is left out
    from ...cam import compare

    results = compare(model, inputs, methods, layer, target, wrt=wrt, output=output)
    for method, why in getattr(results, "skipped", {}).items():
        print(f"loupe cam: {method} skipped: {why}", file=sys.stderr)
    results = {m: on_cpu(r) for m, r in dict(results).items()}  # drawn and saved from the CPU, in float32
    make_folder(out)
    with output_set() as write:  # a failed or stopped run leaves none of its new files
        if save is not None:
            saved = {m: {"maps": r.maps, "raw": r.raw, "targets": r.targets, "layer": r.layer} for m, r in results.items()}
            write(make_folder(save.parent) / save.name, lambda f: torch.save(saved, f))
        stems = _unique_stems(loaded.files[wrt if not isinstance(wrt, int) else wrt % max(1, len(inputs.args))]
                              if loaded.files else [])
        if len(stems) != len(images):  # one tensor file of N samples: one overlay per sample
            stems = [f"{_unique_stems(next(iter(loaded.files.values())))[0]}-{i}" for i in range(len(images))]
        rows = []
        for i, stem in enumerate(stems):
            t = int(next(iter(results.values())).targets[i])
            name = labels[t] if labels is not None and 0 <= t < len(labels) else f"class {t}"
            cells = []
            for m, res in results.items():
                fname = f"{stem}_{m.replace('+', 'p')}.png"
                write(out / fname, to_png(overlay(images[i : i + 1], res.maps[i : i + 1])[0]))
                cells.append(f'<td><img src="{html.escape(quote(fname))}" width="224" alt="{html.escape(title_of(m))}"></td>')
            rows.append(
                f"<tr><th>{html.escape(stem)}<br>{html.escape(str(name))}<br>p = {float(probs[i, t]):.3f}</th>"
                + "".join(cells) + "</tr>"
            )
        fig = method_grid({title_of(m): r for m, r in results.items()}, images)
        write(out / "grid.png", figure_to_png(fig))
        layer_name = next(iter(results.values())).layer
        head = "".join(f"<th>{html.escape(title_of(m))}</th>" for m in results)
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>torchloupe CAMs</title>"
            "<style>body{font-family:sans-serif}td,th{padding:4px;text-align:center}</style></head><body>"
            f"<h1>Class activation maps: {html.escape(display_name(args.model))}</h1><p>layer {html.escape(layer_name)}</p>"
            f"<table><tr><th>image</th>{head}</tr>{''.join(rows)}</table></body></html>"
        )
        write(out / "index.html", page)  # a symbolic link planted there is replaced, not followed
    print(f"wrote {len(stems) * len(results)} overlays, grid.png and index.html to {out} (layer {layer_name})")
    return 0
