"""Runtime configuration: default dtype, the one thread knob, and show_config().

fastnn runs on two thread pools: the OpenMP pool of its element-wise kernels and
the pthread pool of the OpenBLAS that SciPy bundles (used through cython_blas).
``set_num_threads(n)`` sets both (BLAS through threadpoolctl), so they never
oversubscribe the cores. The default is the number of usable cores, or
``OMP_NUM_THREADS`` when it is set.
"""

from __future__ import annotations

import os
import platform
import sys

import numpy as np
import scipy
from threadpoolctl import ThreadpoolController

from . import _validation as V
from ._kernels import _runtime
from ._version import __version__

_DEFAULT_DTYPE = np.dtype(np.float32)
_controller: ThreadpoolController | None = None
_num_threads: int | None = None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _blas_controller() -> ThreadpoolController:
    global _controller
    if _controller is None:
        import scipy.linalg  # noqa: F401 - loads SciPy's OpenBLAS so threadpoolctl sees it

        _controller = ThreadpoolController()
    return _controller


def get_default_dtype() -> np.dtype:
    return _DEFAULT_DTYPE


def set_default_dtype(dtype) -> None:
    """Set the dtype new models use when none is given ('float32' or 'float64')."""
    global _DEFAULT_DTYPE
    _DEFAULT_DTYPE = V.resolve_dtype(dtype)


_MAX_THREADS = 1024   # OpenMP takes a C int; far more threads than cores only thrashes (and may not start)


def set_num_threads(n: int) -> None:
    """Use `n` threads (an int in [1, 1024]) in both fastnn's OpenMP kernels and the BLAS they call.

    In a child made by fork() (see _after_fork_in_child) the OpenMP kernels stay on one thread.
    """
    n = V.check_int(n, "n", low=1, high=_MAX_THREADS)
    global _num_threads
    _num_threads = n
    _runtime.set_omp_threads(omp_threads())
    _blas_controller().limit(limits=n, user_api="blas")


def omp_threads() -> int:
    """The OpenMP thread count fastnn's kernels use: get_num_threads(), or 1 in a forked child."""
    return 1 if _forked else get_num_threads()


# --------------------------------------------------------------------------------------------- fork
# GNU OpenMP's thread pool does not survive fork(): in the child, the forking thread's next parallel
# region with more than one thread waits forever for pool threads that were not copied. Python's
# fork start method (multiprocessing's default on Linux before 3.14), gunicorn --preload and joblib
# fork. So a forked child runs fastnn's OpenMP kernels on one thread (BLAS keeps its threads: OpenBLAS
# re-creates its pool after fork) and forgets the parent's other threads' uses of its models
# (_runtime.UseGuard). Plans are rebuilt for the new count. For parallel children use the spawn or
# forkserver start method, where fastnn starts fresh.
_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True
    _runtime.after_fork_in_child()
    _runtime.set_omp_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads() -> int:
    """The thread count set by set_num_threads (default: OMP_NUM_THREADS, else usable cores)."""
    if _num_threads is None:
        _init_threads()
    return _num_threads


def _init_threads() -> None:
    env = os.environ.get("OMP_NUM_THREADS", "")
    try:
        n = int(env.split(",")[0]) if env else _usable_cores()
    except ValueError:
        n = _usable_cores()
    set_num_threads(min(max(1, n), _MAX_THREADS))


def config() -> dict:
    """Everything show_config() prints, as a dict."""
    try:
        from . import _build_info as B

        flags, debug = f"{B.COMPILER_FLAGS} (link: {B.LINK_FLAGS or 'none'})", B.DEBUG_CYTHON
    except (ImportError, AttributeError):
        flags, debug = "unknown (no _build_info)", None

    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer", "filepath")}
        for info in _blas_controller().info()
        if info.get("user_api") == "blas"
    ]
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "openmp": _runtime.openmp_enabled(),
        "openmp_version": _runtime.openmp_version(),
        "num_threads": get_num_threads(),
        "omp_threads": _runtime.get_omp_threads(),
        "blas": blas,
        "default_dtype": str(_DEFAULT_DTYPE),
        "compiler_flags": flags,
        "debug_cython": debug,
    }


def show_config(file=None) -> None:
    """Print version, OpenMP and thread count, the BLAS libraries and their threads, dtype, flags."""
    c = config()
    out = file or sys.stdout
    lines = [
        f"fastnn {c['version']} (Python {c['python']}, NumPy {c['numpy']}, SciPy {c['scipy']})",
        f"platform:       {c['platform']}",
        f"OpenMP:         {'on' if c['openmp'] else 'off'}"
        + (f" (_OPENMP {c['openmp_version']}, max threads {c['omp_threads']})" if c["openmp"] else ""),
        f"threads:        {c['num_threads']} (fnn.set_num_threads)",
        f"default dtype:  {c['default_dtype']}",
        f"compiler flags: {c['compiler_flags']}" + (" [debug build]" if c["debug_cython"] else ""),
        "BLAS:",
    ]
    for b in c["blas"]:
        lines.append(
            f"  {b['internal_api']} {b['version']} threads={b['num_threads']} "
            f"({b['threading_layer']}) {b['filepath']}"
        )
    print("\n".join(lines), file=out)
