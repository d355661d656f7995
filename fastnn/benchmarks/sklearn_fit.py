"""`fastnn bench --sections sklearn`: ``fit`` of fastnn.sklearn.MLPClassifier vs scikit-learn's MLPClassifier.

Both estimators get identical parameters (scikit-learn's defaults: Adam, batch_size min(200, n),
alpha 1e-4, tol 1e-4, random_state 0, plus the case's hidden_layer_sizes and max_iter) and the same X
in the dtype of the row (both keep float32 X float32). Three cases (issue 10):

- ``digits``: the bundled digits (1,797 x 64, 10 classes), hidden (100,), max_iter 50: small batches,
  where scikit-learn's per-batch Python overhead dominates;
- ``synthetic``: 20,000 x 784, 10 classes (Gaussian clusters, below), hidden (100,), max_iter 20: both
  bound by the same GEMMs;
- ``wide``: the same data, hidden (256, 256), max_iter 20.

Each row is timed at each thread count (fastnn: ``n_threads`` and every pool pinned with
fastnn.benchmarks.harness.Pools; scikit-learn: its BLAS limited through threadpoolctl by the same pin),
the two estimators alternating, a fresh estimator per fit. The final training loss (``loss_``) and
``n_iter_`` of both are reported to show the work was the same. The GEMM floor of a fit is the GEMM
FLOPs of its n_iter_ epochs (forward, and backward without the first layer's input gradient:
fastnn.benchmarks.shapes.gemm_flops over all rows) at the sgemm/dgemm peak measured in the same run.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from . import shapes as S
from .harness import gemm_peak_for

#: case -> (data, hidden_layer_sizes, max_iter)
CASES = {
    "digits": ("digits", (100,), 50),
    "synthetic": ("synthetic", (100,), 20),
    "wide": ("synthetic", (256, 256), 20),
}
SYNTHETIC_ROWS, SYNTHETIC_FEATURES, SYNTHETIC_CLASSES = 20_000, 784, 10
IMPLS = ("fastnn", "sklearn")
#: 1-thread targets (issue 10): case -> (fastnn vs scikit-learn at least, fastnn's time / GEMM floor at most)
TARGETS = {"digits": (4.0, None), "synthetic": (1.8, 1.2), "wide": (1.3, None)}


def missing() -> str | None:
    """Why the section cannot run (None if it can)."""
    try:
        import sklearn.neural_network  # noqa: F401
    except ImportError:
        return "scikit-learn is not installed"
    try:
        import fastnn.sklearn  # noqa: F401
    except ImportError as exc:
        return f"fastnn.sklearn cannot be imported ({exc})"
    return None


def synthetic(n=SYNTHETIC_ROWS, features=SYNTHETIC_FEATURES, classes=SYNTHETIC_CLASSES, dtype="float64", seed=0):
    """(X, y): `classes` Gaussian clusters in `features` dimensions, unit noise, centres 0.05 N(0, 1) (overlapping
    enough that the training loss keeps falling over the 20 epochs); y int64."""
    r = np.random.default_rng(seed)
    centres = 0.05 * r.standard_normal((classes, features))
    y = r.integers(0, classes, n)
    X = centres[y] + r.standard_normal((n, features))
    return X.astype(dtype), y.astype(np.int64)


def data(name, dtype, rows=None):
    if name == "digits":
        from ..datasets import load_digits

        X, y = load_digits(dtype=dtype)
        return (X[:rows], y[:rows]) if rows else (X, y)
    return synthetic(rows or SYNTHETIC_ROWS, dtype=dtype)


def estimator(impl, hidden, max_iter, threads):
    params = dict(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=0)
    if impl == "sklearn":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(**params)
    from ..sklearn import MLPClassifier

    est = MLPClassifier(**params)
    if "n_threads" in est.get_params():
        est.set_params(n_threads=threads)
    return est


def _fit(impl, X, y, hidden, max_iter, threads):
    est = estimator(impl, hidden, max_iter, threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ConvergenceWarning at max_iter: the fit's length is the point
        t0 = time.perf_counter()
        est.fit(X, y)
        seconds = time.perf_counter() - t0
    return seconds, est


def run(args, pools, progress) -> list[dict]:
    """One row per (case, dtype, threads, impl): fit time (median and min over args.sklearn_repeats alternating
    rounds), final loss, n_iter_, GEMM FLOPs and the ratio to scikit-learn; `derive` adds the floor."""
    rows = []
    for case in args.sklearn_cases:
        name, hidden, max_iter = CASES[case]
        max_iter = args.sklearn_max_iter or max_iter
        for dtype in args.dtypes:
            X, y = data(name, dtype, args.sklearn_rows)
            sizes = [X.shape[1], *hidden, int(np.unique(y).size)]
            for n in args.threads:
                progress(f"sklearn fit: {case} {dtype} {n} thread(s) ...")
                pools.pin(n)
                for impl in IMPLS:   # warm-up: imports, first-call costs, the compiled plan's caches
                    _fit(impl, X[:256], y[:256], hidden, 1, n)
                times, fitted = {impl: [] for impl in IMPLS}, {}
                for r in range(args.sklearn_repeats):
                    for impl in IMPLS[r % 2:] + IMPLS[:r % 2]:   # alternate which goes first
                        pools.pin(n)
                        seconds, fitted[impl] = _fit(impl, X, y, hidden, max_iter, n)
                        times[impl].append(seconds)
                for impl in IMPLS:
                    est, t = fitted[impl], np.asarray(times[impl])
                    flops = S.gemm_flops(sizes, X.shape[0]) * est.n_iter_
                    med = float(np.median(t))
                    rows.append({
                        "case": case, "rows": X.shape[0], "sizes": sizes, "max_iter": max_iter, "dtype": dtype,
                        "threads": n, "impl": impl, "median_s": med, "min_s": float(t.min()),
                        "samples": int(t.size), "loss": float(est.loss_), "n_iter": int(est.n_iter_),
                        "gemm_flops": flops, "vs_sklearn": float(np.median(times["sklearn"])) / med,
                    })
    return rows


def derive(rows, peaks) -> None:
    """Add the GEMM floor (the fit's GEMM FLOPs at the run's sgemm/dgemm peak), % of that peak and the ratio."""
    for r in rows:
        peak = gemm_peak_for(peaks, r["threads"], r["dtype"])
        floor = r["gemm_flops"] / peak
        r.update(floor_s=floor, x_floor=r["median_s"] / floor, pct_peak=100.0 * floor / r["median_s"])


def targets(rows, target) -> None:
    """The 1-thread targets of issue 10 for fastnn's rows, through cli's `target(name, measured, bound, at_most)`."""
    for r in rows:
        if r["impl"] != "fastnn" or r["threads"] != 1 or r["case"] not in TARGETS:
            continue
        speedup, floor = TARGETS[r["case"]]
        where = f"sklearn fit {r['case']} {r['dtype']} 1 thr"
        target(f"{where}: vs scikit-learn", r["vs_sklearn"], speedup)
        if floor is not None:
            target(f"{where}: GEMM floor", r["x_floor"], floor, at_most=True)
