# Design note: _clip - gradient clipping over runs of the gradient arena (torch.nn.utils, docs/numerics.md section 8).
#
# clip_grad_norm_ = norm_reduce over every run, a combine and the clip coefficient in Python, then
# scale_ over every run; clip_grad_value_ = clamp_ over every run. A run is a contiguous 1-D slice of
# one gradient arena (usually a whole model), so each operation is one pass over the gradients.
#
# norm_reduce returns the *unrooted* reduction of one run, in double: sum |g| (p = 1), sum g*g (p = 2),
# sum |g|^p (any other finite p, via pow), max |g| (p = inf) or min |g| (p = -inf). Python adds (or
# maxes/mins) the runs and takes the root. For p != 0 this equals torch's norm of per-parameter norms
# mathematically: (sum_k ((sum_i |g_ki|^p)^(1/p))^p)^(1/p) = (sum_k sum_i |g_ki|^p)^(1/p). Elements are
# widened to double before squaring/summing, so a float32 norm is more accurate than torch's float32
# accumulation (which drifts by ~1e-4 relative at 3M elements); it is rounded to float32 in Python.
# NaN propagates as in torch: a NaN element makes a sum NaN by IEEE arithmetic; max/min work on bit
# patterns (see _max_abs), where every NaN sorts above +inf.
#
# Reduction order: the run is cut into nchunks = clamp(n // CHUNK, 1, MAX_CHUNKS) equal chunks, fixed by n
# alone; each chunk is reduced serially (sums with four interleaved accumulators, to break the add
# dependency chain) into a stack array of partials, and the partials are combined in chunk order. The result is
# therefore identical for any number of threads. The chunk loop is a static prange that forks above
# PAR_MIN_NORM elements. Nothing is allocated (the partials live on the stack).
#
# scale_ (g *= coef) and clamp_ (g = min(max(g, lo), hi), NaN kept, lo > hi gives hi everywhere as torch's
# clamp_min_ then clamp_max_) are element-wise static pranges over `real` that fork above PAR_MIN_SCALE.
# Scalars are rounded to `real` once, as torch rounds a Python scalar to the tensor dtype.
#
# Thresholds: the read-only reduction pays for waking the pool earlier than the read-write passes, which
# are memory-bound sooner (measurements: bench/README.md).

from cython.parallel cimport prange
from libc.math cimport fabs, pow, INFINITY
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy

from fastnn._kernels._types cimport real

# Elements per call above which a pass runs on the OpenMP pool.
cpdef enum:
    PAR_MIN_NORM = 131072
    PAR_MIN_SCALE = 524288
# Reduction chunking: chunk count depends on n only, so the result does not depend on the thread count.
CHUNK = 4096
MAX_CHUNKS = 64
cdef Py_ssize_t _CHUNK = CHUNK
cdef int64_t _ABS64 = 0x7FFFFFFFFFFFFFFF  # clears the sign bit of a double
cdef int64_t _INF64 = 0x7FF0000000000000  # bits of +inf


cdef enum:
    _MAX_CHUNKS = 64  # = MAX_CHUNKS; the size of the stack array of partials

# Reduction kinds.
cdef enum:
    K_SUM_ABS = 0
    K_SUM_SQ = 1
    K_SUM_POW = 2
    K_MAX_ABS = 3
    K_MIN_ABS = 4


cdef double _sum_abs(const real* g, Py_ssize_t n) noexcept nogil:
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i, m = n - n % 4
    for i in range(0, m, 4):
        s0 += fabs(<double>g[i])
        s1 += fabs(<double>g[i + 1])
        s2 += fabs(<double>g[i + 2])
        s3 += fabs(<double>g[i + 3])
    for i in range(m, n):
        s0 += fabs(<double>g[i])
    return (s0 + s1) + (s2 + s3)


cdef double _sum_sq(const real* g, Py_ssize_t n) noexcept nogil:
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, a, b, c, d
    cdef Py_ssize_t i, m = n - n % 4
    for i in range(0, m, 4):
        a = g[i]
        b = g[i + 1]
        c = g[i + 2]
        d = g[i + 3]
        s0 += a * a
        s1 += b * b
        s2 += c * c
        s3 += d * d
    for i in range(m, n):
        a = g[i]
        s0 += a * a
    return (s0 + s1) + (s2 + s3)


cdef double _sum_pow(const real* g, Py_ssize_t n, double p) noexcept nogil:
    cdef double s = 0
    cdef Py_ssize_t i
    for i in range(n):
        s += pow(fabs(<double>g[i]), p)
    return s


# max|g| and min|g| work on the bit patterns: clearing the sign bit gives |g|, and for non-negative
# IEEE values the integer order is the float order, with every NaN above +inf. An integer max therefore
# returns a NaN pattern as soon as one element is NaN (torch's propagation), and integer max/min
# reductions vectorise, which float selects that must keep NaN do not (GCC: "reduction used in loop").

