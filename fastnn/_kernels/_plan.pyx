# Design note: _plan - compiled execution plans: a whole training step, or an inference forward, in one call.
#
# What. A TrainPlan holds, for one model, batch size, loss and dtype, a C array of stage descriptors
# (Dense = GEMM + fused bias/activation, element-wise activation, dropout), a loss descriptor and the
# buffers they use; `step` runs forward (training mode), the fused loss + gradient, backward into the
# gradient arena (beta = 0: gradients are overwritten) and, when the optimizer hands over its runs,
# the optimizer update - as ONE call that holds no GIL. The element-wise, dropout, loss and optimizer
# kernels are the `noexcept nogil` functions the per-layer (phase 1) path calls through its def
# wrappers (_activations, _dense's colsum, _dropout, _losses, _optim), called in the same order; one
# exception, with the same bits: a linear or ReLU Dense on the own kernels has its bias + activation
# applied in the GEMM's store (no second pass; z is then not written, and ReLU's backward reads a, whose
# mask a <= 0 is z's, -0 and NaN included). Digits fit 62 -> 59 ms, deep step 72.6 -> 67.2 us.
# scikit-learn's MLP loss (LossKind.SKLEARN_MLP, docs/numerics.md section 11.1) is the one loss whose L2 term
# needs the weights, so the plan applies it: after the loss kernel it adds (alpha/2) sum ||W||^2 / sum(w) of the
# weights as they are before the update, and after each Dense stage's dW GEMM it adds alpha / sum(w) * W.
# Its sample weights are an extra last column of the targets, gathered with them. It does not run distributed.
# An InferPlan runs the eval-mode forward only (no dropout, nothing kept for backward): each Dense
# writes its GEMM into one of two ping-pong buffers and applies bias + activation in place, or - on the
# own kernels, for a linear or ReLU Dense - has them applied in the GEMM's store (the same bits, no second
# pass). Its GEMMs follow the inference rule (_blas's _infer_gemm). `forward` lets the last stage write
# straight into the caller's array (no copy of the output); `run` returns a view of the plan's buffer.
#
# GEMMs. Each GEMM goes to BLAS (scipy.linalg.cython_blas, threaded by BLAS itself) or to fnn_gemm.h's
# own AVX2/FMA kernels, chosen once per stage when the plan is built by _blas's _small_gemm (the rule
# and switch the per-layer path shares); a single row takes the own kernels where they apply (the same
# bits as the row within any batch), else BLAS's GEMV. Own kernels change the rounding, not the math.
# The measurements behind the rule: bench/README.md, "Measurements behind the kernel rules".
#
# Batch loop. `run_batches` runs `count` consecutive full batches of an epoch in the same one nogil
# call: per batch it gathers the rows x[order[i]], t[order[i]] into the plan's own buffers (or reads
# them in place when unshuffled), runs the step, stores the batch loss and (optionally) the output
# rows, and applies the optimizer's runs again: each run_update advances the run's step counts in place
# and derives that step's scalars (_optim's step_scalars), so that the weights and optimizer state equal
# `count` separate steps bit for bit. It stops after the first batch whose loss is not finite.
#
# Layout/dtype. Row-major C-contiguous (n, features) blocks of one dtype (float32 or float64, the
# fused `real`); parameters and gradients are views into the model's flat arenas; labels are int64.
# Descriptors hold untyped pointers; a call dispatches once on the dtype.
#
# Memory. Everything is allocated when the plan is built (numpy buffers owned by the plan, the
# descriptor arrays with PyMem_Malloc; the optimizer's run array grows once, at the first step); a
# step allocates nothing. The input x is read in place (forward and backward happen in one call).
#
# Distributed (data-parallel over MPI, fastnn.distributed). `distribute(hook)` gives the plan the address
# of MPI_Allreduce (C signature, handles passed as intptr_t: ABI-safe on x86-64 SysV for int handles
# (MPICH) and pointer handles (Open MPI)), the communicator/datatype/op handles and the flat buffer that
# holds the gradient arena followed by REDUCE_SLOTS spare elements. Then every step that runs loss and
# backward, before the optimizer update, calls ONE in-place allreduce (SUM) over that buffer: gradients,
# the local loss sum, the local 'mean' denominator D_r (elements, rows, or the class-weight total of the
# rows not ignored, as the loss kernels define it) and a stop flag. The loss kernel runs with reduction
# 'sum' (a 'mean' loss), so the summed gradients scaled by 1/sum(D_r) are the gradient of the global
# batch's mean exactly as one process computes it (to reduction-order rounding), however the rows are
# split, and a rank whose rows are all ignored contributes 0 rather than NaN. `finish_reduce` (the same
# code) serves a rank that has no rows in a step. Masks: `mask_offset` (rows) gives a rank's rows the
# dropout masks of their positions in the global batch (_dropout.dropout_forward_at). A time-limited run
# of batches stops only on the reduced stop flag, so every rank stops after the same batch.
#
# Threads. A plan runs serial control flow: GEMMs are threaded by BLAS, or run on one thread in the own
# kernels where those beat (threaded) BLAS (_small_gemm depends on the thread count the plan is built
# for); element-wise passes go parallel above their modules' PAR_MIN_* thresholds; BLAS is never called
# inside a prange. Running the whole step on one thread, or OpenMP row partitions over single-threaded
# BLAS, both lost when measured (bench/README.md, "Measurements behind the kernel rules").

from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.math cimport isfinite, NAN
from libc.stdint cimport int64_t, intptr_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
cimport numpy as cnp

from fastnn._kernels._types cimport real
from fastnn._kernels._blas cimport _small_enabled, _small_gemm, _infer_gemm, _mm, _mm_bias_act, _mm_gated, _gemv_row
from fastnn._kernels._wrapcheck cimport _ptr, _fits, _rows, _state_fits
from fastnn._kernels._activations cimport Act, bias_act_forward, act_backward
from fastnn._kernels._dense cimport colsum, sum_sq, sum_sq_total
from fastnn._kernels._dropout cimport dropout_forward_at, dropout_backward
from fastnn._kernels._optim cimport OptRun, OPT_SGD, OPT_SK_SGD, run_update_f32, run_update_f64
from fastnn._kernels._losses cimport (Reduction, _mse, _bce, _bce_logits, _cross_entropy, _cross_entropy_prob,
                                      _nll, _sk_mlp)

import numpy as np

cnp.import_array()

# ------------------------------------------------------------------------------------------ constants

cpdef enum StageKind:
    DENSE = 0
    ACT = 1
    DROPOUT = 2

cpdef enum LossKind:
    MSE = 0
    BCE = 1
    BCE_LOGITS = 2
    CROSS_ENTROPY = 3
    CROSS_ENTROPY_PROB = 4
    NLL = 5
    SKLEARN_MLP = 6     # scikit-learn's MLP output activation + loss, its L2 term (alpha) applied by the plan

REDUCTIONS = {"none": Reduction.NONE, "mean": Reduction.MEAN, "sum": Reduction.SUM}

cdef enum:
    _SLOTS = 3
REDUCE_SLOTS = _SLOTS   # spare elements after the gradients in the reduced buffer: loss sum, denominator, stop flag

