"""Layer descriptors: what the user writes.

Layers hold configuration (and, once inside a Sequential, their Parameters); the
model's planner turns them into fused execution stages (model.py). Activation
names and keywords follow PyTorch:

    "relu", "sigmoid", "tanh", "leaky_relu", "gelu", "elu", "silu", "softmax", "linear"/None
    LeakyReLU(negative_slope=0.01), GELU(approximate="none"|"tanh"), ELU(alpha=1.0), Softmax(dim=-1)
"""

from __future__ import annotations

from . import _validation as V
from .init import check_init


class Layer:
    """Base class of fastnn layers."""

    #: Parameters of this layer (filled in by Sequential), weight first then bias.
    params: list

    def __init__(self):
        self.params = []

    def _config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"


class Activation(Layer):
    """An element-wise (or row-wise, for softmax) activation; `kind` is its kernel name."""

    kind = "linear"

    def __init__(self):
        super().__init__()
        self.param = 0.0

    @property
    def code_name(self) -> str:
        return self.kind


class Identity(Activation):
    kind = "linear"


class ReLU(Activation):
    kind = "relu"


class Sigmoid(Activation):
    kind = "sigmoid"


class Tanh(Activation):
    kind = "tanh"


class SiLU(Activation):
    kind = "silu"


class LeakyReLU(Activation):
    kind = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = self.param = V.check_float(negative_slope, "negative_slope")

    def _config(self):
        return {"negative_slope": self.negative_slope}


class ELU(Activation):
    kind = "elu"

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = self.param = V.check_float(alpha, "alpha")

    def _config(self):
        return {"alpha": self.alpha}


class GELU(Activation):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = V.check_choice(approximate, "approximate", ("none", "tanh"))
        self.kind = "gelu" if approximate == "none" else "gelu_tanh"

    def _config(self):
        return {"approximate": self.approximate}


class Softmax(Activation):
    kind = "softmax"

    def __init__(self, dim: int = -1):
        super().__init__()
        dim = V.check_int(dim, "dim")
        if dim not in (-1, 1):
            raise ValueError(f"dim must be -1 or 1 (the feature axis of a (batch, features) input), got {dim}")
        self.dim = dim

    def _config(self):
        return {"dim": self.dim}


_ACTIVATIONS = {
    None: Identity, "linear": Identity, "identity": Identity, "relu": ReLU, "sigmoid": Sigmoid,
    "tanh": Tanh, "leaky_relu": LeakyReLU, "gelu": GELU, "elu": ELU, "silu": SiLU, "softmax": Softmax,
}


def get_activation(spec) -> Activation:
    """An Activation from a name, None, or an Activation instance."""
    if isinstance(spec, Activation):
        return spec
    names = ", ".join(repr(k) for k in _ACTIVATIONS if k is not None)
    if spec is not None and not isinstance(spec, str):   # checked before any lookup (arrays, lists, numbers)
        raise TypeError(f"activation must be None, an Activation layer or one of {names}; "
                        f"got {type(spec).__name__} {spec!r}")
    key = spec.lower() if isinstance(spec, str) else None
    if key in _ACTIVATIONS:
        return _ACTIVATIONS[key]()
    raise ValueError(f"activation must be None, an Activation layer or one of {names}; got {spec!r}")


class Dense(Layer):
    """Fully connected layer: z = x @ W + b, W of shape (in_features, out_features), then activation."""

    def __init__(self, in_features: int, out_features: int, activation=None, use_bias: bool = True,
                 init: str = "glorot_uniform"):
        super().__init__()
        self.in_features = V.check_int(in_features, "in_features", low=1)
        self.out_features = V.check_int(out_features, "out_features", low=1)
        # the weight (in, out) must fit in memory in the smallest model dtype (Sequential checks the
        # whole parameter arena in its own dtype)
        V.check_nbytes(f"in_features={self.in_features}, out_features={self.out_features}",
                       (self.in_features, self.out_features), "float32", what="the weight")
        self.activation = get_activation(activation)
        self.use_bias = V.check_bool(use_bias, "use_bias")
        self.init = check_init(init)

    @property
    def weight(self):
        return self.params[0] if self.params else None

    @property
    def bias(self):
        return self.params[1] if self.use_bias and self.params else None

    def _shapes(self):
        shapes = [(self.in_features, self.out_features)]
        if self.use_bias:
            shapes.append((self.out_features,))
        return shapes

    def _config(self):
        act = self.activation
        return {
            "in_features": self.in_features, "out_features": self.out_features,
            "activation": None if isinstance(act, Identity) else act.kind, "use_bias": self.use_bias,
            "init": self.init,
        }


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = V.check_float(p, "p", 0.0, 1.0)

    def _config(self):
        return {"p": self.p}
