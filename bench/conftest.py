"""pytest-benchmark setup: every thread pool pinned per benchmark (fastnn.benchmarks.harness.Pools).

`pytest bench/ --benchmark-only` runs these; the normal `pytest` run collects only tests/ (pyproject testpaths).
"""

import contextlib

import pytest

from fastnn.benchmarks.harness import Pools, describe_pools

for _name in ("torch", "sklearn.neural_network"):   # load their pools before the pools are scanned
    with contextlib.suppress(ImportError):
        __import__(_name)

THREADS = [1, 2]


@pytest.fixture(scope="session")
def pools():
    p = Pools()
    p.refresh()
    yield p
    p.close()   # every pool back to its thread count before the session


@pytest.fixture(params=THREADS, ids=lambda n: f"{n}thr")
def threads(request, pools, benchmark):
    """Pin fastnn's OpenMP pool, NumPy's and SciPy's OpenBLAS and torch's pool to n threads; record them."""
    n = request.param
    pools.pin(n)
    benchmark.extra_info["threads"] = n
    benchmark.extra_info["pools"] = describe_pools(pools.report())
    return n
