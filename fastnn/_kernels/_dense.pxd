# Dense-layer kernels shared with the compiled plan (fastnn._kernels._plan); see _dense.pyx.
from fastnn._kernels._types cimport real

cdef void colsum(const real* dz, real* db, Py_ssize_t n, Py_ssize_t m, bint accumulate) noexcept nogil
cdef void sum_sq(const real* w, Py_ssize_t size, double* s) noexcept nogil
cdef double sum_sq_total(const double* s) noexcept nogil
cdef void dense_forward(const real* x, const real* w, const real* b, real* z, real* a,
                        int n, int k, int m, int act, double param, double param2,
                        bint small) noexcept nogil
cdef void dense_backward(const real* x, const real* w, const real* z, const real* a, real* g,
                         real* dw, real* db, real* dx, int n, int k, int m, int act, double param, double param2,
                         bint accumulate_w, bint accumulate_b, bint small, real* work) noexcept nogil
