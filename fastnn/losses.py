"""Loss functions with PyTorch's names, keywords, defaults and numerics (NUMERICS.md section 2).

Protocol (the PyTorch-style loop)::

    loss_fn = CrossEntropyLoss()
    loss = loss_fn(model(x), y)   # a LossValue (a float; an ndarray for reduction='none'); stores the gradient
    loss.backward()               # backpropagates into the model that produced the prediction, or:
    g = loss_fn.backward()        # d loss / d y_pred: an ndarray of y_pred's shape and dtype
    model.backward(g)

Model outputs are tagged (``_tag_output``, called by ``Sequential.forward``): a weak reference to the
returned array, keyed by its id, that names the model and that forward pass. The loss looks y_pred up
there to give its LossValue a working ``backward()``, and refuses Keras's argument order
``loss_fn(y, model(x))`` (y_pred not a model output, y one), which would otherwise train uphill.

The loss value and its gradient come from one fused compiled pass (fastnn._kernels._losses);
cross-entropy is fused with its softmax, so a model ends in raw logits. The computation dtype is
y_pred's when it is float32/float64 and float64 otherwise; targets and weights are converted to
it once. Arguments are validated (fastnn._validation) before any kernel runs.

For the model's fast path every loss also has ``_prepare(y_pred, y) -> (x, t)`` (validate and
convert once) and ``_forward_backward(x, t, grad_out, loss_out=None, grad_up=None) -> float``,
which runs the kernel on already-prepared arrays without checking them again.

``LOSSES`` (name -> class) is the one list of losses: ``compile(loss=...)``, fastnn.plot and the model
file's allow-list read it. Each class carries ``plan_kind``, the compiled plan's kernel for it
(fastnn._kernels._plan.LossKind, None: the plan runs it from Python), and ``row_wise``.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import _validation as V
from ._kernels import _losses as K
from ._kernels._plan import LossKind
from .parameter import Parameter

# LossValue and GradientTape are public too (fastnn.GradientTape); __all__ lists the losses only (the allow-list)
__all__ = ["MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss"]

_REDUCTIONS = ("mean", "sum", "none")
_INT64 = (-(2**63), 2**63 - 1)


def _compute_dtype(y_pred) -> np.dtype:
    """y_pred's dtype if it is float32/float64 (in native byte order; '>f4' -> float32), float64 otherwise."""
    if isinstance(y_pred, np.ndarray):
        native = V.native_float_dtype(y_pred.dtype)
        if native is not None:
            return native
    return np.dtype(np.float64)


def _view(a: np.ndarray | None, shape) -> np.ndarray | None:
    """A reshaped view of a C-contiguous array (never a silent copy of an output buffer)."""
    if a is None:
        return None
    if not a.flags.c_contiguous:
        raise ValueError("loss buffers must be C-contiguous")
    return a.reshape(shape)


def _optional_weight(weight, name: str, ndim=None) -> np.ndarray | None:
    """A read-only float64 copy of a constructor weight (None stays None)."""
    if weight is None:
        return None
    w = np.array(V.as_float_array(weight, name, np.float64, ndim=ndim, finite=True))
    w.setflags(write=False)
    return w


# ------------------------------------------------------------------------------------------
# model outputs and loss values: what makes loss.backward() work
# ------------------------------------------------------------------------------------------

#: id(model output array) -> its _OutputTag; an entry leaves when its array is freed
_OUTPUTS: dict = {}


def _forget(tag) -> None:
    """Weakref callback: the tagged output array was freed (drop the entry if it is still this tag's)."""
    if _OUTPUTS.get(tag.key) is tag:
        _OUTPUTS.pop(tag.key, None)


class _OutputTag(weakref.ref):
    """A weak reference to one array returned by model(x), naming the model (weakly) and that forward pass.

    The model keeps the tag of its latest forward pass (``model._out_tag``): a LossValue's backward()
    checks that its tag is still the model's latest, since the model's buffers hold only that pass."""

    __slots__ = ("key", "model")

    # weakref.ref takes the referent and the callback in __new__; its __init__ (inherited) only parses
    # its arguments. No Python-level __init__ and no super(): a tag is made on every model(x).
    def __new__(cls, out, model_ref):
        self = weakref.ref.__new__(cls, out, _forget)
        self.key = id(out)
        self.model = model_ref
        return self