class PlanMismatch(ValueError):
    """The arrays handed to a plan do not fit it (shape, dtype, layout): rebuild or validate."""


# ------------------------------------------------------------------------------------------ descriptors

ctypedef struct Stage:
    int kind            # StageKind
    int act             # Act code (DENSE, ACT)
    double param        # activation parameters (Softplus: beta, threshold)
    double param2
    int k, m            # input and output features
    void* w             # (k, m) weight, (m,) bias or NULL, and their gradients (DENSE)
    void* b
    void* dw
    void* db
    void* z             # (n, m) pre-activation (DENSE; == a for the linear activation)
    void* a             # (n, m) output
    void* g             # (n, m) gradient w.r.t. a (a DENSE backward turns it into dZ in place)
    bint need_dx        # some earlier stage has parameters: compute the gradient w.r.t. the input
    bint own_fwd        # the forward GEMM, dW and dX go to the own kernels (_small_gemm)
    bint own_dw
    bint own_dx
    uint8_t* mask       # (n * m) dropout mask
    double p            # dropout probability
    uint32_t stream     # dropout stream (the layer's index in the model)


ctypedef struct Loss:
    int kind            # LossKind
    int red             # Reduction
    Py_ssize_t C        # classes / output features
    void* w             # weight: (C,) for CE/NLL, (n, C) broadcast for BCE*; or NULL
    void* pw            # pos_weight (n, C) or NULL
    void* loss_out      # reduction "none": (n * C) element-wise or (n,) row losses; else NULL
    int64_t ignore_index
    double eps          # label smoothing
    int out_act         # SKLEARN_MLP: the output activation (_losses.SK_*), sample weights in t's last column,
    bint weighted       # the L2 coefficient alpha and the last step's sum of the sample weights
    double alpha
    double sw


# MPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm), handles as intptr_t (see the design note)
ctypedef int (*allreduce_fn)(const void* sendbuf, void* recvbuf, int count, intptr_t datatype, intptr_t op,
                             intptr_t comm) noexcept nogil


ctypedef struct Dist:
    allreduce_fn fn     # NULL: not distributed
    intptr_t inplace, dtype, op, comm
    void* buf           # gradient arena + _SLOTS spare elements, of the plan's dtype
    Py_ssize_t P        # gradient elements
    bint mean           # the loss's reduction is 'mean' (the plan's loss descriptor then runs 'sum')
    bint stop           # the last reduced stop flag
    int err             # the first non-zero return code of fn
    double seconds      # wall time inside fn
    Py_ssize_t calls


cdef object _ensure(object a, object dtype, tuple shape, str name):
    """Build-time check of a parameter view handed in by the engine."""
    if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shape and a.flags.c_contiguous):
        raise ValueError(f"plan: {name} must be a C-contiguous {dtype} array of shape {shape}")
    return a


cdef object _plan_dtype(object dtype, int rows, list stages, str rows_name):
    """Build-time check shared by the plans: a float dtype, at least one row and one stage."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"plan: dtype must be float32 or float64, got {dtype}")
    if rows < 1 or not stages:
        raise ValueError(f"plan: needs {rows_name} of at least one row and at least one stage")
    return dtype


cdef Stage* _new_stages(int ns) except NULL:
    """ns zeroed stage descriptors (the plan frees them in __dealloc__)."""
    cdef Stage* st = <Stage*>PyMem_Malloc(ns * sizeof(Stage))
    if st == NULL:
        raise MemoryError()
    memset(st, 0, ns * sizeof(Stage))
    return st


cdef int _build_stages(Stage* st, list stages, object dtype, int n, int in_features, bint training,
                       list keep, int threads) except -1:
    """Fill the descriptors from fastnn._stages' records, read by field (buffers only for a training plan)."""
    cdef Stage* s
    cdef int i
    cdef bint f64 = dtype == np.float64
    width = in_features
    has_params = False
    for i, spec in enumerate(stages):
        s = &st[i]
        kind = spec.kind
        if kind == "dense":
            act, param, k, m, w, b = spec.act, spec.param, spec.k, spec.m, spec.w, spec.b
            s.kind, s.act, s.param, s.param2, s.k, s.m = StageKind.DENSE, act, param, spec.param2, k, m
            s.w = _ptr(_ensure(w, dtype, (k, m), "w"))
            s.b = _ptr(_ensure(b, dtype, (m,), "b") if b is not None else None)
            keep += [w, b]
            s.own_fwd = _small_gemm(n, m, k, f64, threads)
            s.own_dw = _small_gemm(k, m, n, f64, threads)
            s.own_dx = _small_gemm(n, k, m, f64, threads)
            if training:
                dw, db = spec.dw, spec.db
                if (b is None) != (db is None):
                    raise ValueError("plan: b and db must both be given or both be None")
                s.dw = _ptr(_ensure(dw, dtype, (k, m), "dw"))
                s.db = _ptr(_ensure(db, dtype, (m,), "db") if db is not None else None)
                z = np.empty((n, m), dtype)
                a = z if act == Act.LINEAR else np.empty((n, m), dtype)
                s.z, s.a = _ptr(z), _ptr(a)
                keep += [dw, db, z, a]
        elif kind == "act":
            act, param, m = spec.act, spec.param, spec.m
            s.kind, s.act, s.param, s.param2, s.k, s.m = StageKind.ACT, act, param, spec.param2, m, m
            if training:
                a = np.empty((n, m), dtype)
                s.a = _ptr(a)
                keep.append(a)
        elif kind == "dropout":
            p, stream, m = spec.p, spec.stream, spec.m
            if training and not 0.0 < p <= 1.0:
                raise ValueError(f"plan: an active dropout stage needs p in (0, 1], got {p}")
            s.kind, s.p, s.stream, s.k, s.m = StageKind.DROPOUT, p, stream, m, m
            if training:
                a = np.empty((n, m), dtype)
                mask = np.empty(n * m, np.uint8)
                s.a, s.mask = _ptr(a), <uint8_t*>_ptr(mask)
                keep += [a, mask]
        else:
            raise ValueError(f"plan: unknown stage kind {kind!r}")
        if s.k != width:
            raise ValueError(f"plan: stage {i} expects {s.k} features, gets {width}")
        if training:
            g = np.empty((n, s.m), dtype)
            s.g = _ptr(g)
            keep.append(g)
        s.need_dx = has_params and i > 0
        has_params = has_params or s.kind == StageKind.DENSE
        width = s.m
    return width


# ------------------------------------------------------------------------------------------ the step (nogil)

