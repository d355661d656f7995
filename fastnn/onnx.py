"""Export to ONNX: ``fastnn.io.to_onnx(model, path)`` (needs the optional extra ``pip install "fastnn[onnx]"``).

``model`` is a ``Sequential`` or a fitted MLP estimator (below).

The file is an ONNX model at opset 17 (IR version 8), built with the ``onnx`` package, which is
imported only when an export runs (``import fastnn`` never imports it). It computes the model's
inference function (eval mode: Dropout is the identity and is left out) with standard ONNX operators:

- input ``x`` of shape ``["batch", in_features]`` (the batch dimension is dynamic), output ``y`` of
  shape ``["batch", out_features]``, element type FLOAT (float32 models) or DOUBLE (float64 models);
- Dense -> ``Gemm(x, W, b)`` with W stored as is (shape (in, out), no transpose; no C input
  without a bias); the weights are initializers named like the model's parameters (``0.weight``);
- an activation -> the ONNX operator its class names (fastnn.layers.Activation: ``onnx_op``,
  ``onnx_attrs``); Identity and Dropout -> nothing.

Opset 17 rather than 20 or 24: any runtime from onnxruntime 1.13 on loads it. The operators that are
newer, or that onnxruntime's CPU provider has no double kernel for, are written as compositions
(``_LOWERED``): ``Swish`` (SiLU) as ``x * Sigmoid(x)``; ``Gelu`` as ``0.5 x (1 + Tanh(sqrt(2/pi) (x +
0.044715 x^3)))`` or ``0.5 x (1 + Erf(x / sqrt(2)))``; ``Softplus`` (torch's beta and threshold) as
``Where(beta x > threshold, x, Softplus(beta x) / beta)``; in float64 models ``LeakyRelu`` as ``PRelu``,
``Elu`` as ``Relu(x) + alpha (Exp(Min(x, 0)) - 1)``, ``Softsign`` as ``x / (1 + Abs(x))``, ``Softplus(u)``
as ``Relu(u) + Log(1 + Exp(-|u|))`` and ``Erf`` as Cephes' rational approximations of
erf and erfc (those of ``ndtr``, error ~1e-16) built from Mul/Add/Div/Exp/Clip/Where.

Fitted MLP estimators: ``fastnn.sklearn.MLPClassifier``/``MLPRegressor`` and scikit-learn's
``sklearn.neural_network`` classes, recognised by their fitted attributes (``coefs_``, ``intercepts_``,
``activation``, ``out_activation_``; ``classes_`` makes a classifier), so scikit-learn is never imported.
The graph has the interface skl2onnx gives scikit-learn's MLPs: input ``X`` (``["batch", n_features]``,
the dtype of ``coefs_``), Gemm + the hidden activation per layer (scikit-learn's names; any name of
fastnn.layers.ACTIVATIONS works too, written as for a Sequential), then

- classifier: output ``label`` = ``predict(X)`` and ``probabilities`` = ``predict_proba(X)``. Multiclass
  (softmax): ``classes_[argmax]``; binary (one logistic output p): probabilities ``[1 - p, p]`` and the
  label ``classes_[argmax]``, which is ``classes_[1]`` exactly when p > 0.5 (1 - p is exact for p >= 0.5),
  scikit-learn's threshold; multilabel (one logistic per label): label the 0/1 int64 matrix ``p > 0.5``.
  Labels are an int64 tensor for integer (and bool: 0/1) classes_, double for float classes_ (skl2onnx
  casts those to integers), string for text classes_ (``Gather`` from a constant table, no ``ai.onnx.ml``
  operator);
- regressor: output ``variable`` of shape ``(batch, n_outputs)`` (``predict(X)`` reshaped to 2-D, as
  skl2onnx does); ``out_activation_`` ``exp`` (Poisson loss) is ``Exp``.

The model's doc string describes the architecture; producer_name is "fastnn" and producer_version
fastnn's version. Writes are atomic, as for ``fastnn.io.save_model``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import layers as L
from ._atomic import _atomic_write, _fspath
from ._version import __version__
from .model import Sequential

__all__ = ["to_onnx"]

OPSET = 17
IR_VERSION = 8          # the IR version of onnx 1.12, the first release with opset 17
#: protobuf cannot serialize a message of 2 GiB or more (ONNX would need external data files)
_MAX_BYTES = (1 << 31) - (1 << 20)

# Cephes ndtr.c (S. L. Moshier, public domain; scipy.special uses the same): erf(u) = u T(u^2) / U(u^2)
# for |u| < 1; erfc(z) = exp(-z^2) P(z) / Q(z) for 1 <= z < 8 and exp(-z^2) R(z) / S(z) for z >= 8.
# Q, U and S have an implicit leading coefficient 1.
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)
_ERFC_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
           6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)
_ERFC_S = (2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
           1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError('fastnn.io.to_onnx needs the onnx package, an optional extra: '
                          'pip install "fastnn[onnx]"') from None
    return onnx


class _Graph:
    """Nodes and initializers of one graph, in the model's dtype; every tensor name is fresh."""

    def __init__(self, onnx, dtype: np.dtype):
        self.onnx, self.dtype = onnx, dtype
        self.nodes, self.initializers = [], []
        self._consts: dict[float, str] = {}
        self._count = 0
        self._outputs: set[str] = set()
        self.prefix = ""

    def initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array, dtype=self.dtype), name))
        return name

    def const(self, value: float) -> str:
        """A scalar constant of the model's dtype (one initializer per distinct value)."""
        key = float(value)
        if key not in self._consts:
            self._consts[key] = self.initializer(f"const_{len(self._consts)}", np.array(key, dtype=self.dtype))
        return self._consts[key]

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        """The output tensor of a new node op_type(inputs, attrs), named `out` or a fresh name."""
        if out is None:
            out = f"{self.prefix}{op_type}_{self._count}"
        self._count += 1
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def output(self, tensor: str, name: str) -> str:
        """Make graph output `name` hold `tensor`: the node producing it is renamed to produce `name` (the nodes
        reading it follow); an Identity if `tensor` is not a node's output or is already a graph output."""
        producers = [n for n in self.nodes if tensor in n.output]
        if not producers or tensor in self._outputs:
            self.op("Identity", tensor, out=name)
        else:
            for node in self.nodes:
                node.output[:] = [name if t == tensor else t for t in node.output]
                node.input[:] = [name if t == tensor else t for t in node.input]
        self._outputs.add(name)
        return name

    def polevl(self, z: str, coeffs) -> str:
        """c0 z^n + c1 z^(n-1) + ... + cn (Horner)."""
        acc = self.const(coeffs[0])
        for c in coeffs[1:]:
            acc = self.op("Add", self.op("Mul", acc, z), self.const(c))
        return acc

    def p1evl(self, z: str, coeffs) -> str:
        """z^n + c0 z^(n-1) + ... + c(n-1) (Horner, leading coefficient 1)."""
        acc = self.op("Add", z, self.const(coeffs[0]))
        for c in coeffs[1:]:
            acc = self.op("Add", self.op("Mul", acc, z), self.const(c))
        return acc


