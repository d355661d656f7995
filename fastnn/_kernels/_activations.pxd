from fastnn._kernels._types cimport real

# Activation codes shared by every kernel module (Python sees them as _activations.CODES).
cpdef enum Act:
    LINEAR = 0
    RELU = 1
    LEAKY_RELU = 2
    SIGMOID = 3
    TANH = 4
    GELU = 5
    GELU_TANH = 6
    ELU = 7
    SILU = 8
    SOFTMAX = 9

cdef void bias_act_forward(real* z, const real* b, real* a, Py_ssize_t n, Py_ssize_t m,
                           int act, double param) noexcept nogil
cdef void act_backward(const real* g, const real* z, const real* a, real* dz,
                       Py_ssize_t n, Py_ssize_t m, int act, double param) noexcept nogil
