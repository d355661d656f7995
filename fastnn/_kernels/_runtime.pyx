# Design note: _runtime - what the compiled kernels were built with, and the OpenMP pool.
#
# The queries go through csrc/fnn_omp.h so this module compiles with or without
# OpenMP (FASTNN_NO_OPENMP=1). fastnn._config wraps these with the BLAS side
# (threadpoolctl) so one knob governs both pools.

cdef extern from "fnn_omp.h" nogil:
    int fnn_omp_enabled()
    int fnn_omp_get_max_threads()
    void fnn_omp_set_num_threads(int n)
    int fnn_omp_version()


def openmp_enabled():
    """True if the kernels were compiled with OpenMP."""
    return bool(fnn_omp_enabled())


def openmp_version():
    """The _OPENMP date macro the kernels saw (e.g. 201511), 0 without OpenMP."""
    return fnn_omp_version()


def get_omp_threads():
    """omp_get_max_threads(): threads a prange may use (1 without OpenMP)."""
    return fnn_omp_get_max_threads()


def set_omp_threads(int n):
    """omp_set_num_threads(n) for subsequent parallel regions."""
    fnn_omp_set_num_threads(n)
