# Design note: _optim - fused element-wise optimizer updates (torch.optim semantics, docs/numerics.md section 1.1-1.5;
# and scikit-learn's MLP SGD and Adam, the OPT_SK_* kinds, docs/numerics.md section 11.2).
#
# Each kernel updates one contiguous 1-D *run* of the parameter arena in place, reading the matching
# run of the gradient arena and updating the matching runs of the optimizer's state arenas (one flat
# buffer per state kind). The Python optimizers group neighbouring parameters into such runs, so a
# whole model is usually one call. Element i of every buffer belongs to the same scalar parameter,
# so each update is a single pass with no cross-element dependence.
#
# Protocol (_optim.pxd): a run is an OptRun {kind, flags, n, param, grad, s0, s1, s2, steps, nsteps, hp[8],
# sc[8]}; the .pxd documents, per kind, the order of the hyper-parameters hp, which state buffer is which,
# the flag bits and the per-step scalars sc. run_update_f32/_f64 are the C entry points (the compiled
# training plan calls them inside its own nogil call, once per step on the same OptRun); apply_run is
# the Python one (Optimizer.step); sgd_step ... adadelta_step are conveniences that derive flags from
# torch's hyper-parameters and go through the same code.
#
# Per-step arithmetic lives in step_scalars and nowhere else: it advances the run's float32 step counts
# as torch's float32 tensors count (t := float32(t + 1)) and computes sc in double from hp and t (Adam's
# bias corrections with libm's pow, exactly as Python's ** computes them; Adagrad's decayed lr; built for
# the baseline ISA, so no product and sum are contracted into an FMA). run_update then runs the kernel and
# clears OPT_FIRST_STEP (SGD's new momentum buffers exist after one update).
#
# Layout/dtype: all buffers are C-contiguous, of the one fused type `real` and of equal length; an
# optional state buffer that the flags leave unused is NULL (a length-0 array in Python). Arithmetic
# runs in `real`, in torch's operation order: mul_ then addcmul_ (a*x + (v*g)*g), addcdiv_ (p +
# (v*g)/d), and lerp_ in its vectorised form base + c*(end - self) with (c, base) = (w, self) for
# |w| < 0.5, else (w - 1, end). Torch's AVX2 kernels fuse some of these multiply-adds (FMA) that this
# SSE2 build rounds twice (Adam's AVX2 path below fuses the lerp as torch does), so results agree with
# torch to an ulp or so per step, not bitwise. The per-step scalars are rounded to `real` once per
# call, as torch rounds its Python-float scalars, and never per element.
#
# Threading: the GIL is released; each kernel updates a span [lo, hi) in a plain loop. _run calls it
# once for the whole run up to the kind's threshold (THRESHOLDS), and above it (with more than one
# OpenMP thread) once per thread from a static prange over the threads, in chunks of whole 64-byte
# lines. Below the threshold one thread is faster, as waking the passive OpenMP pool costs ~15-20 us;
# and no OpenMP region is opened there at all: a prange with use_threads_if false still enters a
# one-thread region whose lastprivate loop index costs a barrier (~1.5 us per call, most of a
# 1000-element Adam step). Every element sees the same operations whatever the split. Measured float32 on 2 cores (passive pool, 16k-1M elements; 1 thread, ns/element
# at 1M): SGD 0.17 (0.22 with momentum; memory-bound, 2 threads gain nothing below ~200k), Adam
# 0.95 (2 threads win from ~32k), RMSprop and Adagrad 0.68 (~45k), Adadelta 1.12 (~25k). The
# sqrt/div kernels are bound by SSE2 sqrt/div throughput, not memory. Nothing is allocated.
#
# AVX2. Where the CPU has AVX2 and FMA (checked once at import), Adam/AdamW's span runs
# csrc/fnn_optim.h instead: the same operations 8 floats / 4 doubles wide, with the exp_avg lerp as one
# FMA exactly like torch's vectorised lerp (the SSE2 loop rounds its product and sum separately; every
# other operation is unfused in both). Measured float32, 1 thread: 0.59 vs 1.02 ns/element at 1M
# (1.7x), 0.51 vs 0.99 at 100k (1.95x, tiny's Adam step: 52 us instead of 101). 2 threads tie with 1
# at ~100k and win from ~130k (1M: 1.6x), hence AVX2_THRESHOLD. set_avx2(False) selects the SSE2 loop.
#
# Vectorisation: GCC vectorises these loops (SSE2: 4 floats / 2 doubles per instruction) only if
# (a) sqrt need not set errno - hence -fno-math-errno, set for every kernel in setup.py (the kernels
# never read errno) - and (b) no store in the loop body depends on a flag: flags may only pick
# between values; a flag that adds or removes a store (momentum, centered, amsgrad) selects between
# separate loops. Keep both rules when editing or adding kernels.
#
# scikit-learn's kinds (SK_SGD, SK_ADAM) follow NumPy's evaluation of sklearn's expressions instead of
# torch's, so that float64 gives sklearn's bits on the same gradient: each binary operation of the
# Python expression is one rounded C operation in the same order, Python-float scalars rounded to
# `real` (NumPy 2's weak scalars), and SK_ADAM's update `-lr_t * m / (sqrt(v) + eps)` in double also for
# float32 (lr_t is a NumPy float64, which promotes the float32 arrays; `param += update` rounds back).
# Where Adam's AVX2 path runs (avx2_available()), SK_ADAM's span runs fnn_optim.h's copy of the same loop
# compiled for AVX2 without FMA: vector IEEE operations round as scalar ones, so the bits are the same, twice
# as wide (float64 1M elements, 1 thread: ~4.3 -> ~2.3 ns/element). SK_SGD is memory-bound: the plain loop.

