"""Sweeps on a Dask cluster: GridSearchCV under joblib's "dask" backend runs its fits on the workers of a
dask.distributed cluster and gives the same cv_results_ as the local run (docs/howto-sklearn.md).

The test starts a LocalCluster of 2 worker processes (1 thread each) and closes it on every path out (context
managers; a SIGALRM deadline turns a hang into a failure that still closes it)."""

import contextlib
import os
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn.datasets import load_digits

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")
from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastnn.sklearn import MLPClassifier  # noqa: E402

DEADLINE_S = 60   # the whole test; it takes ~5-15 s on a loaded 2-core machine


@contextlib.contextmanager
def _deadline(seconds):
    """Raise TimeoutError in the main thread after `seconds` (so the `with` blocks around it still close)."""
    def fire(signum, frame):
        raise TimeoutError(f"the Dask sweep took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _environ_restored():
    """Put os.environ back afterwards: distributed's nannies write their workers' settings (OMP_NUM_THREADS=1,
    OPENBLAS_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...) into the parent's environment, where they would make
    every later test in this process run with an explicit thread count."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


def _estimator():
    return MLPClassifier(hidden_layer_sizes=(16,), max_iter=15, random_state=0)


def _search(est):
    return GridSearchCV(est, {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2]}, cv=3)


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="the deadline needs SIGALRM (POSIX)")
def test_grid_search_on_a_local_dask_cluster_matches_the_local_run():
    X, y = load_digits(dtype="float64")
    X, y = X[:600], y[:600]
    env_before = os.environ.get("OMP_NUM_THREADS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ConvergenceWarning: max_iter is kept small on purpose
        local = _search(_estimator()).fit(X, y)

    # the workers import this fastnn (the tree under test), use 1 BLAS/OpenMP thread each, and are quiet
    root = str(Path(fastnn.__file__).resolve().parent.parent)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with _environ_restored(), _deadline(DEADLINE_S), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                     env=env, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            remote = _search(_estimator()).set_params(n_jobs=-1).fit(X, y)
        workers = {task["worker"] for task in stream.data}
        pids = client.run(os.getpid)

    assert workers and workers <= set(pids), "no fit ran on the cluster's workers"
    assert os.getpid() not in pids.values()
    assert remote.cv_results_["params"] == local.cv_results_["params"]
    for key in ["mean_test_score", "std_test_score", "rank_test_score"] + [f"split{i}_test_score" for i in range(3)]:
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key], err_msg=key)
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))   # the refit (local in both)
    assert "OMP_NUM_THREADS" not in os.environ or os.environ["OMP_NUM_THREADS"] == env_before

