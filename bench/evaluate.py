"""Deletion/insertion speed: torchloupe vs Quantus pixel flipping, same model, images, maps and steps;
ROAD: torchloupe vs pytorch-grad-cam, same model, images, maps and percentages.

Both run the same number of perturbed images through the model (steps + 1 per image for us,
steps for Quantus): Quantus one step of the batch a forward, perturbing in numpy; torchloupe
all steps of all images in forwards of about CPU_CHUNK_ELEMENTS input values. The ratio shows
the per-step overhead, which is largest with few images per call.
Run: .venv/bin/python bench/evaluate.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

import torchloupe as tl
import torchloupe.evaluate as ev

warnings.filterwarnings("ignore")
torch.set_num_threads(2)


def timed(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def compare(name, model, x, maps, steps, reps):
    import quantus

    model.eval()
    targets = model(x).argmax(1).detach()
    c, h, w = x.shape[1:]
    fis = c * h * w // steps
    metric = quantus.PixelFlipping(features_in_step=fis, perturb_baseline="black", normalise=False,
                                   disable_warnings=True, display_progressbar=False)
    xn, an, yn = x.numpy(), maps[:, None].numpy(), targets.numpy()
    ours = lambda: ev.deletion(model, x, maps, target=targets, steps=steps, substrate="zero")  # noqa: E731
    theirs = lambda: metric(model=model, x_batch=xn, y_batch=yn, a_batch=an, softmax=True, device="cpu",  # noqa: E731
                            channel_first=True, batch_size=x.shape[0])

    def bare():
        with torch.no_grad():
            for _ in range(steps + 1):
                model(x)

    ours(); theirs(); bare()  # warm up
    t_ours, t_theirs, t_bare = [], [], []
    for _ in range(reps):  # interleave so load from other processes hits all three alike
        t_ours.append(timed(ours, 1)); t_theirs.append(timed(theirs, 1)); t_bare.append(timed(bare, 1))
    o, q, b = min(t_ours), min(t_theirs), min(t_bare)
    print(f"{name}: batch {x.shape[0]}, {h}x{w}, {steps} steps | torchloupe {o:.3f}s  quantus {q:.3f}s  "
          f"bare forwards {b:.3f}s | quantus/torchloupe = {q / o:.2f}x, torchloupe/bare = {o / b:.2f}x")
    return q / o


def compare_road(name, model, x, maps, reps):
    """ROAD MoRF at the 9 default percentages (noisy linear imputation, noise 0.01) against
    pytorch-grad-cam's ROADMostRelevantFirstAverage: same model, images, maps, percentages."""
    from pytorch_grad_cam.metrics.road import ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model.eval()
    targets = model(x).argmax(1).detach()
    pcts = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    metric = ROADMostRelevantFirstAverage(percentiles=[100 - p for p in pcts])
    cam_targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in targets]
    ours = lambda: ev.road(model, x, maps, target=targets, percentages=pcts, order="morf")  # noqa: E731
    theirs = lambda: metric(x, maps.numpy(), cam_targets, model)  # noqa: E731
    ours(); theirs()  # warm up
    t_ours, t_theirs = [], []
    for _ in range(reps):
        t_ours.append(timed(ours, 1)); t_theirs.append(timed(theirs, 1))
    o, q = min(t_ours), min(t_theirs)
    print(f"{name} ROAD MoRF: batch {x.shape[0]}, {x.shape[-2]}x{x.shape[-1]}, 9 percentages | torchloupe {o:.3f}s  "
          f"pytorch-grad-cam {q:.3f}s | pytorch-grad-cam/torchloupe = {q / o:.2f}x")
    return q / o


def main():
    model = tl.demo.train_shapes_model(seed=0)
    ds = tl.demo.shapes_dataset(16, size=64, seed=123)
    x = torch.stack([ds[i][0] for i in range(16)])
    maps = torch.rand(16, 64, 64, generator=torch.Generator().manual_seed(0))
    # One image per call is how an explanation is usually checked (and where per-call overhead
    # shows); 16 images per call is where both libraries are bound by the model's forwards.
    for n in (1, 4, 16):
        compare("demo shapes CNN", model, x[:n], maps[:n], steps=48, reps=5)
    compare_road("demo shapes CNN", model, x, maps, reps=3)

    import torchvision

    torch.manual_seed(0)
    r50 = torchvision.models.resnet50(weights=None).eval()
    x = torch.rand(4, 3, 224, 224)
    maps = torch.rand(4, 224, 224, generator=torch.Generator().manual_seed(0))
    compare("resnet50", r50, x, maps, steps=12, reps=2)


if __name__ == "__main__":
    main()