from cython.parallel cimport prange
from libc.math cimport pow, sqrt, sqrtf

from fastnn._kernels._types cimport real

from fastnn._kernels._csrc cimport (fnn_adam_avx2_f32, fnn_adam_avx2_f64, fnn_omp_get_max_threads,
                                    fnn_optim_avx2_available, fnn_sk_adam_avx2_f32, fnn_sk_adam_avx2_f64)

# Elements per call above which a kind's update uses OpenMP threads (see the design note).
SGD_THRESHOLD = 196608
THRESHOLD = 49152  # Adam, SSE2 loop
AVX2_THRESHOLD = 114688  # Adam, fnn_optim.h's AVX2/FMA update (twice as fast per element: threads pay off later)
RMSPROP_THRESHOLD = 65536  # also Adagrad's
ADADELTA_THRESHOLD = 32768
cdef Py_ssize_t _SGD_THRESHOLD = SGD_THRESHOLD
cdef Py_ssize_t _THRESHOLD = THRESHOLD
cdef Py_ssize_t _AVX2_THRESHOLD = AVX2_THRESHOLD
cdef Py_ssize_t _RMSPROP_THRESHOLD = RMSPROP_THRESHOLD
cdef Py_ssize_t _ADADELTA_THRESHOLD = ADADELTA_THRESHOLD

cdef bint _avx2 = fnn_optim_avx2_available() != 0
# "adam": the threshold of the update this CPU runs by default
THRESHOLDS = {"sgd": SGD_THRESHOLD, "adam": AVX2_THRESHOLD if _avx2 else THRESHOLD, "rmsprop": RMSPROP_THRESHOLD,
              "adagrad": RMSPROP_THRESHOLD, "adadelta": ADADELTA_THRESHOLD, "sklearn_sgd": SGD_THRESHOLD,
              "sklearn_adam": AVX2_THRESHOLD if _avx2 else THRESHOLD}


def avx2_available():
    """True if Adam/AdamW run fnn_optim.h's AVX2/FMA update (x86-64 with AVX2 and FMA, and enabled)."""
    return _avx2


def set_avx2(bint enabled):
    """Use fnn_optim.h's AVX2/FMA Adam update where the CPU has it (True, the default) or the SSE2 loop (False)."""
    global _avx2
    _avx2 = enabled and fnn_optim_avx2_available() != 0


# The .pxd's codes, for Python callers.
KIND_SGD = OPT_SGD
KIND_ADAM = OPT_ADAM
KIND_RMSPROP = OPT_RMSPROP
KIND_ADAGRAD = OPT_ADAGRAD
KIND_ADADELTA = OPT_ADADELTA
KIND_SK_SGD = OPT_SK_SGD
KIND_SK_ADAM = OPT_SK_ADAM
FLAG_MAXIMIZE = OPT_MAXIMIZE
FLAG_WEIGHT_DECAY = OPT_WEIGHT_DECAY
FLAG_MOMENTUM = OPT_MOMENTUM
FLAG_NESTEROV = OPT_NESTEROV
FLAG_FIRST_STEP = OPT_FIRST_STEP
FLAG_AMSGRAD = OPT_AMSGRAD
FLAG_DECOUPLED = OPT_DECOUPLED
FLAG_CENTERED = OPT_CENTERED


cdef inline real _sqrt(real x) noexcept nogil:
    if real is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline real _grad(real grad, real p, bint maximize, bint decay, real weight_decay) noexcept nogil:
    """g = (maximize ? -grad : grad) (+ weight_decay*p)."""
    cdef real g = -grad if maximize else grad
    return g + weight_decay * p if decay else g