def _tag_output(out: np.ndarray, model_ref) -> _OutputTag:
    """Record `out` as the output of the forward pass just run by the model `model_ref` (a weakref)."""
    tag = _OutputTag(out, model_ref)
    _OUTPUTS[tag.key] = tag
    return tag


def _output_tag(a) -> _OutputTag | None:
    """The tag of `a` if `a` is an array returned by model(x) (and still alive), else None."""
    tag = _OUTPUTS.get(id(a))
    return tag if tag is not None and tag() is a else None


class LossValue(float):
    """The value of a loss, as returned by ``loss_fn(y_pred, y)``: a float with PyTorch's ``backward()``.

    It is a float everywhere (``float(loss)``, ``loss.item()``, ``f"{loss:.4f}"``, comparisons;
    arithmetic gives plain floats; it pickles and copies as a plain float). ``loss.backward()``
    backpropagates d loss / d y_pred into the model whose ``model(x)`` produced y_pred (exactly
    ``model.backward(loss_fn.backward())``): gradients accumulate into ``p.grad``.

    It holds the gradient array (which its loss function holds anyway) until the loss function's next
    call, and a weak reference to the prediction's model, so a list of loss values keeps no batch alive.
    ``backward()`` raises RuntimeError, saying what to do, when it cannot give PyTorch's result:
    y_pred was not a model's output (a plain array, a slice or a copy of one), another forward pass
    of the model ran since (the model keeps one pass), the loss function was called again since, or
    it already ran for this value (as PyTorch's freed graph; ``retain_graph=True`` allows another,
    which adds the gradients again).
    """

    __slots__ = ("_grad", "_tag", "_done")

    def __new__(cls, value, grad=None, tag=None):
        self = float.__new__(cls, value)   # (not super(): one is made per loss call)
        self._grad = grad   # dropped (None) by the loss function's next call
        self._tag = tag
        self._done = False
        return self

    def item(self) -> float:
        """The value as a plain Python float (as torch's ``Tensor.item()``)."""
        return float(self)

    def detach(self) -> float:
        """The value as a plain float, without backward()."""
        return float(self)

    def backward(self, retain_graph: bool = False) -> None:
        """Backpropagate this loss into the model that produced the prediction (see the class docstring)."""
        tag = self._tag
        if tag is None:
            raise RuntimeError(
                "loss.backward() needs a prediction that came from a model: loss_fn(model(x), y). This loss was "
                "computed on an array that is not a model's output (a plain array, or a slice or copy of one); "
                "call model.backward(loss_fn.backward()) for the model that should receive the gradient")
        if self._done:
            raise RuntimeError(
                "loss.backward() already ran for this loss value (as in PyTorch, the graph is used once); compute "
                "the loss again from a new model(x), or pass retain_graph=True to the first backward() to add the "
                "gradients again")
        model = tag.model()
        if model is None:
            raise RuntimeError("loss.backward(): the model that produced the prediction no longer exists")
        if model._out_tag is not tag:
            raise RuntimeError(
                "loss.backward(): another forward pass of the model ran after the one this loss was computed on, "
                "and a fastnn model keeps only its latest pass; call model(x), loss_fn(...), loss.backward() in "
                "that order for each batch")
        grad = self._grad
        if grad is None:
            raise RuntimeError(
                "loss.backward(): the loss function was called again after computing this value, which replaced "
                "its gradient; call loss.backward() before the next loss_fn(...) call")
        model.backward(grad)
        if not retain_graph:
            self._done = True

    def __reduce__(self):
        return (float, (float(self),))