def _normal_cdf_double(g: _Graph, x: str) -> str:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2 without the Erf operator (onnxruntime has no double Erf)."""
    u = g.op("Mul", x, g.const(math.sqrt(0.5)))
    z = g.op("Abs", u)
    us = g.op("Clip", u, g.const(-1.0), g.const(1.0))         # the |u| < 1 branch, kept finite everywhere
    u2 = g.op("Mul", us, us)
    erf_small = g.op("Div", g.op("Mul", us, g.polevl(u2, _ERF_T)), g.p1evl(u2, _ERF_U))
    phi_small = g.op("Add", g.const(0.5), g.op("Mul", g.const(0.5), erf_small))
    z1 = g.op("Clip", z, g.const(1.0), g.const(8.0))
    z2 = g.op("Clip", z, g.const(8.0), g.const(64.0))        # exp(-z^2) is 0 long before 64
    ratio = g.op("Where", g.op("Less", z, g.const(8.0)),
                 g.op("Div", g.polevl(z1, _ERFC_P), g.p1evl(z1, _ERFC_Q)),
                 g.op("Div", g.polevl(z2, _ERFC_R), g.p1evl(z2, _ERFC_S)))
    expo = g.op("Exp", g.op("Neg", g.op("Mul", u, u)))       # exp(-inf) = 0 for huge |u|
    half_erfc = g.op("Mul", g.op("Mul", expo, ratio), g.const(0.5))
    phi_big = g.op("Where", g.op("Greater", u, g.const(0.0)), g.op("Sub", g.const(1.0), half_erfc), half_erfc)
    return g.op("Where", g.op("Less", z, g.const(1.0)), phi_small, phi_big)


#: ONNX operator -> its composition from older / float64-capable operators (see the module docstring)
_LOWERED: dict = {}


def _lowers(op: str):
    """Register the decorated function as the lowering of ONNX operator `op`."""
    def register(fn):
        _LOWERED[op] = fn
        return fn
    return register


@_lowers("Identity")
def _identity(g: _Graph, x: str) -> str:
    return x


@_lowers("LeakyRelu")
def _leaky_relu(g: _Graph, x: str, alpha: float = 0.01) -> str:
    if g.dtype == np.float64:   # attributes are float32: a double slope goes in as a tensor (PRelu)
        return g.op("PRelu", x, g.const(alpha))
    return g.op("LeakyRelu", x, alpha=alpha)


@_lowers("Elu")
def _elu(g: _Graph, x: str, alpha: float = 1.0) -> str:
    if g.dtype != np.float64:
        return g.op("Elu", x, alpha=alpha)
    neg = g.op("Sub", g.op("Exp", g.op("Min", x, g.const(0.0))), g.const(1.0))   # exactly 0 for x >= 0
    return g.op("Add", g.op("Relu", x), g.op("Mul", g.const(alpha), neg))


@_lowers("Softsign")
def _softsign(g: _Graph, x: str) -> str:
    if g.dtype != np.float64:
        return g.op("Softsign", x)
    return g.op("Div", x, g.op("Add", g.const(1.0), g.op("Abs", x)))


@_lowers("Softplus")
def _softplus(g: _Graph, x: str, beta: float = 1.0, threshold: float = 20.0) -> str:
    """torch's Softplus(beta, threshold): x where beta x > threshold, else Softplus(beta x) / beta (ONNX's
    Softplus has neither; in float64, which onnxruntime's Softplus lacks, as Relu(u) + Log(1 + Exp(-|u|)))."""
    u = x if beta == 1.0 else g.op("Mul", g.const(beta), x)
    if g.dtype != np.float64:
        soft = g.op("Softplus", u)
    else:
        tail = g.op("Log", g.op("Add", g.const(1.0), g.op("Exp", g.op("Neg", g.op("Abs", u)))))
        soft = g.op("Add", g.op("Relu", u), tail)
    soft = soft if beta == 1.0 else g.op("Div", soft, g.const(beta))
    return g.op("Where", g.op("Greater", u, g.const(threshold)), x, soft)


