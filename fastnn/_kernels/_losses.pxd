# Fused loss + gradient kernels shared with the compiled plan (fastnn._kernels._plan); see _losses.pyx.
# Each returns the reduced loss ("none": the sum of loss_out) and writes d loss / d input into
# grad_out; loss_out (reduction "none" only) and grad_up may be NULL.
from libc.stdint cimport int64_t
from fastnn._kernels._types cimport real

cdef enum Reduction:
    NONE = 0
    MEAN = 1
    SUM = 2

cdef double _mse(const real* x, const real* y, Py_ssize_t n, int red,
                 real* grad_out, real* loss_out, const real* grad_up) noexcept nogil
cdef double _bce(const real* x, const real* y, const real* w, Py_ssize_t n, int red,
                 real* grad_out, real* loss_out, const real* grad_up) noexcept nogil
cdef double _bce_logits(const real* z, const real* y, const real* w, const real* pw, Py_ssize_t n,
                        int red, real* grad_out, real* loss_out, const real* grad_up) noexcept nogil
cdef double _cross_entropy(const real* z, const int64_t* y, Py_ssize_t N, Py_ssize_t C,
                           const real* w, int64_t ignore_index, double eps, int red,
                           real* grad_out, real* loss_out, const real* grad_up) noexcept nogil
cdef double _cross_entropy_prob(const real* z, const real* t, Py_ssize_t N, Py_ssize_t C,
                                const real* w, double eps, int red,
                                real* grad_out, real* loss_out, const real* grad_up) noexcept nogil
cdef double _nll(const real* x, const int64_t* y, Py_ssize_t N, Py_ssize_t C, const real* w,
                 int64_t ignore_index, int red, real* grad_out, real* loss_out,
                 const real* grad_up) noexcept nogil

# scikit-learn's MLP output activation + canonical loss (_losses.pyx, "scikit-learn's MLP loss")
cdef enum SkOutAct:
    SK_IDENTITY = 0   # squared_loss
    SK_LOGISTIC = 1   # binary_log_loss
    SK_SOFTMAX = 2    # log_loss
    SK_EXP = 3        # poisson_loss

cdef double _sk_mlp(const real* z, const real* t, Py_ssize_t N, Py_ssize_t K, int out_act, bint weighted,
                    real* grad_out, double* sw_sum) noexcept nogil
