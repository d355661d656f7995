"""Inference throughput with 1, 2 and 4 Python threads on ONE shared model, and on one model per thread.

    python bench/thread_inference.py [--seconds 2] [--threads 1]

Each Python thread calls ``model.predict`` (and ``model(x)`` in eval mode) in a loop on its own
batches; the rows per second of all threads together are reported. A call runs on an inference plan
of its own taken from the model's pool (fastnn/engine.py), so one shared model should scale like one
model per thread. ``--threads`` sets fastnn's own thread count (OpenMP + BLAS) inside each call; the
default 1 keeps the 2 cores for the Python threads.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

import fastnn as fnn

SHAPES = {"tiny 784-128-10": [784, 128, 10], "deep 64-(64x8)-10": [64] + [64] * 8 + [10]}


def build(sizes, seed=0):
    layers = [fnn.Dense(i, o, activation="relu" if k < len(sizes) - 2 else None)
              for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return fnn.Sequential(layers, seed=seed).eval()


def throughput(models, x, seconds, call):
    stop = threading.Event()
    counts = [0] * len(models)
    start = threading.Barrier(len(models) + 1)

    def work(i):
        m = models[i]
        start.wait()
        while not stop.is_set():
            call(m, x)
            counts[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) * len(x) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    fnn.set_num_threads(args.threads)
    calls = {"predict": lambda m, x: m.predict(x), "model(x)": lambda m, x: m(x)}
    print(f"fastnn threads per call: {args.threads}; rows/s summed over the Python threads (median of 3)")
    print("| shape | batch | call | Python threads | one shared model | one model per thread | shared / per-thread |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, sizes in SHAPES.items():
        for batch in (1, 32, 256):
            x = np.random.default_rng(0).standard_normal((batch, sizes[0])).astype(np.float32)
            for cname, call in calls.items():
                for nthreads in (1, 2, 4):
                    shared_model = build(sizes)
                    shared = [shared_model] * nthreads
                    own = [build(sizes) for _ in range(nthreads)]
                    a, b = [], []
                    for _ in range(3):   # alternate, so both see the same machine
                        a.append(throughput(shared, x, args.seconds / 3, call))
                        b.append(throughput(own, x, args.seconds / 3, call))
                    sa, sb = float(np.median(a)), float(np.median(b))
                    print(f"| {name} | {batch} | {cname} | {nthreads} | {sa:,.0f} | {sb:,.0f} | {sa / sb:.2f} |",
                          flush=True)


if __name__ == "__main__":
    main()