cdef inline bint _lerp_small(real w) noexcept nogil:
    """torch's lerp picks base + c*(end - self) with (c, base) = (w, self) iff |w| < 0.5."""
    return (w if w >= 0 else -w) < <real>0.5


# ---------------------------------------------------------------------------------------------- SGD

cdef void _sgd(Py_ssize_t lo, Py_ssize_t hi, int flags, real* param, const real* grad, real* buf,
               const double* sc) noexcept nogil:
    cdef real lr = <real>sc[0], momentum = <real>sc[1], one_minus_dampening = <real>sc[2]
    cdef real weight_decay = <real>sc[3]
    cdef bint maximize = (flags & OPT_MAXIMIZE) != 0, decay = (flags & OPT_WEIGHT_DECAY) != 0
    cdef bint nesterov = (flags & OPT_NESTEROV) != 0, first_step = (flags & OPT_FIRST_STEP) != 0
    cdef Py_ssize_t i
    cdef real g, b
    if not flags & OPT_MOMENTUM:
        for i in range(lo, hi):
            g = _grad(grad[i], param[i], maximize, decay, weight_decay)
            param[i] = param[i] - lr * g
        return
    for i in range(lo, hi):
        g = _grad(grad[i], param[i], maximize, decay, weight_decay)
        b = g if first_step else momentum * buf[i] + one_minus_dampening * g
        buf[i] = b
        g = g + momentum * b if nesterov else b
        param[i] = param[i] - lr * g


# --------------------------------------------------------------------------------------------- Adam

cdef void _adam(Py_ssize_t lo, Py_ssize_t hi, int flags, real* param, const real* grad, real* exp_avg, real* exp_avg_sq,
                real* max_exp_avg_sq, const double* sc) noexcept nogil:
    cdef real w1 = <real>sc[0], beta2 = <real>sc[1], one_minus_beta2 = <real>sc[2], eps = <real>sc[3]
    cdef real weight_decay = <real>sc[4], decay_factor = <real>sc[5], step_size = <real>sc[6]
    cdef real bias_correction2_sqrt = <real>sc[7]
    cdef bint maximize = (flags & OPT_MAXIMIZE) != 0
    cdef bint coupled = (flags & OPT_WEIGHT_DECAY) != 0 and (flags & OPT_DECOUPLED) == 0
    cdef bint decoupled = (flags & OPT_WEIGHT_DECAY) != 0 and (flags & OPT_DECOUPLED) != 0
    cdef bint small = _lerp_small(w1)
    cdef real c1 = w1 if small else w1 - 1
    cdef Py_ssize_t i
    cdef real p, g, m, v, vmax
    if _avx2:   # fnn_optim.h: the same operations 8 (4) lanes wide; the lerp is one FMA, as in torch
        if real is float:
            fnn_adam_avx2_f32(lo, hi, maximize, coupled, decoupled, small, (flags & OPT_AMSGRAD) != 0, param, grad,
                              exp_avg, exp_avg_sq, max_exp_avg_sq, w1, beta2, one_minus_beta2, eps, weight_decay,
                              decay_factor, step_size, bias_correction2_sqrt)
        else:
            fnn_adam_avx2_f64(lo, hi, maximize, coupled, decoupled, small, (flags & OPT_AMSGRAD) != 0, param, grad,
                              exp_avg, exp_avg_sq, max_exp_avg_sq, w1, beta2, one_minus_beta2, eps, weight_decay,
                              decay_factor, step_size, bias_correction2_sqrt)
        return
    if not flags & OPT_AMSGRAD:
        for i in range(lo, hi):
            p = param[i]
            g = _grad(grad[i], p, maximize, coupled, weight_decay)
            p = p * decay_factor if decoupled else p
            m = exp_avg[i]
            m = (m if small else g) + c1 * (g - m)
            v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
            exp_avg[i] = m
            exp_avg_sq[i] = v
            param[i] = p - step_size * m / (_sqrt(v) / bias_correction2_sqrt + eps)
        return
    for i in range(lo, hi):
        p = param[i]
        g = _grad(grad[i], p, maximize, coupled, weight_decay)
        p = p * decay_factor if decoupled else p
        m = exp_avg[i]
        m = (m if small else g) + c1 * (g - m)
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        vmax = max_exp_avg_sq[i]
        vmax = vmax if vmax > v else v
        max_exp_avg_sq[i] = vmax
        param[i] = p - step_size * m / (_sqrt(vmax) / bias_correction2_sqrt + eps)


# ------------------------------------------------------------------------------------------ RMSprop

