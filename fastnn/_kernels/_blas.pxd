# GEMM dispatch: row-major GEMM over scipy.linalg.cython_blas, and THE rule for when csrc/fnn_gemm.h's own
# small-GEMM kernels replace BLAS (inlined into every kernel module that cimports it; the switch and the
# test hook are in _blas.pyx).
#
# NumPy arrays are C-ordered (row-major) and BLAS is column-major. A row-major
# matrix M (r x c, leading dimension c) is the column-major matrix M^T, so
#     C = op(A) @ op(B)   (row-major)   <=>   C^T = op(B)^T @ op(A)^T   (column-major)
# and we call ?gemm with A and B swapped and the same transpose flags.
#
# gemm is always BLAS (one row: ?gemv, which does not pack B). The own kernels take a GEMM where
# use_small_gemm says they beat BLAS (small operands or few rows: no packing, no dispatch; the limits are
# fnn_gemm_small_rule in fnn_gemm.h) and the switch _small_enabled (set_small_gemm) is on: _small_gemm
# for the compiled plan, which decides once per stage when it is built, and gemm_auto for the per-layer
# path (_dense), which decides per call. Both use the same rule, so a layer gives the same bits on either
# path. The own kernels change the rounding, not the math (results agree with BLAS to float tolerance),
# and give a row the same bits whatever the batch size. The eval-mode plan's forward GEMMs use the
# inference rule (_infer_gemm: fnn_gemm_infer_rule, which also takes GEMMs of a few rows over a weight that
# fits L2 at one thread) and, on the own kernels, _mm_bias_act: the bias and ReLU fused into the store.
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv
from fastnn._kernels._types cimport real
from fastnn._kernels._csrc cimport (fnn_gemm_available, fnn_gemm_small_rule, fnn_gemm_infer_rule, fnn_sgemm_small,
                                    fnn_dgemm_small, fnn_sgemm_small_acc, fnn_dgemm_small_acc, fnn_sgemm_bias_act,
                                    fnn_dgemm_bias_act, fnn_sgemm_small_gated, fnn_dgemm_small_gated,
                                    fnn_omp_get_max_threads)

# The own small-GEMM kernels are enabled (set_small_gemm; True by default where fnn_gemm_available()).
cdef bint _small_enabled


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      real alpha, const real* a, int lda, const real* b, int ldb,
                      real beta, real* c, int ldc) noexcept nogil:
    """C[m, n] := alpha * op(A)[m, k] @ op(B)[k, n] + beta * C (all row-major), through BLAS.

    One row (m == 1) is a GEMV: ?gemm would pack all of B for it.
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


cdef inline bint _small_gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, bint f64, int threads) noexcept nogil:
    """use_small_gemm, if the switch is on: the plan's choice for one GEMM of a stage."""
    return _small_enabled and use_small_gemm(M, N, K, f64, threads)


cdef inline bint _infer_gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, bint f64, int threads) noexcept nogil:
    """The eval-mode plan's choice for its forward GEMM C[M, N] = A[M, K] @ W[K, N]: the own kernels (with the
    bias and activation fused) where fnn_gemm_infer_rule says so and the switch is on."""
    return _small_enabled and fnn_gemm_available() != 0 and fnn_gemm_infer_rule(M, N, K, f64, threads) != 0


cdef inline void _mm_bias_act(int M, int N, int K, const real* A, int lda, const real* B, int ldb, real* C, int ldc,
                              const real* bias, bint relu) noexcept nogil:
    """C := act(A @ B + bias) on the own kernels (bias NULL: none; relu or linear): the bits of _mm (own)
    followed by _activations.bias_act_forward, in one pass."""
    if real is float:
        fnn_sgemm_bias_act(M, N, K, A, lda, B, ldb, C, ldc, bias, relu)
    else:
        fnn_dgemm_bias_act(M, N, K, A, lda, B, ldb, C, ldc, bias, relu)


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


cdef inline void _mm(bint own, bint trans_a, bint trans_b, int M, int N, int K, const real* A, int lda,
                     const real* B, int ldb, real* C, int ldc, real* work) noexcept nogil:
    """C := op(A) @ op(B) (beta = 0), through the own kernels (own: the plan's _small_gemm choice) or BLAS."""
    if own:
        if real is float:
            fnn_sgemm_small(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, work)
        else:
            fnn_dgemm_small(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, work)
    else:
        gemm(trans_a, trans_b, M, N, K, <real>1, A, lda, B, ldb, <real>0, C, ldc)


cdef inline void _mm_gated(bint trans_b, int M, int N, int K, const real* A, int lda, const real* B, int ldb,
                          real* C, int ldc, real* work, const real* G) noexcept nogil:
    """C := (A @ op(B)) * relu'(G) on the own kernels (G: a ReLU output with C's shape and leading dimension):
    the bits of _mm (own) followed by _activations' ReLU backward, in one pass."""
    if real is float:
        fnn_sgemm_small_gated(trans_b, M, N, K, A, lda, B, ldb, C, ldc, work, G)
    else:
        fnn_dgemm_small_gated(trans_b, M, N, K, A, lda, B, ldb, C, ldc, work, G)


cdef inline void _gemv_row(const real* x, const real* w, real* z, int k, int m) noexcept nogil:
    """z := x @ w for one row x (k,) and row-major w (k, m): BLAS's GEMV (gemm's one-row case)."""
    gemm(False, False, 1, m, k, <real>1, x, k, w, m, <real>0, z, m)
