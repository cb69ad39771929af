"""Grad-CAM / Grad-CAM++ / Score-CAM speed: torchloupe vs pytorch-grad-cam vs a bare forward + backward.

One process, 2 threads, repetitions interleaved (the machine is shared: only ratios inside this
run mean anything). ``bare``: the user's model as is (parameters requiring grad), one forward,
``torch.autograd.grad`` of the summed target logits w.r.t. the target layer's output.

    PYTHONPATH=src python bench/cam.py [--batch 16 32] [--reps 3] [--size 224]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time

import functools

import torch
import torchvision

import torchloupe as tl


def bare(model, layer, x, targets):
    kept = {}
    h = layer.register_forward_hook(lambda m, a, o: kept.__setitem__("a", o))
    try:
        out = model(x)
        score = out.gather(1, targets[:, None]).sum()
        torch.autograd.grad(score, [kept["a"]])
    finally:
        h.remove()


def peer_cam(cls, model, layer, x, targets):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with cls(model=model, target_layers=[layer]) as cam:
        cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    for p in model.parameters():
        p.grad = None
    return grads


def timeit(fn):
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def gradient_cams(batch: int, size: int, reps: int) -> None:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.rand(batch, 3, size, size)
    targets = torch.arange(batch) % 1000
    runs = {
        "bare fwd+bwd": lambda: bare(model, model.layer4, x, targets),
        "torchloupe GradCAM": lambda: tl.cam.GradCAM(model, "layer4")(x, targets),
        "pytorch-grad-cam GradCAM": lambda: peer_cam(GradCAM, model, model.layer4, x, targets),
        "torchloupe GradCAM++": lambda: tl.cam.GradCAMPlusPlus(model, "layer4")(x, targets),
        "pytorch-grad-cam GradCAM++": lambda: peer_cam(GradCAMPlusPlus, model, model.layer4, x, targets),
    }
    xs, ts = x[:2], targets[:2]
    warm = [lambda: bare(model, model.layer4, xs, ts), lambda: tl.cam.GradCAM(model, "layer4")(xs, ts),
            lambda: peer_cam(GradCAM, model, model.layer4, xs, ts)]
    for fn in warm:  # warm-up on a small batch (allocator, kernels)
        fn()
    times = {k: [] for k in runs}
    for _ in range(reps):
        for k, fn in runs.items():
            times[k].append(timeit(fn))
    left = peer_cam(GradCAM, model, model.layer4, x, targets)
    base = statistics.median(times["bare fwd+bwd"])
    print(f"\nresnet50 {size} px, batch {batch}, {torch.get_num_threads()} threads, median of {reps} interleaved reps")
    for k, v in times.items():
        print(f"  {k:28s} {statistics.median(v):7.2f} s   {statistics.median(v) / base:5.2f}x bare")
    print(f"  pytorch-grad-cam leaves .grad on the parameters: {left / 2**20:.1f} MiB; torchloupe: "
          f"{sum(p.grad is not None for p in model.parameters())} parameters with .grad")


def score_cams(reps: int) -> None:
    """Equal work: resnet18 at 64 px, layer4 (512 channels of 2 x 2), batch 2."""
    from pytorch_grad_cam import ScoreCAM

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([1, 2])
    ours = tl.cam.ScoreCAM(model, "layer4")
    runs = {
        "torchloupe ScoreCAM": lambda: ours(x, targets),
        "pytorch-grad-cam ScoreCAM": lambda: peer_cam(ScoreCAM, model, model.layer4, x, targets),
    }
    times = {k: [] for k in runs}
    for _ in range(reps):
        for k, fn in runs.items():
            times[k].append(timeit(fn))
    ref = statistics.median(times["pytorch-grad-cam ScoreCAM"])
    print(f"\nScore-CAM, resnet18 64 px, layer4 (512 ch), batch 2: 1,024 masked inputs; torchloupe ran "
          f"{ours.forwards} distinct ones")
    for k, v in times.items():
        print(f"  {k:30s} {statistics.median(v):7.2f} s   {statistics.median(v) / ref:5.2f}x pytorch-grad-cam")


print = functools.partial(print, flush=True)  # noqa: A001  (progress shows while it runs)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[16])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-score", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for b in args.batch:
        gradient_cams(b, args.size, args.reps)
    if not args.skip_score:
        score_cams(args.reps)
    print(f"\nmax RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
