"""`fastnn bench`: training-step, optimizer-step and inference benchmarks against NumPy, PyTorch, scikit-learn.

    fastnn bench                       # everything: 4 shapes x float32/float64 x 1,2 threads (minutes)
    fastnn bench --quick               # smoke run: tiny and deep, few rounds (seconds)
    fastnn bench --shapes tiny --dtypes float32 --threads 1 --json out.json --format markdown
    fastnn bench --contended           # with one busy process beside it: fastnn's N- vs 1-thread ratios
    fastnn bench --sections sklearn    # fit of fastnn.sklearn.MLPClassifier vs scikit-learn's (minutes; opt-in)

Optional compiled alternatives (fastnn.benchmarks.compiled), each a 1-thread row, skipped with a
note when its package is missing, checked against the NumPy step before it is timed, its compile
time reported apart: jax.jit and torch.compile of the whole training step, ONNX Runtime (I/O
binding) for inference.

Implementations are timed alternately in one process (fastnn.benchmarks.harness.alternate),
each thread count inside the same alternation, with every thread pool pinned (and reported).
The GEMM peak and the memory bandwidth are measured in the same run; a step's floor is its
GEMM FLOPs at that peak plus one Adam pass over the parameters at that bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import numpy as np

from .._argtypes import counts, integer, items, number
from . import compiled as C
from . import harness as H
from . import optim as O
from . import shapes as S
from . import sklearn_fit as SK
from .harness import BusyProcess, OtherLoad, Pools, alternate, describe_pools, gemm_peak_for, measure_peaks, summary

SECTIONS = ("train", "optim", "inference", "sklearn")
DEFAULT_SECTIONS = ("train", "optim", "inference")   # sklearn (whole fits, minutes) runs when named
OPT_TARGET = 1.5                   # optimizer step <= 1.5x a copy of its bytes
FLOOR_TARGET = 1.3                 # every shape within 1.3x of its floor
TRAIN_TARGETS = {                  # float32, 1 thread: (vs NumPy, vs PyTorch at equal threads)
    "tiny": (1.4, 1.5), "medium": (1.1, 1.05), "large": (1.05, 1.05), "deep": (3.5, 3.0),
}
LARGE_2T_TARGET = 1.8              # large, 2 threads vs 1
INFER_TARGETS = (3.0, 5.0)         # tiny (784-128-10) at batch 1: vs NumPy forward, vs torch no_grad
FLOAT64_SLACK = 0.9                # float64: within 10% of the float32 ratios


# ------------------------------------------------------------------------------------------ arguments

def configure(parser: argparse.ArgumentParser) -> None:
    """`fastnn bench`'s arguments."""
    shapes, dtypes = list(S.SHAPES), ["float32", "float64"]
    parser.add_argument("--quick", action="store_true",
                        help="smoke run in seconds: shapes tiny,deep, optimizers on 1M parameters, few rounds")
    parser.add_argument("--json", metavar="PATH", help="also write every row, the pools and the peaks as JSON")
    parser.add_argument("--format", choices=("text", "markdown"), default="text", help="table format")
    parser.add_argument("--sections", type=items("section", SECTIONS), default=list(DEFAULT_SECTIONS),
                        help="comma-separated: train, optim, inference, sklearn (default: train,optim,inference; "
                             "sklearn: fit of fastnn.sklearn.MLPClassifier vs scikit-learn's, fastnn.benchmarks."
                             "sklearn_fit)")
    parser.add_argument("--shapes", type=items("shape", shapes), default=None,
                        help=f"comma-separated docs/design.md shapes (default: {','.join(shapes)}; --quick: tiny,deep)")
    parser.add_argument("--dtypes", type=items("dtype", dtypes), default=None,
                        help="comma-separated dtypes (default: float32,float64; --quick: float32)")
    parser.add_argument("--threads", type=counts("threads"), default=None,
                        help="comma-separated thread counts (default: 1 and the usable cores)")
    parser.add_argument("--optimizers", type=items("optimizer", list(O.OPTIMIZERS)), default=list(O.OPTIMIZERS),
                        help="comma-separated optimizer rows (default: all, one per fastnn.optim.OPTIMIZERS entry and "
                             "sgd-momentum)")
    parser.add_argument("--opt-sizes", type=counts("opt-sizes"), default=None,
                        help="comma-separated parameter counts, e.g. 1M,10M (default: 1M,10M; --quick: 1M)")
    parser.add_argument("--batches", type=counts("batches"), default=list(S.INFERENCE_BATCHES),
                        help="comma-separated inference batch sizes (default: 1,32,1024)")
    parser.add_argument("--sklearn-cases", type=items("sklearn case", list(SK.CASES)), default=list(SK.CASES),
                        help="comma-separated sklearn-section cases (default: digits,synthetic,wide)")
    parser.add_argument("--sklearn-rows", type=integer(20), default=None,
                        help=f"rows of the sklearn section's data (default: all: digits 1797, synthetic "
                             f"{SK.SYNTHETIC_ROWS}; --quick: 2000)")
    parser.add_argument("--sklearn-max-iter", type=integer(1), default=None,
                        help="max_iter of every sklearn-section fit (default: the case's, digits 50, synthetic and "
                             "wide 20; --quick: 3)")
    parser.add_argument("--sklearn-repeats", type=integer(1), default=None,
                        help="alternating rounds per sklearn-section row (default 2; --quick: 1)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-sklearn", action="store_true", help="leave scikit-learn out")
    parser.add_argument("--alternatives", type=items("alternative", list(C.ALTERNATIVES)),
                        default=list(C.ALTERNATIVES),
                        help="comma-separated compiled alternatives, 1-thread rows (default: all installed): "
                             + ", ".join(C.ALTERNATIVES))
    parser.add_argument("--no-alternatives", action="store_true", help="leave every compiled alternative out")
    parser.add_argument("--torch-compile-mode", default=C.TORCH_COMPILE_MODE,
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                        help=f"torch.compile's mode for the torch.compile rows (default {C.TORCH_COMPILE_MODE})")
    parser.add_argument("--contended", action="store_true",
                        help="run everything beside one busy process (while True: pass) and report fastnn's "
                             "N- vs 1-thread ratios")
    parser.add_argument("--repeats", type=integer(1), default=None,
                        help="alternation rounds per group (default 40; --quick: 5); each round runs a short "
                             "block of calls of every implementation")
    parser.add_argument("--budget", type=number(0.0, finite=False), default=None,
                        help="seconds per group after which rounds stop (at least 3 rounds; default 15; --quick: 0.5)")
    parser.add_argument("--gemm-n", type=integer(16), default=None,
                        help="GEMM size for the peak (default 2048; --quick 1024)")
    parser.add_argument("--copy-mib", type=integer(1), default=None,
                        help="MiB copied for the bandwidth (default 64; --quick 32)")
    parser.add_argument("--noisy", type=number(0.0, finite=False), default=0.2, metavar="CORES",
                        help="flag groups during which other processes used more than this many cores (default 0.2)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _resolve(args) -> argparse.Namespace:
    """Fill the defaults that depend on --quick and the machine."""
    from .harness import usable_cores

    a = argparse.Namespace(**vars(args))
    q = a.quick
    a.shapes = a.shapes or (["tiny", "deep"] if q else list(S.SHAPES))
    a.dtypes = a.dtypes or (["float32"] if q else ["float32", "float64"])
    cores = usable_cores()
    a.threads = a.threads or ([1, cores] if cores > 1 else [1])
    a.threads = sorted(set(a.threads))
    a.opt_sizes = a.opt_sizes or ([1_000_000] if q else list(O.OPT_SIZES))
    a.repeats = a.repeats if a.repeats is not None else (5 if q else 40)
    a.budget = a.budget if a.budget is not None else (0.5 if q else 15.0)
    a.gemm_n = a.gemm_n or (1024 if q else 2048)
    a.copy_mib = a.copy_mib or (32 if q else 64)
    a.min_rounds = min(3, max(1, a.repeats))
    a.sklearn_rows = a.sklearn_rows or (2000 if q else None)
    a.sklearn_max_iter = a.sklearn_max_iter or (3 if q else None)
    a.sklearn_repeats = a.sklearn_repeats or (1 if q else 2)
    a.alternatives = [] if a.no_alternatives else list(a.alternatives)
    a.notes, a.compile_rows = [], []
    if a.alternatives and 1 not in a.threads:
        a.notes.append("compiled alternatives left out: they are 1-thread rows and --threads has no 1")
        a.alternatives = []
    return a


# ------------------------------------------------------------------------------------------ running

def _import_optional(args) -> dict:
    """Which optional libraries and compiled alternatives take part: {"torch": bool, "sklearn": bool, "jax.jit": ...}.

    A missing alternative adds a note (printed) saying why it is left out.
    """
    have = {}
    for name, off in (("torch", args.no_torch), ("sklearn", args.no_sklearn)):
        have[name] = False
        if not off:
            try:
                __import__("sklearn.neural_network" if name == "sklearn" else name)
                have[name] = True
            except ImportError:
                pass
    for name in C.ALTERNATIVES:
        have[name] = False
        if name not in args.alternatives:
            continue
        why = C.missing(name)
        if why is None and name == "jax.jit":
            try:
                _, note = C.import_jax()   # before anything else starts threads: XLA's pool sized to one
            except Exception as exc:   # a broken install: the rows are left out, the reason printed
                why = f"import failed ({type(exc).__name__}: {exc})"
            else:
                if note:
                    args.notes.append(f"jax.jit: {note}")
        if why is None:
            have[name] = True
        else:
            args.notes.append(f"{name}: skipped, {why}")
            print(f"fastnn bench: {name} rows skipped: {why}", file=sys.stderr)
    return have


def _progress(args, text):
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def _time_group(args, pools, makers: dict, threads, alternatives=None, where="") -> dict:
    """Build each implementation per thread count (pinned), time them alternately; {(impl, n): summary}.

    ``alternatives`` ({impl: make}): compiled alternatives, built once at 1 thread (when 1 is among the
    thread counts); one that fails to build or to match the NumPy step is left out with a note, and
    each one's compile time and check go to args.compile_rows.
    """
    fns = {}
    for impl, make in makers.items():
        for n in threads:
            pools.pin(n)
            fns[impl, n] = (make(n), n)
    for impl, make in (alternatives or {}).items():
        if 1 not in threads:
            continue
        pools.pin(1)
        try:
            fn = make(1)
        except Exception as exc:   # the row is left out and the reason printed: the others still run
            args.notes.append(f"{where} {impl}: left out, {type(exc).__name__}: {exc}")
            continue
        args.compile_rows.append({"group": where, "impl": impl, "compile_s": fn.compile_s, "check": fn.check})
        fns[impl, 1] = (fn, 1)
    with OtherLoad() as load:
        samples = alternate(fns, pools, rounds=args.repeats, min_rounds=args.min_rounds, budget=args.budget)
    return {key: {**summary(s), "other_load": load.cores} for key, s in samples.items()}


def _shared(make):
    """A maker that builds once and returns that callable for every thread count."""
    built = []

    def maker(n):
        if not built:
            built.append(make(n))
        return built[0]

    return maker


def _per_thread(make):
    """A maker that builds a fresh callable per thread count (a plan may depend on the pinned threads)."""
    return make


def _ratio(a, b):
    return None if a is None or b is None or not b else a / b


def _median(res, impl, n):
    r = res.get((impl, n))
    return r["median_s"] if r else None


def run_train(args, pools, have) -> list[dict]:
    """Training-step rows (times and ratios); derive_train adds the peak and floor columns."""
    rows = []
    impls = {k: f for k, f in S.TRAIN_IMPLS.items() if have.get(k, True)}
    shared = {"numpy", "sklearn"}   # thread-independent objects: one instance for every thread count
    for shape in args.shapes:
        sizes, batch = S.SHAPES[shape]
        for dtype in args.dtypes:
            _progress(args, f"train step: {shape} {dtype} ...")
            makers = {impl: (_shared if impl in shared else _per_thread)(
                lambda n, f=factory, s=sizes, b=batch, d=dtype: f(s, b, d)) for impl, factory in impls.items()}
            alts = {impl: lambda n, f=factory, s=sizes, b=batch, d=dtype: f(s, b, d)
                    for impl, factory in _train_alternatives(args).items() if have.get(impl)}
            res = _time_group(args, pools, makers, args.threads, alts, f"train {shape} {dtype}")
            for (impl, n), st in res.items():
                med = st["median_s"]
                rows.append({
                    "shape": shape, "sizes": sizes, "batch": batch, "dtype": dtype, "threads": n, "impl": impl,
                    **st, "samples_per_s": batch / med, "gemm_flops": S.gemm_flops(sizes, batch),
                    "adam_bytes": S.adam_bytes(sizes, dtype),
                    "vs_numpy": _ratio(_median(res, "numpy", n), med),
                    "vs_torch": _ratio(_median(res, "torch", n), med),
                    "vs_1_thread": _ratio(_median(res, impl, min(args.threads)), med),
                })
    return _sorted(rows, ("shape", "dtype", "threads"), list(impls) + list(C.TRAIN_ALTERNATIVES))


def _train_alternatives(args) -> dict:
    mode = args.torch_compile_mode
    return {"jax.jit": C.jax_step,
            "torch.compile": lambda s, b, d: C.torch_compile_step(s, b, d, mode=mode)}


def derive_train(rows, peaks) -> None:
    """Add % of the GEMM peak, the floor and the ratio to it to each training-step row (in place)."""
    for r in rows:
        n, med = r["threads"], r["median_s"]
        peak = gemm_peak_for(peaks, n, r["dtype"])
        floor = S.floor_seconds(r["sizes"], r["batch"], r["dtype"], peak, peaks[n]["copy_bytes_per_s"])
        r.update(pct_peak=100.0 * r["gemm_flops"] / med / peak, floor_s=floor, x_floor=med / floor)


def best_peaks(first: dict, second: dict) -> dict:
    """Per thread count, the higher GEMM and copy rates of two measurements."""
    out = {}
    for n, p in first.items():
        q = second[n]
        fields = ("sgemm_flops", "dgemm_flops", "copy_bytes_per_s", "inplace_bytes_per_s")
        out[n] = {**p, **{k: max(p[k], q[k]) for k in fields},
                  "measured": "best of the run's start and end"}
    return out


def run_optim(args, pools, have) -> tuple[list[dict], list[str]]:
    rows, notes = [], []
    dtype = "float32"
    for name in args.optimizers:   # rows of fastnn.optim.OPTIMIZERS (fastnn.benchmarks.optim.OPTIMIZERS)
        torch_row = have["torch"] and O.torch_has(name)   # scikit-learn's optimizers have no torch.optim class
        fused = torch_row and O.torch_has_fused(name)
        if not O.numpy_has(name):
            notes.append(f"{name}: no NumPy reference in fastnn.benchmarks.optim (numpy column left out)")
        for size in args.opt_sizes:
            _progress(args, f"optimizer step: {name} {size} ...")
            nbytes = O.step_bytes(name, size, dtype)
            makers = {"fastnn": lambda n, k=name, s=size: O.fastnn_opt_step(k, s, dtype)}
            if O.numpy_has(name):
                makers["numpy"] = lambda n, k=name, s=size: O.numpy_opt_step(k, s, dtype)
            if torch_row:
                makers["torch"] = lambda n, k=name, s=size: O.torch_opt_step(k, s, dtype)
                if fused:
                    makers["torch-fused"] = lambda n, k=name, s=size: O.torch_opt_step(k, s, dtype, fused=True)
            buffers = O.copy_buffers(nbytes)
            makers["memcpy"] = lambda n, b=buffers, nb=nbytes: O.copy_step(nb, n, pools.executor(n), b)
            makers["inplace"] = lambda n, b=buffers, nb=nbytes: O.inplace_step(nb, n, pools.executor(n), b[0])
            # optimizer state is thread-independent: one instance per implementation for every thread count
            makers = {impl: make if impl in ("memcpy", "inplace") else _shared(make) for impl, make in makers.items()}
            res = _time_group(args, pools, makers, args.threads)
            for (impl, n), st in res.items():
                med = st["median_s"]
                x_copy = _ratio(med, _median(res, "memcpy", n))
                rows.append({
                    "optimizer": name, "params": size, "dtype": dtype, "threads": n, "impl": impl, **st,
                    "bytes": nbytes, "bytes_per_s": nbytes / med, "x_copy": x_copy,
                    "x_inplace": _ratio(med, _median(res, "inplace", n)),
                    "vs_numpy": _ratio(_median(res, "numpy", n), med),
                    "vs_torch": _ratio(_median(res, "torch", n), med),
                    "target_pass": (x_copy <= OPT_TARGET) if impl == "fastnn" else None,
                })
            del makers, buffers
    order = ["fastnn", "numpy", "torch", "torch-fused", "memcpy", "inplace"]
    return _sorted(rows, ("optimizer", "params", "threads"), order), notes


def run_inference(args, pools, have) -> list[dict]:
    rows = []
    impls = {"fastnn": S.fastnn_forward}
    if S.fastnn_has_predict():
        impls["fastnn.predict"] = lambda s, n, d: S.fastnn_forward(s, n, d, method="predict")
    impls["numpy"] = S.numpy_forward
    if have["torch"]:
        impls["torch"] = S.torch_forward
    for shape in args.shapes:
        sizes, _ = S.SHAPES[shape]
        for dtype in args.dtypes:
            for batch in args.batches:
                _progress(args, f"inference: {shape} {dtype} batch {batch} ...")
                makers = {impl: lambda n, f=f, s=sizes, b=batch, d=dtype: f(s, b, d) for impl, f in impls.items()}
                alts = {impl: lambda n, f=f, s=sizes, b=batch, d=dtype: f(s, b, d)
                        for impl, f in C.INFERENCE_ALTERNATIVES.items() if have.get(impl)}
                res = _time_group(args, pools, makers, args.threads, alts, f"inference {shape} {dtype} b{batch}")
                for (impl, n), st in res.items():
                    med = st["median_s"]
                    rows.append({
                        "shape": shape, "sizes": sizes, "batch": batch, "dtype": dtype, "threads": n, "impl": impl,
                        **st, "samples_per_s": batch / med,
                        "vs_numpy": _ratio(_median(res, "numpy", n), med),
                        "vs_torch": _ratio(_median(res, "torch", n), med),
                        "vs_1_thread": _ratio(_median(res, impl, min(args.threads)), med),
                    })
    return _sorted(rows, ("shape", "dtype", "batch", "threads"), list(impls) + list(C.INFERENCE_ALTERNATIVES))


def _sorted(rows, keys, impl_order):
    order = {impl: i for i, impl in enumerate(impl_order)}
    first = {}
    for r in rows:   # keep the order groups were measured in
        first.setdefault(tuple(r[k] for k in keys[:-1]), len(first))
    return sorted(rows, key=lambda r: (first[tuple(r[k] for k in keys[:-1])], r[keys[-1]], order.get(r["impl"], 99)))


# ------------------------------------------------------------------------------------------ targets

def targets(train, infer, threads) -> list[dict]:
    """fastnn's performance targets, checked against this run's rows (float64 with 10% slack)."""
    out = []
    lo = min(threads)
    for r in train:
        shape, dtype, n = r["shape"], r["dtype"], r["threads"]
        if r["impl"] != "fastnn":
            continue
        slack = 1.0 if dtype == "float32" else FLOAT64_SLACK
        need_np, need_torch = TRAIN_TARGETS[shape]
        if n == 1:
            _target(out, f"train {shape} {dtype} 1 thr: vs NumPy", r["vs_numpy"], need_np * slack)
            _target(out, f"train {shape} {dtype} 1 thr: floor", r["x_floor"], FLOOR_TARGET / slack, at_most=True)
        _target(out, f"train {shape} {dtype} {n} thr: vs PyTorch", r["vs_torch"], need_torch * slack)
        if n != lo:
            _target(out, f"train {shape} {dtype} {n} thr: vs {lo} thr (never slower)", r["vs_1_thread"], 1.0)
            if shape == "large" and n == 2 and lo == 1:
                _target(out, f"train large {dtype} 2 thr: vs 1 thr", r["vs_1_thread"], LARGE_2T_TARGET * slack)
    for r in infer:
        if r["impl"] == "fastnn" and r["shape"] == "tiny" and r["batch"] == 1 and r["threads"] == 1:
            slack = 1.0 if r["dtype"] == "float32" else FLOAT64_SLACK
            _target(out, f"inference tiny batch 1 {r['dtype']} 1 thr: vs NumPy", r["vs_numpy"],
                    INFER_TARGETS[0] * slack)
            _target(out, f"inference tiny batch 1 {r['dtype']} 1 thr: vs PyTorch no_grad", r["vs_torch"],
                    INFER_TARGETS[1] * slack)
    return out


def _target(out, name, measured, bound, at_most=False):
    if measured is None:
        return
    ok = measured <= bound if at_most else measured >= bound
    out.append({"target": name, "required": f"{'<=' if at_most else '>='} {bound:.2f}x", "measured": measured,
                "pass": bool(ok)})


# ------------------------------------------------------------------------------------------ tables

def _t(s):
    """Seconds as a short millisecond figure."""
    ms = s * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}"


