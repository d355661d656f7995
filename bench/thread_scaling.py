"""fastnn's own thread scaling: 1 thread against 2 threads and against the default thread count, quiet or shared.

    python bench/thread_scaling.py                                   # quiet: 1 vs 2 threads vs the default
    python bench/thread_scaling.py --load busy                       # one `while True: pass` process beside it
    python bench/thread_scaling.py --load numpy                      # a 256x256 np.dot after each call
    python bench/thread_scaling.py --load quiet,busy,numpy --paths train,fit,predict --shapes tiny,medium,deep

`fastnn bench` times every implementation at 1 and 2 threads in one round-robin; there the idle
pools of NumPy's and PyTorch's OpenBLAS (and torch's OpenMP) take the second core from whoever runs
next, so its 2-thread rows understate every library's scaling. This script times fastnn alone, each
configuration on a model of its own, alternated in rounds within one process (the configurations'
order rotates every round), so drift of a shared machine hits them alike; each configuration first
runs untimed for --warmup seconds (plans built; the default's start, at N threads until its first probe,
is not timed), and blocks are IDLE seconds apart, so that one configuration's spinning BLAS workers do
not load the next one. It prints the median and the best of the rounds and the ratios to 1 thread
(> 1: faster than 1 thread), and which counts the default's plans ran at. Configurations:

- ``1``, ``2``: ``fastnn.set_num_threads(1)`` / ``(2)``, an explicit count (obeyed as it is);
- ``default``: ``fastnn.set_num_threads(None)``, fastnn's default (docs/design.md, "Threads").

Paths: ``train`` (``model.train_step(x, y)`` in a loop), ``fit`` (``model.fit`` for one epoch of 32
batches, 8 for medium and large, unshuffled; per batch) and ``predict`` (``model.predict(x)`` of one
batch). Loads: ``quiet``; ``busy`` (one other process runs ``while True: pass`` for the whole load
section, started here and stopped at its end); ``numpy`` (after every timed call, untimed, a
256x256 float64 ``np.dot``, with NumPy's OpenBLAS pinned to the usable cores after every switch of
fastnn's count, since an explicit ``set_num_threads`` also limits it: its pool then spins on the
cores between our calls, as in a program that mixes NumPy and fastnn). Each line also gives the
``uptime`` load average when the section started and ended.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import ThreadpoolController

import fastnn as fnn
from fastnn.benchmarks.shapes import SHAPES

IDLE = 0.15   # seconds between blocks: OpenBLAS's idle workers spin ~0.1 s (2^28 cycles) before they sleep


def model_for(sizes, n, dtype=np.float32, batches=1):
    layers = [fnn.Dense(i, o, activation="relu" if k < len(sizes) - 2 else None)
              for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    model = fnn.Sequential(layers, seed=0, dtype=dtype)
    model.compile(optimizer=fnn.optim.Adam(model.parameters(), lr=1e-3), loss="cross_entropy")
    rng = np.random.default_rng(0)
    return (model, rng.standard_normal((n * batches, sizes[0])).astype(dtype),
            rng.integers(0, sizes[-1], n * batches))


def set_config(config):
    if config == "default":
        fnn.set_num_threads(None)
    else:
        fnn.set_num_threads(int(config))


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


class NumpyLoad:
    """A 256x256 np.dot after each call, NumPy's OpenBLAS at the usable cores."""

    def __init__(self):
        rng = np.random.default_rng(1)
        self.a, self.b = rng.standard_normal((256, 256)), rng.standard_normal((256, 256))
        self.c = np.empty((256, 256))
        self.numpy_blas = [c for c in ThreadpoolController().lib_controllers
                           if c.user_api == "blas" and "numpy" in (c.filepath or "")]
        self.cores = len(os.sched_getaffinity(0))

    def pin(self):
        for c in self.numpy_blas:
            c.set_num_threads(self.cores)

    def after_call(self):
        np.dot(self.a, self.b, out=self.c)


