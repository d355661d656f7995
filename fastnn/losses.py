"""Loss functions with PyTorch's names, keywords, defaults and numerics (docs/numerics.md section 2).

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

#: id(model output array) -> its _OutputTag. Entries of freed arrays stay until the next prune (when the
#: dict has doubled since the last one): a weakref callback per output cost more than the rest of model(x).
_OUTPUTS: dict = {}
_PRUNE_MIN = 64
_prune_at = _PRUNE_MIN


#: A tag: (weak reference to one array returned by model(x), weak reference to the model), that forward pass.
#: The model keeps the tag of its latest forward pass (``model._out_tag``): a LossValue's backward() checks
#: that its tag is still the model's latest, since the model's buffers hold only that pass.
_OutputTag = tuple


def _prune() -> None:
    """Drop the entries whose array was freed (a stale entry is harmless: _output_tag checks its referent)."""
    global _prune_at
    for key, tag in list(_OUTPUTS.items()):   # list(): one atomic copy under the GIL
        if tag[0]() is None and _OUTPUTS.get(key) is tag:
            _OUTPUTS.pop(key, None)
    _prune_at = max(_PRUNE_MIN, 2 * len(_OUTPUTS))


def _tag_output(out: np.ndarray, model_ref) -> _OutputTag:
    """Record `out` as the output of the forward pass just run by the model `model_ref` (a weakref)."""
    tag = (weakref.ref(out), model_ref)
    _OUTPUTS[id(out)] = tag
    if len(_OUTPUTS) >= _prune_at:
        _prune()
    return tag


def _output_tag(a) -> _OutputTag | None:
    """The tag of `a` if `a` is an array returned by model(x) (and still alive), else None."""
    tag = _OUTPUTS.get(id(a))
    return tag if tag is not None and tag[0]() is a else None


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
                "computed on an array that is not a model's output (a plain array, a slice or copy of one, or an "
                "output computed under fnn.no_grad()); "
                "call model.backward(loss_fn.backward()) for the model that should receive the gradient")
        if self._done:
            raise RuntimeError(
                "loss.backward() already ran for this loss value (as in PyTorch, the graph is used once); compute "
                "the loss again from a new model(x), or pass retain_graph=True to the first backward() to add the "
                "gradients again")
        model = tag[1]()
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
        model = target._tag[1]() if target._tag is not None else None
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

    def _reduce(self, per, g, grad_out, loss_out, grad_up) -> float:
        """The reduction of a loss computed in NumPy: per-element losses `per` and d per / d x `g` (both flat,
        g scaled in place) -> grad_out (and loss_out for 'none'); returns the loss ('none': its sum)."""
        if self.reduction == "none":
            _view(loss_out, -1)[...] = per
            if grad_up is not None:
                g *= _view(grad_up, -1)
            _view(grad_out, -1)[...] = g
            return float(per.sum(dtype=np.float64))
        n = per.size
        if self.reduction == "mean":
            g *= g.dtype.type(1.0 / n) if n else 0
        _view(grad_out, -1)[...] = g
        total = float(per.sum(dtype=np.float64))
        return total / n if self.reduction == "mean" else total


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


# ------------------------------------------------------------------------------------------
# Keras's losses (appended: issue 12). Two parts:
#
# - the Keras formulas on probabilities, in the PyTorch-style protocol above (loss_fn(y_pred, y),
#   registered under Keras's names for compile): KerasBCELoss, KerasCrossEntropyLoss,
#   KerasSparseCrossEntropyLoss, and L1Loss (mean absolute error). They run in NumPy (plan_kind None:
#   the compiled step runs them from Python between its two plan calls);
# - Keras's loss classes (BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
#   MeanSquaredError, MeanAbsoluteError) with Keras's call order loss(y_true, y_pred) and from_logits
#   meaning. Each delegates to one PyTorch-style loss (``.loss``): from_logits=True to the fused
#   logits kernels (BCEWithLogitsLoss, CrossEntropyLoss), False to the Keras formulas; compile() uses
#   that delegate, and whatever the delegate's call returns is returned as it is.
#
# Keras's probability formulas (keras/src/backend/*/nn.py): p is clipped to [eps, 1 - eps], eps = 1e-7;
# categorical losses first divide each row by its sum; the clipped entries get no gradient.
# ------------------------------------------------------------------------------------------

#: Keras's backend epsilon, the clip of probabilities in its crossentropies
KERAS_EPSILON = 1e-7


def _reduce_rows(self, per, gper, count, grad_out, loss_out, grad_up) -> float:
    """Reduce per-row losses `per` (N,) with per-row gradients `gper` (N, ...) into the protocol's outputs."""
    if self.reduction == "none":
        loss_out[...] = per.reshape(loss_out.shape)
        if grad_up is not None:
            gper *= grad_up.reshape((-1,) + (1,) * (gper.ndim - 1))
        grad_out[...] = gper.reshape(grad_out.shape)
        return float(per.sum(dtype=np.float64))
    total = float(per.sum(dtype=np.float64))
    if self.reduction == "mean":
        scale = 1.0 / count if count else np.nan
        gper *= gper.dtype.type(scale) if count else 0
        total = total * scale if count else np.nan
    grad_out[...] = gper.reshape(grad_out.shape)
    return total