@_lowers("Swish")
def _swish(g: _Graph, x: str, alpha: float = 1.0) -> str:
    return g.op("Mul", x, g.op("Sigmoid", x if alpha == 1.0 else g.op("Mul", g.const(alpha), x)))


@_lowers("Gelu")
def _gelu(g: _Graph, x: str, approximate: str = "none") -> str:
    if approximate == "tanh":
        cube = g.op("Mul", g.op("Mul", x, x), x)
        inner = g.op("Mul", g.const(math.sqrt(2.0 / math.pi)), g.op("Add", x, g.op("Mul", g.const(0.044715), cube)))
        return g.op("Mul", g.op("Mul", g.const(0.5), x), g.op("Add", g.const(1.0), g.op("Tanh", inner)))
    if g.dtype == np.float64:
        return g.op("Mul", x, _normal_cdf_double(g, x))
    erf = g.op("Erf", g.op("Mul", x, g.const(math.sqrt(0.5))))
    return g.op("Mul", g.op("Mul", g.const(0.5), x), g.op("Add", g.const(1.0), erf))


#: ONNX operators written as compositions (newer than OPSET, or without a double kernel in onnxruntime)


_ACTIVATIONS = frozenset(L.ACTIVATIONS.values())


def _exported(act) -> bool:
    """Whether `act` is an activation of the registry (exact class: a subclass may compute something else)."""
    return type(act) in _ACTIVATIONS


def _activation(g: _Graph, act: L.Activation, x: str) -> str:
    """The output tensor of activation `act` applied to tensor x: its class's ONNX operator."""
    cls = type(act)
    attrs = {name: getattr(act, key) for name, key in cls.onnx_attrs.items()}
    lowered = _LOWERED.get(cls.onnx_op)
    return g.op(cls.onnx_op, x, **attrs) if lowered is None else lowered(g, x, **attrs)


