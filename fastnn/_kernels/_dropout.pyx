# Design note: _dropout - inverted dropout with counter-based masks.
#
# Training: keep_i ~ Bernoulli(1 - p); y := x * keep / (1 - p); dx := g * keep / (1 - p).
# The random word for element i is word (i % 4) of Philox4x32-10 at counter
# (i / 4, stream, step) under key = seed (csrc/fnn_rng.h); element i is kept when
# that word < threshold = round((1 - p) * 2^32). The mask is therefore a pure function
# of (seed, stream, step, i): identical for any thread count and split.
# p = 1 gives y := x * 0 (NaN for inf/NaN inputs, as PyTorch) with no division by zero.
# Layout: flat contiguous arrays of n elements; mask is uint8 (1 = kept).
# Offset: dropout_forward_at(..., off) gives elements 0..n-1 the masks of elements off..off+n-1 of a larger
# batch (distributed training: a rank's rows of a global batch get the masks one process would give them);
# off = 0 is dropout_forward itself.
# Threads: blocks of 4 elements split across OpenMP threads from PAR_MIN_DROPOUT elements (Philox makes
# the pass compute-bound, so it pays earlier than a memory-bound pass); below, a plain loop.

from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from fastnn._kernels._types cimport real
from fastnn._kernels._csrc cimport fnn_philox4x32_10, fnn_philox_block

cpdef enum:
    PAR_MIN_DROPOUT = 49152


cdef inline uint64_t keep_threshold(double p) noexcept nogil:
    """Words below this are kept: round((1 - p) * 2^32), in [0, 2^32]."""
    return <uint64_t>((1.0 - p) * 4294967296.0 + 0.5)


cdef inline void _forward_block(const real* x, real* y, uint8_t* mask, Py_ssize_t n, Py_ssize_t blk,
                                uint64_t thr, real scale, uint64_t seed, uint32_t stream,
                                uint64_t step) noexcept nogil:
    cdef uint32_t words[4]
    cdef Py_ssize_t i, j
    fnn_philox_block(seed, stream, step, <uint32_t>blk, words)
    for j in range(4):
        i = blk * 4 + j
        if i < n:
            mask[i] = words[j] < thr
            y[i] = x[i] * scale if mask[i] else x[i] * 0


cdef void dropout_forward(const real* x, real* y, uint8_t* mask, Py_ssize_t n, double p,
                          uint64_t seed, uint32_t stream, uint64_t step) noexcept nogil:
    """mask_i := word_i < (1-p) 2^32 ; y := x * mask / (1 - p)."""
    cdef uint64_t thr = keep_threshold(p)
    cdef real scale = <real>(1.0 / (1.0 - p)) if p < 1.0 else 0
    cdef Py_ssize_t nblocks = (n + 3) // 4, blk
    if n < PAR_MIN_DROPOUT:   # a plain loop: a serial prange still costs an OpenMP barrier
        for blk in range(nblocks):
            _forward_block(x, y, mask, n, blk, thr, scale, seed, stream, step)
        return
    for blk in prange(nblocks, schedule="static"):
        _forward_block(x, y, mask, n, blk, thr, scale, seed, stream, step)


cdef inline void _forward_block_at(const real* x, real* y, uint8_t* mask, Py_ssize_t n, Py_ssize_t off,
                                   Py_ssize_t blk, uint64_t thr, real scale, uint64_t seed, uint32_t stream,
                                   uint64_t step) noexcept nogil:
    cdef uint32_t words[4]
    cdef Py_ssize_t i, j
    fnn_philox_block(seed, stream, step, <uint32_t>blk, words)
    for j in range(4):
        i = blk * 4 + j - off
        if 0 <= i < n:
            mask[i] = words[j] < thr
            y[i] = x[i] * scale if mask[i] else x[i] * 0


cdef void dropout_forward_at(const real* x, real* y, uint8_t* mask, Py_ssize_t n, double p,
                             uint64_t seed, uint32_t stream, uint64_t step, Py_ssize_t off) noexcept nogil:
    """dropout_forward for elements off .. off+n-1 of a larger block (x, y, mask hold those n elements)."""
    if off == 0:
        dropout_forward(x, y, mask, n, p, seed, stream, step)
        return
    cdef uint64_t thr = keep_threshold(p)
    cdef real scale = <real>(1.0 / (1.0 - p)) if p < 1.0 else 0
    cdef Py_ssize_t b0 = off // 4, b1 = (off + n + 3) // 4, blk
    if n < PAR_MIN_DROPOUT:
        for blk in range(b0, b1):
            _forward_block_at(x, y, mask, n, off, blk, thr, scale, seed, stream, step)
        return
    for blk in prange(b0, b1, schedule="static"):
        _forward_block_at(x, y, mask, n, off, blk, thr, scale, seed, stream, step)


cdef void dropout_backward(const real* g, const uint8_t* mask, real* dx, Py_ssize_t n, double p) noexcept nogil:
    """dx := g * mask / (1 - p)."""
    cdef real scale = <real>(1.0 / (1.0 - p)) if p < 1.0 else 0
    cdef Py_ssize_t i
    if n < PAR_MIN_DROPOUT:
        for i in range(n):
            dx[i] = g[i] * scale if mask[i] else g[i] * 0
        return
    for i in prange(n, schedule="static"):
        dx[i] = g[i] * scale if mask[i] else g[i] * 0


def forward(const real[::1] x, real[::1] y_out, uint8_t[::1] mask_out, double p,
            uint64_t seed, uint32_t stream, uint64_t step, Py_ssize_t offset=0):
    """mask_out := Bernoulli(1-p) from Philox(seed, stream, step); y_out := x * mask / (1-p).

    offset: x holds elements offset .. offset+len(x)-1 of a larger block (their masks are that block's)."""
    if y_out.shape[0] != x.shape[0] or mask_out.shape[0] != x.shape[0] or not 0.0 <= p <= 1.0 or offset < 0:
        raise ValueError("kernel buffers disagree: y_out and mask_out must have x's length; p in [0, 1]; "
                         "offset >= 0")
    if x.shape[0] == 0:
        return
    with nogil:
        dropout_forward_at(&x[0], &y_out[0], &mask_out[0], x.shape[0], p, seed, stream, step, offset)


def backward(const real[::1] g, const uint8_t[::1] mask, real[::1] dx_out, double p):
    """dx_out := g * mask / (1 - p). dx_out may be g itself."""
    if mask.shape[0] != g.shape[0] or dx_out.shape[0] != g.shape[0] or not 0.0 <= p <= 1.0:
        raise ValueError("kernel buffers disagree: mask and dx_out must have g's length; p in [0, 1]")
    if g.shape[0] == 0:
        return
    with nogil:
        dropout_backward(&g[0], &mask[0], &dx_out[0], g.shape[0], p)


def philox4x32_10(counter, uint64_t key):
    """The raw generator: 4 words from a 4-word counter and a 64-bit key (for known-answer tests)."""
    cdef uint32_t ctr[4]
    cdef uint32_t out[4]
    for i in range(4):
        ctr[i] = counter[i]
    fnn_philox4x32_10(ctr, key, out)
    return (out[0], out[1], out[2], out[3])
