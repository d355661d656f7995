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

import numpy as np

from . import _validation as V
from ._kernels import _activations as _K
from .init import check_init


class Layer:
    """Base class of fastnn layers."""

    #: Parameters of this layer (filled in by Sequential), weight first then bias.
    params: list
    #: Constructor keyword -> JSON type ("int", "float", "bool", "str", or "activation": None, a name or a
    #: nested activation): the keys of ``_config()`` and the model file's schema for this class.
    config_types: dict = {}
    #: Constructor keywords that are not part of the config (Dense's Keras width keywords)
    build_keywords: tuple = ()

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

    def __call__(self, x) -> np.ndarray:
        """This activation applied to the array x (any shape), as torch's ``nn.Sigmoid()(x)``: a new array.

        The compiled kernels a model runs; float32/float64 stay as they are, anything else is computed in
        float64. Row-wise activations (softmax) work along the last axis. ``fastnn.functional`` has the
        same as functions with PyTorch's names.
        """
        z, shape = self._rows(x, type(self).__name__)
        out = np.empty_like(z)
        _K.forward(z, _EMPTY[z.dtype], out, _K.CODES[self.kind], self.param, self.param2)
        return out.reshape(shape)

    def derivative(self, x) -> np.ndarray:
        """f'(x) element-wise: the backward kernel a model runs, applied to a gradient of ones (PyTorch's
        conventions: relu'(0) = 0, leaky_relu'(0) = negative_slope). Softmax mixes a row, so its derivative
        is a Jacobian matrix per row, not an element-wise function: ValueError."""
        if not self.elementwise:
            raise ValueError(f"{type(self).__name__}'s derivative is a Jacobian matrix per row (each output "
                             "depends on the whole row), not an element-wise function; derivative() takes "
                             "element-wise activations")
        z, shape = self._rows(x, "derivative")
        code = _K.CODES[self.kind]
        a = np.empty_like(z)
        _K.forward(z, _EMPTY[z.dtype], a, code, self.param, self.param2)
        out = np.empty_like(z)
        _K.backward(np.ones_like(z), z, a, out, code, self.param, self.param2)
        return out.reshape(shape)

    def _rows(self, x, name: str) -> tuple[np.ndarray, tuple]:
        """x as a C-contiguous 2-D array (rows of the last axis) of a kernel dtype, and x's shape."""
        dtype = V.native_float_dtype(x.dtype) if isinstance(x, (np.ndarray, np.generic)) else None
        x = V.as_float_array(x, "x", dtype or np.float64)
        shape = x.shape
        if not self.elementwise:
            if x.ndim == 0:
                raise ValueError(f"{name} needs x with at least one axis, got a 0-d array")
            if x.ndim > 2 and getattr(self, "dim", -1) not in (-1, x.ndim - 1):
                raise ValueError(f"{name} works along the last axis: dim must be -1 for a {x.ndim}-d x, "
                                 f"got {self.dim}")
        width = shape[-1] if (not self.elementwise and x.ndim) else max(x.size, 1)
        z = np.array(x, order="C", copy=True).reshape(-1, width) if x.size else np.empty((0, width), x.dtype)
        return z, shape

    @classmethod
    def _from_torch(cls, module) -> Activation:
        """This activation with the settings of torch module `module` (of class ``torch_module``)."""
        return cls(**{key: getattr(module, attr) for key, attr in cls.torch_params.items()})