# One graph builder per exportable type: (graph, graph name, inputs, outputs, doc string), where inputs and outputs
# are [(tensor name, ONNX element type, shape)] and every output tensor is a node's output (_Graph.output).
@functools.singledispatch
def _build_graph(model, onnx):
    """The ONNX graph of model's inference function (see above)."""
    raise TypeError("model must be a fastnn Sequential or a fitted MLPClassifier/MLPRegressor (fastnn.sklearn or "
                    f"scikit-learn), got {type(model).__name__}")


def _is_mlp_estimator(model) -> bool:
    """Duck typing: an object with the fitted attributes of scikit-learn's MLPs (fastnn.sklearn's have the same)."""
    return all(hasattr(model, a) for a in ("coefs_", "intercepts_", "activation", "out_activation_"))


def _exporter(model):
    """The graph builder for model: the one registered for its type, or the MLP estimators' (duck-typed on their
    fitted attributes); TypeError naming `model` if neither applies, ValueError for an unfitted estimator."""
    build = _build_graph.dispatch(type(model))
    if build is not _build_graph.registry[object]:
        return build
    if _is_mlp_estimator(model):
        return _estimator_graph
    if hasattr(model, "hidden_layer_sizes") and hasattr(model, "get_params"):
        raise ValueError(f"model ({type(model).__name__}) is not fitted: call its fit() before to_onnx")
    build(model, None)


def _elem(onnx, dtype: np.dtype) -> int:
    return onnx.TensorProto.DOUBLE if dtype == np.float64 else onnx.TensorProto.FLOAT


@_build_graph.register
def _(model: Sequential, onnx):
    model._require_built("fnn.io.to_onnx()")
    nbytes = sum(p.data.nbytes for p in model.parameters())
    if nbytes > _MAX_BYTES:
        raise ValueError(f"model is too large for an ONNX file: its weights take {nbytes} bytes, and one ONNX "
                         "file holds less than 2 GiB")
    for i, layer in enumerate(model.layers):   # exact classes only: a subclass may compute something else
        if type(layer) not in (L.Dense, L.Dropout) and not _exported(layer):
            raise ValueError(f"model.layers[{i}] ({type(layer).__name__}) has no ONNX export in fastnn")
        if type(layer) is L.Dense and not _exported(layer.activation):
            raise ValueError(f"model.layers[{i}] (Dense) has activation {type(layer.activation).__name__}, which "
                             "has no ONNX export in fastnn")
    g = _Graph(onnx, model.dtype)
    h = "x"
    lines = []
    for i, layer in enumerate(model.layers):
        g.prefix = f"layer{i}/"
        if type(layer) is L.Dense:
            inputs = [h, g.initializer(layer.params[0].name, layer.params[0].data)]
            if layer.use_bias:
                inputs.append(g.initializer(layer.params[1].name, layer.params[1].data))
            h = _activation(g, layer.activation, g.op("Gemm", *inputs))
        elif type(layer) is L.Dropout:
            lines.append(f"  ({i}): {layer!r}: left out (the identity in eval mode)")
            continue
        else:
            h = _activation(g, layer, h)
        lines.append(f"  ({i}): {layer!r}")
    doc = (f"fastnn {__version__} Sequential, {model.dtype.name}, {model.in_features} -> {model.out_features} "
           "features, its inference function (eval mode):\n" + "\n".join(lines))
    g.output(h, "y")
    elem = _elem(onnx, g.dtype)
    return (g, "fastnn.Sequential", [("x", elem, ["batch", model.in_features])],
            [("y", elem, ["batch", model.out_features])], doc)


# ------------------------------------------------------------------------------------------------ MLP estimators
# scikit-learn's MLPClassifier/MLPRegressor and fastnn.sklearn's, which have the same fitted attributes. The graph
# is the one skl2onnx writes for scikit-learn's MLPs: input "X", outputs "label" and "probabilities" (classifier)
# or "variable" (regressor), with standard operators only (no ai.onnx.ml domain).

#: scikit-learn's activation names that fastnn spells otherwise (the rest are fastnn.layers.ACTIVATIONS names)
_SKLEARN_NAMES = {"logistic": "sigmoid"}