cdef void _rmsprop(Py_ssize_t lo, Py_ssize_t hi, int flags, real* param, const real* grad, real* square_avg,
                   real* momentum_buffer, real* grad_avg, const double* sc) noexcept nogil:
    cdef real lr = <real>sc[0], alpha = <real>sc[1], w = <real>sc[2], eps = <real>sc[3]
    cdef real weight_decay = <real>sc[4], momentum = <real>sc[5]
    cdef bint maximize = (flags & OPT_MAXIMIZE) != 0, decay = (flags & OPT_WEIGHT_DECAY) != 0
    cdef bint small = _lerp_small(w)
    cdef real c = w if small else w - 1
    cdef bint centered = (flags & OPT_CENTERED) != 0, with_momentum = (flags & OPT_MOMENTUM) != 0
    cdef Py_ssize_t i
    cdef real g, v, a, ga, b
    # one loop per (centered, momentum): each adds a store
    if not centered and not with_momentum:
        for i in range(lo, hi):
            g = _grad(grad[i], param[i], maximize, decay, weight_decay)
            v = alpha * square_avg[i] + w * g * g
            square_avg[i] = v
            param[i] = param[i] - lr * g / (_sqrt(v) + eps)
    elif not centered:
        for i in range(lo, hi):
            g = _grad(grad[i], param[i], maximize, decay, weight_decay)
            v = alpha * square_avg[i] + w * g * g
            square_avg[i] = v
            b = momentum * momentum_buffer[i] + g / (_sqrt(v) + eps)
            momentum_buffer[i] = b
            param[i] = param[i] - lr * b
    elif not with_momentum:
        for i in range(lo, hi):
            g = _grad(grad[i], param[i], maximize, decay, weight_decay)
            v = alpha * square_avg[i] + w * g * g
            square_avg[i] = v
            ga = grad_avg[i]
            ga = (ga if small else g) + c * (g - ga)
            grad_avg[i] = ga
            param[i] = param[i] - lr * g / (_sqrt(v - ga * ga) + eps)
    else:
        for i in range(lo, hi):
            g = _grad(grad[i], param[i], maximize, decay, weight_decay)
            v = alpha * square_avg[i] + w * g * g
            square_avg[i] = v
            ga = grad_avg[i]
            ga = (ga if small else g) + c * (g - ga)
            grad_avg[i] = ga
            b = momentum * momentum_buffer[i] + g / (_sqrt(v - ga * ga) + eps)
            momentum_buffer[i] = b
            param[i] = param[i] - lr * b


# ------------------------------------------------------------------------------------------ Adagrad

cdef void _adagrad(Py_ssize_t lo, Py_ssize_t hi, int flags, real* param, const real* grad, real* state_sum,
                   const double* sc) noexcept nogil:
    cdef real clr = <real>sc[0], weight_decay = <real>sc[1], eps = <real>sc[2]
    cdef bint maximize = (flags & OPT_MAXIMIZE) != 0, decay = (flags & OPT_WEIGHT_DECAY) != 0
    cdef Py_ssize_t i
    cdef real g, s
    for i in range(lo, hi):
        g = _grad(grad[i], param[i], maximize, decay, weight_decay)
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = param[i] - clr * g / (_sqrt(s) + eps)


# ----------------------------------------------------------------------------------------- Adadelta

cdef void _adadelta(Py_ssize_t lo, Py_ssize_t hi, int flags, real* param, const real* grad, real* square_avg,
                    real* acc_delta, const double* sc) noexcept nogil:
    cdef real lr = <real>sc[0], rho = <real>sc[1], one_minus_rho = <real>sc[2], eps = <real>sc[3]
    cdef real weight_decay = <real>sc[4]
    cdef bint maximize = (flags & OPT_MAXIMIZE) != 0, decay = (flags & OPT_WEIGHT_DECAY) != 0
    cdef Py_ssize_t i
    cdef real g, v, d
    for i in range(lo, hi):
        g = _grad(grad[i], param[i], maximize, decay, weight_decay)
        v = rho * square_avg[i] + one_minus_rho * g * g
        square_avg[i] = v
        d = _sqrt(acc_delta[i] + eps) / _sqrt(v + eps) * g
        acc_delta[i] = rho * acc_delta[i] + one_minus_rho * d * d
        param[i] = param[i] - lr * d


# ------------------------------------------------------------------------------- scikit-learn's SGD

cdef void _sk_sgd(Py_ssize_t lo, Py_ssize_t hi, int flags, real* param, const real* grad, real* velocity,
                  const double* sc) noexcept nogil:
    """sklearn's SGDOptimizer: v := mu*v - lr*g; param += nesterov ? mu*v - lr*g : v."""
    cdef real lr = <real>sc[0], momentum = <real>sc[1]
    cdef bint nesterov = (flags & OPT_NESTEROV) != 0
    cdef Py_ssize_t i
    cdef real g, v
    for i in range(lo, hi):
        g = grad[i]
        v = momentum * velocity[i] - lr * g
        velocity[i] = v
        param[i] = param[i] + (momentum * v - lr * g if nesterov else v)