def _us(s):
    us = s * 1e6
    return f"{us:.0f}" if us >= 100 else f"{us:.1f}"


def _x(v):
    return "-" if v is None else f"{v:.2f}x"


def _si(v):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _col(header, fn, align=">"):
    return header, fn, align


TRAIN_COLUMNS = [
    _col("shape", lambda r: r["shape"], "<"), _col("dtype", lambda r: r["dtype"], "<"),
    _col("thr", lambda r: str(r["threads"])), _col("impl", lambda r: r["impl"], "<"),
    _col("median ms", lambda r: _t(r["median_s"])), _col("min ms", lambda r: _t(r["min_s"])),
    _col("samples/s", lambda r: _si(r["samples_per_s"])), _col("% peak", lambda r: f"{r['pct_peak']:.0f}%"),
    _col("floor ms", lambda r: _t(r["floor_s"])), _col("x floor", lambda r: _x(r["x_floor"])),
    _col("vs numpy", lambda r: _x(r["vs_numpy"])), _col("vs torch", lambda r: _x(r["vs_torch"])),
    _col("vs 1 thr", lambda r: _x(r["vs_1_thread"])),
]
OPTIM_COLUMNS = [
    _col("optimizer", lambda r: r["optimizer"], "<"), _col("params", lambda r: _si(r["params"])),
    _col("thr", lambda r: str(r["threads"])), _col("impl", lambda r: r["impl"], "<"),
    _col("median ms", lambda r: _t(r["median_s"])), _col("min ms", lambda r: _t(r["min_s"])),
    _col("MB", lambda r: f"{r['bytes'] / 1e6:.0f}"), _col("GB/s", lambda r: f"{r['bytes_per_s'] / 1e9:.1f}"),
    _col("x copy", lambda r: _x(r["x_copy"])), _col("x inplace", lambda r: _x(r["x_inplace"])),
    _col("vs numpy", lambda r: _x(r["vs_numpy"])),
    _col("vs torch", lambda r: _x(r["vs_torch"])),
    _col(f"<= {OPT_TARGET}x copy", lambda r: "" if r["target_pass"] is None else "pass" if r["target_pass"] else "FAIL",
         "<"),
]
INFER_COLUMNS = [
    _col("shape", lambda r: r["shape"], "<"), _col("batch", lambda r: str(r["batch"])),
    _col("dtype", lambda r: r["dtype"], "<"), _col("thr", lambda r: str(r["threads"])),
    _col("impl", lambda r: r["impl"], "<"),
    _col("median us", lambda r: _us(r["median_s"])), _col("min us", lambda r: _us(r["min_s"])),
    _col("samples/s", lambda r: _si(r["samples_per_s"])), _col("vs numpy", lambda r: _x(r["vs_numpy"])),
    _col("vs torch", lambda r: _x(r["vs_torch"])), _col("vs 1 thr", lambda r: _x(r["vs_1_thread"])),
]
COMPILE_COLUMNS = [
    _col("group", lambda r: r["group"], "<"), _col("impl", lambda r: r["impl"], "<"),
    _col("compile s", lambda r: f"{r['compile_s']:.2f}"),
    _col("check (max rel. diff vs NumPy)", lambda r: f"{r['check']:.1e}"),
]
CONTENDED_COLUMNS = [
    _col("section", lambda r: r["section"], "<"), _col("shape", lambda r: r["shape"], "<"),
    _col("batch", lambda r: str(r["batch"])), _col("dtype", lambda r: r["dtype"], "<"),
    _col("impl", lambda r: r["impl"], "<"), _col("thr", lambda r: str(r["threads"])),
    _col("median ms", lambda r: _t(r["median_s"])), _col("vs 1 thr", lambda r: _x(r["vs_1_thread"])),
]
SKLEARN_COLUMNS = [
    _col("case", lambda r: r["case"], "<"), _col("rows", lambda r: str(r["rows"])),
    _col("layers", lambda r: "-".join(map(str, r["sizes"])), "<"), _col("dtype", lambda r: r["dtype"], "<"),
    _col("thr", lambda r: str(r["threads"])), _col("impl", lambda r: r["impl"], "<"),
    _col("fit s", lambda r: f"{r['median_s']:.3g}"), _col("min s", lambda r: f"{r['min_s']:.3g}"),
    _col("epochs", lambda r: str(r["n_iter"])), _col("final loss", lambda r: f"{r['loss']:.6g}"),
    _col("floor s", lambda r: f"{r['floor_s']:.3g}"), _col("x floor", lambda r: _x(r["x_floor"])),
    _col("vs sklearn", lambda r: _x(r["vs_sklearn"])),
]
TARGET_COLUMNS = [
    _col("target", lambda r: r["target"], "<"), _col("required", lambda r: r["required"], "<"),
    _col("measured", lambda r: _x(r["measured"])), _col("", lambda r: "pass" if r["pass"] else "MISS", "<"),
]


