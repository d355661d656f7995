"""NumPy twins of fastnn._kernels._clip (same signatures, same in-place effects).

Each function works on one contiguous 1-D run of a gradient arena. norm_reduce returns the unrooted
reduction in float64 (docs/numerics.md section 8); scale_ and clamp_ update the run in place in its own dtype.
"""

from __future__ import annotations

import math

import numpy as np


def norm_reduce(grad, norm_type):
    """Unrooted p-norm reduction in double: sum|g| (p=1), sum g^2 (p=2), sum|g|^p (finite p), max|g| (inf),
    min|g| (-inf); NaN propagates; an empty run gives 0 (inf for -inf)."""
    norm_type = float(norm_type)
    if math.isnan(norm_type) or norm_type == 0:
        raise ValueError(f"norm_type must be a nonzero number or +-inf, got {norm_type!r}")
    a = np.abs(np.asarray(grad, dtype=np.float64))
    if norm_type == math.inf:
        return float(a.max()) if a.size else 0.0
    if norm_type == -math.inf:
        return float(a.min()) if a.size else math.inf
    if norm_type == 1:
        return float(a.sum())
    if norm_type == 2:
        return float(np.dot(a, a))
    with np.errstate(divide="ignore", over="ignore"):
        return float((a ** norm_type).sum())


def scale_(grad, coef):
    """grad *= coef (coef rounded to grad's dtype)."""
    with np.errstate(invalid="ignore"):  # inf * 0 and NaN coefficients give NaN, as in the kernel
        grad *= grad.dtype.type(coef)


def clamp_(grad, lo, hi):
    """grad = min(max(grad, lo), hi) in grad's dtype; NaN stays NaN."""
    np.maximum(grad, grad.dtype.type(lo), out=grad)
    np.minimum(grad, grad.dtype.type(hi), out=grad)