# ------------------------------------------------------------------------------ scikit-learn's Adam

cdef void _sk_adam(Py_ssize_t lo, Py_ssize_t hi, real* param, const real* grad, real* ms, real* vs,
                   const double* sc) noexcept nogil:
    """sklearn's AdamOptimizer: m := b1*m + (1-b1)*g; v := b2*v + (1-b2)*(g*g); param += (-lr_t*m) / (sqrt(v) + eps),
    the update in double (see the design note)."""
    cdef real b1 = <real>sc[0], omb1 = <real>sc[1], b2 = <real>sc[2], omb2 = <real>sc[3], eps = <real>sc[5]
    cdef double nlr = sc[4]
    cdef Py_ssize_t i
    cdef real g, m, v
    if _avx2:   # fnn_optim.h: this loop for AVX2 without FMA (the same bits)
        if real is float:
            fnn_sk_adam_avx2_f32(lo, hi, param, grad, ms, vs, b1, omb1, b2, omb2, nlr, eps)
        else:
            fnn_sk_adam_avx2_f64(lo, hi, param, grad, ms, vs, b1, omb1, b2, omb2, nlr, eps)
        return
    for i in range(lo, hi):
        g = grad[i]
        m = b1 * ms[i] + omb1 * g
        v = b2 * vs[i] + omb2 * (g * g)
        ms[i] = m
        vs[i] = v
        param[i] = <real>(<double>param[i] + (nlr * <double>m) / <double>(_sqrt(v) + eps))


# ------------------------------------------------------------------------------------- the protocol

cdef void step_scalars(OptRun* r) noexcept nogil:
    """Advance the run's step counts (t := float32(t + 1), torch's float32 count) and fill sc from hp and t."""
    cdef const double* hp = r.hp
    cdef double* sc = r.sc
    cdef double t = 0.0
    cdef Py_ssize_t i
    for i in range(r.nsteps):
        r.steps[i] = <float>(<double>r.steps[i] + 1.0)
    if r.nsteps > 0:
        t = r.steps[0]
    if r.kind == OPT_SGD:            # lr, momentum, dampening, weight_decay
        sc[0] = hp[0]
        sc[1] = hp[1]
        sc[2] = 1.0 - hp[2]
        sc[3] = hp[3]
    elif r.kind == OPT_ADAM:         # lr, beta1, beta2, eps, weight_decay
        sc[0] = 1.0 - hp[1]
        sc[1] = hp[2]
        sc[2] = 1.0 - hp[2]
        sc[3] = hp[3]
        sc[4] = hp[4]
        sc[5] = 1.0 - hp[0] * hp[4]
        sc[6] = hp[0] / (1.0 - pow(hp[1], t))        # lr / (1 - beta1**t)
        sc[7] = pow(1.0 - pow(hp[2], t), 0.5)       # (1 - beta2**t) ** 0.5
    elif r.kind == OPT_RMSPROP:      # lr, alpha, eps, weight_decay, momentum
        sc[0] = hp[0]
        sc[1] = hp[1]
        sc[2] = 1.0 - hp[1]
        sc[3] = hp[2]
        sc[4] = hp[3]
        sc[5] = hp[4]
    elif r.kind == OPT_ADAGRAD:      # lr, lr_decay, weight_decay, eps
        sc[0] = hp[0] / (1.0 + (t - 1.0) * hp[1])   # step 1 undecayed
        sc[1] = hp[2]
        sc[2] = hp[3]
    elif r.kind == OPT_ADADELTA:     # lr, rho, eps, weight_decay
        sc[0] = hp[0]
        sc[1] = hp[1]
        sc[2] = 1.0 - hp[1]
        sc[3] = hp[2]
        sc[4] = hp[3]
    elif r.kind == OPT_SK_SGD:       # lr, momentum
        sc[0] = hp[0]
        sc[1] = hp[1]
    elif r.kind == OPT_SK_ADAM:      # lr, beta1, beta2, eps: sklearn's lr_t = lr * sqrt(1 - b2**t) / (1 - b1**t)
        sc[0] = hp[1]
        sc[1] = 1.0 - hp[1]
        sc[2] = hp[2]
        sc[3] = 1.0 - hp[2]
        sc[4] = -(hp[0] * sqrt(1.0 - pow(hp[2], t)) / (1.0 - pow(hp[1], t)))
        sc[5] = hp[3]


