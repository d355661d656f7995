"""fastnn's own 1- vs 2-thread scaling of the compiled training step, with no other library's pool around.

    python bench/thread_scaling.py

`fastnn bench` times every implementation at 1 and 2 threads in one round-robin; there the idle
pools of NumPy's and PyTorch's OpenBLAS (and torch's OpenMP) take the second core from whoever runs
next, so its 2-thread rows understate every library's scaling. This script alternates fastnn at 1
and 2 threads only (docs/design.md, "Threads": 2 threads must never be slower than 1).
"""

from __future__ import annotations

import time

import numpy as np

import fastnn as fnn
from fastnn.benchmarks.shapes import SHAPES


def model_for(sizes, n):
    layers = [fnn.Dense(i, o, activation="relu" if k < len(sizes) - 2 else None)
              for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    model = fnn.Sequential(layers, seed=0)
    model.compile(optimizer=fnn.optim.Adam(model.parameters(), lr=1e-3), loss="cross_entropy")
    rng = np.random.default_rng(0)
    return model, rng.standard_normal((n, sizes[0])).astype(np.float32), rng.integers(0, sizes[-1], n)


def main():
    before = fnn.get_num_threads()
    for name, (sizes, n) in SHAPES.items():
        model, x, y = model_for(sizes, n)
        calls = {"large": 3, "medium": 20}.get(name, 300)
        times = {1: [], 2: []}
        for _ in range(4 if name == "large" else 7):
            for threads in (1, 2):
                fnn.set_num_threads(threads)
                model.train_step(x, y)   # warm-up (the plan is rebuilt for a new thread count)
                t0 = time.perf_counter()
                for _ in range(calls):
                    model.train_step(x, y)
                times[threads].append((time.perf_counter() - t0) / calls * 1e3)
        one, two = np.median(times[1]), np.median(times[2])
        print(f"{name:7s} 1 thread {one:9.3f} ms   2 threads {two:9.3f} ms   speed-up {one / two:.2f}x", flush=True)
    fnn.set_num_threads(before)


if __name__ == "__main__":
    main()
