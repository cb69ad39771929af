"""Wall time of ``loupe demo``: once with an empty model cache (every demo model trained), then
``--reps`` times with the cache warm, as separate processes exactly as a user runs it.

Prints each run's wall time, the load average before it, and the per-section seconds the demo
reports (summed over workers). On a shared machine, read the spread, not one number.
Run: .venv/bin/python bench/demo.py [--reps 3] [--jobs auto]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(out: Path, env: dict, jobs: str) -> tuple[float, str]:
    loupe = Path(sys.executable).with_name("loupe")
    cmd = [str(loupe), "demo", "--out", str(out), "--no-progress", "--jobs", jobs]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jobs", default="auto")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loupe-bench-"))
    try:
        runs = []
        if not args.no_cold:
            env = {**os.environ, "TORCHLOUPE_CACHE": str(work / "cold-cache")}
            runs.append(("cold", os.getloadavg()[0], *run(work / "cold", env, args.jobs)))
        for i in range(args.reps):
            runs.append((f"cached {i + 1}", os.getloadavg()[0], *run(work / f"warm{i}", dict(os.environ), args.jobs)))
        for name, load, secs, out in runs:
            prepared = re.findall(r"prepared (\w+): .* in ([\d.]+) s", out)
            sections = re.findall(r"^(\w+)\s+([\d.]+) s$", out, flags=re.M)
            print(f"{name:9s} {secs:6.1f} s wall (load {load:.1f} before)")
            print("   prepared: " + ", ".join(f"{k} {v}" for k, v in prepared))
            print("   sections: " + ", ".join(f"{k} {v}" for k, v in sections))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
