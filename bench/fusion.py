"""Fusion speed, as ratios measured in ONE process run with interleaved repetitions (the machine is shared).

- shapley over K=4 branches (2^4 coalitions, one batched forward in chunks) vs 16 plain forwards;
- exact (check=False: one forward + a backward through the head only; check=True adds the baseline forward)
  vs one plain forward;
- peer: Captum ShapleyValues on the same model with the four inputs as the four branches (same numbers).

Run: PYTHONPATH=src python bench/fusion.py [--reps 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import torchloupe as tl


class FourViews(nn.Module):
    """Four CNN branches (one per input view), cat of their pooled features, linear head."""

    def __init__(self, width: int = 32, classes: int = 10):
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, stride=2, padding=1),
                          nn.ReLU(), nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
            for _ in range(4)])
        self.head = nn.Linear(4 * width, classes)

    def forward(self, a, b, c, d):
        return self.head(torch.cat([br(v) for br, v in zip(self.branches, (a, b, c, d))], 1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = FourViews().eval()
    xs = tuple(torch.rand(args.batch, 3, args.size, args.size) for _ in range(4))
    modules = {f"b{i}": f"branches.{i}" for i in range(4)}
    inputs = {f"v{i}": f"input:{i}" for i in range(4)}
    captum = None
    try:
        from captum.attr import ShapleyValues

        captum = ShapleyValues(model)
    except ImportError:
        pass

    def forward():
        with torch.no_grad():
            model(*xs)

    def sixteen():
        for _ in range(16):
            forward()

    jobs = {
        "forward": forward,
        "16 forwards": sixteen,
        "shapley K=4": lambda: tl.fusion.contributions(model, xs, modules, target=0, method="shapley"),
        "exact (check=False)": lambda: tl.fusion.contributions(model, xs, modules, target=0, method="exact", check=False),
        "exact (check=True)": lambda: tl.fusion.contributions(model, xs, modules, target=0, method="exact"),
        "shapley K=4 on inputs": lambda: tl.fusion.contributions(model, xs, inputs, target=0, method="shapley"),
    }
    peer = {}
    if captum is not None:
        masks = tuple(torch.zeros(1, 3, 1, 1, dtype=torch.long) + i for i in range(4))
        peer["captum ShapleyValues on inputs"] = lambda: captum.attribute(
            xs, target=0, feature_mask=masks, perturbations_per_eval=16)
        ours = tl.fusion.contributions(model, xs, inputs, target=0, method="shapley")
        theirs = peer["captum ShapleyValues on inputs"]()
        diff = max(float((ours.values[f"v{i}"] - theirs[i][:, 0, 0, 0]).abs().max()) for i in range(4))
        print(f"captum ShapleyValues vs ours (input branches): max |diff| = {diff:.2e}")
    t = time.perf_counter()
    tl.fusion.contributions(FourViews().eval(), xs, modules, target=0, method="exact", check=False)
    first_exact = time.perf_counter() - t  # a fresh model: includes the one-time linearity check
    for fn in jobs.values():  # warm-up
        fn()
    times = {k: [] for k in jobs}
    for _ in range(args.reps):
        for k, fn in jobs.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    if peer:  # the slow peer runs after, interleaved with our call and a forward, fewer reps
        for k in ("forward", "shapley K=4 on inputs"):
            times[k + " (peer round)"] = []
        times.update({k: [] for k in peer})
        for _ in range(max(2, args.reps // 2)):
            for k, fn in (("forward (peer round)", forward),
                          ("shapley K=4 on inputs (peer round)", jobs["shapley K=4 on inputs"]), *peer.items()):
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    f = med["forward"]
    print(f"FourViews, batch {args.batch}, {args.size}px, {args.threads} threads, median of {args.reps} interleaved reps")
    for k, v in med.items():
        print(f"{k:34s} {v * 1e3:9.1f} ms  {v / f:6.2f} x forward")
    print(f"first exact call on a fresh model {first_exact * 1e3:9.1f} ms  {first_exact / f:6.2f} x forward (includes the linearity check)")
    print(f"shapley K=4 / 16 forwards         {med['shapley K=4'] / med['16 forwards']:.2f}  (must be <= 1)")
    print(f"exact (check=False) / forward     {med['exact (check=False)'] / f:.2f}  (must be <= 1.2)")
    if peer:
        print(f"captum ShapleyValues / ours       "
              f"{med['captum ShapleyValues on inputs'] / med['shapley K=4 on inputs (peer round)']:.2f}")


if __name__ == "__main__":
    main()
