# Row-major GEMM over scipy.linalg.cython_blas (inlined into every kernel module).
#
# NumPy arrays are C-ordered (row-major) and BLAS is column-major. A row-major
# matrix M (r x c, leading dimension c) is the column-major matrix M^T, so
#     C = op(A) @ op(B)   (row-major)   <=>   C^T = op(B)^T @ op(A)^T   (column-major)
# and we call ?gemm with A and B swapped and the same transpose flags.
from scipy.linalg.cython_blas cimport sgemm, dgemm
from fastnn._kernels._types cimport real

cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      real alpha, const real* a, int lda, const real* b, int ldb,
                      real beta, real* c, int ldc) noexcept nogil:
    """C[m, n] := alpha * op(A)[m, k] @ op(B)[k, n] + beta * C (all row-major)."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if m == 0 or n == 0:
        return
    if real is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)
