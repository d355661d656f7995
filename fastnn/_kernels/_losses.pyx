# Design note: _losses - fused loss value + input gradient, one pass per loss.
#
# What: MSE, BCE (probabilities), BCE with logits, cross-entropy from logits (class-index
# or probability targets) and NLL (log-probability input), with PyTorch's formulas
# (NUMERICS.md section 2). Every kernel returns the loss and writes dloss/dinput into
# `grad_out` in the same pass over the data; cross-entropy never forms softmax and then
# takes its log: per row it subtracts the max, stashes exp(z - max) in the gradient row,
# and rescales it in place (log_softmax + NLL + gradient fused).
#
# Reduction: "mean" | "sum" | "none". For "none" the per-element loss (per row for
# CE/NLL) is written into `loss_out` and the gradient is multiplied by the upstream
# gradient `grad_up` (shape of the loss; None means ones). The return value is the
# reduced loss ("none": the sum of loss_out).
#
# Layout/dtype: element-wise losses take flat C-contiguous 1-D arrays (callers ravel;
# `weight` and `pos_weight` are already broadcast to the input's shape). CE/NLL take
# (N, C) C-contiguous rows and int64 labels. All float arrays share one dtype (the fused
# `real`); losses and gradient factors are computed in double and rounded on store.
# Kernels trust their inputs (fastnn.losses validates); the wrappers only check that
# buffer sizes agree, so a misuse raises instead of writing out of bounds.
#
# NaN/inf: a NaN or inf prediction gives torch's loss and gradient (NaN where torch's formulas
# give NaN; tests/test_nan_propagation.py). Clamps are std::max-style selects (_max), as in
# torch's kernels, never fmax (which returns the other operand for a NaN); BCE-with-logits at
# z = -inf takes torch's form of the loss, NaN (inf - inf) where the softplus form gives inf.
# Torch's BCELoss raises for a NaN input; fastnn.losses.BCELoss does too (ValueError), and the
# kernel (reached with NaN from a compiled plan) returns a NaN loss and gradient.
#
# Threading: the GIL is released around every kernel; elements (or rows) are split over
# OpenMP threads with a static schedule once the work passes a threshold. The loss is a
# prange reduction over double partial sums. Below the threshold a plain loop runs: a prange
# whose use_threads_if is false still enters a one-thread OpenMP region, and Cython's
# firstprivate+lastprivate loop index makes that cost a barrier (two futex syscalls, ~1.5 us).
# Nothing is allocated.

from cython.parallel cimport prange
from libc.math cimport INFINITY, NAN, exp, log
from libc.stdint cimport int64_t

from fastnn._kernels._types cimport real

# Reduction (NONE, MEAN, SUM) is declared in _losses.pxd, shared with the compiled plan.

# Work (elements) above which a pass runs on the OpenMP pool. Measured one thread, float32:
# MSE/NLL ~1 ns per element, CE ~9, BCE ~19, BCE-with-logits ~23 (exp/log bound). The pool is
# passive (fastnn/_kernels/__init__.py): waking it costs ~15-20 us, so cheap passes go parallel
# only from ~256k elements (as measured for the optimizer and activation passes) and exp/log
# passes from ~8k.
cdef Py_ssize_t CHEAP_THRESHOLD = 262144
cdef Py_ssize_t TRANSCENDENTAL_THRESHOLD = 8192

PARALLEL_THRESHOLDS = {"cheap": CHEAP_THRESHOLD, "transcendental": TRANSCENDENTAL_THRESHOLD}


cdef int _reduction(str reduction) except -1:
    if reduction == "mean":
        return MEAN
    if reduction == "sum":
        return SUM
    if reduction == "none":
        return NONE
    raise ValueError(f"reduction must be one of 'mean', 'sum', 'none'; got {reduction!r}")


cdef int _check_size(Py_ssize_t got, Py_ssize_t want, str name) except -1:
    if got != want:
        raise ValueError(f"{name} has {got} entries, expected {want}")
    return 0


