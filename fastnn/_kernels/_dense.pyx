# Design note: _dense - a Dense layer's forward and backward, GEMMs through BLAS or own small-GEMM kernels.
#
# Layout: X (n, k), W (k, m) row-major (fastnn stores W as (in, out), z = x @ W + b),
# b (m,), Z and A (n, m). Forward: one GEMM, then one fused pass for bias + activation
# (fastnn._kernels._activations). Backward, given G = dL/dA:
#     dZ := G * f'(Z, A)            (fused element-wise pass; softmax row-wise)
#     dW := X^T @ dZ (+ dW)         (GEMM; beta = 1 accumulates into an existing gradient)
#     db := colsum(dZ) (+ db)       (double accumulators, blocks of columns: csrc/fnn_reduce.h)
#     dX := dZ @ W^T                (GEMM; skipped when the input needs no gradient)
# GEMMs: _blas.pxd's gemm_auto, i.e. the compiled plan's rule (use_small_gemm, fnn_gemm.h) and switch
# (_blas.set_small_gemm, read by each def wrapper): small operands and few rows go to csrc/fnn_gemm.h's
# unpacked AVX2/FMA kernels, the rest to BLAS, so a layer gives the same bits here as in the plan (and a
# batch-1 call avoids BLAS packing the whole weight for one row). dX := dZ @ W^T on the own kernels needs
# W^T in a work buffer of in*out elements, which the def wrapper allocates for that call only.
# Threads: GEMMs run from serial code; BLAS threads its own, the small kernels run on the calling
# thread (the rule keeps for them only GEMMs BLAS would not thread, or of few rows); element-wise
# passes and the column sums split across OpenMP threads from PAR_MIN_<pass> elements. BLAS is never
# called inside a prange body.

from cython.parallel cimport prange
import numpy as np

from fastnn._kernels._types cimport real
from fastnn._kernels._blas cimport _small_enabled, gemm_auto, use_small_gemm
from fastnn._kernels._csrc cimport (fnn_colsum_block_f32, fnn_colsum_block_f64, fnn_omp_get_max_threads,
                                    fnn_reduce_allow_simd, fnn_sum_sq_f32, fnn_sum_sq_f64)
from fastnn._kernels._activations cimport _check_act, bias_act_forward, act_backward
from fastnn._kernels._wrapcheck cimport _check

cpdef enum:
    PAR_MIN_COLSUM = 262144   # column sums are memory-bound, as _activations' PAR_MIN_CHEAP passes
cdef enum:
    COLBLOCK = 256


cdef inline void _colsum_block(const real* dz, real* db, Py_ssize_t n, Py_ssize_t m, Py_ssize_t j0,
                               Py_ssize_t width, bint accumulate) noexcept nogil:
    """Columns [j0, j0 + width): one double add chain per column over the rows in order (csrc/fnn_reduce.h)."""
    if real is float:
        fnn_colsum_block_f32(dz + j0, m, n, width, db + j0, accumulate)
    else:
        fnn_colsum_block_f64(dz + j0, m, n, width, db + j0, accumulate)


cdef void colsum(const real* dz, real* db, Py_ssize_t n, Py_ssize_t m, bint accumulate) noexcept nogil:
    """db := sum_rows dz (+ db)."""
    cdef Py_ssize_t nblocks = (m + COLBLOCK - 1) // COLBLOCK
    cdef Py_ssize_t blk, j0
    if nblocks == 1 or n * m < PAR_MIN_COLSUM:   # a plain loop: a serial prange still costs an OpenMP barrier
        for blk in range(nblocks):
            j0 = blk * COLBLOCK
            _colsum_block(dz, db, n, m, j0, min(<Py_ssize_t>COLBLOCK, m - j0), accumulate)
        return
    for blk in prange(nblocks, schedule="static"):
        j0 = blk * COLBLOCK
        _colsum_block(dz, db, n, m, j0, min(<Py_ssize_t>COLBLOCK, m - j0), accumulate)


cdef void sum_sq(const real* w, Py_ssize_t size, double* s) noexcept nogil:
    """s[0..15] += the 16 partial sums of w^2 in double (element j into s[j % 16]; csrc/fnn_reduce.h)."""
    if real is float:
        fnn_sum_sq_f32(w, size, s)
    else:
        fnn_sum_sq_f64(w, size, s)