class L1Loss(_ElementwiseLoss):
    """Mean absolute error, as torch.nn.L1Loss: l = |y_pred - y|, gradient sign(y_pred - y) (0 where equal).

    Keras's "mae" / "mean_absolute_error" (a mean over the columns, then over the rows: the same mean).
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction)

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        d = _view(x, -1) - _view(t, -1)
        g = np.sign(d)
        return self._reduce(np.abs(d), g, grad_out, loss_out, grad_up)


class KerasBCELoss(_ElementwiseLoss):
    """Keras's binary_crossentropy on probabilities: p clipped to [1e-7, 1 - 1e-7], then
    -(y log p + (1 - y) log(1 - p)); 'mean' over every element (Keras: over the columns, then the rows).

    The model must end in a sigmoid. Compared with BCELoss (torch's, logs clamped at -100) it differs
    only where p is within 1e-7 of 0 or 1, where Keras's clip gives no gradient.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction)

    def _prepare(self, y_pred, y):
        x, t = super()._prepare(y_pred, y)
        V.check_in_range(x, "y_pred", 0.0, 1.0, " (binary_crossentropy takes probabilities: end the model in a "
                         "sigmoid, or use BinaryCrossentropy(from_logits=True) for logits)")
        V.check_in_range(t, "y", 0.0, 1.0, " (binary_crossentropy targets are 0/1 labels or probabilities)")
        return x, t

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        eps = x.dtype.type(KERAS_EPSILON)
        one = x.dtype.type(1)
        xf, tf = _view(x, -1), _view(t, -1)
        p = np.clip(xf, eps, one - eps)
        per = -(tf * np.log(p) + (one - tf) * np.log(one - p))
        g = (one - tf) / (one - p) - tf / p
        g[(xf < eps) | (xf > one - eps)] = 0
        return self._reduce(per, g, grad_out, loss_out, grad_up)


class _KerasCE(_ClassLoss):
    """Keras's categorical crossentropy on probabilities: each row divided by its sum, clipped to
    [1e-7, 1 - 1e-7], then -sum_j y_j log p_j per row; 'mean' divides by the number of rows."""

    def __init__(self, reduction: str = "mean"):
        super().__init__(None, -100, reduction)

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        C = x.shape[-1]
        x2 = _view(x, (-1, C))
        dt = x2.dtype.type
        eps, one = dt(KERAS_EPSILON), dt(1)
        s = x2.sum(axis=1, keepdims=True)
        q = x2 / s
        qc = np.clip(q, eps, one - eps)
        if t.dtype.kind == "i":
            labels = _view(t, -1)
            kept = labels != self.ignore_index
            rows = np.flatnonzero(kept)
            target = np.zeros_like(x2)
            target[rows, labels[rows]] = one
            count = int(rows.size)
        else:
            target = _view(t, (-1, C))
            count = x2.shape[0]
        per = -(target * np.log(qc)).sum(axis=1)
        gq = -target / qc
        gq[(q < eps) | (q > one - eps)] = 0
        # through q = x / s: d/dx_k = (gq_k - sum_j gq_j q_j) / s
        gper = (gq - (gq * q).sum(axis=1, keepdims=True)) / s
        return _reduce_rows(self, per, gper, count, _view(grad_out, (-1, C)),
                            _view(loss_out, -1), _view(grad_up, -1))


class KerasCrossEntropyLoss(_KerasCE):
    """Keras's categorical_crossentropy on probabilities (the model ends in a softmax): y one-hot or
    probability rows of y_pred's shape (integer one-hot rows are converted)."""

    _probability_targets = True

    def _prepare(self, y_pred, y):
        y_arr = np.asarray(y)
        if y_arr.ndim == 1 and np.ndim(y_pred) == 2:
            raise ValueError(f"y must be one-hot rows of y_pred's shape {np.shape(y_pred)} for "
                             f"categorical_crossentropy, got shape {y_arr.shape}; for class indices use "
                             "sparse_categorical_crossentropy")
        if y_arr.dtype.kind in "biu":
            y_arr = y_arr.astype(np.float64)
        x, t = super()._prepare(y_pred, y_arr)
        V.check_in_range(x, "y_pred", 0.0, 1.0, " (categorical_crossentropy takes probabilities: end the model in "
                         "a softmax, or use CategoricalCrossentropy(from_logits=True) for logits)")
        return x, t


class KerasSparseCrossEntropyLoss(_KerasCE):
    """Keras's sparse_categorical_crossentropy on probabilities (the model ends in a softmax): y class
    indices (N,) (or (N, 1))."""

    def _prepare(self, y_pred, y):
        y_arr = np.asarray(y)
        if y_arr.ndim == 2 and y_arr.shape[1] == 1 and np.ndim(y_pred) == 2:
            y_arr = y_arr[:, 0]
        if y_arr.ndim == 2:
            raise ValueError(f"y must be class indices ({y_arr.shape[0]},) for sparse_categorical_crossentropy, got "
                             f"shape {y_arr.shape}; for one-hot rows use categorical_crossentropy")
        x, t = super()._prepare(y_pred, y_arr)
        V.check_in_range(x, "y_pred", 0.0, 1.0, " (sparse_categorical_crossentropy takes probabilities: end the "
                         "model in a softmax, or use SparseCategoricalCrossentropy(from_logits=True) for logits)")
        return x, t


LOSSES.update({
    "l1": L1Loss,
    "mean_squared_error": MSELoss,
    "mean_absolute_error": L1Loss, "mae": L1Loss,
    "binary_crossentropy": KerasBCELoss,
    "categorical_crossentropy": KerasCrossEntropyLoss,
    "sparse_categorical_crossentropy": KerasSparseCrossEntropyLoss,
})

_KERAS_REDUCTIONS = {"sum_over_batch_size": "mean", "sum": "sum", None: "none", "none": "none"}


class KerasLoss:
    """Base of Keras's loss classes: loss(y_true, y_pred) (Keras's order), delegating to ``self.loss``,
    a PyTorch-style fastnn loss (what compile() runs). reduction: "sum_over_batch_size" (the default),
    "sum" or None ("none")."""

    _elementwise = False   # Keras reduces these over the columns first: only the default reduction maps

    def __init__(self, reduction="sum_over_batch_size", name=None):
        key = reduction.lower() if isinstance(reduction, str) else reduction
        if key not in _KERAS_REDUCTIONS:
            raise ValueError(f"reduction must be 'sum_over_batch_size', 'sum' or None, got {reduction!r}")
        if self._elementwise and key != "sum_over_batch_size":
            raise ValueError(f"{type(self).__name__} supports reduction='sum_over_batch_size' only (Keras first "
                             f"averages over the columns); got {reduction!r}: for other reductions use the "
                             f"PyTorch-style {type(self._make('mean')).__name__}(reduction=...)")
        self.reduction = reduction
        self.name = name or _snake(type(self).__name__)
        self.loss = self._make(_KERAS_REDUCTIONS[key])

    def _make(self, reduction: str) -> _Loss:
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss of y_pred against y_true (Keras's order: targets first)."""
        if _output_tag(y_pred) is None and _output_tag(y_true) is not None:   # PyTorch's order given to a Keras loss
            raise ValueError(
                f"{type(self).__name__}(y_true, y_pred) takes the targets first (Keras's order: "
                f"loss_fn(y_true, y_pred)), but the first argument is a model's output and the second is not: "
                f"this looks like PyTorch's order loss_fn(y_pred, y_true), which would send the gradient to the "
                f"targets. Write loss_fn(y, model(x)), or use the PyTorch-style {type(self.loss).__name__}")
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported by fastnn's losses; weight classes with the "
                             "PyTorch-style losses' weight= instead")
        return self.loss(y_pred, y_true)

    def backward(self, grad_output=None):
        """d loss / d y_pred of the last call (as the PyTorch-style losses' backward)."""
        return self.loss.backward(grad_output)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r}, name={self.name!r})"


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