cdef inline double _up(const real* grad_up, Py_ssize_t i, double scale) noexcept nogil:
    """Gradient factor of element/row i: scale * grad_up[i] (grad_up NULL means ones)."""
    return scale if grad_up == NULL else scale * grad_up[i]


cdef inline double _div(double a, double b) noexcept nogil:
    """a / b, and a * inf for b == 0 (+-inf, or NaN for 0/0) also when cdivision is off (debug)."""
    return a / b if b != 0.0 else a * INFINITY


cdef inline double _max(double a, double b) noexcept nogil:
    """std::max(a, b) = a < b ? b : a, as torch's kernels clamp: a NaN `a` stays NaN (libm's fmax returns b)."""
    return b if a < b else a


cdef inline double _log1p(double y) noexcept nogil:
    """log(1 + y) to a few ulp for y >= -1 at the cost of one log (Kahan: u = 1 + y,
    log(u) * y / (u - 1)); libm's log1p is about 2.5x slower. Needs strict IEEE (no -ffast-math)."""
    cdef double u = 1.0 + y
    if u == 1.0:
        return y
    return log(u) * (y / (u - 1.0))


# --------------------------------------------------------------------------------------
# element-wise losses
# --------------------------------------------------------------------------------------

cdef inline double _mse_at(const real* x, const real* y, Py_ssize_t i, double scale,
                           real* grad_out, real* loss_out, const real* grad_up) noexcept nogil:
    cdef double d = <double>x[i] - <double>y[i]
    grad_out[i] = <real>(2.0 * d * _up(grad_up, i, scale))
    if loss_out != NULL:
        loss_out[i] = <real>(d * d)
    return d * d


cdef double _mse(const real* x, const real* y, Py_ssize_t n, int red,
                 real* grad_out, real* loss_out, const real* grad_up) noexcept nogil:
    """l := (x - y)^2; grad := 2 (x - y) * scale."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    cdef double scale = 1.0 / n if red == MEAN else 1.0
    if n > CHEAP_THRESHOLD:
        for i in prange(n, schedule="static"):
            total += _mse_at(x, y, i, scale, grad_out, loss_out, grad_up)
    else:
        for i in range(n):
            total += _mse_at(x, y, i, scale, grad_out, loss_out, grad_up)
    return total / n if red == MEAN else total


cdef inline double _bce_at(const real* x, const real* y, const real* w, Py_ssize_t i, double scale,
                           real* grad_out, real* loss_out, const real* grad_up) noexcept nogil:
    cdef double xi = x[i], yi = y[i]
    cdef double wi = 1.0 if w == NULL else w[i]
    cdef double l = 0.0                             # a log with a zero factor adds 0: skip it
    if yi != 0.0:
        l -= yi * _max(log(xi), -100.0)
    if yi != 1.0:
        l -= (1.0 - yi) * _max(_log1p(-xi), -100.0)
    l = wi * l
    grad_out[i] = <real>(wi * (xi - yi) / _max(xi * (1.0 - xi), 1e-12) * _up(grad_up, i, scale))
    if loss_out != NULL:
        loss_out[i] = <real>l
    return l


cdef double _bce(const real* x, const real* y, const real* w, Py_ssize_t n, int red,
                 real* grad_out, real* loss_out, const real* grad_up) noexcept nogil:
    """l := -w [y max(log x, -100) + (1-y) max(log(1-x), -100)]; grad := w (x-y) / max(x(1-x), 1e-12)."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    cdef double scale = 1.0 / n if red == MEAN else 1.0
    if n > TRANSCENDENTAL_THRESHOLD:
        for i in prange(n, schedule="static"):
            total += _bce_at(x, y, w, i, scale, grad_out, loss_out, grad_up)
    else:
        for i in range(n):
            total += _bce_at(x, y, w, i, scale, grad_out, loss_out, grad_up)
    return total / n if red == MEAN else total


