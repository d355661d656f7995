"""Loss functions with PyTorch's names, keywords, defaults and numerics (docs/numerics.md section 2).

Protocol (the PyTorch-style loop)::

    loss_fn = CrossEntropyLoss()
    loss = loss_fn(y_pred, y)     # a float (an ndarray for reduction='none'); stores the gradient
    g = loss_fn.backward()        # d loss / d y_pred: an ndarray of y_pred's shape and dtype

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

import numpy as np

from . import _validation as V
from ._kernels import _losses as K
from ._kernels._plan import LossKind

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
        """The loss of y_pred against y: a float, or an ndarray for reduction='none'.

        The gradient d loss / d y_pred is computed in the same pass; ``backward()`` returns it.
        """
        self._check_memory(y_pred)
        x, t = self._prepare(y_pred, y)
        grad = np.empty_like(x)
        loss_out = np.empty(self._loss_shape(x), dtype=x.dtype) if self.reduction == "none" else None
        value = self._forward_backward(x, t, grad, loss_out)
        self._grad = grad
        self._saved = (x, t) if self.reduction == "none" else None
        return value if loss_out is None else loss_out

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