cdef void _forward_train(Stage* st, int ns, const real* x, int n, uint64_t seed, uint64_t step,
                         Py_ssize_t row0) noexcept nogil:
    """Training forward through every stage; stage i reads stage i-1's output (stage 0 reads x). Dropout masks
    are those of rows row0 .. row0+n-1 of a batch (row0 = 0 but in distributed training)."""
    cdef int i
    cdef Stage* s
    cdef const real* h = x
    for i in range(ns):
        s = &st[i]
        if s.kind == StageKind.DENSE and s.own_fwd and (s.act == Act.RELU or s.act == Act.LINEAR):
            # a := f(h @ w + b) in the own kernels' store: the bits of the two steps below; z is not written
            # (ReLU's backward reads a, which gives the same mask: relu(z) <= 0 exactly where z <= 0, NaN too)
            _mm_bias_act(n, s.m, s.k, h, s.k, <real*>s.w, s.m, <real*>s.a, s.m, <real*>s.b, s.act == Act.RELU)
        elif s.kind == StageKind.DENSE:   # z := h @ w ; z += b, a := f(z)
            _mm(s.own_fwd, False, False, n, s.m, s.k, h, s.k, <real*>s.w, s.m, <real*>s.z, s.m, NULL)
            bias_act_forward(<real*>s.z, <real*>s.b, <real*>s.a, n, s.m, s.act, s.param, s.param2)
        elif s.kind == StageKind.ACT:   # b == NULL: the input is only read
            bias_act_forward(<real*>h, <real*>NULL, <real*>s.a, n, s.m, s.act, s.param, s.param2)
        else:
            dropout_forward_at(h, <real*>s.a, s.mask, <Py_ssize_t>n * s.m, s.p, seed, s.stream, step,
                               row0 * s.m)
        h = <real*>s.a


cdef double _loss(Loss* L, const real* y, real* g, const void* t, int n) noexcept nogil:
    """The fused loss + gradient of the output y against t, gradient into g."""
    cdef Py_ssize_t N = n
    cdef Py_ssize_t C = L.C
    if L.kind == LossKind.MSE:
        return _mse(y, <real*>t, N * C, L.red, g, <real*>L.loss_out, <real*>NULL)
    elif L.kind == LossKind.BCE:
        return _bce(y, <real*>t, <real*>L.w, N * C, L.red, g, <real*>L.loss_out, <real*>NULL)
    elif L.kind == LossKind.BCE_LOGITS:
        return _bce_logits(y, <real*>t, <real*>L.w, <real*>L.pw, N * C, L.red, g,
                           <real*>L.loss_out, <real*>NULL)
    elif L.kind == LossKind.CROSS_ENTROPY:
        return _cross_entropy(y, <const int64_t*>t, N, C, <real*>L.w, L.ignore_index, L.eps, L.red, g,
                              <real*>L.loss_out, <real*>NULL)
    elif L.kind == LossKind.CROSS_ENTROPY_PROB:
        return _cross_entropy_prob(y, <real*>t, N, C, <real*>L.w, L.eps, L.red, g,
                                   <real*>L.loss_out, <real*>NULL)
    elif L.kind == LossKind.SKLEARN_MLP:
        return _sk_mlp(y, <const real*>t, N, C, L.out_act, L.weighted, g, &L.sw)
    return _nll(y, <const int64_t*>t, N, C, <real*>L.w, L.ignore_index, L.red, g,
                <real*>L.loss_out, <real*>NULL)


cdef inline void _copy_row(char* d, const char* s, Py_ssize_t size) noexcept nogil:
    """memcpy(d, s, size) for a gathered row: small rows (a 64-feature float row is 256 bytes, a target row 40)
    in fixed-size pieces the compiler inlines, where a call per row cost 5-10 ns (digits: 0.8 us a step);
    long rows through libc's memcpy."""
    cdef Py_ssize_t o = 0
    if size > 512:
        memcpy(d, s, size)
        return
    while o + 32 <= size:
        memcpy(d + o, s + o, 32)
        o += 32
    while o + 8 <= size:
        memcpy(d + o, s + o, 8)
        o += 8
    while o < size:
        d[o] = s[o]
        o += 1


cdef double _sum_sq_weights(Stage* st, int ns, real* tag) noexcept nogil:
    """sum over the Dense stages of ||W||^2 in double (sklearn's L2 term; tag only picks the dtype): 16 partial
    sums across the stages (_dense.sum_sq: AVX2, 3x the four scalar chains it replaced), added in a fixed order."""
    cdef int i
    cdef double s[16]
    for i in range(16):
        s[i] = 0.0
    for i in range(ns):
        if st[i].kind == StageKind.DENSE:
            sum_sq(<const real*>st[i].w, <Py_ssize_t>st[i].k * st[i].m, s)
    return sum_sq_total(s)


cdef void _backward(Stage* st, int ns, const real* x, int n, real* work, double l2) noexcept nogil:
    """Backward from the last stage's g; parameter gradients written (beta = 0), g's reused as dZ.

    Dense (as _dense.dense_backward): dZ := G * f'(Z, A) in place; dW := X^T dZ (+ l2 * W, the L2 term of
    SKLEARN_MLP: alpha / sum of the sample weights; 0: none); db := colsum(dZ); dX := dZ W^T when an
    earlier stage needs it. When that earlier stage is a ReLU Dense and dX runs on the own kernels, its ReLU
    backward is applied in dX's store (_mm_gated: the same bits, one pass over dX fewer).
    """
    cdef int i
    cdef Py_ssize_t j
    cdef real c = <real>l2
    cdef Stage* s
    cdef const real* xin
    cdef real* dx
    cdef real* gz
    cdef bint gated = False   # this stage's g already holds dZ: the next stage's dX GEMM applied ReLU's derivative
    for i in range(ns - 1, -1, -1):
        s = &st[i]
        xin = x if i == 0 else <real*>st[i - 1].a
        dx = <real*>st[i - 1].g if s.need_dx else NULL
        if s.kind == StageKind.DENSE:
            gz = <real*>s.g
            if not gated:
                act_backward(gz, <real*>(s.a if s.act == Act.RELU else s.z), <real*>s.a, gz, n, s.m, s.act,
                             s.param, s.param2)
            gated = False
            _mm(s.own_dw, True, False, s.k, s.m, n, xin, s.k, gz, s.m, <real*>s.dw, s.m, NULL)
            if l2 != 0.0:
                for j in range(<Py_ssize_t>s.k * s.m):
                    (<real*>s.dw)[j] = (<real*>s.dw)[j] + c * (<real*>s.w)[j]
            if s.db != NULL:
                colsum(gz, <real*>s.db, n, s.m, False)
            if dx != NULL and s.own_dx and st[i - 1].kind == StageKind.DENSE and st[i - 1].act == Act.RELU:
                _mm_gated(True, n, s.k, s.m, gz, s.m, <real*>s.w, s.m, dx, s.k, work, <real*>st[i - 1].a)
                gated = True   # ReLU's backward of stage i - 1, fused into this store (the same bits)
            elif dx != NULL:
                _mm(s.own_dx, False, True, n, s.k, s.m, gz, s.m, <real*>s.w, s.m, dx, s.k, work)
        elif dx != NULL:
            if s.kind == StageKind.ACT:
                act_backward(<real*>s.g, xin, <real*>s.a, dx, n, s.m, s.act, s.param, s.param2)
            else:
                dropout_backward(<real*>s.g, s.mask, dx, <Py_ssize_t>n * s.m, s.p)


