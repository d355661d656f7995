"""Weight initialisers, all drawn from a NumPy Generator (seeded by Sequential(seed=...)).

Weights have fastnn's shape (in_features, out_features): fan_in = in, fan_out = out.
Keras formulas (docs/numerics.md section 4): glorot/he/lecun; the *_normal ones are truncated
at two standard deviations, with the stddev divided by 0.87962566103423978 as Keras does.
"torch" reproduces the distribution of torch.nn.Linear's default init:
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both weight and bias.
"""

from __future__ import annotations

import numpy as np

from . import _validation as V

_TRUNC_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


def _check_shape(shape) -> None:
    """Every initializer draws float64 values of `shape` first: refuse one no machine could hold."""
    V.check_nbytes("shape", tuple(shape), np.float64, what="the initial values")


def _uniform(rng, shape, limit):
    _check_shape(shape)
    return rng.uniform(-limit, limit, size=shape)


def _truncated_normal(rng, shape, std):
    _check_shape(shape)
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * std


def _fans(shape):
    fan_in, fan_out = shape
    return max(1, fan_in), max(1, fan_out)


def glorot_uniform(rng, shape):
    fan_in, fan_out = _fans(shape)
    return _uniform(rng, shape, np.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(rng, shape):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(rng, shape, np.sqrt(2.0 / (fan_in + fan_out)) / _TRUNC_STD)


def he_uniform(rng, shape):
    fan_in, _ = _fans(shape)
    return _uniform(rng, shape, np.sqrt(6.0 / fan_in))


def he_normal(rng, shape):
    fan_in, _ = _fans(shape)
    return _truncated_normal(rng, shape, np.sqrt(2.0 / fan_in) / _TRUNC_STD)


def lecun_uniform(rng, shape):
    fan_in, _ = _fans(shape)
    return _uniform(rng, shape, np.sqrt(3.0 / fan_in))


def torch_linear(rng, shape):
    fan_in, _ = _fans(shape)
    return _uniform(rng, shape, 1.0 / np.sqrt(fan_in))


INITIALIZERS = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "torch": torch_linear,
}


def check_init(name) -> str:
    return V.check_choice(name, "init", tuple(INITIALIZERS))


def init_dense(rng, name, w, b) -> None:
    """Fill a Dense layer's w (in, out) and b (out,) in place: weight first, then bias."""
    w[...] = INITIALIZERS[name](rng, w.shape)
    if b is not None:
        fan_in, _ = _fans(w.shape)
        b[...] = _uniform(rng, b.shape, 1.0 / np.sqrt(fan_in)) if name == "torch" else 0.0
