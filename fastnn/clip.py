"""Gradient clipping, as torch.nn.utils.clip_grad_norm_ and clip_grad_value_ (docs/numerics.md section 8).

Both functions make one pass over the gradient arena. The parameters that have a gradient are put
in arena order (arenas in order of first appearance, parameters by offset) and cut into maximal runs
that are contiguous in their arena; each run is one flat slice of ``arena.grad`` and gets one kernel
call, so a model's parameters take one call per operation. A parameter listed twice is counted and
scaled twice, as in torch.

How the norm is reduced: each run returns its unrooted reduction in double (sum |g|, sum g^2,
sum |g|^p, or max/min |g| for +-inf), the runs are added (or maxed/mined) in order and the root is
taken once. For any p != 0 this is torch's norm of per-parameter norms, up to rounding; float32
gradients are accumulated in double, then the total is rounded to float32 (torch's tensor dtype), so
it is at least as accurate as torch's float32 value. The clip coefficient is then computed exactly as
torch does, in that dtype: ``(1 / (total + 1e-6)) * max_norm`` clamped to at most 1 (NaN kept).
"""

from __future__ import annotations

import math
import numbers
import types
import warnings

import numpy as np

from ._kernels._clip import clamp_, norm_reduce, scale_
from ._validation import check_bool
from .parameter import Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None) -> float:
    """Scale all gradients by min(max_norm / (total + 1e-6), 1), where total is their joint p-norm.

    parameters: a Parameter or an iterable of them; those whose grad is None are ignored.
    norm_type: any nonzero p, ``inf`` (max |g|), ``-inf`` (min |g|) or 0 (as torch: the number of
    parameters whose gradient has a nonzero entry). Returns the total norm before clipping, as a
    float (0.0 when no parameter has a gradient). With ``error_if_nonfinite=True`` a NaN or infinite
    total raises RuntimeError before any gradient changes. ``foreach`` is accepted for torch
    compatibility and ignored: the fused kernel always runs.
    """
    is_generator = isinstance(parameters, types.GeneratorType)
    params = _as_parameters(parameters)
    if is_generator and not params:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=2)
    max_norm = _check_threshold(max_norm, "max_norm")
    norm_type = _check_norm_type(norm_type)
    error_if_nonfinite = check_bool(error_if_nonfinite, "error_if_nonfinite")
    _check_foreach(foreach)

    with_grad = [p for p in params if p.has_grad]
    if not with_grad:
        return 0.0
    runs = _grad_runs(with_grad)
    dtype = np.result_type(*(g.dtype for g in runs)).type  # torch's total has the promoted dtype
    if norm_type == 0:  # torch: the 0-"norm" of the per-parameter counts of nonzeros
        total = float(sum(np.count_nonzero(p._grad) > 0 for p in with_grad))
    else:
        total = _combine([norm_reduce(g, norm_type) for g in runs], norm_type)
    total = dtype(total)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot "
            "be clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )
    with np.errstate(all="ignore"):  # inf/NaN totals give 0 or NaN coefficients, as in torch
        coef = (dtype(1) / (total + dtype(1e-6))) * dtype(max_norm)  # torch: total.reciprocal() * max_norm
    if coef > 1:
        coef = dtype(1)
    if coef != 1:  # x * 1 == x bit for bit, so torch's multiplication by 1 is skipped
        for g in runs:
            scale_(g, float(coef))
    return float(total)


def clip_grad_value_(parameters, clip_value, foreach=None) -> None:
    """Clamp every gradient in place to [-clip_value, clip_value] (NaN stays NaN), as torch.

    parameters: a Parameter or an iterable of them; those whose grad is None are ignored.
    ``foreach`` is accepted for torch compatibility and ignored.
    """
    params = _as_parameters(parameters)
    clip_value = _check_threshold(clip_value, "clip_value")
    _check_foreach(foreach)
    with_grad = [p for p in params if p.has_grad]
    for g in _grad_runs(with_grad) if with_grad else ():
        clamp_(g, -clip_value, clip_value)


# ---------------------------------------------------------------------------------------------- helpers

def _as_parameters(parameters) -> list[Parameter]:
    if isinstance(parameters, Parameter):
        return [parameters]
    if isinstance(parameters, (str, bytes, dict, np.ndarray)) or not hasattr(parameters, "__iter__"):
        raise TypeError(f"parameters must be a Parameter or an iterable of Parameters, "
                        f"got {type(parameters).__name__}")
    params = list(parameters)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"parameters must be a Parameter or an iterable of Parameters, "
                            f"got an item of type {type(p).__name__}")
    return params


def _grad_runs(params: list[Parameter]) -> list[np.ndarray]:
    """Flat gradient slices covering `params`: maximal runs of neighbours contiguous in one arena."""
    arenas: dict[int, int] = {}  # id(arena) -> order of first appearance (ids are only used as keys)
    for p in params:
        arenas.setdefault(id(p.arena), len(arenas))
    ordered = sorted(params, key=lambda p: (arenas[id(p.arena)], p.offset))  # stable: duplicates stay
    owners, runs = [], []  # the arena and [lo, hi) of each run
    for p in ordered:
        if runs and owners[-1] is p.arena and runs[-1][1] == p.offset:
            runs[-1][1] += p.size
        else:
            owners.append(p.arena)
            runs.append([p.offset, p.offset + p.size])
    return [arena.grad[lo:hi] for arena, (lo, hi) in zip(owners, runs)]


def _combine(partials: list[float], norm_type: float) -> float:
    """Join the runs' unrooted reductions and take the root (NaN propagates, as in torch)."""
    if math.isinf(norm_type):  # max (inf) or min (-inf) of the runs' values; a NaN wins
        r = partials[0]
        for a in partials[1:]:
            if math.isnan(r):
                break
            if math.isnan(a) or (a > r if norm_type > 0 else a < r):
                r = a
        return r
    s = sum(partials)
    if norm_type == 1:
        return s
    if norm_type == 2:
        return math.sqrt(s)
    with np.errstate(divide="ignore", over="ignore"):
        return float(np.float64(s) ** (1.0 / norm_type))


def _check_threshold(value, name: str) -> float:
    """A real number >= 0 (inf allowed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not value >= 0:
        raise ValueError(f"{name} must be a number >= 0 (inf allowed), got {value!r}")
    return value


def _check_norm_type(value) -> float:
    """torch's float(norm_type): a real number, 'inf' or '-inf'; NaN is refused."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise TypeError(f"norm_type must be a real number or 'inf', got {value!r}")
    try:
        p = float(value)
    except ValueError:
        raise ValueError(f"norm_type must be a real number or 'inf', got {value!r}") from None
    if math.isnan(p):
        raise ValueError(f"norm_type must be a real number or 'inf', got {value!r}")
    return p


def _check_foreach(foreach) -> None:
    if foreach is not None:
        check_bool(foreach, "foreach")