cdef inline double _bce_logits_at(const real* z, const real* y, const real* w, const real* pw, Py_ssize_t i,
                                  double scale, real* grad_out, real* loss_out, const real* grad_up) noexcept nogil:
    cdef double zi = z[i], yi = y[i]
    cdef double wi = 1.0 if w == NULL else w[i]
    cdef double pi = 1.0 if pw == NULL else pw[i]
    cdef double e = exp(-zi if zi >= 0 else zi)    # exp(-|z|) <= 1
    cdef double tail = _log1p(e)
    cdef double r = 1.0 / (1.0 + e)
    cdef double sig = r if zi >= 0 else e * r       # sigmoid(z), sigmoid(-z) without overflow
    cdef double sig_neg = e * r if zi >= 0 else r
    cdef double sp_neg = _max(-zi, 0.0) + tail      # softplus(-z)
    cdef double l = pi * yi * sp_neg + (1.0 - yi) * (_max(zi, 0.0) + tail)
    if zi == -INFINITY:   # torch's form (1-y) z + (1 + (p-1) y) softplus(-z): inf - inf = NaN there, as torch
        l = (1.0 - yi) * zi + (1.0 + (pi - 1.0) * yi) * sp_neg
    l = wi * l
    grad_out[i] = <real>(wi * ((1.0 - yi) * sig - pi * yi * sig_neg) * _up(grad_up, i, scale))
    if loss_out != NULL:
        loss_out[i] = <real>l
    return l


