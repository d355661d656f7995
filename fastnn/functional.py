"""Activations as functions on arrays, with PyTorch's names (torch.nn.functional), and their derivatives.

    import fastnn.functional as F
    F.sigmoid(x), F.relu(x), F.leaky_relu(x, negative_slope=0.1), F.softmax(x, dim=-1), ...
    F.derivative("sigmoid", x)              # f'(x), element-wise (also F.derivative(F.sigmoid, x) or
    F.derivative(fnn.Sigmoid(), x)          #  an Activation layer, with its settings)

One function per entry of ``fastnn.layers.ACTIVATIONS`` (that registry is the list; nothing here names an
activation), except ``linear``/``identity``; its keywords are the layer class's constructor keywords
(PyTorch's). Each runs the compiled kernels (``fastnn._kernels._activations.forward`` / ``backward``,
the ones a model runs) on any real array shape: float32 and float64 stay as they are, anything else
is computed in float64. The result is a new array of x's shape. Softmax works along the last axis
(``dim=-1``, or ``dim=1`` for a 2-D x).
"""

from __future__ import annotations

import numpy as np

from . import _validation as V
from . import layers as L
from ._kernels import _activations as _K

__all__ = ["derivative"]

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


def _rows(x, act: L.Activation, name: str) -> tuple[np.ndarray, tuple]:
    """x as a C-contiguous 2-D array (rows of the last axis) of a kernel dtype, and x's shape."""
    dtype = V.native_float_dtype(x.dtype) if isinstance(x, (np.ndarray, np.generic)) else None
    x = V.as_float_array(x, "x", dtype or np.float64)
    shape = x.shape
    if not act.elementwise:
        if x.ndim == 0:
            raise ValueError(f"{name} needs x with at least one axis, got a 0-d array")
        if x.ndim > 2 and getattr(act, "dim", -1) not in (-1, x.ndim - 1):
            raise ValueError(f"{name} works along the last axis: dim must be -1 for a {x.ndim}-d x, got {act.dim}")
    width = shape[-1] if (not act.elementwise and x.ndim) else max(x.size, 1)
    z = np.array(x, order="C", copy=True).reshape(-1, width) if x.size else np.empty((0, width), x.dtype)
    return z, shape


def _forward(act: L.Activation, x, name: str) -> np.ndarray:
    z, shape = _rows(x, act, name)
    out = np.empty_like(z)
    _K.forward(z, _EMPTY[z.dtype], out, _K.CODES[act.kind], act.param, act.param2)
    return out.reshape(shape)


def _activation(spec, kwargs) -> L.Activation:
    """An Activation from a name, one of this module's functions, or an Activation instance (+ keywords)."""
    if callable(spec) and getattr(spec, "_activation_class", None) is not None:
        return spec._activation_class(**kwargs)
    if isinstance(spec, L.Activation):
        if kwargs:
            raise TypeError("pass the settings to the Activation layer itself, e.g. fnn.LeakyReLU(0.1), not as "
                            f"keywords ({', '.join(kwargs)})")
        return spec
    if isinstance(spec, str):
        cls = L.ACTIVATIONS.get(spec.lower())
        if cls is not None:
            return cls(**kwargs)
    names = ", ".join(map(repr, L.ACTIVATIONS))
    raise ValueError(f"activation must be an Activation layer, a fastnn.functional function or one of {names}; "
                     f"got {spec!r}")


def derivative(activation, x, **kwargs) -> np.ndarray:
    """f'(x) element-wise, for an activation given by name ("sigmoid"), function (F.sigmoid) or layer (fnn.Sigmoid()).

    Keywords go to the activation's class (``derivative("leaky_relu", x, negative_slope=0.2)``). It is the
    backward kernel a model runs, applied to a gradient of ones: PyTorch's conventions (relu'(0) = 0,
    leaky_relu'(0) = negative_slope). Softmax mixes a row, so its derivative is a Jacobian matrix per
    row, not an element-wise function: ValueError.
    """
    act = _activation(activation, kwargs)
    if not act.elementwise:
        raise ValueError(f"{type(act).__name__}'s derivative is a Jacobian matrix per row (each output depends on "
                         "the whole row), not an element-wise function; derivative() takes element-wise activations")
    z, shape = _rows(x, act, "derivative")
    code = _K.CODES[act.kind]
    a = np.empty_like(z)
    _K.forward(z, _EMPTY[z.dtype], a, code, act.param, act.param2)
    out = np.empty_like(z)
    _K.backward(np.ones_like(z), z, a, out, code, act.param, act.param2)
    return out.reshape(shape)


def _make(name: str, cls: type):
    def fn(x, **kwargs):
        return _forward(cls(**kwargs), x, name)
    fn.__name__ = fn.__qualname__ = name
    keywords = ", ".join(f"{k}=..." for k in cls.config_types)
    fn.__doc__ = (f"{cls.__name__} applied to the array x (any shape; see the module docstring): a new array."
                  + (f" Keywords as fastnn.{cls.__name__}: {keywords}." if keywords else ""))
    fn._activation_class = cls
    return fn


def _build() -> dict:
    fns = {}
    for name, cls in L.ACTIVATIONS.items():
        if cls is L.Identity:
            continue
        fns[name] = _make(name, cls)
    return fns


globals().update(_build())
__all__ += [name for name, cls in L.ACTIVATIONS.items() if cls is not L.Identity]