def format_table(rows, columns, fmt="text") -> str:
    """rows as a fixed-width text table, or a Markdown table (fmt="markdown")."""
    cells = [[h for h, _, _ in columns]] + [[f(r) for _, f, _ in columns] for r in rows]
    if fmt == "markdown":
        rule = "|" + "|".join("---:" if align == ">" else "---" for _, _, align in columns) + "|"
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines[:1] + [rule] + lines[1:])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]

    def line(c):
        return "  ".join(f"{v:{align}{w}}" for v, w, (_, _, align) in zip(c, widths, columns)).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(c) for c in cells[1:]])


def header_lines(result) -> list[str]:
    v, m = result["meta"]["versions"], result["meta"]["machine"]
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if val and k not in ("python", "threadpoolctl"))
    lines = [f"fastnn bench - {libs}; Python {v['python']}",
             f"machine: {m['cpu']}, {m['usable_cores']} usable cores, {m['platform']}, {m['date']}",
             f"fastnn's own GEMM kernels: {m.get('gemm_kernels', 'not recorded')}"]
    for n, rep in result["pools"].items():
        lines.append(f"pools at {n} thread(s): {describe_pools(rep)}")
    for n, p in result["peaks"].items():
        lines.append(f"peaks at {n} thread(s): sgemm {p['sgemm_flops'] / 1e9:.0f} GFLOP/s, dgemm "
                     f"{p['dgemm_flops'] / 1e9:.0f} GFLOP/s (SciPy BLAS, {p['gemm_n']}^3); copy "
                     f"{p['copy_bytes_per_s'] / 1e9:.1f} GB/s, in place {p['inplace_bytes_per_s'] / 1e9:.1f} GB/s "
                     f"({p['copy_mib']} MiB, read+write); best of "
                     f"{p['repeats']} at the run's start and end")
    meta = result["meta"]
    lines.append(f"fastnn training step: {meta['fastnn_step']}")
    lines.append(f"timing: {meta['timing']}")
    load = meta.get("other_load") or {}
    if load.get("cores") is not None:
        avg = (f" (load average before {load['loadavg_before'][0]:.2f}, after {load['loadavg_after'][0]:.2f})"
               if load.get("loadavg_before") and load.get("loadavg_after") else "")
        lines.append(f"other processes kept {load['cores']:.2f} cores busy on average during the run{avg}")
    return lines