class _FromLogits(KerasLoss):
    _logits: type
    _probs: type

    def __init__(self, from_logits: bool = False, reduction="sum_over_batch_size", name=None):
        self.from_logits = V.check_bool(from_logits, "from_logits")
        super().__init__(reduction, name)

    def _make(self, reduction):
        return (self._logits if self.from_logits else self._probs)(reduction=reduction)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from_logits={self.from_logits}, reduction={self.reduction!r})"


class BinaryCrossentropy(_FromLogits):
    """keras.losses.BinaryCrossentropy: from_logits=False takes probabilities (a sigmoid output, Keras's
    clipped formula, KerasBCELoss), True takes logits (BCEWithLogitsLoss, fused and stable)."""

    _elementwise = True
    _logits, _probs = BCEWithLogitsLoss, KerasBCELoss


class CategoricalCrossentropy(_FromLogits):
    """keras.losses.CategoricalCrossentropy: one-hot (or probability) targets; from_logits=False takes
    probabilities (a softmax output, KerasCrossEntropyLoss), True takes logits (CrossEntropyLoss)."""

    _logits, _probs = CrossEntropyLoss, KerasCrossEntropyLoss


class SparseCategoricalCrossentropy(_FromLogits):
    """keras.losses.SparseCategoricalCrossentropy: class-index targets; from_logits=False takes
    probabilities (a softmax output, KerasSparseCrossEntropyLoss), True takes logits (CrossEntropyLoss)."""

    _logits, _probs = CrossEntropyLoss, KerasSparseCrossEntropyLoss