cdef double _train_step(Stage* st, int ns, Loss* L, const real* x, const void* t, int n, uint64_t seed,
                        uint64_t step, int phases, real* work, Py_ssize_t row0) noexcept nogil:
    """phases: 1 forward, 2 loss, 4 backward (7 = the whole step)."""
    cdef double value = 0.0, l2 = 0.0
    if phases & 1:
        _forward_train(st, ns, x, n, seed, step, row0)
    if phases & 2:
        value = _loss(L, <real*>st[ns - 1].a, <real*>st[ns - 1].g, t, n)
        if L.kind == LossKind.SKLEARN_MLP and L.alpha != 0.0:   # sklearn: loss += (0.5 * alpha) * values / sw_sum
            value += (0.5 * L.alpha) * _sum_sq_weights(st, ns, work) / L.sw
            l2 = L.alpha / L.sw
    if phases & 4:
        _backward(st, ns, x, n, work, l2)
    return value


cdef double _class_total(const int64_t* y, Py_ssize_t n, const real* w, int64_t ignore_index) noexcept nogil:
    """sum of w[y_i] (1 without weights) over rows with y_i != ignore_index: CE/NLL's 'mean' denominator."""
    cdef Py_ssize_t i
    cdef double D = 0.0
    for i in range(n):
        if y[i] != ignore_index:
            D += 1.0 if w == NULL else w[y[i]]
    return D


cdef double _denominator(Loss* L, const void* t, int n, bint f32) noexcept nogil:
    """What the loss kernels divide by for reduction 'mean' (see _losses.pyx)."""
    if L.kind == LossKind.CROSS_ENTROPY or L.kind == LossKind.NLL:
        if f32:
            return _class_total(<const int64_t*>t, n, <const float*>L.w, L.ignore_index)
        return _class_total(<const int64_t*>t, n, <const double*>L.w, L.ignore_index)
    if L.kind == LossKind.CROSS_ENTROPY_PROB:
        return <double>n
    return <double>n * L.C


cdef double _finish(real* buf, Py_ssize_t P, bint mean) noexcept nogil:
    """After the allreduce: scale the summed gradients by 1 / sum(D_r) ('mean'); return the global loss."""
    cdef double S = buf[P], D = buf[P + 1], inv
    cdef Py_ssize_t i
    if not mean:
        return S
    if D == 0.0:   # every row of the global batch ignored: gradients stay 0, the loss is NaN (as one process)
        return NAN
    inv = 1.0 / D
    for i in range(P):
        buf[i] = <real>(buf[i] * inv)
    return S / D


def finish_reduce(buf, Py_ssize_t P, bint mean):
    """The plan's post-allreduce step on buf (P gradients + REDUCE_SLOTS, float32/64, reduced by the caller):
    scales the gradients for 'mean' and returns the global loss (for a rank with no rows in a step)."""
    cdef int typenum
    if _rows(buf, cnp.NPY_FLOAT64, 1, 0) == P + _SLOTS:
        typenum = cnp.NPY_FLOAT64
    elif _rows(buf, cnp.NPY_FLOAT32, 1, 0) == P + _SLOTS:
        typenum = cnp.NPY_FLOAT32
    else:
        raise ValueError(f"buf must be a C-contiguous float32/float64 array of P + {_SLOTS} elements")
    cdef void* p = _ptr(buf)
    cdef double value
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            value = _finish(<float*>p, P, mean)
        else:
            value = _finish(<double*>p, P, mean)
    return value


# ------------------------------------------------------------------------------------------ TrainPlan

