"""Structure benchmark: torchloupe's trace against torchview's draw_graph, in one process run.

Interleaved repetitions (bare forward, torchloupe, torchview in turn) on a shared machine;
medians of wall and CPU time and their ratios are printed. The resnet18 comparison runs on one
thread (tracing overhead is single-threaded Python; one thread keeps the loaded machine's noise
down); vit_b_16 trace + layout runs on two threads (the "under 5 s on 2 cores" check).
Run: ``PYTHONPATH=src python bench/structure.py [resnet|vit]``.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torchvision

from torchloupe.structure import trace
from torchloupe.render.graph.layout import collapse, fit_depth, layout

torch.set_num_threads(2)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a loaded machine the CPU time is the steadier one."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def bare(model, x):
    def run():
        model.eval()
        with torch.no_grad():
            model(x)

    return run


def ours(model, x, with_layout=False):
    def run():
        g = trace(model, x)
        if with_layout:
            layout(collapse(g, fit_depth(g)))

    return run


def torchview(model, x):
    from torchview import draw_graph

    def run():
        draw_graph(model, input_data=x, device="cpu", mode="eval", depth=float("inf"))

    return run


def compare(name, fns, reps):
    times = {k: [] for k in fns}
    for k, fn in fns.items():  # warm-up
        fn()
    for _ in range(reps):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    print(f"\n{name} ({reps} interleaved repetitions, medians; wall and CPU time)")
    for k in fns:
        print(f"  {k:<24} wall {wall[k] * 1000:8.1f} ms (x{wall[k] / wall['bare forward']:.2f})   "
              f"cpu {cpu[k] * 1000:8.1f} ms (x{cpu[k] / cpu['bare forward']:.2f} of a bare forward)")
    return wall, cpu


def main(parts):
    torch.manual_seed(0)
    if "resnet" in parts:
        resnet()
    if "vit" in parts:
        vit()


def resnet():
    torch.set_num_threads(1)
    r18 = torchvision.models.resnet18(weights=None)
    for shape, reps in (((2, 3, 64, 64), 21), ((1, 3, 224, 224), 21)):
        x = torch.rand(*shape)
        wall, cpu = compare(f"resnet18, input {shape}, 1 thread", {
            "bare forward": bare(r18, x),
            "torchloupe trace": ours(r18, x),
            "torchview draw_graph": torchview(r18, x),
        }, reps=reps)
        print(f"  ratio torchloupe / torchview: wall {wall['torchloupe trace'] / wall['torchview draw_graph']:.2f}, "
              f"cpu {cpu['torchloupe trace'] / cpu['torchview draw_graph']:.2f}")


def vit():
    torch.set_num_threads(2)
    vit = torchvision.models.vit_b_16(weights=None)
    xv = torch.rand(1, 3, 224, 224)
    wall, cpu = compare("vit_b_16, input (1, 3, 224, 224), 2 threads", {
        "bare forward": bare(vit, xv),
        "torchloupe trace+layout": ours(vit, xv, with_layout=True),
        "torchview draw_graph": torchview(vit, xv),
    }, reps=3)
    print(f"  vit_b_16 trace + layout: wall {wall['torchloupe trace+layout']:.2f} s, "
          f"cpu {cpu['torchloupe trace+layout']:.2f} s (limit 5 s on 2 cores)")
    print(f"  ratio torchloupe / torchview: wall {wall['torchloupe trace+layout'] / wall['torchview draw_graph']:.2f}, "
          f"cpu {cpu['torchloupe trace+layout'] / cpu['torchview draw_graph']:.2f}")
    g = trace(vit, xv)
    t0 = time.process_time()
    layout(collapse(g, fit_depth(g)))
    t1 = time.process_time()
    layout(collapse(g, None))
    print(f"  layout alone: fitted view {(t1 - t0) * 1000:.0f} ms cpu; all {len(g.nodes)} nodes "
          f"{(time.process_time() - t1) * 1000:.0f} ms cpu")


if __name__ == "__main__":
    main(sys.argv[1:] or ["resnet", "vit"])