class MeanSquaredError(KerasLoss):
    """keras.losses.MeanSquaredError (MSELoss)."""

    _elementwise = True

    def _make(self, reduction):
        return MSELoss(reduction)


class MeanAbsoluteError(KerasLoss):
    """keras.losses.MeanAbsoluteError (L1Loss)."""

    _elementwise = True

    def _make(self, reduction):
        return L1Loss(reduction)


__all__ += ["L1Loss", "KerasBCELoss", "KerasCrossEntropyLoss", "KerasSparseCrossEntropyLoss", "KerasLoss",
            "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "MeanSquaredError",
            "MeanAbsoluteError"]


# ------------------------------------------------------------------------------------------
# scikit-learn's MLP loss (issue 10): the engine's loss for fastnn.sklearn's estimators
# ------------------------------------------------------------------------------------------

class SklearnMLPLoss(_Loss):
    """scikit-learn 1.9's MLP loss on the last layer's pre-activation z (docs/numerics.md section 11.1).

    The output activation ``out_activation`` applied to z, then the loss sklearn pairs with it:
    "identity" -> squared_loss, "logistic" -> binary_log_loss, "softmax" -> log_loss, "exp" -> poisson_loss
    (sklearn.neural_network._base: its clipping of probabilities to [eps, 1 - eps] of the dtype, its
    averaging), plus ``0.5 * alpha * sum ||W||^2 / sum(w)`` over the model's Dense weights.

    y: (n, k) targets (one-hot rows for softmax, 0/1 for logistic, values for identity/exp) or, with
    ``weighted=True``, (n, k + 1): the last column holds each row's sample weight w.

    Gradient for z: ``(act(z) - y) * w / sum(w)``, what sklearn's ``_backprop`` backpropagates. For
    squared_loss with k > 1 outputs that is k times the gradient of the reported loss (sklearn's quirk,
    reproduced on purpose). The L2 term (alpha) needs the weights: the compiled plan applies it (the loss
    value's term and ``alpha / sum(w) * W`` added to every Dense weight's gradient, biases none), so a loss
    with alpha != 0 runs only on the engine (``Engine.train_step``/``train_batches``/``loss_grad``, as
    fastnn.sklearn's estimators do); calling it on arrays (``loss(z, y)``) raises ValueError then.

    Not in ``LOSSES`` (nor in ``__all__``, the model file's allow-list): that registry holds the losses
    ``compile(loss=...)`` and fastnn.plot build by name without arguments; this one needs its out_activation
    and is bound to an estimator's alpha and weights column (fastnn.sklearn pickles, it does not save .fnn files).
    The engine knows it by its ``plan_kind`` all the same (fastnn.engine._PLAN_LOSSES).
    """

    plan_kind = LossKind.SKLEARN_MLP

    def __init__(self, out_activation: str, alpha: float = 0.0, weighted: bool = False):
        super().__init__("mean")
        self.out_activation = V.check_choice(out_activation, "out_activation", tuple(K.SK_OUT_ACTIVATIONS))
        self.alpha = V.check_float(alpha, "alpha", low=0)
        self.weighted = V.check_bool(weighted, "weighted")
        self._out_code = K.SK_OUT_ACTIVATIONS[self.out_activation]

    def __repr__(self) -> str:
        return f"SklearnMLPLoss(out_activation={self.out_activation!r}, alpha={self.alpha!r}, weighted={self.weighted})"

    def _prepare(self, y_pred, y):
        dtype = _compute_dtype(y_pred)
        x = V.as_float_array(y_pred, "y_pred", dtype, ndim=2)
        t = V.as_float_array(y, "y", dtype, ndim=2)
        cols = x.shape[1] + (1 if self.weighted else 0)
        if t.shape != (x.shape[0], cols):
            extra = " (the targets, then the sample weight column: weighted=True)" if self.weighted else ""
            raise ValueError(f"y must have shape ({x.shape[0]}, {cols}){extra} for y_pred of shape {x.shape}, "
                             f"got {t.shape}")
        return x, t

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None) -> float:
        if self.alpha != 0:
            raise ValueError(f"SklearnMLPLoss with alpha={self.alpha!r} (an L2 term on the weights) runs only on the "
                             "compiled engine (Engine.train_step, train_batches, loss_grad; fastnn.sklearn's "
                             "estimators use it): use alpha=0 to call it on arrays")
        value, _ = K.sklearn_mlp_loss(x, t, grad_out, self._out_code, self.weighted)
        return value

