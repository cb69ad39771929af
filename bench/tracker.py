"""Overhead of WeightTracker(every=10) on training, measured as ratios inside one process run.

Two workloads: torchvision resnet18 (random init, CPU, batch 32) and the tiny digits MLP
(batch 64; its step is well under a millisecond, so the tracker's fixed costs show). For each,
blocks of 10 optimizer steps without and with ``tracker.step()`` alternate (A B B A ...), so a
load change on the shared machine hits both sides alike; the overhead is
sum(tracked) / sum(bare) - 1 over all blocks; the ratio of median block times (robust to
load spikes from other users of the machine) is printed too. The main figure is the ratio of
this thread's CPU time (``time.thread_time``; torch runs single-threaded here, so all its work is
on this thread), which the other users of a loaded machine disturb far less than wall time.
The cost of one record (``tracker.record()`` forced) is timed separately, as a cross-check:
record_ms / (10 * step_ms) is what every=10 should cost.

Run: PYTHONPATH=src python bench/tracker.py [--size 64] [--blocks 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from torchloupe.weights import WeightTracker


def _resnet(size: int):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    x, y = torch.rand(32, 3, size, size), torch.randint(0, 10, (32,))
    return model, x, y


def _mlp():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.data[:64], dtype=torch.float32) / 16
    y = torch.tensor(d.target[:64])
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), x, y


def bench(name, model, x, y, blocks, every=10, inner=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tracker = WeightTracker(model, every=every)
    inner = inner or every

    def run(n, track):
        c, t = time.thread_time(), time.perf_counter()
        for _ in range(n):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if track:
                tracker.step()
        return time.thread_time() - c, time.perf_counter() - t

    run(2, False)  # warm up (the tracker's counter untouched: each tracked block records once, at its end)
    bare, tracked = [], []
    for b in range(blocks):
        order = (False, True) if b % 2 == 0 else (True, False)
        for track in order:
            (tracked if track else bare).append(run(inner, track))
    # one record on its own
    rec = []
    for _ in range(max(3, blocks)):
        tracker._step += 1
        c = time.thread_time()
        tracker.record()
        rec.append(time.thread_time() - c)
    cpu_b, wall_b = [b[0] for b in bare], [b[1] for b in bare]
    cpu_t, wall_t = [t[0] for t in tracked], [t[1] for t in tracked]
    step_ms = 1000 * sum(cpu_b) / (len(bare) * inner)
    rec_ms = 1000 * statistics.median(rec)
    overhead = sum(cpu_t) / sum(cpu_b) - 1
    wall = sum(wall_t) / sum(wall_b) - 1
    pair = statistics.median(wall_t) / statistics.median(wall_b) - 1
    mem = tracker.memory
    print(
        f"{name}: {blocks} x {inner} steps each side; bare step {step_ms:.2f} ms CPU "
        f"({1000 * sum(wall_b) / (len(bare) * inner):.2f} ms wall); overhead every={every}: "
        f"{100 * overhead:+.1f}% CPU time, {100 * wall:+.1f}% wall (total), {100 * pair:+.1f}% wall (median block); "
        f"one record {rec_ms:.2f} ms CPU = {100 * rec_ms / (every * step_ms):.1f}% of {every} steps; "
        f"snapshots {mem['snapshots'] / 2**20:.2f} MiB of budget {mem['budget'] / 2**20:.0f} MiB, "
        f"previous-copy {mem['previous'] / 2**20:.1f} MiB, stats {mem['stats'] / 2**10:.1f} KiB",
        flush=True,
    )
    return overhead


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64, help="resnet18 input size (pixels)")
    ap.add_argument("--blocks", type=int, default=3, help="resnet18 blocks of 10 steps per side")
    ap.add_argument("--mlp-blocks", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a loaded machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    # The MLP first and last, around resnet18, so both see the same machine.
    m = bench("digits MLP (64-32-10, batch 64)", *_mlp(), blocks=args.mlp_blocks)
    r = bench(f"resnet18 (batch 32, {args.size}px)", *_resnet(args.size), blocks=args.blocks)
    m2 = bench("digits MLP again", *_mlp(), blocks=args.mlp_blocks)
    print(f"verdict: resnet18 {100 * r:+.1f}% (< 5% wanted), digits MLP {100 * m:+.1f}% / {100 * m2:+.1f}% (< 25% wanted)")


if __name__ == "__main__":
    main()
