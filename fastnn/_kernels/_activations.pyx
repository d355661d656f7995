# Design note: _activations - bias + activation forward, activation backward.
#
# Layout: row-major (n, m) blocks; z is the pre-activation, a the activation.
# Forward fuses the bias add into the activation pass (one read and one write per
# element after the GEMM):  z := z + b ; a := f(z).  `b` may be NULL (no bias) and
# `a` may alias `z` for the linear activation.
# Backward: dz := g * f'(z, a). The derivative is taken from the stored output where
# the math allows (sigmoid, tanh, relu, elu) and from z otherwise; `dz` may alias `g`.
# Softmax works on rows: dz := a * (g - sum_j g_j a_j).
# Conventions follow PyTorch (NUMERICS.md section 3): relu'(0) = 0, leaky_relu'(0) = slope,
# elu'(0) = alpha, sigmoid is evaluated in the overflow-free two-branch form.
# NaN and +-inf propagate as in torch (torch float64's values; tests/test_nan_propagation.py):
# relu(NaN) = NaN and relu(-0) = -0 (the select is `x < 0 ? 0 : x`, never `x > 0 ? x : 0`);
# relu'(NaN) = 1 and leaky_relu'(NaN) = slope (torch's backward tests a <= 0 / z > 0, false for
# NaN); elu'(NaN) = NaN (torch's vectorised path; its scalar tail gives 1); gelu(+inf) = +inf
# (torch float32's vectorised erf gives NaN there, its float64 and scalar paths inf).
# Threads: rows are split across OpenMP threads when the block is large enough; small
# blocks run on one thread. Waking the (passive) OpenMP pool costs ~15-20 us on the
# project's 2-core machines, so memory-bound passes (relu, leaky_relu, linear, and
# derivatives taken from the output) go parallel from PAR_MIN_CHEAP elements and passes
# that evaluate exp/tanh/erf from PAR_MIN. Below that a plain loop runs: a prange whose
# use_threads_if is false still enters a one-thread OpenMP region, and Cython's
# firstprivate+lastprivate loop index makes that cost a barrier (two futex syscalls, ~1.5 us).
# float32 exp, expm1, tanh and erf come from csrc/fnn_math.h (branch-free, so loops over them
# vectorise; within 1-3 ulp, tested); all float64 math comes from libm.

from cython.parallel cimport prange
from libc.math cimport exp, expm1, tanh, erf

cdef Py_ssize_t PAR_MIN = 32768
cdef Py_ssize_t PAR_MIN_CHEAP = 262144

CODES = {
    "linear": Act.LINEAR, "relu": Act.RELU, "leaky_relu": Act.LEAKY_RELU, "sigmoid": Act.SIGMOID,
    "tanh": Act.TANH, "gelu": Act.GELU, "gelu_tanh": Act.GELU_TANH, "elu": Act.ELU, "silu": Act.SILU,
    "softmax": Act.SOFTMAX,
}

cdef double SQRT_2_OVER_PI = 0.7978845608028654
cdef double INV_SQRT_2 = 0.7071067811865476
cdef double INV_SQRT_2PI = 0.3989422804014327


cdef extern from "fnn_math.h" nogil:
    float fnn_expf(float x)
    float fnn_tanhf(float x)
    float fnn_erff(float x)
    float fnn_expm1f(float x)


cdef inline real _exp(real x) noexcept nogil:
    if real is float:
        return fnn_expf(x)   # vectorisable, <= 1 ulp (csrc/fnn_math.h)
    else:
        return exp(x)


cdef inline real _expm1(real x) noexcept nogil:
    if real is float:
        return fnn_expm1f(x)   # vectorisable, ~2 ulp (csrc/fnn_math.h)
    else:
        return expm1(x)


cdef inline real _tanh(real x) noexcept nogil:
    if real is float:
        return fnn_tanhf(x)  # vectorisable, <= 2 ulp (csrc/fnn_math.h)
    else:
        return tanh(x)