cdef class TrainPlan:
    """Buffers and descriptors of one (model, batch size, loss, dtype, thread count); `step` is one nogil call.

    TrainPlan(dtype, n, in_features, stages, loss, threads). stages: fastnn._stages records (DenseSpec,
    ActSpec, DropoutSpec, read by field; inactive dropout stages are left out by the caller). loss: a
    LossSpec, its arrays already in the plan's dtype and broadcast shape (or None). threads: the thread
    count the GEMM choice is for.
    """

    cdef Stage* st
    cdef int ns
    cdef Loss L
    cdef readonly int n, in_features, out_features, threads
    cdef readonly object dtype
    cdef int typenum
    cdef readonly object output          # (n, out) view of the last stage's output
    cdef readonly object output_grad     # (n, out) gradient buffer of the last stage (the loss writes it)
    cdef readonly object loss_out        # reduction "none": the unreduced loss of the last step; else None
    cdef readonly bint uses_blas         # some GEMM of the step goes to BLAS (else all to the own kernels)
    cdef list _keep                      # every array a descriptor points into
    cdef object _work                    # scratch of the own NT kernel (W^T)
    cdef void* _workp
    cdef object _x                       # the input of a split (fallback) step, kept between its phases
    cdef int _t_ndim, _t_type
    cdef Py_ssize_t _t_d1
    cdef OptRun* runs                    # the optimizer's runs of this step (packed in place)
    cdef int nruns, cap_runs
    cdef object _xg, _tg                 # run_batches: the gathered batch (made at the first shuffled call)
    cdef char* _xgp
    cdef char* _tgp
    cdef Dist dist                       # distributed: the allreduce hook (dist.fn == NULL: none)
    cdef int _red                        # the loss's own reduction (L.red runs 'sum' for a distributed 'mean')
    cdef object _dist_buf

    def __cinit__(self):
        self.st = NULL
        self.ns = 0
        self.runs = NULL
        self.nruns = self.cap_runs = 0
        self._xgp = self._tgp = NULL
        memset(&self.dist, 0, sizeof(Dist))

    def __dealloc__(self):
        PyMem_Free(self.st)
        PyMem_Free(self.runs)

    def distribute(self, hook):
        """hook: None (single process) or (allreduce address, MPI_IN_PLACE, datatype, op, comm, buf, P), the
        handles as integers, buf the 1-D array of P + REDUCE_SLOTS elements of the plan's dtype whose first P
        are the gradient arena (every gradient the plan writes lies in it). See the design note."""
        cdef Py_ssize_t P
        cdef char* lo
        cdef char* hi
        cdef int i
        if hook is None:
            memset(&self.dist, 0, sizeof(Dist))
            self.L.red = self._red
            self._dist_buf = None
            return
        if self.L.kind == LossKind.SKLEARN_MLP:
            raise ValueError("plan: scikit-learn's MLP loss does not run distributed (its batch loss is not a sum "
                             "over the rows)")
        fn, inplace, dtype, op, comm, buf, P = hook
        if not fn or _rows(buf, self.typenum, 1, 0) != P + _SLOTS or not (<cnp.ndarray>buf).flags.writeable:
            raise ValueError(f"plan: the hook needs an allreduce address and a writeable {self.dtype} buffer of "
                             f"P + {_SLOTS} elements")
        lo = <char*>_ptr(buf)
        hi = lo + P * (4 if self.typenum == cnp.NPY_FLOAT32 else 8)
        for i in range(self.ns):
            if self.st[i].kind == StageKind.DENSE and not (lo <= <char*>self.st[i].dw < hi and
                                                             (self.st[i].db == NULL or lo <= <char*>self.st[i].db < hi)):
                raise ValueError("plan: the hook's buffer must hold every gradient of the plan")
        self.dist.fn = <allreduce_fn><intptr_t>fn
        self.dist.inplace, self.dist.dtype, self.dist.op, self.dist.comm = inplace, dtype, op, comm
        self.dist.buf, self.dist.P = <void*>lo, P
        self.dist.mean = self._red == Reduction.MEAN
        self.L.red = Reduction.SUM if self._red == Reduction.MEAN else self._red
        self._dist_buf = buf

    @property
    def comm_seconds(self):
        """Wall time spent inside the allreduce since the hook was set (or reset_comm())."""
        return self.dist.seconds

    @property
    def comm_calls(self):
        return self.dist.calls

    @property
    def dist_error(self):
        """The first non-zero return code of the allreduce (0: none)."""
        return self.dist.err

    def reset_comm(self):
        self.dist.seconds, self.dist.calls = 0.0, 0

    def __init__(self, dtype, int n, int in_features, list stages, object loss, int threads=1):
        dtype = _plan_dtype(dtype, n, stages, "a batch")
        self.dtype = dtype
        self.typenum = cnp.NPY_FLOAT32 if dtype == np.float32 else cnp.NPY_FLOAT64
        self.n, self.in_features, self.threads = n, in_features, threads
        self._keep = []
        self.ns = len(stages)
        self.st = _new_stages(self.ns)
        self.out_features = _build_stages(self.st, stages, dtype, n, in_features, True, self._keep, threads)
        cdef Stage* last = &self.st[self.ns - 1]
        self.output = self._view(last.a, n, last.m)
        self.output_grad = self._view(last.g, n, last.m)
        cdef int i
        self.uses_blas = False
        for i in range(self.ns):
            if self.st[i].kind == StageKind.DENSE and not (self.st[i].own_fwd and self.st[i].own_dw and (
                    self.st[i].own_dx or not self.st[i].need_dx)):
                self.uses_blas = True
        work = max([self.st[i].k * self.st[i].m for i in range(self.ns) if self.st[i].own_dx] or [0])
        self._work = np.empty(work, dtype)
        self._workp = _ptr(self._work)
        self._set_loss(loss)

    cdef object _view(self, void* p, int rows, int cols):
        """The kept buffer whose data starts at p, as (rows, cols)."""
        for arr in self._keep:
            if arr is not None and cnp.PyArray_DATA(<cnp.ndarray>arr) == p:
                return arr.reshape(rows, cols)
        raise RuntimeError("plan: buffer not found")

    cdef _set_loss(self, object loss):
        kind, reduction, C = loss.kind, loss.reduction, loss.classes
        weight, pos_weight, ignore_index, eps = loss.weight, loss.pos_weight, loss.ignore_index, loss.label_smoothing
        if C != self.out_features:
            raise ValueError(f"plan: the loss expects {C} features, the model gives {self.out_features}")
        self.L.kind, self.L.red, self.L.C = kind, REDUCTIONS[reduction], C
        self._red = self.L.red
        self.L.ignore_index, self.L.eps = ignore_index, eps
        self.L.out_act, self.L.weighted, self.L.alpha, self.L.sw = 0, False, 0.0, 1.0
        if kind == LossKind.SKLEARN_MLP:
            self.L.out_act, self.L.weighted, self.L.alpha = loss.out_activation, loss.weighted, loss.alpha
        row_loss = kind in (LossKind.CROSS_ENTROPY, LossKind.CROSS_ENTROPY_PROB, LossKind.NLL)
        if weight is not None:
            _ensure(weight, self.dtype, (C,) if row_loss else (self.n, C), "loss weight")
        if pos_weight is not None:
            _ensure(pos_weight, self.dtype, (self.n, C), "loss pos_weight")
        self.L.w, self.L.pw = _ptr(weight), _ptr(pos_weight)
        self.loss_out = None
        if self.L.red == Reduction.NONE:
            self.loss_out = np.empty((self.n,) if row_loss else (self.n, C), self.dtype)
        self.L.loss_out = _ptr(self.loss_out)
        self._keep += [weight, pos_weight]
        if kind in (LossKind.CROSS_ENTROPY, LossKind.NLL):
            self._t_type, self._t_ndim, self._t_d1 = cnp.NPY_INT64, 1, 0
        else:
            self._t_type, self._t_ndim, self._t_d1 = self.typenum, 2, C + (1 if self.L.weighted else 0)

    cdef int _check(self, object x, object t) except -1:
        if not _fits(x, self.typenum, 2, self.n, self.in_features):
            raise PlanMismatch(f"x must be a C-contiguous {self.dtype} array of shape ({self.n}, {self.in_features})")
        if t is not None and not _fits(t, self._t_type, self._t_ndim, self.n, self._t_d1):
            raise PlanMismatch("the targets do not fit the plan's loss (shape, dtype or layout)")
        return 0

    cdef int _pack(self, list runs) except -1:
        """The OptRun array from Optimizer._fused_runs()'s (kind, flags, param, grad, s0, s1, s2, hp, steps) tuples."""
        cdef int i, j, nr = len(runs)
        cdef OptRun* r
        cdef Py_ssize_t size, nsteps
        if nr > self.cap_runs:   # grows once, at warm-up
            r = <OptRun*>PyMem_Realloc(self.runs, nr * sizeof(OptRun))
            if r == NULL:
                raise MemoryError()
            self.runs, self.cap_runs = r, nr
        self.nruns = 0
        for i in range(nr):
            kind, flags, param, grad, s0, s1, s2, hp, steps = runs[i]
            size = cnp.PyArray_SIZE(<cnp.ndarray>param) if cnp.PyArray_Check(param) else -1
            nsteps = cnp.PyArray_SIZE(<cnp.ndarray>steps) if cnp.PyArray_Check(steps) else -1
            if not (_fits(param, self.typenum, 1, size, 0) and _fits(grad, self.typenum, 1, size, 0)
                    and _state_fits(s0, self.typenum, size) and _state_fits(s1, self.typenum, size)
                    and _state_fits(s2, self.typenum, size) and len(hp) <= 8
                    and _fits(steps, cnp.NPY_FLOAT32, 1, nsteps, 0)
                    and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>steps)
                    and (nsteps == 0) == (kind == OPT_SGD or kind == OPT_SK_SGD)):
                raise ValueError(f"plan: optimizer run {i} is malformed (lengths, dtype {self.dtype} or layout)")
            r = &self.runs[i]
            r.kind, r.flags, r.n = kind, flags, size
            r.param, r.grad = _ptr(param), _ptr(grad)
            r.s0 = _ptr(s0) if cnp.PyArray_SIZE(<cnp.ndarray>s0) else NULL
            r.s1 = _ptr(s1) if cnp.PyArray_SIZE(<cnp.ndarray>s1) else NULL
            r.s2 = _ptr(s2) if cnp.PyArray_SIZE(<cnp.ndarray>s2) else NULL
            r.steps, r.nsteps = <float*>_ptr(steps) if nsteps else NULL, nsteps
            for j in range(8):
                r.hp[j] = hp[j] if j < len(hp) else 0.0
        self.nruns = nr
        return 0

    cdef int _pack_from(self, optimizer) except -1:
        return self._pack(optimizer._fused_runs())

    cdef double _reduce(self, double value, const void* tp, bint stop) noexcept nogil:
        """The distributed step's one allreduce (gradients, loss sum, denominator, stop flag); the global loss."""
        cdef Dist* d = &self.dist
        cdef bint f32 = self.typenum == cnp.NPY_FLOAT32
        cdef double D = _denominator(&self.L, tp, self.n, f32)
        cdef timespec t0, t1
        cdef int rc
        cdef Py_ssize_t P = d.P
        if f32:
            (<float*>d.buf)[P], (<float*>d.buf)[P + 1], (<float*>d.buf)[P + 2] = value, D, stop
        else:
            (<double*>d.buf)[P], (<double*>d.buf)[P + 1], (<double*>d.buf)[P + 2] = value, D, stop
        clock_gettime(CLOCK_MONOTONIC, &t0)
        rc = d.fn(<const void*>d.inplace, d.buf, <int>(P + _SLOTS), d.dtype, d.op, d.comm)
        clock_gettime(CLOCK_MONOTONIC, &t1)
        d.seconds += (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec)
        d.calls += 1
        if rc != 0:
            if d.err == 0:
                d.err = rc
            d.stop = True
            return NAN
        if f32:
            d.stop = (<float*>d.buf)[P + 2] > 0
            return _finish(<float*>d.buf, P, d.mean)
        d.stop = (<double*>d.buf)[P + 2] > 0
        return _finish(<double*>d.buf, P, d.mean)

    cdef double _run(self, const void* xp, const void* tp, uint64_t seed, uint64_t step, int phases,
                     Py_ssize_t row0, bint stop) noexcept nogil:
        cdef double value
        cdef int i
        if self.typenum == cnp.NPY_FLOAT32:
            value = _train_step(self.st, self.ns, &self.L, <const float*>xp, tp, self.n, seed, step, phases,
                                <float*>self._workp, row0)
            if self.dist.fn != NULL and (phases & 6) == 6:
                value = self._reduce(value, tp, stop)
            if phases & 8:
                for i in range(self.nruns):
                    run_update_f32(&self.runs[i])
        else:
            value = _train_step(self.st, self.ns, &self.L, <const double*>xp, tp, self.n, seed, step, phases,
                                <double*>self._workp, row0)
            if self.dist.fn != NULL and (phases & 6) == 6:
                value = self._reduce(value, tp, stop)
            if phases & 8:
                for i in range(self.nruns):
                    run_update_f64(&self.runs[i])
        return value

    cdef Py_ssize_t _batches(self, const char* x, const char* t, const int64_t* order, Py_ssize_t first,
                             Py_ssize_t count, uint64_t seed, uint64_t step, int phases, double* losses,
                             char* outs, Py_ssize_t xrow, Py_ssize_t trow, double seconds, Py_ssize_t stride,
                             Py_ssize_t offset, Py_ssize_t row0) noexcept nogil:
        """run_batches' loop: gather, step, loss, output rows; stops after a non-finite loss, or after the
        batch that ends `seconds` of wall time (if > 0; distributed: after the batch in which some rank's
        time was up, as the reduced stop flag says)."""
        cdef Py_ssize_t b, r, base, row
        cdef bint late = False
        cdef timespec t0, now
        if seconds > 0:
            clock_gettime(CLOCK_MONOTONIC, &t0)
        cdef Py_ssize_t n = self.n
        cdef Py_ssize_t orow = <Py_ssize_t>self.out_features * (4 if self.typenum == cnp.NPY_FLOAT32 else 8)
        cdef const char* xp
        cdef const char* tp
        cdef double value
        for b in range(count):
            base = (first + b) * stride + offset
            if order == NULL:
                xp, tp = x + base * xrow, t + base * trow
            else:
                for r in range(n):
                    row = order[base + r]
                    _copy_row(self._xgp + r * xrow, x + row * xrow, xrow)
                    _copy_row(self._tgp + r * trow, t + row * trow, trow)
                xp, tp = self._xgp, self._tgp
            if self.dist.fn != NULL and seconds > 0 and b + 1 < count:
                clock_gettime(CLOCK_MONOTONIC, &now)
                late = (now.tv_sec - t0.tv_sec) + 1e-9 * (now.tv_nsec - t0.tv_nsec) >= seconds
            value = self._run(xp, tp, seed, step + b, phases, row0, late)
            losses[b] = value
            if outs != NULL:
                memcpy(outs + b * n * orow, self.st[self.ns - 1].a, n * orow)
            if not isfinite(value):
                return b + 1
            if self.dist.fn != NULL:
                if self.dist.stop and b + 1 < count:
                    return b + 1
            elif seconds > 0 and b + 1 < count:
                clock_gettime(CLOCK_MONOTONIC, &now)
                if (now.tv_sec - t0.tv_sec) + 1e-9 * (now.tv_nsec - t0.tv_nsec) >= seconds:
                    return b + 1
        return count

    def run_batches(self, x, t, order, Py_ssize_t first, Py_ssize_t count, uint64_t seed, uint64_t step,
                    losses, outputs=None, list runs=None, double seconds=0.0, Py_ssize_t stride=0,
                    Py_ssize_t offset=0, Py_ssize_t mask_offset=0):
        """Full batches first .. first+count-1 of an epoch (rows order[b*n:(b+1)*n] of x and t, or rows
        b*n .. (b+1)*n - 1 if order is None), each a whole step as `step` runs it, in one nogil call.

        Batch k uses dropout step `step + k`, writes its loss to losses[k] (float64) and, given outputs
        ((>= count*n, out) of the plan's dtype), its training-mode output rows to outputs[k*n:(k+1)*n].
        runs: the optimizer's _fused_runs(), applied after every batch (each update advances its runs' step
        counts in place and clears SGD's FIRST_STEP, so the same runs serve every batch). Stops
        after a batch whose loss is not finite, or (seconds > 0) after the batch that ends `seconds` of
        wall time, so that the caller gets control back in time (Ctrl-C, progress); returns the number
        of batches run.

        Distributed (a rank's share of global batches): batch b is rows first*stride+offset+b*stride ..
        +n-1 of the order (or of x), stride the global batch size (0: n), its dropout masks those of rows
        mask_offset .. mask_offset+n-1 of the global batch.
        """
        cdef Py_ssize_t n = self.n, N, need, i, hi, lo
        cdef Py_ssize_t item = 4 if self.typenum == cnp.NPY_FLOAT32 else 8
        cdef Py_ssize_t xrow = self.in_features * item
        cdef Py_ssize_t trow = 8 if self._t_ndim == 1 else self._t_d1 * item
        cdef const int64_t* op = NULL
        cdef int phases = 7
        if count < 1 or first < 0:
            raise ValueError(f"plan: needs first >= 0 and count >= 1, got first={first}, count={count}")
        N = _rows(x, self.typenum, 2, self.in_features)
        if N < 0:
            raise PlanMismatch(f"x must be a C-contiguous {self.dtype} array with {self.in_features} columns")
        if _rows(t, self._t_type, self._t_ndim, self._t_d1) != N:
            raise PlanMismatch("the targets do not fit the plan's loss (shape, dtype, layout or rows of x)")
        if stride == 0:
            stride = n
        if stride < n or offset < 0 or offset + n > stride or mask_offset < 0:
            raise ValueError(f"plan: needs n <= stride, 0 <= offset <= stride - n and mask_offset >= 0, got n={n}, "
                             f"stride={stride}, offset={offset}, mask_offset={mask_offset}")
        lo = first * stride + offset
        need = (first + count - 1) * stride + offset + n
        if order is None:
            if need > N:
                raise ValueError(f"plan: batches up to {first + count} of {n} rows need {need} rows, x has {N}")
        else:
            if _rows(order, cnp.NPY_INT64, 1, 0) < need:
                raise ValueError(f"order must be a C-contiguous int64 array of at least {need} entries")
            op = <const int64_t*>_ptr(order)
            for i in range(lo, need):
                if op[i] < 0 or op[i] >= N:
                    raise ValueError(f"order[{i}] = {op[i]} is not a row of x (0 .. {N - 1})")
            if self._xg is None:
                self._xg = np.empty((n, self.in_features), self.dtype)
                self._tg = np.empty(n * trow, np.uint8)
                self._xgp, self._tgp = <char*>_ptr(self._xg), <char*>_ptr(self._tg)
        if _rows(losses, cnp.NPY_FLOAT64, 1, 0) < count or not (<cnp.ndarray>losses).flags.writeable:
            raise ValueError(f"losses must be a writeable C-contiguous float64 array of at least {count} entries")
        if outputs is not None:
            hi = _rows(outputs, self.typenum, 2, self.out_features)
            if hi < count * n or not (<cnp.ndarray>outputs).flags.writeable:
                raise ValueError(f"outputs must be a writeable C-contiguous {self.dtype} array of shape "
                                 f"(>= {count * n}, {self.out_features})")
        if runs is not None:
            self._pack(runs)
            phases = 15
        cdef const char* xp = <const char*>_ptr(x)
        cdef const char* tp = <const char*>_ptr(t)
        cdef double* lp = <double*>_ptr(losses)
        cdef char* outp = <char*>_ptr(outputs)
        cdef Py_ssize_t done
        with nogil:
            done = self._batches(xp, tp, op, first, count, seed, step, phases, lp, outp, xrow, trow, seconds,
                                 stride, offset, mask_offset)
        return done

    def check(self, x, t):
        """Raise PlanMismatch unless x and t fit the plan."""
        self._check(x, t)

    def step(self, x, t, uint64_t seed, uint64_t step, optimizer=None, Py_ssize_t mask_offset=0):
        """forward (training; dropout from (seed, stream, step)) + loss + backward - and, given an optimizer,
        its update from optimizer._fused_runs() (called after x and t are checked) - in one nogil call.

        Returns the loss ('none': the sum of loss_out). Gradients are overwritten (beta = 0). mask_offset:
        x's rows get the dropout masks of rows mask_offset .. of a larger batch (distributed training).
        """
        if mask_offset < 0:
            raise ValueError(f"plan: mask_offset must be >= 0, got {mask_offset}")
        self._check(x, t)
        cdef int phases = 7
        if optimizer is not None:
            self._pack_from(optimizer)
            phases = 15
        cdef const void* xp = _ptr(x)
        cdef const void* tp = _ptr(t)
        cdef double value
        with nogil:
            value = self._run(xp, tp, seed, step, phases, mask_offset, False)
        return value

    def forward(self, x, uint64_t seed, uint64_t step):
        """Training forward only (for a loss the plan cannot run); x is kept for backward(). Returns output."""
        self._check(x, None)
        self._x = x
        cdef const void* xp = _ptr(x)
        with nogil:
            self._run(xp, NULL, seed, step, 1, 0, False)
        return self.output

    def backward(self, optimizer=None):
        """Backward from output_grad (filled by the caller's loss) through the last forward() - and, given an
        optimizer, its update from optimizer._fused_runs() - in one nogil call."""
        if self._x is None:
            raise RuntimeError("plan: backward() needs forward() first")
        cdef int phases = 4
        if optimizer is not None:
            self._pack_from(optimizer)
            phases = 12
        cdef const void* xp = _ptr(self._x)
        with nogil:
            self._run(xp, NULL, 0, 0, phases, 0, False)
        self._x = None

    def gemm_choice(self):
        """For each Dense stage, whether (forward, dW, dX) use the own small-GEMM kernels."""
        return [(bool(self.st[i].own_fwd), bool(self.st[i].own_dw), bool(self.st[i].own_dx))
                for i in range(self.ns) if self.st[i].kind == StageKind.DENSE]