cdef double _bce_logits(const real* z, const real* y, const real* w, const real* pw, Py_ssize_t n,
                        int red, real* grad_out, real* loss_out, const real* grad_up) noexcept nogil:
    """l := w [p y softplus(-z) + (1-y) softplus(z)]; grad := w [(1-y) sigmoid(z) - p y sigmoid(-z)]."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    cdef double scale = 1.0 / n if red == MEAN else 1.0
    if n > TRANSCENDENTAL_THRESHOLD:
        for i in prange(n, schedule="static"):
            total += _bce_logits_at(z, y, w, pw, i, scale, grad_out, loss_out, grad_up)
    else:
        for i in range(n):
            total += _bce_logits_at(z, y, w, pw, i, scale, grad_out, loss_out, grad_up)
    return total / n if red == MEAN else total


# --------------------------------------------------------------------------------------
# row losses: cross-entropy from logits, NLL
# --------------------------------------------------------------------------------------

cdef inline double _row_exp(const real* z, Py_ssize_t C, real* e_out, double* shift) noexcept nogil:
    """e_out := exp(z - max z); shift := max z; returns sum(e_out) (in double)."""
    cdef Py_ssize_t c
    cdef double m = z[0], s = 0.0, e
    for c in range(1, C):
        if z[c] > m:
            m = z[c]
    for c in range(C):
        e = exp(<double>z[c] - m)
        e_out[c] = <real>e
        s += e
    shift[0] = m
    return s


cdef inline void _zero_row(real* g, Py_ssize_t C) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(C):
        g[c] = 0


cdef inline void _ignored_row(const real* z, Py_ssize_t C, real* g) noexcept nogil:
    """The gradient of a row whose label is ignored: torch's log_softmax backward of a zero gradient,
    -p * 0, so 0, or NaN in every entry when p is NaN (the row holds a NaN or a +inf, or is all -inf)."""
    cdef Py_ssize_t c
    cdef double m = z[0]
    cdef bint nan = False
    for c in range(C):
        nan = nan | (z[c] != z[c])
        if z[c] > m:
            m = z[c]
    cdef real v = <real>NAN if (nan or m == INFINITY or m == -INFINITY) else 0
    for c in range(C):
        g[c] = v


cdef double _ce_index_row(const real* z, Py_ssize_t C, Py_ssize_t y, const real* w, double wsum,
                          double eps, double scale, real* g) noexcept nogil:
    """l := (1-eps) w_y (-log p_y) + (eps/C) sum_c w_c (-log p_c);
    g := scale [(1-eps) w_y (p - e_y) + (eps/C) (W p - w)], W = sum_c w_c."""
    cdef Py_ssize_t c
    cdef double m, s, logs, wy, wz = 0.0, a, b, k
    s = _row_exp(z, C, g, &m)                       # g holds exp(z - m) for now
    logs = log(s)                                   # log p_c = (z_c - m) - logs
    if eps != 0.0:
        for c in range(C):
            wz += (1.0 if w == NULL else w[c]) * (<double>z[c] - m)
    wy = 1.0 if w == NULL else w[y]
    k = eps / C
    a = scale * ((1.0 - eps) * wy + k * wsum) / s  # coefficient of exp(z_c - m)
    b = scale * k                                   # coefficient of w_c
    for c in range(C):
        g[c] = <real>(a * g[c] - b * (1.0 if w == NULL else w[c]))
    # the target entry again, in double from the logit, so p_y - 1 does not cancel in `real`
    g[y] = <real>(a * exp(<double>z[y] - m) - b * wy - scale * (1.0 - eps) * wy)
    return (1.0 - eps) * wy * (logs - (<double>z[y] - m)) + k * (wsum * logs - wz)


cdef double _ce_prob_row(const real* z, const real* t, Py_ssize_t C, const real* w, double eps,
                         double scale, real* g) noexcept nogil:
    """t' := (1-eps) t + eps/C; l := -sum_c w_c t'_c log p_c; g := scale [(sum_c w_c t'_c) p - w t']."""
    cdef Py_ssize_t c
    cdef double m, s, wt, a, A = 0.0, B = 0.0
    s = _row_exp(z, C, g, &m)                       # g holds exp(z - m) for now
    for c in range(C):
        wt = (1.0 if w == NULL else w[c]) * ((1.0 - eps) * t[c] + eps / C)
        A += wt
        B += wt * (<double>z[c] - m)
    a = scale * A / s                               # coefficient of exp(z_c - m)
    for c in range(C):
        wt = (1.0 if w == NULL else w[c]) * ((1.0 - eps) * t[c] + eps / C)
        g[c] = <real>(a * g[c] - scale * wt)
    return A * log(s) - B                           # sum_c wt_c (log s - (z_c - m)): no cancellation


cdef double _class_weight_total(const int64_t* y, Py_ssize_t N, const real* w,
                                int64_t ignore_index) noexcept nogil:
    """D := sum of w[y_i] over rows with y_i != ignore_index (the 'mean' denominator)."""
    cdef Py_ssize_t i
    cdef double D = 0.0
    for i in range(N):
        if y[i] != ignore_index:
            D += 1.0 if w == NULL else w[y[i]]
    return D


cdef inline double _ce_index_at(const real* z, const int64_t* y, Py_ssize_t i, Py_ssize_t C, const real* w,
                                int64_t ignore_index, double wsum, double eps, double scale,
                                real* grad_out, real* loss_out, const real* grad_up) noexcept nogil:
    cdef double l = 0.0
    if y[i] == ignore_index:
        _ignored_row(z + i * C, C, grad_out + i * C)
    else:
        l = _ce_index_row(z + i * C, C, y[i], w, wsum, eps, _up(grad_up, i, scale), grad_out + i * C)
    if loss_out != NULL:
        loss_out[i] = <real>l
    return l


cdef double _cross_entropy(const real* z, const int64_t* y, Py_ssize_t N, Py_ssize_t C,
                           const real* w, int64_t ignore_index, double eps, int red,
                           real* grad_out, real* loss_out, const real* grad_up) noexcept nogil:
    """Row i: see _ce_index_row; ignored rows give l_i = 0, g_i = 0 (see _ignored_row); mean divides by D."""
    cdef Py_ssize_t i, c
    cdef double wsum = 0.0, total = 0.0, D = 1.0
    if red == MEAN:
        D = _class_weight_total(y, N, w, ignore_index)
    for c in range(C):
        wsum += 1.0 if w == NULL else w[c]
    cdef double scale = _div(1.0, D)                # inf if D == 0: ignored rows stay 0, kept ones NaN
    if N * C > TRANSCENDENTAL_THRESHOLD:
        for i in prange(N, schedule="static"):
            total += _ce_index_at(z, y, i, C, w, ignore_index, wsum, eps, scale, grad_out, loss_out, grad_up)
    else:
        for i in range(N):
            total += _ce_index_at(z, y, i, C, w, ignore_index, wsum, eps, scale, grad_out, loss_out, grad_up)
    return _div(total, D)                            # all ignored with mean: 0/0 = NaN, as torch


cdef inline double _ce_prob_at(const real* z, const real* t, Py_ssize_t i, Py_ssize_t C, const real* w,
                               double eps, double scale, real* grad_out, real* loss_out,
                               const real* grad_up) noexcept nogil:
    cdef double l = _ce_prob_row(z + i * C, t + i * C, C, w, eps, _up(grad_up, i, scale), grad_out + i * C)
    if loss_out != NULL:
        loss_out[i] = <real>l
    return l


cdef double _cross_entropy_prob(const real* z, const real* t, Py_ssize_t N, Py_ssize_t C,
                                const real* w, double eps, int red,
                                real* grad_out, real* loss_out, const real* grad_up) noexcept nogil:
    """Row i: see _ce_prob_row; mean divides by N whatever the weights."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    cdef double scale = 1.0 / N if red == MEAN else 1.0
    if N * C > TRANSCENDENTAL_THRESHOLD:
        for i in prange(N, schedule="static"):
            total += _ce_prob_at(z, t, i, C, w, eps, scale, grad_out, loss_out, grad_up)
    else:
        for i in range(N):
            total += _ce_prob_at(z, t, i, C, w, eps, scale, grad_out, loss_out, grad_up)
    return total / N if red == MEAN else total


cdef inline double _nll_at(const real* x, const int64_t* y, Py_ssize_t i, Py_ssize_t C, const real* w,
                           int64_t ignore_index, double scale, real* grad_out, real* loss_out,
                           const real* grad_up) noexcept nogil:
    cdef double wy, l = 0.0
    _zero_row(grad_out + i * C, C)
    if y[i] != ignore_index:
        wy = 1.0 if w == NULL else w[y[i]]
        l = -wy * x[i * C + y[i]]
        grad_out[i * C + y[i]] = <real>(-wy * _up(grad_up, i, scale))
    if loss_out != NULL:
        loss_out[i] = <real>l
    return l


cdef double _nll(const real* x, const int64_t* y, Py_ssize_t N, Py_ssize_t C, const real* w,
                 int64_t ignore_index, int red, real* grad_out, real* loss_out,
                 const real* grad_up) noexcept nogil:
    """l_i := -w_{y_i} x[i, y_i]; g_i := -w_{y_i} e_{y_i} * scale; ignored rows 0; mean divides by D."""
    cdef Py_ssize_t i
    cdef double total = 0.0, D = 1.0
    if red == MEAN:
        D = _class_weight_total(y, N, w, ignore_index)
    cdef double scale = _div(1.0, D)
    if N * C > CHEAP_THRESHOLD:
        for i in prange(N, schedule="static"):
            total += _nll_at(x, y, i, C, w, ignore_index, scale, grad_out, loss_out, grad_up)
    else:
        for i in range(N):
            total += _nll_at(x, y, i, C, w, ignore_index, scale, grad_out, loss_out, grad_up)
    return _div(total, D)


# --------------------------------------------------------------------------------------
# Python wrappers: typed memoryviews in, GIL released around the kernel
# --------------------------------------------------------------------------------------

cdef int _check_none_buffers(int red, loss_out, grad_up, Py_ssize_t n) except -1:
    """'none' needs loss_out (n entries); grad_up is optional and must have n entries."""
    if red == NONE:
        if loss_out is None:
            raise ValueError("reduction='none' needs a loss_out buffer")
        _check_size(len(loss_out), n, "loss_out")
        if grad_up is not None:
            _check_size(len(grad_up), n, "grad_up")
    return 0


cdef int _check_rows(int red, Py_ssize_t N, Py_ssize_t C, Py_ssize_t target_size, Py_ssize_t target_want,
                     str target_name, Py_ssize_t grad_size, weight, loss_out, grad_up) except -1:
    """The buffer checks shared by the row-wise (N, C) losses."""
    _check_size(target_size, target_want, target_name)
    _check_size(grad_size, N * C, "grad_out")
    if weight is not None:
        _check_size(len(weight), C, "weight")
    _check_none_buffers(red, loss_out, grad_up, N)
    return 0


def mse_loss(const real[::1] x, const real[::1] y, real[::1] grad_out, str reduction="mean",
             real[::1] loss_out=None, const real[::1] grad_up=None):
    """MSE: l := (x - y)^2; grad_out := 2 (x - y) / numel (mean) | 2 (x - y) (sum) | 2 (x - y) * grad_up (none)."""
    cdef int red = _reduction(reduction)
    cdef Py_ssize_t n = x.shape[0]
    _check_size(y.shape[0], n, "y")
    _check_size(grad_out.shape[0], n, "grad_out")
    _check_none_buffers(red, loss_out, grad_up, n)
    if n == 0:
        return float("nan") if red == MEAN else 0.0
    cdef real* lo = &loss_out[0] if red == NONE else NULL
    cdef const real* up = &grad_up[0] if red == NONE and grad_up is not None else NULL
    cdef double total
    with nogil:
        total = _mse(&x[0], &y[0], n, red, &grad_out[0], lo, up)
    return total


def bce_loss(const real[::1] x, const real[::1] y, real[::1] grad_out, const real[::1] weight=None,
             str reduction="mean", real[::1] loss_out=None, const real[::1] grad_up=None):
    """BCE on probabilities x: l := -w [y max(log x, -100) + (1-y) max(log(1-x), -100)];
    grad_out := w (x - y) / max(x (1-x), 1e-12), over numel for mean. weight: flat, input-sized or None."""
    cdef int red = _reduction(reduction)
    cdef Py_ssize_t n = x.shape[0]
    _check_size(y.shape[0], n, "y")
    _check_size(grad_out.shape[0], n, "grad_out")
    if weight is not None:
        _check_size(weight.shape[0], n, "weight")
    _check_none_buffers(red, loss_out, grad_up, n)
    if n == 0:
        return float("nan") if red == MEAN else 0.0
    cdef const real* w = &weight[0] if weight is not None else NULL
    cdef real* lo = &loss_out[0] if red == NONE else NULL
    cdef const real* up = &grad_up[0] if red == NONE and grad_up is not None else NULL
    cdef double total
    with nogil:
        total = _bce(&x[0], &y[0], w, n, red, &grad_out[0], lo, up)
    return total


def bce_with_logits_loss(const real[::1] z, const real[::1] y, real[::1] grad_out,
                         const real[::1] weight=None, const real[::1] pos_weight=None,
                         str reduction="mean", real[::1] loss_out=None, const real[::1] grad_up=None):
    """BCE on logits z: l := w [p y softplus(-z) + (1-y) softplus(z)];
    grad_out := w [(1 + (p-1) y) sigmoid(z) - p y], over numel for mean.
    weight, pos_weight: flat, input-sized (already broadcast) or None."""
    cdef int red = _reduction(reduction)
    cdef Py_ssize_t n = z.shape[0]
    _check_size(y.shape[0], n, "y")
    _check_size(grad_out.shape[0], n, "grad_out")
    if weight is not None:
        _check_size(weight.shape[0], n, "weight")
    if pos_weight is not None:
        _check_size(pos_weight.shape[0], n, "pos_weight")
    _check_none_buffers(red, loss_out, grad_up, n)
    if n == 0:
        return float("nan") if red == MEAN else 0.0
    cdef const real* w = &weight[0] if weight is not None else NULL
    cdef const real* pw = &pos_weight[0] if pos_weight is not None else NULL
    cdef real* lo = &loss_out[0] if red == NONE else NULL
    cdef const real* up = &grad_up[0] if red == NONE and grad_up is not None else NULL
    cdef double total
    with nogil:
        total = _bce_logits(&z[0], &y[0], w, pw, n, red, &grad_out[0], lo, up)
    return total


def cross_entropy_loss(const real[:, ::1] z, const int64_t[::1] labels, real[:, ::1] grad_out,
                       const real[::1] weight=None, int64_t ignore_index=-100, double label_smoothing=0.0,
                       str reduction="mean", real[::1] loss_out=None, const real[::1] grad_up=None):
    """Cross-entropy from logits z (N, C) and class indices: fused log_softmax + NLL + gradient.
    l_i := (1-eps) w_y (-log p_y) + (eps/C) sum_c w_c (-log p_c) (0 if y_i == ignore_index);
    grad_out := [(1-eps) w_y (p - e_y) + (eps/C) (W p - w)] / D, D = sum of w_{y_i} over kept rows
    (mean; all rows ignored -> loss NaN, grad 0) | 1 (sum); times grad_up[i] (none). An ignored row's gradient
    is 0, or NaN if its softmax is NaN (a NaN or +inf logit, or all -inf), as torch's."""
    cdef int red = _reduction(reduction)
    cdef Py_ssize_t N = z.shape[0], C = z.shape[1]
    _check_rows(red, N, C, labels.shape[0], N, "labels", grad_out.shape[0] * grad_out.shape[1], weight,
                loss_out, grad_up)
    if N == 0 or C == 0:
        return float("nan") if red == MEAN else 0.0
    cdef const real* w = &weight[0] if weight is not None else NULL
    cdef real* lo = &loss_out[0] if red == NONE else NULL
    cdef const real* up = &grad_up[0] if red == NONE and grad_up is not None else NULL
    cdef double total
    with nogil:
        total = _cross_entropy(&z[0, 0], &labels[0], N, C, w, ignore_index, label_smoothing, red,
                               &grad_out[0, 0], lo, up)
    return total


def cross_entropy_prob_loss(const real[:, ::1] z, const real[:, ::1] target, real[:, ::1] grad_out,
                            const real[::1] weight=None, double label_smoothing=0.0, str reduction="mean",
                            real[::1] loss_out=None, const real[::1] grad_up=None):
    """Cross-entropy from logits z (N, C) and probability targets t (N, C): t' := (1-eps) t + eps/C,
    l_i := -sum_c w_c t'_c log p_c; grad_out := (sum_c w_c t'_c) p - w t', over N for mean."""
    cdef int red = _reduction(reduction)
    cdef Py_ssize_t N = z.shape[0], C = z.shape[1]
    _check_rows(red, N, C, target.shape[0] * target.shape[1], N * C, "target",
                grad_out.shape[0] * grad_out.shape[1], weight, loss_out, grad_up)
    if N == 0 or C == 0:
        return float("nan") if red == MEAN else 0.0
    cdef const real* w = &weight[0] if weight is not None else NULL
    cdef real* lo = &loss_out[0] if red == NONE else NULL
    cdef const real* up = &grad_up[0] if red == NONE and grad_up is not None else NULL
    cdef double total
    with nogil:
        total = _cross_entropy_prob(&z[0, 0], &target[0, 0], N, C, w, label_smoothing, red,
                                    &grad_out[0, 0], lo, up)
    return total


def nll_loss(const real[:, ::1] x, const int64_t[::1] labels, real[:, ::1] grad_out,
             const real[::1] weight=None, int64_t ignore_index=-100, str reduction="mean",
             real[::1] loss_out=None, const real[::1] grad_up=None):
    """NLL on log-probabilities x (N, C): l_i := -w_{y_i} x[i, y_i] (0 if ignored);
    grad_out := -w_{y_i} e_{y_i} / D (D as in cross_entropy_loss)."""
    cdef int red = _reduction(reduction)
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    _check_rows(red, N, C, labels.shape[0], N, "labels", grad_out.shape[0] * grad_out.shape[1], weight,
                loss_out, grad_up)
    if N == 0 or C == 0:
        return float("nan") if red == MEAN else 0.0
    cdef const real* w = &weight[0] if weight is not None else NULL
    cdef real* lo = &loss_out[0] if red == NONE else NULL
    cdef const real* up = &grad_up[0] if red == NONE and grad_up is not None else NULL
    cdef double total
    with nogil:
        total = _nll(&x[0, 0], &labels[0], N, C, w, ignore_index, red, &grad_out[0, 0], lo, up)
    return total
