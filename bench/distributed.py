"""Distributed training: epoch time of the medium shape and the communication share of a step.

    python bench/distributed.py                 # the table: 1 process x 1 thread, 1 x 2 threads, 2 ranks x 1 thread
    python bench/distributed.py --epochs 3 --dtype float64
    mpiexec -n 2 python bench/distributed.py --worker --threads 1 --distributed   # one configuration

Data: 60,000 x 784 synthetic 10-class set (labels from a random linear teacher), model 784-512-512-10
(ReLU), Adam, batch 256, shuffled; the first epoch warms up, the table gives the mean of the others.
"Allreduce" is the wall time the compiled loop spends inside MPI_Allreduce (the plan's timer: it
includes waiting for the slower rank); "allreduce alone" times the same in-place allreduce of the
gradient arena (P + 3 words) in a loop, without training, for the pure communication cost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

import fastnn
from fastnn import callbacks

N, SIZES, BATCH = 60_000, [784, 512, 512, 10], 256


def data(dtype):
    r = np.random.default_rng(0)
    x = r.standard_normal((N, SIZES[0])).astype(dtype)
    teacher = r.standard_normal((SIZES[0], SIZES[-1]))
    return x, (x @ teacher).argmax(axis=1)


class Timer(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.comm = [], []

    def _plans(self):
        """Every cached TrainPlan (the full batch's and the last, partial one's)."""
        return [entry[0] for entry in self.model._engine()._plans.values()]

    def on_epoch_begin(self, epoch, logs=None):
        for plan in self._plans():
            plan.reset_comm()
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self._t0)
        self.comm.append(sum(plan.comm_seconds for plan in self._plans()))


def worker(args) -> None:
    fastnn.set_num_threads(args.threads)
    x, y = data(args.dtype)
    layers = [fastnn.Dense(a, b, activation="relu" if i < len(SIZES) - 2 else None)
              for i, (a, b) in enumerate(zip(SIZES, SIZES[1:]))]
    model = fastnn.Sequential(layers, dtype=args.dtype, seed=0)
    model.compile(optimizer="adam", loss="cross_entropy")
    timer = Timer()
    model.fit(x, y, epochs=args.epochs, batch_size=BATCH, verbose=0, callbacks=[timer],
              distributed=args.distributed)
    out = {"epoch": float(np.mean(timer.epochs[1:])), "comm": float(np.mean(timer.comm[1:])),
           "params": model._arena.size, "steps": -(-N // BATCH)}
    if args.distributed:
        from fastnn import distributed  # noqa: PLC0415 - only under mpiexec
        ctx = distributed.context()
        buf = ctx.buffer(model._arena)
        ctx.comm.Barrier()
        reps = 50
        t0 = time.perf_counter()
        for _ in range(reps):
            ctx.allreduce(buf)
        out["allreduce_alone"] = (time.perf_counter() - t0) / reps
        out["ranks"] = ctx.size
        if ctx.rank != 0:
            return
    print("RESULT " + json.dumps(out), flush=True)


def run(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help="run one configuration (under mpiexec for --distributed)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--distributed", action="store_true")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up (default 3)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--epochs", str(args.epochs), "--dtype", args.dtype]
    mpiexec = shutil.which("mpiexec")
    rows = [("1 process x 1 thread", run(me + ["--threads", "1"], 1)),
            ("1 process x 2 threads", run(me + ["--threads", "2"], 2))]
    if mpiexec:
        rows.append(("2 ranks x 1 thread", run([mpiexec, "-n", "2"] + me + ["--threads", "1", "--distributed"], 1)))
    base = rows[0][1]["epoch"]
    print(f"medium shape {SIZES}, {N} rows, batch {BATCH}, {args.dtype}, Adam; mean of epochs 2..{args.epochs}\n")
    print("| configuration | epoch (s) | speed-up | step (ms) | inside Allreduce per step (ms) | comm share | "
          "allreduce alone (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        step = r["epoch"] / r["steps"]
        comm = r["comm"] / r["steps"]
        alone = f"{1e3 * r['allreduce_alone']:.2f}" if "allreduce_alone" in r else "-"
        share = f"{100 * comm / step:.1f}%" if comm else "-"
        print(f"| {name} | {r['epoch']:.2f} | {base / r['epoch']:.2f}x | {1e3 * step:.1f} | "
              f"{1e3 * comm:.2f} | {share} | {alone} |" if comm else
              f"| {name} | {r['epoch']:.2f} | {base / r['epoch']:.2f}x | {1e3 * step:.1f} | - | - | - |")
    print(f"\nP = {rows[0][1]['params']} parameters ({4 if args.dtype == 'float32' else 8} bytes each)")


if __name__ == "__main__":
    main()