# ------------------------------------------------------------------------------------------ InferPlan

cdef inline bint _eval_own(const Stage* s, Py_ssize_t n, bint f64, int threads, bint small) noexcept nogil:
    """Whether the eval forward of n rows runs Dense stage s's GEMM on the own kernels (else BLAS)."""
    return small and _infer_gemm(n, s.m, s.k, f64, threads)


cdef void _forward_eval(Stage* st, int ns, const real* x, real* buf0, real* buf1, int n, int threads,
                        bint small, int last, real* out) noexcept nogil:
    """Eval forward: Dense -> GEMM into the other ping-pong buffer, bias + activation fused into the GEMM's store
    (own kernels, linear or ReLU) or applied in place after it; dropout skipped. Stage `last` (the last one that
    is not a dropout) writes into `out` instead when it is given."""
    cdef int i
    cdef Stage* s
    cdef const real* h = x
    cdef real* dst
    cdef bint own
    for i in range(ns):
        s = &st[i]
        if s.kind == StageKind.DROPOUT:
            continue
        if s.kind == StageKind.DENSE:
            dst = out if i == last and out != NULL else (buf1 if h == buf0 else buf0)
            own = _eval_own(s, n, real is double, threads, small)
            if own and (s.act == Act.LINEAR or s.act == Act.RELU):
                _mm_bias_act(n, s.m, s.k, h, s.k, <real*>s.w, s.m, dst, s.m, <real*>s.b, s.act == Act.RELU)
            else:
                if n == 1 and not own:
                    _gemv_row(h, <real*>s.w, dst, s.k, s.m)
                else:   # the own kernels give a row the same bits whatever the batch size
                    _mm(own, False, False, n, s.m, s.k, h, s.k, <real*>s.w, s.m, dst, s.m, NULL)
                bias_act_forward(dst, <real*>s.b, dst, n, s.m, s.act, s.param, s.param2)
        else:
            if i == last and out != NULL:
                dst = out
            else:
                dst = buf0 if h == x else <real*>h   # in place once the data is ours
            bias_act_forward(<real*>h, <real*>NULL, dst, n, s.m, s.act, s.param, s.param2)
        h = dst