TITLES = {
    "train_step": "Training step (ReLU MLP, softmax cross-entropy, Adam lr=1e-3, one step on a fixed batch). "
                  "% peak: GEMM FLOPs / time / GEMM peak of the dtype; floor: GEMM FLOPs at peak + one Adam pass "
                  "at copy bandwidth; vs X: X's time / this time (>1: faster than X)",
    "optimizer_step": "Optimizer step on one flat float32 arena. MB: bytes streamed once (params, grads, state read; "
                      "params, state written); x copy: time / time of np.copyto moving as many bytes (memcpy row); "
                      "x inplace: time / time of an in-place pass (a *= 1) moving as many bytes (inplace row)",
    "inference": "Inference (eval mode; fastnn model(x) under fnn.no_grad(), NumPy forward, torch under no_grad)",
    "sklearn_fit": "scikit-learn estimators (--sections sklearn): fit of fastnn.sklearn.MLPClassifier vs "
                   "sklearn.neural_network.MLPClassifier, identical parameters (Adam, batch 200, random_state 0); "
                   "final loss: loss_ after the fit (the same work); floor: the fit's GEMM FLOPs at the run's "
                   "GEMM peak; vs sklearn: scikit-learn's time / this time",
    "targets": "Targets (fastnn's performance goals; float64 with 10% slack, except the sklearn fit rows)",
    "compile": "Compiled alternatives: compile time (jax.jit: lower + compile; torch.compile: first call, which "
               "also runs one step; onnxruntime: InferenceSession creation), not part of the timed rows; check: "
               "largest difference from the NumPy step's first losses (training) or logits (inference), "
               "relative to the largest value",
    "contended": "Contended (--contended): one other process ran `while True: pass` throughout; fastnn's rows "
                 "at more than 1 thread vs its own 1-thread time (>1: the extra threads help)",
}