cdef inline real _erf(real x) noexcept nogil:
    if real is float:
        return fnn_erff(x)   # vectorisable, ~2 ulp (csrc/fnn_math.h)
    else:
        return erf(x)


cdef inline real _sigmoid(real x) noexcept nogil:
    """sigma(x), overflow-free: with e = e^-|x|, 1/(1+e) for x >= 0 and e/(1+e) for x < 0.

    Written as a select rather than a branch: random signs would mispredict half the time.
    """
    cdef real e = _exp(-x if x >= 0 else x)   # e^-|x|, in real (libm's fabs would promote to double)
    cdef real s = <real>1 / (<real>1 + e)
    return s if x >= 0 else e * s


cdef inline real _f(real x, int act, real param) noexcept nogil:
    """a := f(x) for every element-wise activation."""
    cdef real u
    if act == Act.RELU:
        return 0 if x < 0 else x       # NaN and -0 pass through, as torch.relu (not `x > 0 ? x : 0`)
    elif act == Act.LEAKY_RELU:
        return x if x > 0 else param * x
    elif act == Act.SIGMOID:
        return _sigmoid(x)
    elif act == Act.TANH:
        return _tanh(x)
    elif act == Act.GELU:
        return <real>0.5 * x * (<real>1 + _erf(x * <real>INV_SQRT_2))
    elif act == Act.GELU_TANH:
        u = <real>SQRT_2_OVER_PI * (x + <real>0.044715 * x * x * x)
        return <real>0.5 * x * (<real>1 + _tanh(u))
    elif act == Act.ELU:
        return x if x > 0 else param * _expm1(x)
    elif act == Act.SILU:
        return x * _sigmoid(x)
    return x


cdef inline real _df(real x, real y, int act, real param) noexcept nogil:
    """f'(x) given the input x and the output y = f(x)."""
    cdef real u, t, s
    if act == Act.RELU:
        return 0 if x <= 0 else 1      # relu'(NaN) = 1, as torch's threshold_backward (a <= 0 ? 0 : g)
    elif act == Act.LEAKY_RELU:
        return 1 if x > 0 else param
    elif act == Act.SIGMOID:
        return y * (<real>1 - y)
    elif act == Act.TANH:
        return <real>1 - y * y
    elif act == Act.GELU:
        return <real>0.5 * (<real>1 + _erf(x * <real>INV_SQRT_2)) + x * <real>INV_SQRT_2PI * _exp(<real>-0.5 * x * x)
    elif act == Act.GELU_TANH:
        u = <real>SQRT_2_OVER_PI * (x + <real>0.044715 * x * x * x)
        t = _tanh(u)
        return (<real>0.5 * (<real>1 + t)
                + <real>0.5 * x * (<real>1 - t * t) * <real>SQRT_2_OVER_PI * (<real>1 + <real>(3 * 0.044715) * x * x))
    elif act == Act.ELU:
        return 1 if x > 0 else y + param
    elif act == Act.SILU:
        s = _sigmoid(x)
        return s * (<real>1 + x * (<real>1 - s))
    return 1


cdef inline real _dtimes(real g, real x, real y, int act, real param) noexcept nogil:
    """g * f'(x), given y = f(x); relu and leaky_relu select g (exact even for inf/NaN g, as torch)."""
    if act == Act.RELU:
        return 0 if x <= 0 else g
    elif act == Act.LEAKY_RELU:
        return g if x > 0 else g * param
    return g * _df(x, y, act, param)


cdef inline void _softmax_row(const real* z, real* a, Py_ssize_t m) noexcept nogil:
    """a := exp(z - max z) / sum exp(z - max z) over one row."""
    cdef Py_ssize_t j
    cdef real mx = z[0]
    cdef double total = 0
    for j in range(1, m):
        if z[j] > mx:
            mx = z[j]
    for j in range(m):            # vectorises; the sum below is a serial double chain
        a[j] = _exp(z[j] - mx)
    for j in range(m):
        total += a[j]
    cdef real inv = <real>(1.0 / total)
    for j in range(m):
        a[j] = a[j] * inv