def _mlp_activation_class(est, attr: str):
    """The fastnn activation class named by est.<attr> (None for "exp", the Poisson loss's output activation)."""
    name = getattr(est, attr)
    if attr == "out_activation_" and name == "exp":
        return None
    cls = L.ACTIVATIONS.get(_SKLEARN_NAMES.get(name, name)) if isinstance(name, str) else None
    if cls is None:
        extra = " or 'exp'" if attr == "out_activation_" else ""
        raise ValueError(f"{type(est).__name__}.{attr} must be one of scikit-learn's activation names (fastnn's "
                         f"registry fastnn.layers.ACTIVATIONS, with 'logistic' for 'sigmoid'){extra}, got {name!r}")
    return cls


def _mlp_weights(est) -> tuple[list, list, np.dtype]:
    """est's coefs_ and intercepts_ as arrays, checked to form a chain of layers of one float dtype."""
    name = type(est).__name__
    coefs, intercepts = [np.asarray(w) for w in est.coefs_], [np.asarray(b) for b in est.intercepts_]
    if not coefs or len(coefs) != len(intercepts):
        raise ValueError(f"{name}.coefs_ and .intercepts_ must be non-empty lists of one length, got "
                         f"{len(coefs)} and {len(intercepts)}")
    dtype = coefs[0].dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{name}.coefs_ must be float32 or float64 arrays, got {dtype}")
    width = coefs[0].shape[0] if coefs[0].ndim == 2 else None
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        if w.dtype != dtype or b.dtype != dtype:
            raise ValueError(f"{name}.coefs_[{i}] and .intercepts_[{i}] must have the dtype of coefs_[0] ({dtype}), "
                             f"got {w.dtype} and {b.dtype}")
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
            raise ValueError(f"{name}.coefs_[{i}] must be a ({width}, k) matrix and .intercepts_[{i}] a (k,) vector, "
                             f"got shapes {w.shape} and {b.shape}")
        width = w.shape[1]
    nbytes = sum(a.nbytes for a in coefs + intercepts)
    if nbytes > _MAX_BYTES:
        raise ValueError(f"model is too large for an ONNX file: its weights take {nbytes} bytes, and one ONNX "
                         "file holds less than 2 GiB")
    return coefs, intercepts, dtype


def _label_tensor(onnx, classes: np.ndarray, name: str):
    """classes_ as an initializer: int64 for integer labels, double for float labels, string for text labels."""
    if classes.dtype.kind in "biu" or (classes.dtype == object and all(
            isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) for c in classes)):
        if classes.dtype.kind == "u" and classes.size and classes.max() > np.iinfo(np.int64).max:
            raise ValueError(f"classes_ must fit an int64 for an ONNX label tensor, got {classes.max()}")
        values, elem = np.asarray(classes.tolist(), dtype=np.int64), onnx.TensorProto.INT64
    elif classes.dtype.kind == "f":
        values, elem = classes.astype(np.float64), onnx.TensorProto.DOUBLE
    elif classes.dtype.kind in "US" or (classes.dtype == object and all(isinstance(c, str) for c in classes)):
        values, elem = np.array([str(c) for c in classes.tolist()], dtype=object), onnx.TensorProto.STRING
    else:
        raise ValueError("classes_ must be integers, floats or strings for an ONNX label tensor, got "
                         f"{classes.dtype} values like {classes[:3].tolist()!r}")
    return onnx.numpy_helper.from_array(values, name), elem


