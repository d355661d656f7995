# Dropout kernels shared with the compiled plan (fastnn._kernels._plan); see _dropout.pyx.
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from fastnn._kernels._types cimport real

cdef void dropout_forward(const real* x, real* y, uint8_t* mask, Py_ssize_t n, double p,
                          uint64_t seed, uint32_t stream, uint64_t step) noexcept nogil
cdef void dropout_forward_at(const real* x, real* y, uint8_t* mask, Py_ssize_t n, double p,
                             uint64_t seed, uint32_t stream, uint64_t step, Py_ssize_t off) noexcept nogil
cdef void dropout_backward(const real* g, const uint8_t* mask, real* dx, Py_ssize_t n, double p) noexcept nogil