cdef double sum_sq_total(const double* s) noexcept nogil:
    """The 16 partial sums of sum_sq added pairwise, in a fixed order."""
    cdef double t[8]
    cdef int i
    for i in range(8):
        t[i] = s[i] + s[i + 8]
    return ((t[0] + t[4]) + (t[2] + t[6])) + ((t[1] + t[5]) + (t[3] + t[7]))


def colsum_sums(const real[:, ::1] dz, real[::1] db, bint accumulate=False, bint simd=True):
    """db (+)= the column sums of dz, as the backward pass computes them; simd=False: the baseline loop even
    where AVX2 is there (the same bits). For tests."""
    _check(db.shape[0] == dz.shape[1] and dz.shape[0] > 0 and dz.shape[1] > 0, "db is (dz's columns,)")
    fnn_reduce_allow_simd(simd)
    with nogil:
        colsum(&dz[0, 0], &db[0], dz.shape[0], dz.shape[1], accumulate)
    fnn_reduce_allow_simd(1)


def sum_of_squares(arrays, bint simd=True):
    """sum of w^2 over the 1-D float arrays (of one dtype), as the plan computes scikit-learn's L2 term (16
    partial sums in double across the arrays); simd=False: the baseline loop. For tests."""
    cdef double s[16]
    cdef const float[::1] w32
    cdef const double[::1] w64
    cdef int i
    for i in range(16):
        s[i] = 0.0
    fnn_reduce_allow_simd(simd)
    try:
        for a in arrays:
            if a.dtype == np.float32:
                w32 = a
                if w32.shape[0]:
                    sum_sq(&w32[0], w32.shape[0], s)
            else:
                w64 = a
                if w64.shape[0]:
                    sum_sq(&w64[0], w64.shape[0], s)
    finally:
        fnn_reduce_allow_simd(1)
    return sum_sq_total(s)


cdef void dense_forward(const real* x, const real* w, const real* b, real* z, real* a,
                        int n, int k, int m, int act, double param, double param2,
                        bint small) noexcept nogil:
    """z := x @ w + b ; a := f(z). small: GEMMs may use the own kernels (gemm_auto)."""
    gemm_auto(small, False, False, n, m, k, <real>1, x, k, w, m, <real>0, z, m, <real*>NULL)
    bias_act_forward(z, b, a, n, m, act, param, param2)


cdef void dense_backward(const real* x, const real* w, const real* z, const real* a, real* g,
                         real* dw, real* db, real* dx, int n, int k, int m, int act, double param, double param2,
                         bint accumulate_w, bint accumulate_b, bint small, real* work) noexcept nogil:
    """dz := g * f'(z, a) (in place in g); dw (+)= x^T dz; db (+)= colsum(dz); dx := dz @ w^T if dx.

    small: GEMMs may use the own kernels (gemm_auto); dx's then needs work (in*out elements, else BLAS).
    """
    act_backward(g, z, a, g, n, m, act, param, param2)
    gemm_auto(small, True, False, k, m, n, <real>1, x, k, g, m, <real>(1 if accumulate_w else 0), dw, m,
              <real*>NULL)
    if db != NULL:
        colsum(g, db, n, m, accumulate_b)
    if dx != NULL:
        gemm_auto(small, False, True, n, k, m, <real>1, g, m, w, m, <real>0, dx, k, work)


cdef int _check_dense(Py_ssize_t n, Py_ssize_t k, Py_ssize_t m, const real[:, ::1] x, const real[:, ::1] w,
                      const real[:, ::1] z, const real[:, ::1] a, int act) except -1:
    _check(n > 0 and k > 0 and m > 0, f"empty operands (n={n}, in={k}, out={m})")
    _check(x.shape[1] == k and w.shape[0] == k and w.shape[1] == m, "x (n, in) and w (in, out)")
    _check(z.shape[0] == n and z.shape[1] == m and a.shape[0] == n and a.shape[1] == m, "z and a are (n, out)")
    _check_act(act)
    return 0