def print_result(result, fmt="text", file=None) -> None:
    out = file or sys.stdout
    print("\n".join(header_lines(result)), file=out)
    for key, cols in (("train_step", TRAIN_COLUMNS), ("optimizer_step", OPTIM_COLUMNS),
                      ("inference", INFER_COLUMNS), ("sklearn_fit", SKLEARN_COLUMNS), ("compile", COMPILE_COLUMNS),
                      ("contended", CONTENDED_COLUMNS),
                      ("targets", TARGET_COLUMNS)):
        if result.get(key):
            print(f"\n{TITLES[key]}\n", file=out)
            print(format_table(result[key], cols, fmt), file=out)
    for note in result.get("notes", []):
        print(f"note: {note}", file=out)


# ------------------------------------------------------------------------------------------ entry points

def contended_rows(train, infer) -> list[dict]:
    """fastnn's rows at more than the lowest thread count, with their ratio to its own lowest-thread time."""
    out = []
    for section, rows in (("train", train), ("inference", infer)):
        lo = min((r["threads"] for r in rows), default=None)
        for r in rows:
            if r["impl"].startswith("fastnn") and r["threads"] != lo:
                out.append({"section": section, "shape": r["shape"], "batch": r["batch"], "dtype": r["dtype"],
                            "impl": r["impl"], "threads": r["threads"], "median_s": r["median_s"],
                            "vs_1_thread": r["vs_1_thread"]})
    return out


