# Row-major GEMM over scipy.linalg.cython_blas, and the shared BLAS-or-own-kernels rule (inlined into
# every kernel module that cimports it).
#
# NumPy arrays are C-ordered (row-major) and BLAS is column-major. A row-major
# matrix M (r x c, leading dimension c) is the column-major matrix M^T, so
#     C = op(A) @ op(B)   (row-major)   <=>   C^T = op(B)^T @ op(A)^T   (column-major)
# and we call ?gemm with A and B swapped and the same transpose flags.
#
# gemm is always BLAS. gemm_auto sends a GEMM to csrc/fnn_gemm.h's unpacked AVX2/FMA kernels where
# use_small_gemm() says they beat BLAS (small operands, few rows: no packing, no dispatch; the rule and
# its measurements are fnn_gemm_small_rule in fnn_gemm.h), else to gemm. use_small_gemm is THE rule:
# the compiled plan (_plan._small_gemm) and the per-layer path (_dense, through gemm_auto) both use it,
# so a layer gives the same bits either way.
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv
from fastnn._kernels._types cimport real

cdef extern from "fnn_gemm.h" nogil:
    int fnn_gemm_available()
    int fnn_gemm_small_rule(long M, long N, long K, int f64, int threads)
    void fnn_sgemm_small_acc(int trans_a, int trans_b, int accumulate, int M, int N, int K, const float* A,
                             int lda, const float* B, int ldb, float* C, int ldc, float* work)
    void fnn_dgemm_small_acc(int trans_a, int trans_b, int accumulate, int M, int N, int K, const double* A,
                             int lda, const double* B, int ldb, double* C, int ldc, double* work)

cdef extern from "fnn_omp.h" nogil:
    int fnn_omp_get_max_threads()


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      real alpha, const real* a, int lda, const real* b, int ldb,
                      real beta, real* c, int ldc) noexcept nogil:
    """C[m, n] := alpha * op(A)[m, k] @ op(B)[k, n] + beta * C (all row-major), through BLAS.

    One row (m == 1) is a GEMV: ?gemm would pack all of B for it (784x128 float32: 75 us against 7 us).
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef char tv
    cdef int inc_a = lda if trans_a else 1, one = 1
    if m == 0 or n == 0:
        return
    if m == 1 and k > 0:   # c^T := op(B)^T a^T: row-major B (k, n) is column-major (n, k) - no transpose
        if trans_b:
            tv = b'T'      # row-major B (n, k) is column-major (k, n): transpose it
            if real is float:
                sgemv(&tv, &k, &n, &alpha, <float*>b, &ldb, <float*>a, &inc_a, &beta, c, &one)
            else:
                dgemv(&tv, &k, &n, &alpha, <double*>b, &ldb, <double*>a, &inc_a, &beta, c, &one)
        else:
            tv = b'N'
            if real is float:
                sgemv(&tv, &n, &k, &alpha, <float*>b, &ldb, <float*>a, &inc_a, &beta, c, &one)
            else:
                dgemv(&tv, &n, &k, &alpha, <double*>b, &ldb, <double*>a, &inc_a, &beta, c, &one)
        return
    if real is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef inline bint use_small_gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, bint f64, int threads) noexcept nogil:
    """Whether C[m, n] = op(A)[m, k] @ op(B)[k, n] goes to the own kernels at `threads` threads (False without AVX2/FMA)."""
    return fnn_gemm_available() != 0 and fnn_gemm_small_rule(m, n, k, f64, threads) != 0


cdef inline void gemm_auto(bint allow_small, bint trans_a, bint trans_b, int m, int n, int k,
                           real alpha, const real* a, int lda, const real* b, int ldb,
                           real beta, real* c, int ldc, real* work) noexcept nogil:
    """As gemm; through the own kernels instead when allow_small and use_small_gemm (at the current OpenMP
    thread count) say so and they apply: alpha == 1, beta 0 or 1, not both transposed, and for trans_b a
    work buffer of n * k elements (work == NULL: BLAS)."""
    if m == 0 or n == 0:
        return
    if (allow_small and alpha == 1 and (beta == 0 or beta == 1) and not (trans_a and trans_b)
            and (work != NULL or not trans_b) and use_small_gemm(m, n, k, real is double, fnn_omp_get_max_threads())):
        if real is float:
            fnn_sgemm_small_acc(trans_a, trans_b, beta == 1, m, n, k, a, lda, b, ldb, c, ldc, work)
        else:
            fnn_dgemm_small_acc(trans_a, trans_b, beta == 1, m, n, k, a, lda, b, ldb, c, ldc, work)
    else:
        gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
