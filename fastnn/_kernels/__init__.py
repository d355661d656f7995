"""fastnn's compiled kernels.

Importing this package first makes the OpenMP pool of the kernels *passive*: its idle
workers sleep at once instead of spinning. On a machine with as many threads as cores,
a spinning OpenMP worker steals the core that BLAS's worker needs for the next GEMM (and
the other way round). Measured on the project's 2-core machines, 2 threads with GNU
OpenMP's default spinning ran a training step 5-13x slower than 1 thread; passive, they
run 1.4-1.8x faster. libgomp reads the policy once, when it is loaded (by the first
kernel module), so the variable is set only for that moment and then restored; a policy
the user set (OMP_WAIT_POLICY or GOMP_SPINCOUNT) is left alone.
"""

import os


def _load_openmp_passive():
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        from . import _runtime  # noqa: F401
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from . import _runtime  # noqa: F401 - loads libgomp, which reads the policy now
    finally:
        del os.environ["OMP_WAIT_POLICY"]


_load_openmp_passive()
