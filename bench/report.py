"""The time of a whole report against its feature-visualization section alone.

Goal (issue 19): ``tl.report`` of a torchvision model on 4 images at 224 px within 3x the time of
its feature-visualization section, i.e. everything else together costs at most twice that one
section. One process, 2 threads; the sections' own timings come from the same run, so the ratio
holds on a loaded machine even when the seconds do not.

    PYTHONPATH=src python bench/report.py [--model resnet18] [--size 224] [--images 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torchvision

import torchloupe as tl


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None).eval()
    x = torch.rand(args.images, 3, args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = tl.report(model, x, Path(tmp) / "report.html", progress=False)
        total = time.perf_counter() - start
    timings = info.timings
    print(f"{args.model}, {args.images} images at {args.size} px: report {total:.1f} s")
    for key, seconds in sorted(timings.items(), key=lambda kv: -kv[1]):
        print(f"  {key:16s} {seconds:7.1f} s")
    vis = timings.get("feature_vis", 0.0)
    print(f"report / feature_vis = {total / vis:.2f} (goal <= 3)" if vis else "no feature_vis section ran")
    failed = [r for r in info.runs if r.status == "error"]
    for r in failed:
        print(f"  error in {r.section}: {r.message}")


if __name__ == "__main__":
    main()