cdef inline void _span(const OptRun* r, real* param, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """The run's update of elements [lo, hi)."""
    cdef const real* grad = <const real*>r.grad
    cdef real* s0 = <real*>r.s0
    cdef real* s1 = <real*>r.s1
    cdef real* s2 = <real*>r.s2
    if r.kind == OPT_SGD:
        _sgd(lo, hi, r.flags, param, grad, s0, r.sc)
    elif r.kind == OPT_ADAM:
        _adam(lo, hi, r.flags, param, grad, s0, s1, s2, r.sc)
    elif r.kind == OPT_RMSPROP:
        _rmsprop(lo, hi, r.flags, param, grad, s0, s1, s2, r.sc)
    elif r.kind == OPT_ADAGRAD:
        _adagrad(lo, hi, r.flags, param, grad, s0, r.sc)
    elif r.kind == OPT_ADADELTA:
        _adadelta(lo, hi, r.flags, param, grad, s0, s1, r.sc)
    elif r.kind == OPT_SK_SGD:
        _sk_sgd(lo, hi, r.flags, param, grad, s0, r.sc)
    elif r.kind == OPT_SK_ADAM:
        _sk_adam(lo, hi, param, grad, s0, s1, r.sc)


cdef inline Py_ssize_t _threshold(int kind) noexcept nogil:
    if kind == OPT_SGD or kind == OPT_SK_SGD:
        return _SGD_THRESHOLD
    if kind == OPT_ADAM or kind == OPT_SK_ADAM:
        return _AVX2_THRESHOLD if _avx2 else _THRESHOLD
    if kind == OPT_ADADELTA:
        return _ADADELTA_THRESHOLD
    return _RMSPROP_THRESHOLD


cdef inline void _run(const OptRun* r, real* param) noexcept nogil:
    """One span on this thread up to the kind's threshold; above it one span per OpenMP thread."""
    cdef Py_ssize_t n = r.n, chunk, t, lo
    cdef int nt
    if n <= 0:
        return
    nt = fnn_omp_get_max_threads() if n > _threshold(r.kind) else 1
    if nt <= 1:   # a plain call: a prange with use_threads_if false still opens an OpenMP region
        _span(r, param, 0, n)
        return
    chunk = ((n + nt - 1) // nt + 15) & ~(<Py_ssize_t>15)   # whole 64-byte lines (float32) per thread
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        lo = t * chunk
        if lo < n:
            _span(r, param, lo, min(lo + chunk, n))


cdef void run_update_f32(OptRun* r) noexcept nogil:
    step_scalars(r)
    _run(r, <float*>r.param)
    r.flags = r.flags & ~(<int>OPT_FIRST_STEP)


cdef void run_update_f64(OptRun* r) noexcept nogil:
    step_scalars(r)
    _run(r, <double*>r.param)
    r.flags = r.flags & ~(<int>OPT_FIRST_STEP)


# State buffers per kind, with the flag that makes each one used (0: always used).
cdef dict _STATE = {
    OPT_SGD: (("momentum_buffer", OPT_MOMENTUM),),
    OPT_ADAM: (("exp_avg", 0), ("exp_avg_sq", 0), ("max_exp_avg_sq", OPT_AMSGRAD)),
    OPT_RMSPROP: (("square_avg", 0), ("momentum_buffer", OPT_MOMENTUM), ("grad_avg", OPT_CENTERED)),
    OPT_ADAGRAD: (("sum", 0),),
    OPT_ADADELTA: (("square_avg", 0), ("acc_delta", 0)),
    OPT_SK_SGD: (("velocity", 0),),
    OPT_SK_ADAM: (("m", 0), ("v", 0)),
}
# The hyper-parameters hp of each kind, in the .pxd's order.
cdef dict _HP = {
    OPT_SGD: ("lr", "momentum", "dampening", "weight_decay"),
    OPT_ADAM: ("lr", "beta1", "beta2", "eps", "weight_decay"),
    OPT_RMSPROP: ("lr", "alpha", "eps", "weight_decay", "momentum"),
    OPT_ADAGRAD: ("lr", "lr_decay", "weight_decay", "eps"),
    OPT_ADADELTA: ("lr", "rho", "eps", "weight_decay"),
    OPT_SK_SGD: ("lr", "momentum"),
    OPT_SK_ADAM: ("lr", "beta1", "beta2", "eps"),
}


cdef int _check_len(Py_ssize_t n, Py_ssize_t m, str name) except -1:
    if m != n:
        raise ValueError(f"{name} must have {n} elements like param, got {m}")
    return 0


cdef void* _state_ptr(real[::1] s, Py_ssize_t n, int kind, int flags, int slot) except? NULL:
    """The address of state buffer `slot`, or NULL when the kind and flags leave it unused; checks its length."""
    cdef tuple specs = _STATE[kind]
    if slot >= len(specs):
        return NULL
    name, needs = specs[slot]
    if needs and not flags & needs:
        return NULL
    _check_len(n, s.shape[0], name)
    return &s[0] if n else NULL


cdef int _apply(int kind, int flags, real[::1] param, const real[::1] grad, real[::1] s0, real[::1] s1,
                real[::1] s2, object hp, float* steps, Py_ssize_t nsteps) except -1:
    """Fill an OptRun (checking the buffers and hp) and call run_update_* on it without the GIL."""
    cdef OptRun r
    cdef Py_ssize_t n = param.shape[0], k
    if kind not in _STATE:
        raise ValueError(f"kind must be one of {sorted(_STATE)}, got {kind}")
    _check_len(n, grad.shape[0], "grad")
    hp = tuple(hp)
    names = _HP[kind]
    if len(hp) != len(names):
        raise ValueError(f"hp must hold the {len(names)} hyper-parameters ({', '.join(names)}) of kind {kind}, "
                         f"got {len(hp)} numbers")
    r.kind, r.flags, r.n = kind, flags, n
    r.s0 = _state_ptr(s0, n, kind, flags, 0)
    r.s1 = _state_ptr(s1, n, kind, flags, 1)
    r.s2 = _state_ptr(s2, n, kind, flags, 2)
    for k in range(8):
        r.hp[k] = hp[k] if k < len(hp) else 0.0
        r.sc[k] = 0.0
    if kind == OPT_SGD or kind == OPT_SK_SGD:   # SGD counts no steps
        r.steps, r.nsteps = NULL, 0
    elif nsteps < 1:
        raise ValueError("steps must hold the run's step counts (one per parameter), got none")
    else:
        r.steps, r.nsteps = steps, nsteps
    r.param = &param[0] if n else NULL
    r.grad = <void*>&grad[0] if n else NULL
    with nogil:
        if real is float:
            run_update_f32(&r)
        else:
            run_update_f64(&r)
    return 0


def apply_run(int kind, int flags, real[::1] param not None, const real[::1] grad not None,
              real[::1] s0 not None, real[::1] s1 not None, real[::1] s2 not None, hp, float[::1] steps not None):
    """One fused update of a run, in the protocol of _optim.pxd: fills an OptRun and calls run_update_* without the
    GIL, which advances the run's step counts `steps` (float32, one per parameter; length 0 for SGD) in place."""
    _apply(kind, flags, param, grad, s0, s1, s2, hp, &steps[0] if steps.shape[0] else NULL, steps.shape[0])


def next_scalars(int kind, hp, float[::1] steps not None):
    """The per-step scalars sc[0..8] of a run's next update (for tests): step_scalars on an OptRun of this kind, hp
    and step counts, which it advances in place as the update does (SGD: steps are ignored)."""
    cdef OptRun r
    if kind not in _HP or len(hp) != len(_HP[kind]):
        raise ValueError(f"hp must hold the hyper-parameters {_HP.get(kind)} of kind {kind}, got {hp!r}")
    r.kind = kind
    r.steps, r.nsteps = NULL, 0
    if kind != OPT_SGD and kind != OPT_SK_SGD and steps.shape[0]:
        r.steps, r.nsteps = &steps[0], steps.shape[0]
    for k in range(8):
        r.hp[k] = hp[k] if k < len(hp) else 0.0
        r.sc[k] = 0.0
    step_scalars(&r)
    return tuple(r.sc[k] for k in range(8))


# ------------------------------------------------------------- per-optimizer wrappers (torch's hyper-parameters)

cdef inline int _bit(bint on, int flag) noexcept:
    return flag if on else 0


def sgd_step(real[::1] param, const real[::1] grad, real[::1] momentum_buffer, double lr,
             double momentum, double dampening, double weight_decay, bint nesterov, bint maximize,
             bint first_step):
    """g := ±grad + wd*param; b := first_step ? g : mu*b + (1-dampening)*g; param -= lr*(nesterov ? g + mu*b : b)."""
    cdef int flags = (_bit(maximize, OPT_MAXIMIZE) | _bit(weight_decay != 0, OPT_WEIGHT_DECAY)
                      | _bit(momentum != 0, OPT_MOMENTUM) | _bit(nesterov, OPT_NESTEROV)
                      | _bit(first_step, OPT_FIRST_STEP))
    _apply(OPT_SGD, flags, param, grad, momentum_buffer, param[:0], param[:0],
           (lr, momentum, dampening, weight_decay), NULL, 0)


def adam_step(real[::1] param, const real[::1] grad, real[::1] exp_avg, real[::1] exp_avg_sq,
              real[::1] max_exp_avg_sq, double lr, double beta1, double beta2, double eps,
              double weight_decay, bint decoupled, bint amsgrad, bint maximize, double step):
    """g := ±grad (+ wd*param, or param *= 1 - lr*wd if decoupled); m := lerp(m, g, 1-b1); v := b2*v + (1-b2)*g*g;
    param -= lr/(1 - b1^t) * m / (sqrt(amsgrad ? vmax := max(vmax, v) : v) / sqrt(1 - b2^t) + eps), t = step
    (the count after this step's increment, a whole number <= 2**24)."""
    cdef int flags = (_bit(maximize, OPT_MAXIMIZE) | _bit(weight_decay != 0, OPT_WEIGHT_DECAY)
                      | _bit(amsgrad, OPT_AMSGRAD) | _bit(decoupled, OPT_DECOUPLED))
    cdef float count = <float>(step - 1.0)   # step_scalars counts it up to `step`
    _apply(OPT_ADAM, flags, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, (lr, beta1, beta2, eps, weight_decay),
           &count, 1)


def rmsprop_step(real[::1] param, const real[::1] grad, real[::1] square_avg, real[::1] momentum_buffer,
                 real[::1] grad_avg, double lr, double alpha, double eps, double weight_decay, double momentum,
                 bint centered, bint maximize):
    """g := ±grad + wd*param; v := a*v + (1-a)*g*g; d := sqrt(centered ? v - (ga := lerp(ga, g, 1-a))^2 : v) + eps;
    param -= lr * (momentum > 0 ? b := mu*b + g/d : g/d)."""
    cdef int flags = (_bit(maximize, OPT_MAXIMIZE) | _bit(weight_decay != 0, OPT_WEIGHT_DECAY)
                      | _bit(momentum > 0, OPT_MOMENTUM) | _bit(centered, OPT_CENTERED))
    cdef float count = 0   # unused by the update
    _apply(OPT_RMSPROP, flags, param, grad, square_avg, momentum_buffer, grad_avg,
           (lr, alpha, eps, weight_decay, momentum), &count, 1)


def adagrad_step(real[::1] param, const real[::1] grad, real[::1] state_sum, double lr, double lr_decay,
                 double weight_decay, double eps, bint maximize, double step):
    """g := ±grad + wd*param; s := s + g*g; param -= lr / (1 + (step-1)*lr_decay) * g / (sqrt(s) + eps), step the
    count after this step's increment (a whole number <= 2**24)."""
    cdef int flags = _bit(maximize, OPT_MAXIMIZE) | _bit(weight_decay != 0, OPT_WEIGHT_DECAY)
    cdef float count = <float>(step - 1.0)   # step_scalars counts it up to `step`
    _apply(OPT_ADAGRAD, flags, param, grad, state_sum, param[:0], param[:0], (lr, lr_decay, weight_decay, eps),
           &count, 1)


def adadelta_step(real[::1] param, const real[::1] grad, real[::1] square_avg, real[::1] acc_delta, double lr,
                  double rho, double eps, double weight_decay, bint maximize):
    """g := ±grad + wd*param; v := rho*v + (1-rho)*g*g; d := sqrt(u + eps)/sqrt(v + eps)*g;
    u := rho*u + (1-rho)*d*d; param -= lr*d."""
    cdef int flags = _bit(maximize, OPT_MAXIMIZE) | _bit(weight_decay != 0, OPT_WEIGHT_DECAY)
    cdef float count = 0   # unused by the update
    _apply(OPT_ADADELTA, flags, param, grad, square_avg, acc_delta, param[:0], (lr, rho, eps, weight_decay),
           &count, 1)


def sklearn_sgd_step(real[::1] param, const real[::1] grad, real[::1] velocity, double lr, double momentum,
                     bint nesterov):
    """scikit-learn's SGDOptimizer: v := momentum*v - lr*grad; param += nesterov ? momentum*v - lr*grad : v."""
    _apply(OPT_SK_SGD, _bit(nesterov, OPT_NESTEROV), param, grad, velocity, param[:0], param[:0], (lr, momentum),
           NULL, 0)


def sklearn_adam_step(real[::1] param, const real[::1] grad, real[::1] m, real[::1] v, double lr, double beta1,
                      double beta2, double eps, double step):
    """scikit-learn's AdamOptimizer at time step t = step (after its increment; a whole number <= 2**24):
    m := b1*m + (1-b1)*grad; v := b2*v + (1-b2)*grad^2; param += -(lr*sqrt(1 - b2^t)/(1 - b1^t)) * m / (sqrt(v) + eps)."""
    cdef float count = <float>(step - 1.0)   # step_scalars counts it up to `step`
    _apply(OPT_SK_ADAM, 0, param, grad, m, v, param[:0], (lr, beta1, beta2, eps), &count, 1)