cdef inline void _forward_row(real* z, const real* b, real* a, Py_ssize_t m, int act, real param) noexcept nogil:
    # One loop per activation, each calling _f with a constant code: the compiler folds the
    # dispatch away and can vectorise the cheap ones.
    cdef Py_ssize_t j
    if b != NULL:
        for j in range(m):
            z[j] = z[j] + b[j]
    if act == Act.SOFTMAX:
        _softmax_row(z, a, m)
    elif act == Act.LINEAR:
        if a != z:
            for j in range(m):
                a[j] = z[j]
    elif act == Act.RELU:
        for j in range(m):
            a[j] = _f(z[j], Act.RELU, param)
    elif act == Act.LEAKY_RELU:
        for j in range(m):
            a[j] = _f(z[j], Act.LEAKY_RELU, param)
    elif act == Act.SIGMOID:
        for j in range(m):
            a[j] = _f(z[j], Act.SIGMOID, param)
    elif act == Act.TANH:
        for j in range(m):
            a[j] = _f(z[j], Act.TANH, param)
    elif act == Act.GELU:
        for j in range(m):
            a[j] = _f(z[j], Act.GELU, param)
    elif act == Act.GELU_TANH:
        for j in range(m):
            a[j] = _f(z[j], Act.GELU_TANH, param)
    elif act == Act.ELU:
        for j in range(m):
            a[j] = _f(z[j], Act.ELU, param)
    elif act == Act.SILU:
        for j in range(m):
            a[j] = _f(z[j], Act.SILU, param)


cdef inline void _backward_row(const real* g, const real* z, const real* a, real* dz, Py_ssize_t m,
                               int act, real param) noexcept nogil:
    # As in _forward_row: one loop per activation with a constant code. g[j] is read
    # unconditionally, so that relu's select vectorises (a conditional load does not).
    cdef Py_ssize_t j
    cdef double dot = 0
    if act == Act.SOFTMAX:
        for j in range(m):
            dot += g[j] * a[j]
        for j in range(m):
            dz[j] = a[j] * (g[j] - <real>dot)
    elif act == Act.LINEAR:
        if dz != g:
            for j in range(m):
                dz[j] = g[j]
    elif act == Act.RELU:
        for j in range(m):
            dz[j] = _dtimes(g[j], z[j], a[j], Act.RELU, param)
    elif act == Act.LEAKY_RELU:
        for j in range(m):
            dz[j] = _dtimes(g[j], z[j], a[j], Act.LEAKY_RELU, param)
    elif act == Act.SIGMOID:
        for j in range(m):
            dz[j] = _dtimes(g[j], z[j], a[j], Act.SIGMOID, param)
    elif act == Act.TANH:
        for j in range(m):
            dz[j] = _dtimes(g[j], z[j], a[j], Act.TANH, param)
    elif act == Act.GELU:
        for j in range(m):
            dz[j] = _dtimes(g[j], z[j], a[j], Act.GELU, param)
    elif act == Act.GELU_TANH:
        for j in range(m):
            dz[j] = _dtimes(g[j], z[j], a[j], Act.GELU_TANH, param)
    elif act == Act.ELU:
        for j in range(m):
            dz[j] = _dtimes(g[j], z[j], a[j], Act.ELU, param)
    elif act == Act.SILU:
        for j in range(m):
            dz[j] = _dtimes(g[j], z[j], a[j], Act.SILU, param)


cdef inline Py_ssize_t _par_min(int act, bint backward) noexcept nogil:
    """Elements from which a pass of `act` is split across threads (see the design note)."""
    if act == Act.LINEAR or act == Act.RELU or act == Act.LEAKY_RELU:
        return PAR_MIN_CHEAP
    if backward and (act == Act.SIGMOID or act == Act.TANH or act == Act.ELU or act == Act.SOFTMAX):
        return PAR_MIN_CHEAP
    return PAR_MIN


