"""Where an inference call's time goes, side by side with ONNX Runtime (I/O binding), at one thread.

    python bench/infer_profile.py                       # tiny b1/b32, medium b32, deep b1/b32, float32
    python bench/infer_profile.py --dtype float64 --rows tiny:1,deep:32 --rounds 40

Every callable of a row is timed in the same process, alternately (a block of calls of ~4 ms each, the
order rotated every round, garbage collection off); the table gives the best and the median block mean
per call. The layers of a fastnn call, outermost first: ``model(x)`` and ``model.predict(x)`` (the
user's entries), ``Engine.forward`` (guard, thread count, plan pool), ``InferPlan.forward`` (the compiled
forward writing a new array). ``GEMM FLOPs`` / 114 GFLOP/s (this machine's measured FMA peak at one
core) is the row's compute floor.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np

import fastnn
from fastnn.benchmarks import compiled as C
from fastnn.benchmarks import shapes as S


def alternate(fns: dict, rounds: int, block_s: float = 0.004) -> dict:
    blocks = {}
    for k, f in fns.items():
        f()
        f()
        t = time.perf_counter()
        f()
        blocks[k] = max(1, int(block_s / max(time.perf_counter() - t, 1e-7)))
    res = {k: [] for k in fns}
    keys = list(fns)
    gc.disable()
    try:
        for r in range(rounds):
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:
                f, b = fns[k], blocks[k]
                t = time.perf_counter()
                for _ in range(b):
                    f()
                res[k].append((time.perf_counter() - t) / b)
    finally:
        gc.enable()
    return {k: (min(v), float(np.median(v))) for k, v in res.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="tiny:1,tiny:32,medium:32,deep:1,deep:32")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args(argv)
    fastnn.set_num_threads(1)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| row | call | best us | median us | ORT best / best | ORT median / median | GEMM FLOPs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for item in args.rows.split(","):
        shape, n = item.split(":")
        n = int(n)
        sizes, _ = S.SHAPES[shape]
        model = S.fastnn_model(sizes, args.dtype).eval()
        x, _ = S.batch(sizes, n, args.dtype)
        engine = model._engine()
        engine.forward(x)
        plan = engine._infer_pool[0][0]
        fns = {
            "onnxruntime": C.ort_forward(sizes, n, args.dtype),
            "model(x)": lambda model=model, x=x: model(x),
            "model.predict(x)": lambda model=model, x=x, n=n: model.predict(x, batch_size=n),
            "Engine.forward": lambda engine=engine, x=x: engine.forward(x),
            "InferPlan.forward": lambda plan=plan, x=x: plan.forward(x),
            "numpy": S.numpy_forward(sizes, n, args.dtype),
        }
        res = alternate(fns, args.rounds)
        ort = res["onnxruntime"]
        flops = S.gemm_flops(sizes, n, train=False)
        for k, (best, med) in res.items():
            print(f"| {shape} b{n} {args.dtype} | {k} | {best * 1e6:.2f} | {med * 1e6:.2f} | {ort[0] / best:.2f}x "
                  f"| {ort[1] / med:.2f}x | {flops / 1e6:.2f}M |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
