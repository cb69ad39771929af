"""Exemplars throughput against a bare forward loop over the same DataLoader, in one process run.

    PYTHONPATH=src python bench/exemplars.py [--reps 5] [--n 192] [--size 128] [--batch 64] [--threads 2]

Random-init torchvision resnet50 (eval), ``n`` random images of ``size`` px in a ``TensorDataset``,
``k=9``, every channel of ``layer4`` (2048) and ``layer2`` (512). Each repetition runs, in a rotating
order, the bare loop (``with torch.no_grad(): for (x,) in DataLoader(ds, batch_size): model(x)``) and
``tl.synthesis.exemplars`` on both layers with and without crops; the ratio of a repetition is the
bare loop's time over the exemplars call's time in that same repetition (above 1: faster than the
bare loop, which happens when the forward stops at the layer). Reported: the median ratio over the
repetitions and its range. Every exemplars call is cold: the receptive field kept from an earlier
call is forgotten first, so each call pays its measurement as a one-off run would. Materializing the
full ``crops`` tensor (every channel's ``k`` crops; 3.6 GB for ``layer4`` at 128 px) is timed apart,
once, in the last repetition: the result cuts crops on use (``ex.crop(c, j)``, or ``ex.crops`` whole).
Wall-clock and CPU-time (this process's, ``time.process_time``) ratios are both given; under other
jobs' load the CPU-time ratio is the steadier one. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time

import torch
import torchvision

import torchloupe as tl

ex_module = importlib.import_module("torchloupe.synthesis.exemplars")  # the module, not the function


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n", type=int, default=192)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", nargs="+", default=["layer4", "layer2"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    data = torch.rand(args.n, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    ds = torch.utils.data.TensorDataset(data)
    print(f"torch {torch.__version__}; resnet50 random init; {args.n} images {args.size} px; batch {args.batch}; "
          f"k=9; threads {args.threads}; {args.reps} interleaved reps; load average {os.getloadavg()}", flush=True)

    def bare():
        with torch.no_grad():
            for (x,) in torch.utils.data.DataLoader(ds, batch_size=args.batch):
                model(x)

    def ours(layer, crops):
        def run():
            ex_module._FIELDS.clear()  # cold: the receptive field is measured again
            return tl.synthesis.exemplars(model, ds, layer, k=9, batch_size=args.batch, crops=crops)
        return run

    runs = {"bare": bare}
    for layer in args.layers:
        runs[f"{layer} crops"] = ours(layer, True)
        runs[f"{layer} no crops"] = ours(layer, False)
    times: dict[str, list[float]] = {key: [] for key in runs}
    cpu: dict[str, list[float]] = {key: [] for key in runs}  # this process's CPU seconds: steadier under load
    cut: dict[str, list[float]] = {layer: [] for layer in args.layers}
    keys = list(runs)
    for rep in range(args.reps):
        order = keys[rep % len(keys):] + keys[:rep % len(keys)]
        for key in order:
            t, c = time.perf_counter(), time.process_time()
            res = runs[key]()
            times[key].append(time.perf_counter() - t)
            cpu[key].append(time.process_time() - c)
            if key.endswith(" crops") and not key.endswith("no crops") and rep == args.reps - 1:
                t = time.perf_counter()
                full = res.crops
                cut[key.split()[0]].append(time.perf_counter() - t)
                del full
            del res
        line = ", ".join(f"{key} {times[key][-1]:.2f}s ({cpu[key][-1]:.1f} CPU s)" for key in keys)
        print(f"rep {rep}: {line}; load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"bare loop: {args.n / statistics.median(times['bare']):.1f} samples/s (median)")
    for key in keys[1:]:
        ratios = [b / t for b, t in zip(times["bare"], times[key])]
        cratios = [b / t for b, t in zip(cpu["bare"], cpu[key])]
        print(f"exemplars {key:16s} wall {statistics.median(ratios):.2f}x bare (median; range {min(ratios):.2f}-"
              f"{max(ratios):.2f}), CPU time {statistics.median(cratios):.2f}x (range {min(cratios):.2f}-"
              f"{max(cratios):.2f}), {args.n / statistics.median(times[key]):.1f} samples/s")
    for layer, ts in cut.items():
        print(f"{layer}: materializing the full crops tensor afterwards (last rep): {ts[-1]:.2f}s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
