"""Activation maximization and exemplars: torchloupe vs Lucent (torch-lucent 0.1.8) in one process run.

    PYTHONPATH=src python bench/synthesis.py [--steps 3] [--reps 2] [--sizes 64 128]

Same model (random-init resnet18, eval), same objective (channel mean of ``layer3``), same
optimizer (Adam, lr 0.05), same transforms (Lucid's standard list: pad 12, jitter 8, scale,
rotate, jitter 4; ours: ``transforms="lucid"``), fft parameterization, decorrelated colour.
Lucent gets ``fixed_image_size=size + 12`` so both models see the same (size + 12) px input and
Lucent does not upsample to 224. Timed in the same process, repetitions interleaved; numbers are
image-steps per second (16 channels = 16 images per step). Lucent renders channels
one by one (as its examples do) and, second, as one batch with the summed objective
``channel(layer, c, batch=i)``. Exemplars: throughput of ``tl.synthesis.exemplars`` over a
dataset vs a bare ``model(x)`` loop over the same batches.

kornia 0.4.1 (Lucent's rotate) predates torch 2.x; if its ``warp_affine`` fails here, a shim
below replaces ``lucent.optvis.transform.random_rotate`` with an equivalent torch
``affine_grid``/``grid_sample`` rotation (bench only; torchloupe does not use kornia).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import torch
import torchvision

import torchloupe as tl


def _lucent():
    warnings.filterwarnings("ignore")
    from lucent.optvis import objectives, param, render, transform

    shimmed = False
    try:
        transform.random_rotate([5])(torch.rand(1, 3, 16, 16))
    except Exception:  # kornia 0.4.1 vs torch 2.x
        shimmed = True
        import math

        import numpy as np
        import torch.nn.functional as F

        def random_rotate(angles, units="degrees"):
            def inner(image_t):
                a = math.radians(float(np.random.choice(angles)))
                theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
                theta = theta.expand(image_t.shape[0], 2, 3).to(image_t)
                grid = F.affine_grid(theta, list(image_t.shape), align_corners=False)
                return F.grid_sample(image_t, grid, align_corners=False)

            return inner

        transform.random_rotate = random_rotate
        transform.standard_transforms[3] = random_rotate(list(range(-10, 11)) + 5 * [0])
    return objectives, param, render, transform, shimmed


def lucent_run(model, chans, size, steps, batched, L):
    objectives, param, render, transform, _ = L
    kw = dict(thresholds=(steps,), show_image=False, progress=False, fixed_image_size=size + 12,
              transforms=list(transform.standard_transforms))
    with contextlib.redirect_stdout(io.StringIO()):
        if batched:
            obj = sum(objectives.channel("layer3", c, batch=i) for i, c in enumerate(chans))
            render.render_vis(model, obj, lambda: param.image(size, batch=len(chans)), **kw)
        else:
            for c in chans:
                render.render_vis(model, f"layer3:{c}", lambda: param.image(size), **kw)


def ours_run(model, chans, size, steps):
    tl.synthesis.maximize(model, [f"layer3:{c}" for c in chans], param="fft", steps=steps, lr=0.05,
                          transforms="lucid", input_shape=(3, size, size), baseline_samples=4,
                          redirect_steps=0)


def bench_maximize(model, sizes, steps, reps, L, counts=(1, 16)):
    rows = []
    for size in sizes:
        for n in counts:
            chans = list(range(n))
            runs = {
                "torchloupe (batched)": lambda: ours_run(model, chans, size, steps),
                "lucent one by one": lambda: lucent_run(model, chans, size, steps, False, L),
            }
            if n > 1:
                runs["lucent batched objective"] = lambda: lucent_run(model, chans, size, steps, True, L)
            times = {k: [] for k in runs}
            for _ in range(reps):  # interleaved
                for k, f in runs.items():
                    t = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t)
            for k, ts in times.items():
                rate = n * steps / min(ts)
                rows.append((size, n, k, rate))
                print(f"{size:4d}px {n:3d} ch  {k:26s} {rate:8.2f} image-steps/s", flush=True)
            ours = n * steps / min(times["torchloupe (batched)"])
            for k in runs:
                if k != "torchloupe (batched)":
                    print(f"          ratio torchloupe / {k}: {ours / (n * steps / min(times[k])):.2f}x", flush=True)
    return rows


def bench_exemplars(model, reps, n=256, size=64, batch=32, layer="layer4"):
    data = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    ds = torch.utils.data.TensorDataset(data)
    batches = data.split(batch)

    def bare():
        with torch.no_grad():
            for x in batches:
                model(x)

    def ours():
        tl.synthesis.exemplars(model, ds, layer, k=9, batch_size=batch)

    def ours_nocrop():
        tl.synthesis.exemplars(model, ds, layer, k=9, batch_size=batch, crops=False)

    runs = {"bare forward loop": bare, "exemplars (crops)": ours, "exemplars (no crops)": ours_nocrop}
    times = {k: [] for k in runs}
    for _ in range(reps):
        for k, f in runs.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    base = n / min(times["bare forward loop"])
    for k, ts in times.items():
        print(f"exemplars {layer} {size}px: {k:22s} {n / min(ts):8.1f} samples/s  ({n / min(ts) / base:.2f}x bare)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 16], help="channels per run")
    ap.add_argument("--skip-maximize", action="store_true")
    ap.add_argument("--skip-exemplars", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    L = _lucent()
    print(f"torch {torch.__version__}; kornia rotate shim used: {L[4]}; threads {args.threads}; "
          f"steps {args.steps}, best of {args.reps} interleaved reps")
    if not args.skip_maximize:
        bench_maximize(model, args.sizes, args.steps, args.reps, L, args.counts)
    if not args.skip_exemplars:
        bench_exemplars(model, args.reps)
        bench_exemplars(model, args.reps, layer="layer2")


if __name__ == "__main__":
    main()