cdef double _max_abs(const real* g, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef int32_t b32, m32 = 0
    cdef int64_t b64, m64 = 0
    cdef float f
    cdef double d
    if real is float:
        for i in range(n):
            b32 = (<const int32_t*>g)[i] & 0x7FFFFFFF
            m32 = b32 if b32 > m32 else m32
        memcpy(&f, &m32, 4)
        return f
    else:
        for i in range(n):
            b64 = (<const int64_t*>g)[i] & _ABS64
            m64 = b64 if b64 > m64 else m64
        memcpy(&d, &m64, 8)
        return d


cdef double _min_abs(const real* g, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef int32_t b32, lo32 = 0x7F800000, hi32 = 0  # +inf
    cdef int64_t b64, lo64 = _INF64, hi64 = 0
    cdef float f
    cdef double d
    if real is float:
        for i in range(n):
            b32 = (<const int32_t*>g)[i] & 0x7FFFFFFF
            lo32 = b32 if b32 < lo32 else lo32
            hi32 = b32 if b32 > hi32 else hi32  # > +inf: a NaN was seen
        if hi32 > 0x7F800000:
            lo32 = hi32
        memcpy(&f, &lo32, 4)
        return f
    else:
        for i in range(n):
            b64 = (<const int64_t*>g)[i] & _ABS64
            lo64 = b64 if b64 < lo64 else lo64
            hi64 = b64 if b64 > hi64 else hi64
        if hi64 > _INF64:
            lo64 = hi64
        memcpy(&d, &lo64, 8)
        return d


cdef double _reduce_chunk(const real* g, Py_ssize_t n, int kind, double p) noexcept nogil:
    if kind == K_SUM_ABS:
        return _sum_abs(g, n)
    if kind == K_SUM_SQ:
        return _sum_sq(g, n)
    if kind == K_SUM_POW:
        return _sum_pow(g, n, p)
    if kind == K_MAX_ABS:
        return _max_abs(g, n)
    return _min_abs(g, n)


cdef double _reduce(const real* g, Py_ssize_t n, int kind, double p) noexcept nogil:
    cdef double partial[_MAX_CHUNKS]
    cdef double r, a
    cdef Py_ssize_t c, lo, hi
    cdef Py_ssize_t nchunks = n // _CHUNK
    if nchunks > _MAX_CHUNKS:
        nchunks = _MAX_CHUNKS
    if nchunks < 1:
        nchunks = 1
    for c in prange(nchunks, nogil=True, schedule="static", use_threads_if=n > PAR_MIN_NORM):
        lo = c * n // nchunks
        hi = (c + 1) * n // nchunks
        partial[c] = _reduce_chunk(g + lo, hi - lo, kind, p)
    r = partial[0]
    for c in range(1, nchunks):
        a = partial[c]
        if kind == K_MAX_ABS:
            r = a if (a > r) | (a != a) else r
        elif kind == K_MIN_ABS:
            r = a if (a < r) | (a != a) else r
        else:
            r = r + a
    return r


cdef void _scale(real* g, Py_ssize_t n, real coef) noexcept nogil:
    cdef Py_ssize_t i
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n > PAR_MIN_SCALE):
        g[i] = g[i] * coef


cdef void _clamp(real* g, Py_ssize_t n, real lo, real hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef real x
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n > PAR_MIN_SCALE):
        x = g[i]
        x = lo if x < lo else x
        x = hi if x > hi else x
        g[i] = x


def norm_reduce(const real[::1] grad, double norm_type):
    """Unrooted p-norm reduction in double: sum|g| (p=1), sum g^2 (p=2), sum|g|^p (finite p), max|g| (inf),
    min|g| (-inf); NaN propagates; an empty run gives 0 (inf for -inf)."""
    cdef Py_ssize_t n = grad.shape[0]
    cdef int kind
    if norm_type == 1.0:
        kind = K_SUM_ABS
    elif norm_type == 2.0:
        kind = K_SUM_SQ
    elif norm_type == INFINITY:
        kind = K_MAX_ABS
    elif norm_type == -INFINITY:
        kind = K_MIN_ABS
    elif norm_type == norm_type and norm_type != 0.0:
        kind = K_SUM_POW
    else:
        raise ValueError(f"norm_type must be a nonzero number or +-inf, got {norm_type!r}")
    if n == 0:
        return INFINITY if kind == K_MIN_ABS else 0.0
    cdef double r
    with nogil:
        r = _reduce(&grad[0], n, kind, norm_type)
    return r


def scale_(real[::1] grad, double coef):
    """grad *= coef (coef rounded to grad's dtype)."""
    cdef Py_ssize_t n = grad.shape[0]
    if n == 0:
        return
    with nogil:
        _scale(&grad[0], n, <real>coef)


def clamp_(real[::1] grad, double lo, double hi):
    """grad = min(max(grad, lo), hi) in grad's dtype; NaN stays NaN."""
    cdef Py_ssize_t n = grad.shape[0]
    if n == 0:
        return
    with nogil:
        _clamp(&grad[0], n, <real>lo, <real>hi)