_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


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
    """Fully connected layer: z = x @ W + b, W of shape (in_features, out_features), then activation.

    Two ways to write it:

    - PyTorch's order: ``Dense(in_features, out_features, activation=None)`` (as torch.nn.Linear);
    - Keras's: ``Dense(units, activation=None)`` (one width, or ``units=``): the input width is
      inferred when the model first sees data (Keras's build), from ``fnn.Input(shape=(n,))`` at the
      start of the Sequential, or from ``input_shape=(n,)`` (or ``input_dim=n``) on the layer.

    A second positional argument that is a string, an Activation or None is the activation
    (``Dense(10, "softmax")``, as in Keras); an integer is out_features. ``in_features`` is None until
    the width is known.
    """

    config_types = {"in_features": "int", "out_features": "int", "activation": "activation", "use_bias": "bool",
                    "init": "str"}
    #: Keras's keywords that only say how wide the layer is (not part of the saved config)
    build_keywords = ("units", "input_shape", "input_dim")

    def __init__(self, in_features=None, out_features=None, activation=None, use_bias: bool = True,
                 init: str = "glorot_uniform", *, units=None, input_shape=None, input_dim=None):
        super().__init__()
        if out_features is None or isinstance(out_features, (str, Activation)):
            if out_features is not None:   # Dense(units, activation), Keras's positional order
                if activation is not None:
                    raise TypeError(f"Dense() got two activations: {out_features!r} (second argument) and "
                                    f"activation={activation!r}")
                activation = out_features
            if units is not None:
                if in_features is not None:
                    raise TypeError(f"Dense() got both a width argument ({in_features!r}) and units={units!r}; "
                                    "write Dense(units) or Dense(in_features, out_features)")
                in_features = units
            if in_features is None:
                raise TypeError("Dense() needs its output width: Dense(units) (Keras) or "
                                "Dense(in_features, out_features) (PyTorch)")
            out_features, in_features = in_features, _input_width(input_shape, input_dim)
        elif units is not None:
            raise TypeError(f"Dense() got units={units!r} and two widths ({in_features!r}, {out_features!r}); write "
                            "Dense(units) or Dense(in_features, out_features)")
        elif input_shape is not None or input_dim is not None:
            width = _input_width(input_shape, input_dim)
            if width != in_features:
                raise ValueError(f"Dense({in_features}, {out_features}) got input width {width} from "
                                 "input_shape/input_dim; give the width once")
        self.out_features = V.check_int(out_features, "out_features", low=1)
        self.in_features = None if in_features is None else V.check_int(in_features, "in_features", low=1)
        if self.in_features is not None:
            self._check_size()
        self.activation = get_activation(activation)
        self.use_bias = V.check_bool(use_bias, "use_bias")
        self.init = check_init(init)

    @property
    def built(self) -> bool:
        """Whether the input width is known (Keras's ``layer.built``; the weights exist once in a model)."""
        return self.in_features is not None

    def _check_size(self) -> None:
        # the weight (in, out) must fit in memory in the smallest model dtype (Sequential checks the
        # whole parameter arena in its own dtype)
        V.check_nbytes(f"in_features={self.in_features}, out_features={self.out_features}",
                       (self.in_features, self.out_features), "float32", what="the weight")

    def _set_input_width(self, width: int) -> None:
        """Fix the input width of a layer made with Dense(units) (Keras's build)."""
        self.in_features = V.check_int(width, "in_features", low=1)
        self._check_size()

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


def _input_width(input_shape, input_dim) -> int | None:
    """The width from Keras's input_shape=(n,) or input_dim=n (None if neither is given)."""
    if input_shape is not None and input_dim is not None:
        raise TypeError("give input_shape=(n,) or input_dim=n, not both")
    if input_dim is not None:
        return V.check_int(input_dim, "input_dim", low=1)
    if input_shape is None:
        return None
    return _check_shape(input_shape, "input_shape")


def _check_shape(shape, name: str) -> int:
    """n from a Keras shape (n,) of one sample (the batch axis left out)."""
    if isinstance(shape, (int,)) and not isinstance(shape, bool):
        raise TypeError(f"{name} must be a tuple (n,), the shape of one sample, got the int {shape}; write "
                        f"{name}=({shape},)")
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{name} must be a tuple (n,), the shape of one sample, got {type(shape).__name__}")
    if len(shape) != 1:
        hint = (f"; flatten the samples (X.reshape(len(X), -1)) and write {name}=({_prod(shape)},)"
                if len(shape) > 1 and all(isinstance(d, int) for d in shape) else "")
        raise ValueError(f"{name} must be (n,): fastnn's layers take rows of n features, got {tuple(shape)}{hint}")
    return V.check_int(shape[0], f"{name}[0]", low=1)


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


class Input:
    """keras.Input(shape=(n,)): the input width of a Sequential, as its first entry. It holds no weights
    and is not a layer of the model (``model.layers`` starts after it; nothing of it is saved), as in Keras."""

    def __init__(self, shape=None, *, batch_size=None, name=None):
        if shape is None:
            raise TypeError("Input() needs the shape of one sample: fnn.Input(shape=(n,))")
        self.width = _check_shape(shape, "shape")
        self.shape = (self.width,)
        self.name = name

    def __repr__(self) -> str:
        return f"Input(shape={self.shape})"


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1-p)."""

    config_types = {"p": "float"}

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = V.check_float(p, "p", 0.0, 1.0)


#: Layer class name -> class: every layer a model file may name (fastnn.io's allow-list).
LAYERS = {cls.__name__: cls for cls in (Dense, Dropout, *ACTIVATIONS.values())}