def _estimator_graph(est, onnx):
    """The graph of a fitted MLPClassifier/MLPRegressor's predict (and predict_proba)."""
    name = type(est).__name__
    coefs, intercepts, dtype = _mlp_weights(est)
    hidden, out_act = est.activation, est.out_activation_
    hidden_cls, out_cls = _mlp_activation_class(est, "activation"), _mlp_activation_class(est, "out_activation_")
    g = _Graph(onnx, dtype)
    h = "X"
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        g.prefix = f"layer{i}/"
        h = g.op("Gemm", h, g.initializer(f"coefs_{i}", w), g.initializer(f"intercepts_{i}", b))
        cls = hidden_cls if i + 1 < len(coefs) else out_cls
        h = g.op("Exp", h) if cls is None else _activation(g, cls(), h)   # fastnn's defaults (Softmax: last axis)
    g.prefix = "output/"
    n_in, n_out = coefs[0].shape[0], coefs[-1].shape[1]
    elem = _elem(onnx, dtype)
    layers = " -> ".join([str(n_in)] + [f"{w.shape[1]} {hidden}" for w in coefs[:-1]] + [f"{n_out} {out_act}"])
    doc = f"fastnn {__version__} export of {type(est).__module__}.{name}, {dtype.name}: {layers}; "
    if not hasattr(est, "classes_"):   # a regressor: predict
        g.output(h, "variable")
        doc += "output variable = predict(X) as (batch, n_outputs)"
        return g, name, [("X", elem, ["batch", n_in])], [("variable", elem, ["batch", n_out])], doc
    classes = np.asarray(est.classes_)
    if out_act == "softmax" and classes.shape == (n_out,):                 # multiclass
        kind, proba, n_classes = "multiclass", h, n_out
    elif out_act == "logistic" and n_out == 1 and classes.shape == (2,):   # binary: p of classes_[1]
        kind, n_classes = "binary", 2
        proba = g.op("Concat", g.op("Sub", g.const(1.0), h), h, axis=1)
    elif out_act == "logistic" and n_out > 1 and classes.shape == (n_out,):   # multilabel: one p per label
        kind, proba, n_classes = "multilabel", h, n_out
    else:
        raise ValueError(f"{name} with out_activation_={out_act!r}, {n_out} outputs and classes_ of shape "
                         f"{classes.shape} is no classifier ONNX export knows (binary, multiclass or multilabel)")
    if kind == "multilabel":   # predict: p > 0.5 per label, as a 0/1 int64 matrix
        label = g.op("Cast", g.op("Greater", proba, g.const(0.5)), to=onnx.TensorProto.INT64)
        label_elem, label_shape = onnx.TensorProto.INT64, ["batch", n_out]
    else:   # predict: classes_[argmax] (binary: 1 - p < p exactly when p > 0.5, scikit-learn's threshold)
        table, label_elem = _label_tensor(onnx, classes, "classes")
        g.initializers.append(table)
        label = g.op("Gather", "classes", g.op("ArgMax", proba, axis=1, keepdims=0), axis=0)
        label_shape = ["batch"]
    g.output(label, "label")
    g.output(proba, "probabilities")
    doc += f"{kind} classifier, outputs label = predict(X) and probabilities = predict_proba(X)"
    return (g, name, [("X", elem, ["batch", n_in])],
            [("label", label_elem, label_shape), ("probabilities", elem, ["batch", n_classes])], doc)


def _model_proto(model):
    """The onnx.ModelProto of model, checked with onnx.checker (full check)."""
    build = _exporter(model)
    onnx = _onnx()
    g, name, inputs, outputs, doc = build(model, onnx)
    graph = onnx.helper.make_graph(
        g.nodes, name,
        [onnx.helper.make_tensor_value_info(*spec) for spec in inputs],
        [onnx.helper.make_tensor_value_info(*spec) for spec in outputs],
        initializer=g.initializers,
    )
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="fastnn", producer_version=__version__, doc_string=doc)
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model, path) -> None:
    """Write `model` (a fastnn Sequential or a fitted MLP estimator) to `path` as an ONNX model.

    For a Sequential the ONNX model computes model's inference function (eval mode, whatever mode
    model is in: Dropout is left out) for any batch size: input "x" (batch, in_features), output "y"
    (batch, out_features), in the model's dtype. For a fitted MLPClassifier/MLPRegressor (fastnn.sklearn's
    or scikit-learn's) it computes predict and predict_proba with skl2onnx's interface: input "X",
    outputs "label" and "probabilities" (classifier) or "variable" (regressor); see the module docstring.
    The write is atomic (an existing file at `path` is replaced only by a complete file). Raises
    TypeError if `model` is neither, ValueError for an unfitted estimator or one whose fitted
    attributes have no export,
    TypeError/ValueError for a path that is not a str/PathLike, is empty, holds a NUL character or
    names a directory (FileNotFoundError if its directory does not exist, as save_model does), and
    ImportError if the onnx package is not installed (pip install "fastnn[onnx]").
    """
    _exporter(model)
    p = _fspath(path)
    data = _model_proto(model).SerializeToString()
    _atomic_write(p, lambda f: f.write(data))
