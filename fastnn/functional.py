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

from . import layers as L

__all__ = ["derivative"]

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
    return act.derivative(x)


def _make(name: str, cls: type):
    def fn(x, **kwargs):
        return cls(**kwargs)(x)
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