def make_call(path, model, x, y, n):
    if path == "train":
        return lambda: model.train_step(x[:n], y[:n]), 1
    if path == "fit":
        batches = len(x) // n
        return (lambda: model.fit(x, y, batch_size=n, epochs=1, shuffle=False, verbose=0)), batches
    xb = x[:n]
    return (lambda: model.predict(xb)), 1


def run_row(shape, path, configs, rounds, block_seconds, warmup, extra):
    sizes, n = SHAPES[shape]
    batches = 1 if path != "fit" else (8 if shape in ("medium", "large") else 32)
    calls, models = {}, {}
    for config in configs:
        set_config(config)
        model, x, y = model_for(sizes, n, batches=batches)
        calls[config] = make_call(path, model, x, y, n)
        models[config] = model
        t0 = time.perf_counter()   # warm-up: plans built, the default's first probes done (its start is not timed)
        while True:
            calls[config][0]()
            if extra is not None:
                extra.after_call()
            if time.perf_counter() - t0 > warmup:
                break
    per = {c: [] for c in configs}
    reps = None
    for r in range(rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for config in order:
            set_config(config)
            if extra is not None:
                extra.pin()
            fn, units = calls[config]
            fn()   # warm-up (a plan is built or taken for this thread count)
            if extra is not None:
                extra.after_call()
            if reps is None:   # calibrate the block on the first configuration of the first round
                t0 = time.perf_counter()
                fn()
                reps = max(1, min(2000, int(block_seconds / max(time.perf_counter() - t0, 1e-7))))
            spent = 0.0
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                spent += time.perf_counter() - t0
                if extra is not None:
                    extra.after_call()
            per[config].append(spent / reps / units * 1e3)
            time.sleep(IDLE)
    out = {c: (float(np.median(v)), float(np.min(v))) for c, v in per.items()}
    if "default" in models:   # which count the default's plans ran at, in units (steps, batches, calls)
        engine = models["default"].__dict__.get("_compiled_engine")
        choices = list(engine._choices.values()) + list(engine._infer_choices.values()) if engine else []
        out["_choice"] = ", ".join(f"{c.what}: {dict(c.units)}" if c else "(nothing threaded: N, no choice)"
                                   for c in choices)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--load", default="quiet", help="comma list of quiet, busy, numpy")
    p.add_argument("--shapes", default="tiny,medium,deep", help="comma list of " + ",".join(SHAPES))
    p.add_argument("--paths", default="train", help="comma list of train, fit, predict")
    p.add_argument("--configs", default="1,2,default", help="comma list of 1, 2, default")
    p.add_argument("--rounds", type=int, default=7, help="rounds per row (3 for large)")
    p.add_argument("--block", type=float, default=0.05, help="seconds of calls per configuration per round")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds of untimed calls per configuration first")
    a = p.parse_args(argv)
    configs = a.configs.split(",")
    before = fnn.get_num_threads()
    print(f"fastnn {fnn.__version__}, {len(os.sched_getaffinity(0))} usable cores; ms per batch, "
          "median (best) of the rounds; ratio: 1 thread's median / this median", flush=True)
    for load in a.load.split(","):
        busy = None
        extra = NumpyLoad() if load == "numpy" else None
        if load == "busy":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        try:
            print(f"\n== load: {load} (load average at start: {load_average()})", flush=True)
            for shape in a.shapes.split(","):
                for path in a.paths.split(","):
                    rounds = max(3, a.rounds // 2) if shape == "large" else a.rounds
                    res = run_row(shape, path, configs, rounds, a.block, a.warmup, extra)
                    one = res.get("1", (None,))[0]
                    cells = []
                    for c in configs:
                        med, best = res[c]
                        ratio = f" {one / med:.2f}x" if one and c != "1" else ""
                        cells.append(f"{c}: {med:8.3f} ({best:8.3f}){ratio}")
                    print(f"{load:6s} {shape:7s} {path:8s} " + "   ".join(cells)
                          + f"   [load avg {load_average()}]" + (f"  default ran at {res['_choice']}"
                                                                  if res.get("_choice") else ""), flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    fnn.set_num_threads(before)
    if hasattr(fnn, "thread_report"):
        print("\nthread_report():", fnn.thread_report())


if __name__ == "__main__":
    main()