def forward(const real[:, ::1] x, const real[:, ::1] w, const real[::1] b, real[:, ::1] z_out,
            real[:, ::1] a_out, int act, double param=0.0, double param2=0.0):
    """z_out := x @ w + b ; a_out := f(z_out). b may be empty (no bias); a_out may be z_out."""
    _check_dense(x.shape[0], x.shape[1], w.shape[1], x, w, z_out, a_out, act)
    _check(b.shape[0] in (0, w.shape[1]), "b is empty or (out,)")
    cdef const real* bp = &b[0] if b.shape[0] > 0 else NULL
    cdef bint small = _small_enabled   # the plan's switch (_blas.set_small_gemm)
    with nogil:
        dense_forward(&x[0, 0], &w[0, 0], bp, &z_out[0, 0], &a_out[0, 0],
                      x.shape[0], x.shape[1], w.shape[1], act, param, param2, small)


def backward(const real[:, ::1] x, const real[:, ::1] w, const real[:, ::1] z, const real[:, ::1] a,
             real[:, ::1] g, real[:, ::1] dw_out, real[::1] db_out, real[:, ::1] dx_out,
             int act, double param=0.0, bint accumulate=False, accumulate_b=None, double param2=0.0):
    """g := g * f'(z, a); dw_out (+)= x^T g; db_out (+)= colsum(g); dx_out := g @ w^T.

    db_out or dx_out may be empty (no bias / no input gradient wanted). g is overwritten.
    accumulate adds into dw_out (and db_out, unless accumulate_b says otherwise).
    """
    cdef bint acc_b = accumulate if accumulate_b is None else accumulate_b
    cdef Py_ssize_t n = x.shape[0], k = x.shape[1], m = w.shape[1]
    _check_dense(n, k, m, x, w, z, a, act)
    _check(g.shape[0] == n and g.shape[1] == m, "g is (n, out)")
    _check(dw_out.shape[0] == k and dw_out.shape[1] == m, "dw_out is (in, out)")
    _check(db_out.shape[0] in (0, m), "db_out is empty or (out,)")
    _check(dx_out.shape[0] == 0 or (dx_out.shape[0] == n and dx_out.shape[1] == k), "dx_out is empty or (n, in)")
    cdef real* dbp = &db_out[0] if db_out.shape[0] > 0 else NULL
    cdef real* dxp = &dx_out[0, 0] if dx_out.shape[0] > 0 else NULL
    cdef bint small = _small_enabled   # the plan's switch (_blas.set_small_gemm)
    cdef real[::1] work
    cdef real* workp = NULL
    if small and dxp != NULL and use_small_gemm(n, k, m, real is double, fnn_omp_get_max_threads()):
        work = np.empty(k * m, np.float32 if real is float else np.float64)   # W^T for the own NT kernel
        workp = &work[0]
    with nogil:
        dense_backward(&x[0, 0], &w[0, 0], &z[0, 0], &a[0, 0], &g[0, 0], &dw_out[0, 0], dbp, dxp,
                       x.shape[0], x.shape[1], w.shape[1], act, param, param2, accumulate, acc_b, small, workp)


def matmul(const real[:, ::1] a, const real[:, ::1] b, real[:, ::1] c_out, bint trans_a=False,
           bint trans_b=False, double alpha=1.0, double beta=0.0):
    """c_out := alpha * op(a) @ op(b) + beta * c_out (row-major; BLAS, or the own kernels as gemm_auto decides)."""
    cdef int m = c_out.shape[0], n = c_out.shape[1]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    _check((a.shape[1] if trans_a else a.shape[0]) == m, "op(a) has c_out's rows")
    _check((b.shape[1] if trans_b else b.shape[0]) == k and (b.shape[0] if trans_b else b.shape[1]) == n,
           "op(b) is (k, n)")
    _check(m > 0 and n > 0 and k > 0, "empty operands")
    cdef bint small = _small_enabled   # the plan's switch (_blas.set_small_gemm)
    cdef real[::1] work
    cdef real* workp = NULL
    if small and trans_b and not trans_a:
        work = np.empty(n * k, np.float32 if real is float else np.float64)
        workp = &work[0]
    with nogil:
        gemm_auto(small, trans_a, trans_b, m, n, k, <real>alpha, &a[0, 0], a.shape[1], &b[0, 0], b.shape[1],
                  <real>beta, &c_out[0, 0], n, workp)