def run(args: argparse.Namespace) -> int:
    """`fastnn bench`: measure, print the tables, write JSON if asked; returns the exit status."""
    a = _resolve(args)
    have = _import_optional(a)
    pools = Pools()
    pools.refresh()   # after torch/sklearn imports, so their pools are seen
    result = {"schema": 1, "notes": []}
    load_before = _loadavg()
    busy = BusyProcess() if a.contended else None
    try:
        with warnings.catch_warnings(), (busy or _nothing()), OtherLoad() as run_load:
            warnings.simplefilter("ignore")   # e.g. scikit-learn's per-call notices; timings only
            result["pools"] = {}
            for n in a.threads:
                pools.pin(n)
                result["pools"][str(n)] = pools.report()
            _progress(a, "measuring GEMM peak and copy bandwidth ...")
            peak_args = (pools, a.threads, a.gemm_n, a.copy_mib, 2 if a.quick else 3)
            peaks = measure_peaks(*peak_args)
            result["meta"] = {
                "versions": H.versions(), "machine": H.machine(), "args": {k: v for k, v in vars(a).items()},
                "fastnn_step": ("model.train_step(x, y) after model.compile(Adam, CrossEntropyLoss)"
                                if S.fastnn_step_path() == "train_step" else
                                "five-step loop: loss_fn(model(x), y), model.backward, opt.step, opt.zero_grad"),
                "fastnn_step_path": S.fastnn_step_path(),
                "timing": f"alternating round-robin, up to {a.repeats} rounds or {a.budget:g} s per group "
                          f"(at least {a.min_rounds}), median and min per call",
                "torch": have["torch"], "sklearn": have["sklearn"],
                "alternatives": {name: have[name] for name in C.ALTERNATIVES},
                "torch_compile_mode": a.torch_compile_mode,
                "contended": {"pid": busy.pid} if busy else None,
            }
            result["train_step"] = run_train(a, pools, have) if "train" in a.sections else []
            if "optim" in a.sections:
                result["optimizer_step"], notes = run_optim(a, pools, have)
                result["notes"] += notes
            else:
                result["optimizer_step"] = []
            result["inference"] = run_inference(a, pools, have) if "inference" in a.sections else []
            result["sklearn_fit"] = []
            if "sklearn" in a.sections:
                why = "--no-sklearn" if a.no_sklearn else SK.missing()
                if why is None:
                    result["sklearn_fit"] = SK.run(a, pools, lambda text: _progress(a, text))
                else:
                    a.notes.append(f"sklearn section: skipped, {why}")
            _progress(a, "measuring GEMM peak and copy bandwidth again ...")
            peaks = best_peaks(peaks, measure_peaks(*peak_args))   # the better of the run's start and end
            result["peaks"] = {str(n): p for n, p in peaks.items()}
            derive_train(result["train_step"], peaks)
            SK.derive(result["sklearn_fit"], peaks)
            result["targets"] = targets(result["train_step"], result["inference"], a.threads)
            SK.targets(result["sklearn_fit"], lambda *t, **kw: _target(result["targets"], *t, **kw))
            result["compile"] = a.compile_rows
            result["contended"] = contended_rows(result["train_step"], result["inference"]) if busy else []
        result["meta"]["other_load"] = {"cores": run_load.cores, "loadavg_before": load_before,
                                        "loadavg_after": _loadavg()}
        if busy:
            result["meta"]["contended"]["stopped"] = busy.stopped
            result["notes"].append(f"contended: busy process {busy.pid} ran throughout and was stopped "
                                   f"(exit status {busy.returncode}); 'other load' counts it, so the noisy "
                                   "threshold is raised by one core")
        result["notes"] = a.notes + result["notes"] + _noisy(result, a.noisy + (1.0 if busy else 0.0))
    finally:
        pools.close()   # every pool back to its thread count before the run
    print_result(result, a.format)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1, default=_json_default)
    return 0


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _loadavg():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _noisy(result, threshold) -> list[str]:
    """Notes naming the groups during which other processes kept more than `threshold` cores busy."""
    notes, seen = [], set()
    for key, fields in (("train_step", ("shape", "dtype")), ("optimizer_step", ("optimizer", "params")),
                        ("inference", ("shape", "dtype", "batch"))):
        for r in result.get(key) or []:
            group = (key,) + tuple(r[f] for f in fields)
            if group in seen or r.get("other_load") is None or r["other_load"] <= threshold:
                continue
            seen.add(group)
            notes.append(f"{' '.join(map(str, group))}: other processes kept {r['other_load']:.2f} cores busy "
                         "while it was timed (noisy)")
    return notes


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastnn bench", description=__doc__.split("\n")[0])
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
