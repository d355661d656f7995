# Design note: _optim - fused element-wise optimizer updates (torch.optim semantics, NUMERICS 1.1-1.2).
#
# Each kernel updates one contiguous 1-D run of the parameter arena in place, reading the matching
# run of the gradient arena and updating the matching runs of the optimizer's state arenas (one flat
# buffer per state kind). The Python optimizers group neighbouring parameters into such runs, so a
# whole model is usually one call. Element i of every buffer belongs to the same scalar parameter,
# so the update is a single pass with no cross-element dependence.
#
# Layout/dtype: all buffers are C-contiguous, of the one fused type `real` (float32 or float64) and of
# equal length; an optional state buffer that the flags leave unused (SGD's momentum buffer when
# momentum == 0, Adam's max buffer when amsgrad is off) may be a length-0 dummy. Arithmetic runs in
# `real`, in torch's operation order, so float32 results track torch's float32 ones. Per-call scalars
# (1 - beta, lr / bias_correction1, sqrt(bias_correction2), 1 - lr*weight_decay) are computed once,
# in double, by the def wrapper, then rounded to `real` as torch does.
#
# Threading: the GIL is released; the element loop is a static prange that only forks above
# THRESHOLD (Adam) or SGD_THRESHOLD elements: below them one thread is faster. Measured with the
# passive OpenMP pool on 2 cores, float32: Adam (~1 ns/element) gains from 2 threads from ~40k
# elements on, SGD (~0.3 ns/element) from ~200k; waking the pool costs ~15-20 us. Nothing is allocated.
#
# Vectorisation: GCC vectorises these loops (SSE2: 4 floats / 2 doubles per instruction, ~4x on
# Adam) only if (a) sqrt need not set errno - hence -fno-math-errno, set for every kernel
# in setup.py (the kernels never read errno) - and (b) no store in the loop body depends
# on a flag: flags may only pick between values, or guard whole loops (SGD has a separate loop
# without momentum). Keep both rules when editing or adding kernels.
#
# Adding an optimizer (RMSprop, Adagrad, Adadelta): a `cdef void _name(Py_ssize_t n, real* param,
# const real* grad, real* state..., real scalars...) noexcept nogil` loop, plus a def wrapper that
# checks lengths, derives the per-call scalars and calls it inside `with nogil:`.

from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from fastnn._kernels._types cimport real

# Elements per call below which the update runs on one thread.
THRESHOLD = 49152
SGD_THRESHOLD = 196608
cdef Py_ssize_t _THRESHOLD = THRESHOLD
cdef Py_ssize_t _SGD_THRESHOLD = SGD_THRESHOLD


cdef inline real _sqrt(real x) noexcept nogil:
    if real is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef int _check_len(Py_ssize_t n, Py_ssize_t m, str name) except -1:
    if m != n:
        raise ValueError(f"{name} must have {n} elements like param, got {m}")
    return 0


# ---------------------------------------------------------------------------------------------- SGD

cdef void _sgd(Py_ssize_t n, real* param, const real* grad, real* buf, real lr, real momentum,
               real one_minus_dampening, real weight_decay, bint nesterov, bint maximize,
               bint first_step) noexcept nogil:
    cdef Py_ssize_t i
    cdef real g, b
    if momentum == 0:  # two loops: a store under `if momentum` would block vectorisation
        for i in prange(n, nogil=True, schedule="static", use_threads_if=n > _SGD_THRESHOLD):
            g = -grad[i] if maximize else grad[i]
            if weight_decay != 0:
                g = g + weight_decay * param[i]
            param[i] = param[i] - lr * g
        return
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n > _SGD_THRESHOLD):
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        b = g if first_step else momentum * buf[i] + one_minus_dampening * g
        buf[i] = b
        g = g + momentum * b if nesterov else b
        param[i] = param[i] - lr * g


def sgd_step(real[::1] param, const real[::1] grad, real[::1] momentum_buffer, double lr,
             double momentum, double dampening, double weight_decay, bint nesterov, bint maximize,
             bint first_step):
    """g := ±grad + wd*param; b := first_step ? g : mu*b + (1-dampening)*g; param -= lr*(nesterov ? g + mu*b : b)."""
    cdef Py_ssize_t n = param.shape[0]
    _check_len(n, grad.shape[0], "grad")
    if momentum != 0:
        _check_len(n, momentum_buffer.shape[0], "momentum_buffer")
    if n == 0:
        return
    cdef real* buf = &momentum_buffer[0] if momentum != 0 else NULL
    with nogil:
        _sgd(n, &param[0], &grad[0], buf, <real>lr, <real>momentum, <real>(1.0 - dampening),
             <real>weight_decay, nesterov, maximize, first_step)


# --------------------------------------------------------------------------------------------- Adam

cdef void _adam(Py_ssize_t n, real* param, const real* grad, real* exp_avg, real* exp_avg_sq,
                real* max_exp_avg_sq, real beta1, real one_minus_beta1, real beta2, real one_minus_beta2,
                real eps, real weight_decay, real decay, bint decoupled, bint amsgrad, bint maximize,
                real step_size, real bias_correction2_sqrt) noexcept nogil:
    cdef Py_ssize_t i
    cdef real p, g, m, v
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n > _THRESHOLD):
        p = param[i]
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            if decoupled:
                p = p * decay
            else:
                g = g + weight_decay * p
        m = beta1 * exp_avg[i] + one_minus_beta1 * g
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max_exp_avg_sq[i] if max_exp_avg_sq[i] > v else v
            max_exp_avg_sq[i] = v
        param[i] = p - step_size * m / (_sqrt(v) / bias_correction2_sqrt + eps)


def adam_step(real[::1] param, const real[::1] grad, real[::1] exp_avg, real[::1] exp_avg_sq,
              real[::1] max_exp_avg_sq, double lr, double beta1, double beta2, double eps,
              double weight_decay, bint decoupled, bint amsgrad, bint maximize,
              double bias_correction1, double bias_correction2):
    """g := ±grad (+ wd*param, or param *= 1 - lr*wd if decoupled); m := b1*m + (1-b1)*g; v := b2*v + (1-b2)*g*g;
    param -= lr/bc1 * m / (sqrt(amsgrad ? vmax := max(vmax, v) : v) / sqrt(bc2) + eps)."""
    cdef Py_ssize_t n = param.shape[0]
    _check_len(n, grad.shape[0], "grad")
    _check_len(n, exp_avg.shape[0], "exp_avg")
    _check_len(n, exp_avg_sq.shape[0], "exp_avg_sq")
    if amsgrad:
        _check_len(n, max_exp_avg_sq.shape[0], "max_exp_avg_sq")
    if n == 0:
        return
    cdef real* vmax = &max_exp_avg_sq[0] if amsgrad else NULL
    with nogil:
        _adam(n, &param[0], &grad[0], &exp_avg[0], &exp_avg_sq[0], vmax,
              <real>beta1, <real>(1.0 - beta1), <real>beta2, <real>(1.0 - beta2), <real>eps,
              <real>weight_decay, <real>(1.0 - lr * weight_decay), decoupled, amsgrad, maximize,
              <real>(lr / bias_correction1), <real>sqrt(bias_correction2))
