"""Overhead of WeightTracker(every=10) on training, measured as ratios inside one process run.

Two workloads: torchvision resnet18 (random init, CPU, batch 32) and the tiny digits MLP
(batch 64; its step is well under a millisecond, so the tracker's fixed costs show). For each,
blocks of 10 optimizer steps without and with ``tracker.step()`` alternate (A B B A ...), so a
load change on the shared machine hits both sides alike; the overhead is
sum(tracked) / sum(bare) - 1 over all blocks; the ratio of median block times (robust to
load spikes from other users of the machine) is printed too.
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
        t = time.perf_counter()
        for _ in range(n):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if track:
                tracker.step()
        return time.perf_counter() - t

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
        t = time.perf_counter()
        tracker.record()
        rec.append(time.perf_counter() - t)
    step_ms = 1000 * sum(bare) / (len(bare) * inner)
    rec_ms = 1000 * statistics.median(rec)
    overhead = sum(tracked) / sum(bare) - 1
    pair = statistics.median(tracked) / statistics.median(bare) - 1
    mem = tracker.memory
    print(
        f"{name}: {blocks} x {inner} steps each side; bare step {step_ms:.2f} ms; "
        f"overhead every={every}: {100 * overhead:+.1f}% by total time, {100 * pair:+.1f}% by median block; "
        f"one record {rec_ms:.2f} ms = {100 * rec_ms / (every * step_ms):.1f}% of {every} steps; "
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
