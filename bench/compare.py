"""Side-by-side step times, measured alternately in one process so machine drift cancels.

    python bench/compare.py [--shapes tiny,medium,deep] [--threads 1] [--dtype float32] [--reps 30]

Prints the median ms per step of each implementation and fastnn's speed-up over each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from shapes import IMPLS, SHAPES

import fastnn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="tiny,medium,deep")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    impls = dict(IMPLS)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        impls.pop("torch")
    fastnn.set_num_threads(args.threads)
    print(f"threads={args.threads} dtype={args.dtype} reps={args.reps} (median ms per step)")
    for shape in args.shapes.split(","):
        sizes, n = SHAPES[shape]
        steps = {name: make(sizes, n, np.dtype(args.dtype)) for name, make in impls.items()}
        times = {name: [] for name in steps}
        for step in steps.values():
            step()
        for _ in range(args.reps):
            for name, step in steps.items():
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
        med = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
        ratios = "  ".join(f"x{med[name] / med['fastnn']:.2f} vs {name}" for name in med if name != "fastnn")
        cells = "  ".join(f"{name} {ms:8.3f}" for name, ms in med.items())
        print(f"{shape:7s} {cells}   fastnn {ratios}")


if __name__ == "__main__":
    main()
