"""NumPy twins of fastnn._kernels._activations (same signatures, readable math).

NaN and +-inf behave as in the kernels (and torch): relu keeps NaN and -0 and passes g at a NaN
input; every other function propagates NaN through NumPy's own arithmetic.
"""

import numpy as np
from scipy.special import erf

from .._kernels._activations import CODES  # the kernel's own table: name -> Act code

_NAMES = {v: k for k, v in CODES.items()}
_C = np.sqrt(2 / np.pi)


def sigmoid(x):
    """Overflow-free logistic: x >= 0: 1/(1+e^-x); x < 0: e^x/(1+e^x)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def f(z, name, param=0.0, param2=0.0):
    if name == "linear":
        return z.copy()
    if name == "relu":
        return np.where(z < 0, 0, z)   # NaN and -0 pass through, as torch.relu
    if name == "leaky_relu":
        return np.where(z > 0, z, param * z)
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "gelu":
        return 0.5 * z * (1 + erf(z / np.sqrt(2)))
    if name == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(_C * (z + 0.044715 * z**3)))
    if name == "elu":
        return np.where(z > 0, z, param * np.expm1(np.minimum(z, 0)))
    if name == "silu":
        return z * sigmoid(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "softsign":
        return z / (1 + np.abs(z))
    if name == "softplus":   # param = beta, param2 = threshold, as torch.nn.Softplus
        u = z * param
        with np.errstate(over="ignore"):
            return np.where(u > param2, z, np.log1p(np.exp(u)) / param)
    raise ValueError(name)


def df_times(g, z, a, name, param=0.0, param2=0.0):
    """g * f'(z) (softmax: a * (g - rowsum(g * a)))."""
    if name == "linear":
        return g.copy()
    if name == "relu":
        return np.where(z <= 0, 0, g)  # a select, not g * (z > 0): torch gives 0 for a NaN g at z <= 0, g at z = NaN
    if name == "leaky_relu":
        return g * np.where(z > 0, 1, param)
    if name == "sigmoid":
        return g * a * (1 - a)
    if name == "tanh":
        return g * (1 - a * a)
    if name == "gelu":
        return g * (0.5 * (1 + erf(z / np.sqrt(2))) + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi))
    if name == "gelu_tanh":
        t = np.tanh(_C * (z + 0.044715 * z**3))
        return g * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _C * (1 + 3 * 0.044715 * z * z))
    if name == "elu":
        return g * np.where(z > 0, 1, a + param)
    if name == "silu":
        s = sigmoid(z)
        return g * s * (1 + z * (1 - s))
    if name == "softmax":
        return a * (g - (g * a).sum(axis=1, keepdims=True))
    if name == "softsign":
        d = 1 + np.abs(z)
        return g * (1 / d - np.abs(z) / (d * d))   # torch's autograd form: NaN at +-inf, as torch
    if name == "softplus":
        u = z * param
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(u)
            return np.where(u > param2, g, g * (e / (e + 1)))
    raise ValueError(name)


def forward(z, b, a_out, act, param=0.0, param2=0.0):
    """z := z + b (b may be empty: no bias); a_out := f(z). a_out may be z itself."""
    if b.shape[0]:
        z += b
    a_out[...] = f(z, _NAMES[act], param, param2)


def backward(g, z, a, dz_out, act, param=0.0, param2=0.0):
    """dz_out := g * f'(z, a). dz_out may be g itself."""
    dz_out[...] = df_times(g, z, a, _NAMES[act], param, param2)
