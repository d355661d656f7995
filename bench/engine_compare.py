"""The compiled training step (fastnn.engine) against the per-layer loop, pure NumPy and PyTorch, and
batch-1 inference latency; every group measured alternately in one process so machine drift cancels.

    python bench/engine_compare.py [--shapes tiny,medium,large,deep] [--threads 1] [--dtype float32]
                                   [--reps 30] [--latency-reps 2000] [--no-torch] [--blas-only]

Prints the median (and min) ms per step of: engine (Engine.train_step: one compiled call), engine-blas
(the same with every GEMM through BLAS, i.e. without fnn_gemm.h's small-GEMM kernels), per-layer (the
PyTorch-style five-step loop), numpy (bench/numpy_mlp.py) and torch; then the batch-1 784-128-10
forward latency in microseconds (Engine.forward including its Python entry, the NumPy expression
np.maximum(x @ W1 + b1, 0) @ W2 + b2, and torch under no_grad).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from shapes import SHAPES, batch, fastnn_step, numpy_step, torch_step

import fastnn
from fastnn._kernels import _blas
from fastnn.engine import Engine


def engine_step(sizes, n, dtype, small_gemm=True):
    """The compiled step: one Engine.train_step per batch (x and labels prepared once, as fit does)."""
    layers = [fastnn.Dense(i, o, activation="relu" if k < len(sizes) - 2 else None)
              for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    model = fastnn.Sequential(layers, dtype=dtype, seed=0)
    loss_fn = fastnn.losses.CrossEntropyLoss()
    opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
    x, y = batch(sizes, n, dtype)
    t = np.ascontiguousarray(y, np.int64)
    engine = Engine(model)
    _blas.set_small_gemm(small_gemm)   # read when the plan is built (the first step)
    try:
        engine.train_step(x, t, loss_fn, opt)
    finally:
        _blas.set_small_gemm(True)
    return lambda: engine.train_step(x, t, loss_fn, opt)


def alternate(fns: dict, reps: int, inner: int = 1) -> dict:
    """{name: (median, min) seconds per call}, calling each fn `inner` times per sample, interleaved."""
    for fn in fns.values():
        for _ in range(max(1, inner // 4)):
            fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner)
    return {name: (float(np.median(t)), float(np.min(t))) for name, t in times.items()}


def steps(args, use_torch):
    dtype = np.dtype(args.dtype)
    print(f"training step: threads={args.threads} dtype={dtype} reps={args.reps} (ms per step: median / min)")
    for shape in args.shapes.split(","):
        sizes, n = SHAPES[shape]
        fns = {"engine": engine_step(sizes, n, dtype)}
        if args.blas_only:
            fns["engine-blas"] = engine_step(sizes, n, dtype, small_gemm=False)
        fns.update({"per-layer": fastnn_step(sizes, n, dtype), "numpy": numpy_step(sizes, n, dtype)})
        if use_torch:
            fns["torch"] = torch_step(sizes, n, dtype)
        inner = 1 if shape in ("medium", "large") else 20
        reps = max(5, args.reps // 3) if shape == "large" else args.reps
        res = alternate(fns, reps, inner)
        eng = res["engine"][0]
        cells = "  ".join(f"{k} {1e3 * v[0]:8.3f}/{1e3 * v[1]:7.3f}" for k, v in res.items())
        ratios = "  ".join(f"x{v[0] / eng:.2f} vs {k}" for k, v in res.items() if k != "engine")
        print(f"{shape:7s} {cells}   engine {ratios}", flush=True)


def latency(args, use_torch):
    dtype = np.dtype(args.dtype)
    r = np.random.default_rng(0)
    model = fastnn.Sequential([fastnn.Dense(784, 128, activation="relu"), fastnn.Dense(128, 10)], dtype=dtype, seed=0)
    model.eval()
    W1, b1, W2, b2 = (p.data for p in model.parameters())
    x = r.standard_normal((1, 784)).astype(dtype)
    engine = Engine(model)
    fns = {"engine": lambda: engine.forward(x), "numpy": lambda: np.maximum(x @ W1 + b1, 0) @ W2 + b2}
    if use_torch:
        import torch

        tm = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        tm = tm.to(torch.float32 if dtype == np.float32 else torch.float64)
        xt = torch.from_numpy(x)

        def torch_forward():
            with torch.no_grad():
                return tm(xt)

        fns["torch"] = torch_forward
    res = alternate(fns, max(5, args.reps), args.latency_reps)
    eng = res["engine"][0]
    cells = "  ".join(f"{k} {1e6 * v[0]:7.2f}/{1e6 * v[1]:6.2f}" for k, v in res.items())
    ratios = "  ".join(f"x{v[0] / eng:.2f} vs {k}" for k, v in res.items() if k != "engine")
    print(f"batch-1 forward 784-128-10 (us: median / min): {cells}   engine {ratios}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="tiny,medium,large,deep")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--latency-reps", type=int, default=2000)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--blas-only", action="store_true", help="also time the engine with every GEMM through BLAS")
    args = ap.parse_args()
    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            use_torch = False
    fastnn.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)   # NumPy's own OpenBLAS too
    if args.shapes:
        steps(args, use_torch)
    if args.latency_reps:
        latency(args, use_torch)


if __name__ == "__main__":
    main()
