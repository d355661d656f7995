"""Layer descriptors: what the user writes, and the registries of layer and activation classes.

Layers hold configuration (and, once inside a Sequential, their Parameters); the model's planner
turns them into fused execution stages (fastnn._stages). Activation names and keywords follow PyTorch.

``ACTIVATIONS`` (name -> class) and ``LAYERS`` (class name -> class) are the only lists of them in
fastnn: the file format's allow-list and schema (fastnn.io), PyTorch interop, ONNX export and the
``fastnn train`` command read them, and each class carries what those need (see ``Layer`` and
``Activation``). A new activation is a kernel row, its NumPy twin (fastnn._reference) and a class
here, entered in ``ACTIVATIONS``.
"""

from __future__ import annotations

from . import _validation as V
from .init import check_init


class Layer:
    """Base class of fastnn layers."""

    #: Parameters of this layer (filled in by Sequential), weight first then bias.
    params: list
    #: Constructor keyword -> JSON type ("int", "float", "bool", "str", or "activation": None, a name or a
    #: nested activation): the keys of ``_config()`` and the model file's schema for this class.
    config_types: dict = {}

    def __init__(self):
        self.params = []

    def _config(self) -> dict:
        """The constructor keywords that rebuild this layer (its ``config_types`` keys, read from attributes)."""
        return {key: getattr(self, key) for key in self.config_types}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"


class Activation(Layer):
    """An element-wise (or row-wise, for softmax) activation.

    Each class carries what the rest of fastnn looks up about it:

    - ``kind``: its kernel's name, the key into ``fastnn._kernels._activations.CODES`` (an instance may
      refine it: GELU(approximate="tanh") is "gelu_tanh"); ``param`` and ``param2`` are the kernel's
      scalar parameters (most activations use none or ``param`` only);
    - ``elementwise``: False for an activation that mixes a row (softmax), which only ends a network;
    - ``torch_module`` and ``torch_params``: the torch.nn class computing the same function and
      {fastnn keyword: torch attribute and keyword} (fastnn.io.to_torch / from_torch);
    - ``onnx_op`` and ``onnx_attrs``: the standard ONNX operator computing it and {ONNX attribute: fastnn
      attribute} (fastnn.onnx lowers operators newer than its opset into older ones).
    """

    kind = "linear"
    elementwise = True
    torch_module = "Identity"
    torch_params: dict = {}
    onnx_op = "Identity"
    onnx_attrs: dict = {}

    def __init__(self):
        super().__init__()
        self.param = self.param2 = 0.0

    @property
    def code_name(self) -> str:
        return self.kind

    @classmethod
    def _from_torch(cls, module) -> Activation:
        """This activation with the settings of torch module `module` (of class ``torch_module``)."""
        return cls(**{key: getattr(module, attr) for key, attr in cls.torch_params.items()})


class Identity(Activation):
    kind = "linear"


class ReLU(Activation):
    kind = "relu"
    torch_module = "ReLU"
    onnx_op = "Relu"


class Sigmoid(Activation):
    kind = "sigmoid"
    torch_module = "Sigmoid"
    onnx_op = "Sigmoid"


class Tanh(Activation):
    kind = "tanh"
    torch_module = "Tanh"
    onnx_op = "Tanh"


class Softsign(Activation):
    """x / (1 + |x|), as torch.nn.Softsign."""
    kind = "softsign"
    torch_module = "Softsign"
    onnx_op = "Softsign"


class SiLU(Activation):
    kind = "silu"
    torch_module = "SiLU"
    onnx_op = "Swish"   # x * sigmoid(alpha x), alpha = 1


class LeakyReLU(Activation):
    kind = "leaky_relu"
    config_types = {"negative_slope": "float"}
    torch_module = "LeakyReLU"
    torch_params = {"negative_slope": "negative_slope"}
    onnx_op = "LeakyRelu"
    onnx_attrs = {"alpha": "negative_slope"}

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = self.param = V.check_float(negative_slope, "negative_slope")


class ELU(Activation):
    kind = "elu"
    config_types = {"alpha": "float"}
    torch_module = "ELU"
    torch_params = {"alpha": "alpha"}
    onnx_op = "Elu"
    onnx_attrs = {"alpha": "alpha"}

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = self.param = V.check_float(alpha, "alpha")


class Softplus(Activation):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (as torch.nn.Softplus)."""
    kind = "softplus"
    config_types = {"beta": "float", "threshold": "float"}
    torch_module = "Softplus"
    torch_params = {"beta": "beta", "threshold": "threshold"}
    onnx_op = "Softplus"
    onnx_attrs = {"beta": "beta", "threshold": "threshold"}

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = self.param = V.check_float(beta, "beta", low=0, low_open=True)
        self.threshold = self.param2 = V.check_float(threshold, "threshold")


class GELU(Activation):
    kind = "gelu"
    config_types = {"approximate": "str"}
    torch_module = "GELU"
    torch_params = {"approximate": "approximate"}
    onnx_op = "Gelu"
    onnx_attrs = {"approximate": "approximate"}

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = V.check_choice(approximate, "approximate", ("none", "tanh"))
        self.kind = "gelu" if approximate == "none" else "gelu_tanh"


class Softmax(Activation):
    kind = "softmax"
    elementwise = False
    config_types = {"dim": "int"}
    torch_module = "Softmax"
    torch_params = {"dim": "dim"}
    onnx_op = "Softmax"
    onnx_attrs = {"axis": "dim"}

    def __init__(self, dim: int = -1):
        super().__init__()
        dim = V.check_int(dim, "dim")
        if dim not in (-1, 1):
            raise ValueError(f"dim must be -1 or 1 (the feature axis of a (batch, features) input), got {dim}")
        self.dim = dim

    @classmethod
    def _from_torch(cls, module) -> Softmax:
        return cls(-1 if module.dim is None else module.dim)   # torch's dim=None is the feature axis of a 2-D input


#: Activation name -> class: the names ``Dense(activation=...)`` accepts (and ``None``, the identity).
ACTIVATIONS = {
    "linear": Identity, "identity": Identity, "relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh,
    "leaky_relu": LeakyReLU, "gelu": GELU, "elu": ELU, "silu": SiLU, "softmax": Softmax,
    "softsign": Softsign, "softplus": Softplus,
}


def get_activation(spec) -> Activation:
    """An Activation from a name, None, or an Activation instance."""
    if isinstance(spec, Activation):
        return spec
    names = ", ".join(map(repr, ACTIVATIONS))
    if spec is not None and not isinstance(spec, str):   # checked before any lookup (arrays, lists, numbers)
        raise TypeError(f"activation must be None, an Activation layer or one of {names}; "
                        f"got {type(spec).__name__} {spec!r}")
    cls = Identity if spec is None else ACTIVATIONS.get(spec.lower())
    if cls is not None:
        return cls()
    raise ValueError(f"activation must be None, an Activation layer or one of {names}; got {spec!r}")


class Dense(Layer):
    """Fully connected layer: z = x @ W + b, W of shape (in_features, out_features), then activation."""

    config_types = {"in_features": "int", "out_features": "int", "activation": "activation", "use_bias": "bool",
                    "init": "str"}

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

    config_types = {"p": "float"}

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = V.check_float(p, "p", 0.0, 1.0)


#: Layer class name -> class: every layer a model file may name (fastnn.io's allow-list).
LAYERS = {cls.__name__: cls for cls in (Dense, Dropout, *ACTIVATIONS.values())}