cdef inline bint _overlaps(cnp.ndarray a, cnp.ndarray b) noexcept:
    """Whether the bytes of the C-contiguous arrays a and b overlap."""
    cdef const char* pa = <const char*>cnp.PyArray_DATA(a)
    cdef const char* pb = <const char*>cnp.PyArray_DATA(b)
    return pa < pb + cnp.PyArray_NBYTES(b) and pb < pa + cnp.PyArray_NBYTES(a)


cdef class InferPlan:
    """The eval-mode forward of a model for up to `capacity` rows; `run(x)` returns a view of the output.

    InferPlan(dtype, capacity, in_features, stages, threads): stages as for TrainPlan (without the
    gradient views; dropout stages are skipped). The returned view is overwritten by the next run.
    """

    cdef Stage* st
    cdef int ns
    cdef readonly int capacity, in_features, out_features, threads
    cdef readonly object dtype
    cdef int typenum
    cdef list _keep
    cdef object _buf0, _buf1, _out
    cdef void* _p0
    cdef void* _p1
    cdef object _view
    cdef Py_ssize_t _view_n
    cdef bint _small                     # own small-GEMM kernels enabled when the plan was built
    cdef int _last                       # the last stage that is not a dropout (writes forward()'s output)

    def __cinit__(self):
        self.st = NULL

    def __dealloc__(self):
        PyMem_Free(self.st)

    def __init__(self, dtype, int capacity, int in_features, list stages, int threads=1):
        cdef int i
        dtype = _plan_dtype(dtype, capacity, stages, "a capacity")
        self.dtype = dtype
        self.typenum = cnp.NPY_FLOAT32 if dtype == np.float32 else cnp.NPY_FLOAT64
        self.capacity, self.in_features, self.threads = capacity, in_features, threads
        self._keep = []
        self.ns = len(stages)
        self.st = _new_stages(self.ns)
        self.out_features = _build_stages(self.st, stages, dtype, capacity, in_features, False, self._keep,
                                          threads)
        maxw = 1
        which = -1   # which ping-pong buffer holds the current activation (-1: the input x)
        for i in range(self.ns):
            if self.st[i].kind == StageKind.DENSE:
                which = 1 if which == 0 else 0
            elif self.st[i].kind == StageKind.ACT:
                which = 0 if which == -1 else which
            if self.st[i].kind != StageKind.DROPOUT:
                maxw = max(maxw, self.st[i].m)
        if which == -1:
            raise ValueError("plan: an inference plan needs at least one Dense or activation stage")
        self._buf0 = np.empty(capacity * maxw, dtype)
        self._buf1 = np.empty(capacity * maxw, dtype)
        self._p0, self._p1 = _ptr(self._buf0), _ptr(self._buf1)
        self._out = self._buf0 if which == 0 else self._buf1
        self._view = None
        self._view_n = -1
        self._small = _small_enabled
        self._last = max(i for i in range(self.ns) if self.st[i].kind != StageKind.DROPOUT)

    cdef Py_ssize_t _fit(self, object x) noexcept:
        """x's row count if the plan takes x as it is (0: one sample, (in_features,)), else -1: not a C-contiguous
        aligned array of the plan's dtype and width with 1..capacity rows, or it overlaps the plan's buffers."""
        cdef cnp.ndarray arr
        cdef Py_ssize_t n
        cdef int nd
        if not cnp.PyArray_Check(x):
            return -1
        arr = <cnp.ndarray>x
        nd = cnp.PyArray_NDIM(arr)
        if cnp.PyArray_TYPE(arr) != self.typenum or not (cnp.PyArray_IS_C_CONTIGUOUS(arr)
                                                         and cnp.PyArray_ISALIGNED(arr)):
            return -1
        if nd == 2:
            n = cnp.PyArray_DIMS(arr)[0]
            if cnp.PyArray_DIMS(arr)[1] != self.in_features or n < 1 or n > self.capacity:
                return -1
        elif nd == 1:
            if cnp.PyArray_DIMS(arr)[0] != self.in_features:
                return -1
            n = 0   # one sample, returned as (out,)
        else:
            return -1
        if _overlaps(arr, self._buf0) or _overlaps(arr, self._buf1):
            return -1   # x is (a view of) an earlier output: the caller copies it first
        return n

    cdef void _run(self, const void* xp, int rows, void* out) noexcept:
        with nogil:
            if self.typenum == cnp.NPY_FLOAT32:
                _forward_eval(self.st, self.ns, <const float*>xp, <float*>self._p0, <float*>self._p1, rows,
                              self.threads, self._small, self._last, <float*>out)
            else:
                _forward_eval(self.st, self.ns, <const double*>xp, <double*>self._p0, <double*>self._p1, rows,
                              self.threads, self._small, self._last, <double*>out)

    def uses_blas(self, Py_ssize_t n):
        """Whether a forward of n rows sends some GEMM to BLAS (_forward_eval's choice, made per call)."""
        cdef int i
        for i in range(self.ns):
            if self.st[i].kind == StageKind.DENSE and not _eval_own(&self.st[i], n, self.typenum == cnp.NPY_FLOAT64,
                                                                    self.threads, self._small):
                return True
        return False

    def run(self, x):
        """The output for x (C-contiguous (n, in_features) or (in_features,), the plan's dtype, n <= capacity);
        a view of the plan's buffer ((n, out) or (out,)), or None if x does not fit the plan (or overlaps its
        buffers, e.g. is an earlier output)."""
        cdef Py_ssize_t n = self._fit(x)
        if n < 0:
            return None
        self._run(cnp.PyArray_DATA(<cnp.ndarray>x), n if n > 0 else 1, NULL)
        if n != self._view_n:
            self._view = (self._out[:self.out_features] if n == 0
                          else self._out[:n * self.out_features].reshape(n, self.out_features))
            self._view_n = n
        return self._view

    def forward(self, x, out=None):
        """As run, but the last stage writes the output into an array of the caller's: a new one ((n, out) or
        (out,)), or `out` (C-contiguous, aligned, writeable, the plan's dtype and that shape, not overlapping x);
        returns it, or None if x or out does not fit (nothing is written then)."""
        cdef Py_ssize_t n = self._fit(x)
        cdef cnp.npy_intp dims[2]
        cdef cnp.ndarray res
        if n < 0:
            return None
        dims[0] = n if n > 0 else self.out_features
        dims[1] = self.out_features
        if out is None:
            res = cnp.PyArray_EMPTY(2 if n > 0 else 1, dims, self.typenum, 0)
        else:
            if not (cnp.PyArray_Check(out) and cnp.PyArray_TYPE(<cnp.ndarray>out) == self.typenum
                    and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>out) and cnp.PyArray_ISALIGNED(<cnp.ndarray>out)
                    and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)):
                return None
            res = <cnp.ndarray>out
            if (cnp.PyArray_NDIM(res) != (2 if n > 0 else 1) or cnp.PyArray_DIMS(res)[0] != dims[0]
                    or (n > 0 and cnp.PyArray_DIMS(res)[1] != dims[1]) or _overlaps(res, x)
                    or _overlaps(res, self._buf0) or _overlaps(res, self._buf1)):
                return None
        self._run(cnp.PyArray_DATA(<cnp.ndarray>x), n if n > 0 else 1, cnp.PyArray_DATA(res))
        return res


def run_pooled(list pool, x, out, object stages, object arena, int threads):
    """Engine.forward's fast entry, in one call: take the last (InferPlan, stages, arena, threads) entry of
    `pool`; if it was built for these stages, arena and thread count and takes x (and out) as they are
    (InferPlan.forward), run it, put it back and return the output. Else return None, with the entry back in
    the pool if it was built for them (the caller then validates x and runs the slow path). Popping and
    appending hold the GIL, so two threads never run one plan at once."""
    cdef tuple entry
    cdef InferPlan plan
    if not pool:
        return None
    entry = <tuple>pool.pop()
    if not (entry[1] is stages and entry[2] is arena and entry[3] == threads):
        return None   # built for an earlier model state or thread count: dropped
    plan = <InferPlan>entry[0]
    try:
        return plan.forward(x, out)
    finally:
        pool.append(entry)
