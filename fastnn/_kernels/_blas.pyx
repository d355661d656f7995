# Design note: _blas - the GEMM dispatch's global switch and its test hook.
#
# The dispatch itself is inline C in _blas.pxd (gemm, gemm_auto, _small_gemm, _mm, _gemv_row), compiled
# into _dense and _plan. This module owns what must exist once per process: the switch _small_enabled
# (set_small_gemm / small_gemm_available), which the plans read when they are built and the per-layer
# path at every call, and the test hooks: gemm_small (the own kernels; wide=False turns the AVX-512VL wide
# panels off for that call, to check that they give the same bits), gemm_bias_act (the inference
# kernels with the bias and ReLU fused into the store) and infer_rule (the eval-mode plan's choice). It imports no other
# kernel module, so _dense and _plan both depend on it and not on each other at run time.

cimport numpy as cnp
import numpy as np

from fastnn._kernels._csrc cimport (fnn_gemm_available, fnn_gemm_wide, fnn_gemm_allow_wide, fnn_sgemm_small_acc,
                                    fnn_dgemm_small_acc, fnn_sgemm_bias_act, fnn_dgemm_bias_act, fnn_gemm_infer_rule,
                                    fnn_sgemm_small_gated, fnn_dgemm_small_gated)
from fastnn._kernels._wrapcheck cimport _ptr

cnp.import_array()

cdef bint _small_enabled = fnn_gemm_available() != 0


def small_gemm_available():
    """True if fnn_gemm.h's kernels run on this CPU (x86-64 with AVX2 and FMA) and are enabled."""
    return _small_enabled


def set_small_gemm(bint enabled):
    """Enable or disable the own small-GEMM kernels for plans built from now on and for per-layer calls
    (False: BLAS only)."""
    global _small_enabled
    _small_enabled = enabled and fnn_gemm_available() != 0


def wide_gemm_available():
    """True if the own kernels use their wide panels on this CPU (AVX-512VL: 32 vector registers)."""
    return fnn_gemm_wide() != 0


def gemm_small(a, b, c, bint trans_a=False, bint trans_b=False, bint wide=True, bint accumulate=False, gate=None):
    """c := op(a) @ op(b) (accumulate: c + op(a) @ op(b)) with the own small-GEMM kernels (C-contiguous 2-D arrays
    of one float dtype; for tests). wide=False: without the wide panels, as on a CPU without AVX-512VL.
    gate (c's shape): c := (a @ op(b)) * relu'(gate), the plan's input gradient (fnn_?gemm_small_gated)."""
    if not fnn_gemm_available():
        raise RuntimeError("the small-GEMM kernels need an x86-64 CPU with AVX2 and FMA")
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    if not (a.dtype == b.dtype == c.dtype and a.dtype in (np.float32, np.float64) and a.ndim == b.ndim == c.ndim == 2
            and a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous and c.flags.writeable):
        raise ValueError("gemm_small: a, b, c must be C-contiguous 2-D arrays of one float dtype (c writeable)")
    if trans_a and trans_b:
        raise ValueError("gemm_small: op(a) and op(b) cannot both be transposed")
    cdef int M = a.shape[1] if trans_a else a.shape[0]
    cdef int K = a.shape[0] if trans_a else a.shape[1]
    cdef int N = b.shape[0] if trans_b else b.shape[1]
    if (b.shape[1] if trans_b else b.shape[0]) != K or c.shape[0] != M or c.shape[1] != N or min(M, N, K) < 1:
        raise ValueError(f"gemm_small: shapes do not agree: op(a) {M}x{K}, op(b) from {b.shape}, c {c.shape}")
    work = np.empty(N * K if trans_b else 1, a.dtype)   # the transposed B (trans_b only)
    if gate is not None:
        gate = np.asarray(gate)
        if trans_a or accumulate or gate.shape != c.shape or gate.dtype != c.dtype or not gate.flags.c_contiguous:
            raise ValueError("gemm_small: gate needs op(a) = a, no accumulate, and a C-contiguous array like c")
    fnn_gemm_allow_wide(wide)
    if gate is not None:
        if a.dtype == np.float32:
            fnn_sgemm_small_gated(trans_b, M, N, K, <float*>_ptr(a), a.shape[1], <float*>_ptr(b), b.shape[1],
                                  <float*>_ptr(c), N, <float*>_ptr(work), <float*>_ptr(gate))
        else:
            fnn_dgemm_small_gated(trans_b, M, N, K, <double*>_ptr(a), a.shape[1], <double*>_ptr(b), b.shape[1],
                                  <double*>_ptr(c), N, <double*>_ptr(work), <double*>_ptr(gate))
    elif a.dtype == np.float32:
        fnn_sgemm_small_acc(trans_a, trans_b, accumulate, M, N, K, <float*>_ptr(a), a.shape[1], <float*>_ptr(b),
                            b.shape[1], <float*>_ptr(c), N, <float*>_ptr(work))
    else:
        fnn_dgemm_small_acc(trans_a, trans_b, accumulate, M, N, K, <double*>_ptr(a), a.shape[1], <double*>_ptr(b),
                            b.shape[1], <double*>_ptr(c), N, <double*>_ptr(work))
    fnn_gemm_allow_wide(1)


def gemm_bias_act(a, b, bias, c, bint relu=False, bint wide=True):
    """c := act(a @ b + bias) with the inference kernel (fused bias and ReLU; bias None: no bias); for tests.
    wide=False: as gemm_small's."""
    if not fnn_gemm_available():
        raise RuntimeError("the small-GEMM kernels need an x86-64 CPU with AVX2 and FMA")
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    bias = None if bias is None else np.asarray(bias)
    if not (a.dtype == b.dtype == c.dtype and a.dtype in (np.float32, np.float64) and a.ndim == b.ndim == c.ndim == 2
            and a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous and c.flags.writeable
            and (bias is None or (bias.dtype == a.dtype and bias.ndim == 1 and bias.flags.c_contiguous))):
        raise ValueError("gemm_bias_act: a, b, c (and bias) must be C-contiguous arrays of one float dtype (c writeable)")
    cdef int M = a.shape[0], K = a.shape[1], N = b.shape[1]
    if b.shape[0] != K or c.shape[0] != M or c.shape[1] != N or min(M, N, K) < 1 or (
            bias is not None and bias.shape[0] != N):
        raise ValueError(f"gemm_bias_act: shapes do not agree: a {a.shape}, b {b.shape}, c {c.shape}")
    cdef void* bp = NULL if bias is None else _ptr(bias)
    fnn_gemm_allow_wide(wide)
    if a.dtype == np.float32:
        fnn_sgemm_bias_act(M, N, K, <float*>_ptr(a), K, <float*>_ptr(b), N, <float*>_ptr(c), N, <float*>bp, relu)
    else:
        fnn_dgemm_bias_act(M, N, K, <double*>_ptr(a), K, <double*>_ptr(b), N, <double*>_ptr(c), N, <double*>bp, relu)
    fnn_gemm_allow_wide(1)


def infer_rule(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, bint f64, int threads):
    """Whether the eval-mode plan sends C[M, N] = A[M, K] @ B[K, N] to the own kernels (fnn_gemm_infer_rule; for tests)."""
    return fnn_gemm_infer_rule(M, N, K, f64, threads) != 0