class GradientTape:
    """TensorFlow's custom-training-loop shape over fastnn's LossValue::

        with fnn.GradientTape() as tape:
            logits = model(x, training=True)
            loss_value = loss_fn(y, logits)          # a Keras-ordered loss; PyTorch's: loss_fn(logits, y)
        grads = tape.gradient(loss_value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    Nothing is recorded while the block runs (a fastnn model keeps its latest forward pass anyway);
    ``gradient`` backpropagates the loss value into the model that produced its prediction and
    returns new arrays: d loss / d variable for each variable (a list for a list, one array for one
    Parameter; None for a variable of another model, as TensorFlow's unconnected gradients). It leaves
    the parameters' ``.grad`` as it found them. As TensorFlow, a tape computes one set of gradients
    unless ``persistent=True``.
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True):
        self.persistent = V.check_bool(persistent, "persistent")
        self._used = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def watch(self, tensor) -> None:
        """Accepted for TensorFlow code; every model parameter is watched anyway."""

    def gradient(self, target, sources):
        """d target / d each source: see the class docstring."""
        if not isinstance(target, LossValue):
            raise TypeError(f"tape.gradient(target, sources): target must be the value a fastnn loss returned "
                            f"(loss_fn(...) on model(x)), got {type(target).__name__}")
        if self._used and not self.persistent:
            raise RuntimeError("a GradientTape computes one set of gradients (as TensorFlow's); use "
                               "GradientTape(persistent=True) to call gradient() more than once")
        one = isinstance(sources, Parameter)
        items = [sources] if one else list(sources)
        for i, p in enumerate(items):
            if not isinstance(p, Parameter):
                raise TypeError(f"tape.gradient: sources[{i}] must be a fastnn Parameter (from "
                                f"model.trainable_variables), got {type(p).__name__}")
        model = target._tag.model() if target._tag is not None else None
        if model is None:   # backward() says what went wrong
            target.backward(retain_graph=True)
        params = model._arena.params
        flags = [p.has_grad for p in params]
        saved = model._arena.grad.copy() if any(flags) else None
        for p in params:
            p.has_grad = False
        try:
            target.backward(retain_graph=True)
            mine = set(params)
            grads = [p._grad.copy() if p in mine and p.has_grad else None for p in items]
        finally:
            if saved is not None:
                model._arena.grad[...] = saved
            for p, flag in zip(params, flags):
                p.has_grad = flag
        self._used = True
        return grads[0] if one else grads


def _order_error(loss) -> ValueError:
    name = type(loss).__name__
    return ValueError(
        f"{name}(y_pred, y) takes the model's output first (PyTorch's order: loss_fn(y_pred, y_true)), but "
        f"the second argument is a model's output and the first is not: this looks like Keras's order "
        f"loss_fn(y_true, y_pred), which would send the gradient to the targets and train uphill. Write "
        f"loss_fn(model(x), y); for Keras's order use the Keras-named losses or model.compile(loss=...)")


class _Loss:
    """Shared protocol: validate -> one fused kernel call -> stored gradient -> backward()."""

    _full_size_weights: tuple = ()   # constructor arrays broadcast to y_pred's full shape per call
    #: The compiled plan's kernel for this loss (fastnn._kernels._plan.LossKind), or None.
    plan_kind: LossKind | None = None
    #: One loss per row of (N, C) scores: weights are per class (C,), targets one class (or row) per sample.
    row_wise = False

    def __init__(self, reduction: str = "mean"):
        self.reduction = V.check_choice(reduction, "reduction", _REDUCTIONS)
        self._cache: dict = {}
        self._grad: np.ndarray | None = None
        self._saved: tuple | None = None

    # -- the subclass interface -------------------------------------------------------------
    def _prepare(self, y_pred, y) -> tuple[np.ndarray, np.ndarray]:
        """Validate and convert (y_pred, y) into C-contiguous arrays in the computation dtype."""
        raise NotImplementedError

    def _loss_shape(self, x: np.ndarray) -> tuple:
        """Shape of the reduction='none' loss for a prepared input x."""
        return x.shape

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        """Run the fused kernel on prepared arrays (no validation; the model's fast path).

        x, t: as returned by ``_prepare``. grad_out: C-contiguous, x's shape and dtype; receives
        d loss / d x. For reduction='none', loss_out (the loss's shape) receives the unreduced loss
        and grad_up (same shape, None = ones) multiplies the gradient. Returns the reduced loss
        ('none': the sum of loss_out).
        """
        raise NotImplementedError

    # -- public protocol --------------------------------------------------------------------
    def __call__(self, y_pred, y):
        """The loss of y_pred against y: a LossValue (a float), or an ndarray for reduction='none'.

        The gradient d loss / d y_pred is computed in the same pass; ``backward()`` returns it, and
        the LossValue's ``backward()`` sends it into the model that produced y_pred. PyTorch's order:
        if y is a model's output and y_pred is not (Keras's ``loss_fn(y_true, y_pred)``), ValueError.
        """
        tag = _output_tag(y_pred)
        if tag is None and _output_tag(y) is not None:
            raise _order_error(self)
        self._check_memory(y_pred)
        x, t = self._prepare(y_pred, y)
        grad = np.empty_like(x)
        loss_out = np.empty(self._loss_shape(x), dtype=x.dtype) if self.reduction == "none" else None
        value = self._forward_backward(x, t, grad, loss_out)
        self._grad = grad
        self._saved = (x, t) if self.reduction == "none" else None
        if loss_out is not None:
            return loss_out
        prev = self.__dict__.get("_value")
        if prev.__class__ is LossValue:
            prev._grad = None   # that value's gradient is no longer the loss function's: let it go
        self._value = value = LossValue(value, grad, tag)
        return value

    forward = __call__

    def backward(self, grad_output=None) -> np.ndarray:
        """d loss / d y_pred of the last call, times grad_output.

        grad_output: for 'mean'/'sum' a scalar multiplier (default 1); for 'none' an array of
        the loss's shape (default ones). Returns an ndarray of y_pred's shape and the
        computation dtype (a new array per call of the loss; not copied when grad_output is None).
        """
        if self._grad is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() was called before the loss was computed; "
                "call loss_fn(y_pred, y) first"
            )
        if grad_output is None:
            return self._grad
        if self.reduction == "none":
            x, t = self._saved
            g = V.as_float_array(grad_output, "grad_output", x.dtype, shape=self._loss_shape(x))
            grad = np.empty_like(x)
            self._forward_backward(x, t, grad, np.empty_like(g), g)
            return grad
        if isinstance(grad_output, np.ndarray) and grad_output.ndim == 0:
            grad_output = grad_output.item()
        scale = V.check_float(grad_output, "grad_output")
        return self._grad * self._grad.dtype.type(scale)

    # -- helpers ----------------------------------------------------------------------------
    def _check_memory(self, y_pred) -> None:
        """Refuse (ValueError naming y_pred) a call whose arrays could never fit in memory, before any copy.

        A call holds y_pred in the computation dtype, its gradient, the loss per element for
        reduction='none' and the weights broadcast to y_pred's shape: arrays of y_pred's shape.
        (y and y_pred's own copies are checked again, each alone, where they are converted.)
        """
        shape = getattr(y_pred, "shape", None)
        if shape is None:   # a list or a scalar: as_float_array converts (and checks) it
            return
        arrays = 2 + (self.reduction == "none") + sum(
            getattr(self, "_" + w) is not None for w in self._full_size_weights)
        V.check_nbytes("y_pred", tuple(shape), _compute_dtype(y_pred), what="the loss's arrays", arrays=arrays)

    def _converted(self, name: str, dtype: np.dtype, shape=None) -> np.ndarray | None:
        """Constructor array ``self._<name>`` in `dtype`, broadcast to `shape` and contiguous.

        Cached per (name, dtype, shape): a model calls with one or two batch shapes, so the
        conversion happens once, not per batch.
        """
        arr = getattr(self, "_" + name)
        if arr is None:
            return None
        key = (name, dtype, shape)
        out = self._cache.get(key)
        if out is None:
            if len(self._cache) >= 8:
                self._cache.clear()
            out = np.ascontiguousarray(np.broadcast_to(arr, arr.shape if shape is None else shape), dtype=dtype)
            self._cache[key] = out
        return out


# ------------------------------------------------------------------------------------------
# element-wise losses: target and y_pred have the same shape
# ------------------------------------------------------------------------------------------

class _ElementwiseLoss(_Loss):
    _weight = None
    _pos_weight = None
    _full_size_weights = ("weight", "pos_weight")

    def _prepare(self, y_pred, y):
        dtype = _compute_dtype(y_pred)
        x = V.as_float_array(y_pred, "y_pred", dtype)
        t = V.as_float_array(y, "y", dtype)
        V.check_same_shape(t, "y", x, "y_pred")
        for name in ("weight", "pos_weight"):
            w = getattr(self, "_" + name)
            if w is not None:
                V.check_broadcastable(w, name, x.shape, "y_pred")
        return x, t


class MSELoss(_ElementwiseLoss):
    """Mean squared error: l = (y_pred - y)^2; 'mean' divides by the number of elements.

    Unlike torch, shapes must match exactly: (N, 1) against (N,) raises instead of broadcasting.
    """

    plan_kind = LossKind.MSE

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction)

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        return K.mse_loss(_view(x, -1), _view(t, -1), _view(grad_out, -1), self.reduction,
                          _view(loss_out, -1), _view(grad_up, -1))


class BCELoss(_ElementwiseLoss):
    """Binary cross-entropy on probabilities y_pred in [0, 1] and targets y in [0, 1] (logs clamped at -100).

    weight: optional, broadcast to y_pred's shape, multiplies each element ('mean' still
    divides by the number of elements).
    """

    plan_kind = LossKind.BCE

    def __init__(self, weight=None, reduction: str = "mean"):
        super().__init__(reduction)
        self._weight = _optional_weight(weight, "weight")

    @property
    def weight(self) -> np.ndarray | None:
        return self._weight

    def _prepare(self, y_pred, y):
        x, t = super()._prepare(y_pred, y)
        V.check_in_range(x, "y_pred", 0.0, 1.0,
                         " (BCELoss takes probabilities; use BCEWithLogitsLoss for logits)")
        V.check_in_range(t, "y", 0.0, 1.0, " (BCELoss targets are probabilities, as in torch)")
        return x, t

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        w = self._converted("weight", x.dtype, x.shape)
        return K.bce_loss(_view(x, -1), _view(t, -1), _view(grad_out, -1), _view(w, -1), self.reduction,
                          _view(loss_out, -1), _view(grad_up, -1))


class BCEWithLogitsLoss(_ElementwiseLoss):
    """Binary cross-entropy on logits (a sigmoid fused in, computed with a stable softplus).

    weight: optional, broadcast to y_pred's shape. pos_weight: optional, broadcast to y_pred's
    shape (typically (C,), along the last dim); it scales only the positive (y) term.
    """

    plan_kind = LossKind.BCE_LOGITS

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self._weight = _optional_weight(weight, "weight")
        self._pos_weight = _optional_weight(pos_weight, "pos_weight")

    @property
    def weight(self) -> np.ndarray | None:
        return self._weight

    @property
    def pos_weight(self) -> np.ndarray | None:
        return self._pos_weight

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        w = self._converted("weight", x.dtype, x.shape)
        pw = self._converted("pos_weight", x.dtype, x.shape)
        return K.bce_with_logits_loss(_view(x, -1), _view(t, -1), _view(grad_out, -1), _view(w, -1),
                                      _view(pw, -1), self.reduction, _view(loss_out, -1), _view(grad_up, -1))


# ------------------------------------------------------------------------------------------
# class losses: y_pred is (N, C) (or a single sample (C,)); one loss per row
# ------------------------------------------------------------------------------------------

class _ClassLoss(_Loss):
    _probability_targets = False
    row_wise = True

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        self._weight = _optional_weight(weight, "weight", ndim=1)
        self.ignore_index = V.check_int(ignore_index, "ignore_index", *_INT64)

    @property
    def weight(self) -> np.ndarray | None:
        return self._weight

    def _loss_shape(self, x):
        return x.shape[:-1]

    def _prepare(self, y_pred, y):
        dtype = _compute_dtype(y_pred)
        x = V.as_float_array(y_pred, "y_pred", dtype, ndim=(1, 2))
        C = x.shape[-1]
        if C == 0:
            raise ValueError(f"y_pred must have at least one class (a non-empty last dim), got shape {x.shape}")
        if self._weight is not None and self._weight.shape != (C,):
            raise ValueError(
                f"weight must have shape ({C},), one entry per class of y_pred {x.shape}, "
                f"got shape {self._weight.shape}"
            )
        y_arr = np.asarray(y)
        if y_arr.dtype.kind == "f" and y_arr.ndim == x.ndim:  # probability rows
            if not self._probability_targets:
                raise TypeError(
                    f"y must be integer class indices for {type(self).__name__} (probability targets "
                    f"are a CrossEntropyLoss feature), got {y_arr.dtype} array of shape {y_arr.shape}"
                )
            t = V.as_float_array(y_arr, "y", dtype)
            V.check_same_shape(t, "y", x, "y_pred")
            return x, t
        if x.ndim == 1:  # a single sample: one class index
            if y_arr.ndim != 0:
                raise ValueError(
                    f"y must be a single class index (0-d) for a 1-D y_pred of shape {x.shape}, "
                    f"got shape {y_arr.shape}"
                )
            return x, V.as_labels(y_arr.reshape(1), "y", 1, C, self.ignore_index).reshape(())
        return x, V.as_labels(y_arr, "y", x.shape[0], C, self.ignore_index)


class CrossEntropyLoss(_ClassLoss):
    """Cross-entropy from logits y_pred (N, C) (log_softmax fused in).

    y: class indices (N,) (integers in [0, C) or == ignore_index), or probability rows (N, C)
    (float, y_pred's shape; ignore_index does not apply). weight: (C,) class weights.
    'mean' divides by the sum of w[y_i] over non-ignored rows for class indices (all rows
    ignored: NaN loss, zero gradient) and by N for probability rows. label_smoothing in [0, 1].
    A single sample (C,) with a 0-d class index (or (C,) probabilities) is accepted too.
    """

    _probability_targets = True
    plan_kind = LossKind.CROSS_ENTROPY   # probability targets: CROSS_ENTROPY_PROB (fastnn.engine)

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(weight, ignore_index, reduction)
        self.label_smoothing = V.check_float(label_smoothing, "label_smoothing", 0.0, 1.0)

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        C = x.shape[-1]
        w = self._converted("weight", x.dtype)
        if t.dtype.kind == "i":
            return K.cross_entropy_loss(_view(x, (-1, C)), _view(t, -1), _view(grad_out, (-1, C)), w,
                                        self.ignore_index, self.label_smoothing, self.reduction,
                                        _view(loss_out, -1), _view(grad_up, -1))
        return K.cross_entropy_prob_loss(_view(x, (-1, C)), _view(t, (-1, C)), _view(grad_out, (-1, C)), w,
                                         self.label_smoothing, self.reduction,
                                         _view(loss_out, -1), _view(grad_up, -1))


class NLLLoss(_ClassLoss):
    """Negative log-likelihood of log-probabilities y_pred (N, C) and class indices y (N,).

    weight: (C,) class weights; rows with y == ignore_index count for nothing; 'mean'
    divides by the sum of w[y_i] over non-ignored rows.
    """

    plan_kind = LossKind.NLL

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        C = x.shape[-1]
        return K.nll_loss(_view(x, (-1, C)), _view(t, -1), _view(grad_out, (-1, C)),
                          self._converted("weight", x.dtype), self.ignore_index, self.reduction,
                          _view(loss_out, -1), _view(grad_up, -1))


#: Loss name -> class: the names ``compile(loss=...)`` and fastnn.plot accept (Keras-style).
LOSSES = {"mse": MSELoss, "bce": BCELoss, "bce_with_logits": BCEWithLogitsLoss, "cross_entropy": CrossEntropyLoss,
          "nll": NLLLoss}
