"""NumPy twins of fastnn._kernels._dropout, including a vectorised Philox4x32-10."""

import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10_array(c0, c1, c2, c3, key):
    """Philox4x32-10 on arrays of counters (uint64 holding 32-bit words); returns 4 word arrays."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint64) & _MASK32 for c in (c0, c1, c2, c3))
    k0, k1 = key & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        n0 = (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0)
        n2 = (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1)
        c1, c3 = p1 & _MASK32, p0 & _MASK32
        c0, c2 = n0, n2
        k0, k1 = (k0 + _W0) & 0xFFFFFFFF, (k1 + _W1) & 0xFFFFFFFF
    return c0, c1, c2, c3


def philox4x32_10(counter, key):
    return tuple(int(w[0]) for w in philox4x32_10_array(*([c] for c in counter), key=key))


def words(n, seed, stream, step):
    """The random word of each of n elements: word i % 4 of block i // 4."""
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    w = philox4x32_10_array(blocks, stream, step & 0xFFFFFFFF, step >> 32, key=seed)
    return np.stack(w, axis=1).reshape(-1)[:n]


def forward(x, y_out, mask_out, p, seed, stream, step):
    """mask_out := word < round((1-p) 2^32); y_out := x * mask / (1-p)."""
    thr = np.uint64(int((1.0 - p) * 4294967296.0 + 0.5))
    mask_out[...] = words(x.shape[0], seed, stream, step) < thr
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    with np.errstate(invalid="ignore"):   # inf * 0 -> NaN, as the kernel and PyTorch
        y_out[...] = np.where(mask_out, x * x.dtype.type(scale), x * 0)


def backward(g, mask, dx_out, p):
    """dx_out := g * mask / (1 - p)."""
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    with np.errstate(invalid="ignore"):
        dx_out[...] = np.where(mask.astype(bool), g * g.dtype.type(scale), g * 0)