cdef void bias_act_forward(real* z, const real* b, real* a, Py_ssize_t n, Py_ssize_t m,
                           int act, double param) noexcept nogil:
    """z := z + b (per row), a := f(z)."""
    cdef Py_ssize_t i
    cdef real p = <real>param
    if n * m < _par_min(act, False):
        for i in range(n):
            _forward_row(z + i * m, b, a + i * m, m, act, p)
        return
    for i in prange(n, schedule="static"):
        _forward_row(z + i * m, b, a + i * m, m, act, p)


cdef void act_backward(const real* g, const real* z, const real* a, real* dz,
                       Py_ssize_t n, Py_ssize_t m, int act, double param) noexcept nogil:
    """dz := g * f'(z, a)  (softmax: dz := a * (g - rowsum(g * a)))."""
    cdef Py_ssize_t i
    cdef real p = <real>param
    if n * m < _par_min(act, True):
        for i in range(n):
            _backward_row(g + i * m, z + i * m, a + i * m, dz + i * m, m, act, p)
        return
    for i in prange(n, schedule="static"):
        _backward_row(g + i * m, z + i * m, a + i * m, dz + i * m, m, act, p)


cdef int _check(bint ok, str what) except -1:
    """The def wrappers' only checks: buffer shapes agree, so a misuse raises instead of corrupting memory."""
    if not ok:
        raise ValueError(f"kernel buffers disagree: {what}")
    return 0


cdef int _check_act(int act) except -1:
    return _check(Act.LINEAR <= act <= Act.SOFTMAX, f"unknown activation code {act}")


def forward(real[:, ::1] z, const real[::1] b, real[:, ::1] a_out, int act, double param=0.0):
    """z := z + b (b may be empty: no bias); a_out := f(z). a_out may be z itself."""
    _check(a_out.shape[0] == z.shape[0] and a_out.shape[1] == z.shape[1], "a_out must have z's shape")
    _check(b.shape[0] in (0, z.shape[1]), "b must be empty or have z.shape[1] entries")
    _check_act(act)
    if z.shape[0] == 0 or z.shape[1] == 0:
        return
    cdef const real* bp = &b[0] if b.shape[0] > 0 else NULL
    with nogil:
        bias_act_forward(&z[0, 0], bp, &a_out[0, 0], z.shape[0], z.shape[1], act, param)


def backward(const real[:, ::1] g, const real[:, ::1] z, const real[:, ::1] a, real[:, ::1] dz_out,
             int act, double param=0.0):
    """dz_out := g * f'(z, a). dz_out may be g itself."""
    cdef Py_ssize_t n = g.shape[0], m = g.shape[1]
    _check(z.shape[0] == n and z.shape[1] == m and a.shape[0] == n and a.shape[1] == m
           and dz_out.shape[0] == n and dz_out.shape[1] == m, "z, a and dz_out must have g's shape")
    _check_act(act)
    if n == 0 or m == 0:
        return
    with nogil:
        act_backward(&g[0, 0], &z[0, 0], &a[0, 0], &dz_out[0, 0], g.shape[0], g.shape[1], act, param)


def math_f32(str fn, const float[::1] x, float[::1] out):
    """out := fn(x) with fastnn's float32 'exp', 'expm1', 'tanh' or 'erf' (csrc/fnn_math.h); for tests."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int which = {"exp": 0, "tanh": 1, "erf": 2, "expm1": 3}.get(fn, -1)
    if which < 0:
        raise ValueError(f"fn must be 'exp', 'expm1', 'tanh' or 'erf', got {fn!r}")
    if out.shape[0] != n:
        raise ValueError("kernel buffers disagree: out must have x's length")
    with nogil:
        for i in range(n):
            if which == 0:
                out[i] = fnn_expf(x[i])
            elif which == 1:
                out[i] = fnn_tanhf(x[i])
            elif which == 2:
                out[i] = fnn_erff(x[i])
            else:
                out[i] = fnn_expm1f(x[i])
