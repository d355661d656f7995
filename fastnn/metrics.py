"""Metrics for compile(metrics=[...]): Keras names and semantics, streamed over batches.

Names (as in Keras; logs and History use the name the user wrote):

    "accuracy" / "acc"                       which accuracy depends on the loss and targets (below)
    "binary_accuracy"                        y_pred > threshold (0.5, or logit 0 after bce_with_logits) == y
    "mae" / "mean_absolute_error"            mean |y_pred - y|
    "mse" / "mean_squared_error"             mean (y_pred - y)^2

"accuracy" follows Keras: class-index targets (cross_entropy, nll) compare the argmax of y_pred
with the index (rows equal to the loss's ignore_index are not counted); probability rows compare
the two argmaxes; bce compares y_pred > 0.5 with y and bce_with_logits compares the logit > 0; with
mse (and mae, l1) it is binary accuracy for one output column and the argmax comparison otherwise.
Keras's losses: binary_crossentropy compares y_pred > 0.5, categorical_crossentropy the two argmaxes,
sparse_categorical_crossentropy the argmax with the index (Keras 3 chooses by the shapes, which gives
the same for these losses).

A metric is a running, sample-weighted mean, as Keras's stateful metrics: ``update_state(y_pred,
y)`` adds one batch, ``result()`` is total / count, ``reset_state()`` starts over. Per-sample values
are means over the output columns, so a batch adds (sum of per-sample values, number of samples).
``update_batches(y_pred, y, size)`` adds consecutive batches of `size` rows at once (fit's compiled
epoch loop), with the same per-batch sums in the same order: the result is bit for bit that of
update_state per batch. The public methods check their inputs (ValueError/TypeError naming y_pred, y
or size); fit, which validated its data once, calls the trusted ``_add``/``_add_batches``. Scratch
buffers are reused.
"""

from __future__ import annotations

import math

import numpy as np

from . import _validation as V

__all__ = ["Metric", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
           "MeanAbsoluteError", "MeanSquaredError", "get",
           "canonical_name", "direction"]

_ALIASES = {
    "accuracy": "accuracy", "acc": "accuracy",
    "binary_accuracy": "binary_accuracy",
    "categorical_accuracy": "categorical_accuracy",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "mae": "mae", "mean_absolute_error": "mae",
    "mse": "mse", "mean_squared_error": "mse",
}
_DIRECTION = {"accuracy": "max", "binary_accuracy": "max", "categorical_accuracy": "max",
              "sparse_categorical_accuracy": "max", "mae": "min", "mse": "min"}


def canonical_name(name: str) -> str:
    """'acc' -> 'accuracy', 'mean_absolute_error' -> 'mae', ...; ValueError for an unknown name."""
    if not isinstance(name, str):
        raise TypeError(f"metrics must be metric names (strings), got {name!r}")
    key = _ALIASES.get(name.lower())
    if key is None:
        raise ValueError(f"metrics entries must be one of {', '.join(repr(k) for k in _ALIASES)}; got {name!r}")
    return key


def direction(name: str) -> str:
    """'max' for accuracies, 'min' for errors (a canonical or alias name)."""
    return _DIRECTION[canonical_name(name)]


class _Scratch:
    """Reusable work buffers, grown (never shrunk) to the largest batch seen."""

    def __init__(self):
        self._bufs: dict = {}

    def get(self, key, shape, dtype) -> np.ndarray:
        buf = self._bufs.get(key)
        if buf is None or buf.dtype != dtype or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0]:
            buf = self._bufs[key] = np.empty(shape, dtype)
        return buf[:shape[0]]


class Metric:
    """A running mean of per-sample values: update_state(y_pred, y), result(), reset_state()."""

    def __init__(self, name: str):
        self.name = name
        self._scratch = _Scratch()
        self.reset_state()

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0

    def result(self) -> float:
        return self.total / self.count if self.count else math.nan

    def update_state(self, y_pred, y) -> None:
        """Add one batch: y_pred (n, c) outputs, y targets of the same shape (or (n,) class indices for
        "accuracy")."""
        y_pred, y = self._check(y_pred, y)
        if len(y_pred):
            self._add(y_pred, y)

    def update_batches(self, y_pred, y, size) -> None:
        """update_state for each consecutive `size` rows of (y_pred, y) in turn (len(y_pred) a multiple of size)."""
        y_pred, y = self._check(y_pred, y)
        size = V.check_int(size, "size", low=1)
        if len(y_pred) % size:
            raise ValueError(f"size must divide the {len(y_pred)} rows of y_pred, got {size}")
        if len(y_pred):
            self._add_batches(y_pred, y, size)

    _class_indices = False   # whether y may be (n,) integer class indices

    def _check(self, y_pred, y):
        y_pred = V.as_float_array(y_pred, "y_pred", None, ndim=2)
        dtype = V.native_float_dtype(y_pred.dtype) or np.dtype(np.float64)
        y_pred = V.as_float_array(y_pred, "y_pred", dtype)
        if y_pred.shape[1] < 1:
            raise ValueError(f"y_pred must have at least one column, got shape {y_pred.shape}")
        arr = y if isinstance(y, np.ndarray) else np.asarray(y) if not isinstance(y, (str, bytes)) else None
        if arr is None or arr.dtype.kind not in "biuf":
            raise TypeError(f"y must be an array of real numbers, got {type(y).__name__}"
                            + (f" of dtype {arr.dtype}" if isinstance(arr, np.ndarray) else ""))
        if self._class_indices and arr.ndim == 1 and arr.dtype.kind in "iu":
            if arr.shape[0] != len(y_pred):
                raise ValueError(f"y must have one class index per row of y_pred ({len(y_pred)}), got shape "
                                 f"{arr.shape}")
            return y_pred, np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
        if arr.shape != y_pred.shape:
            extra = f" (or ({len(y_pred)},) integer class indices)" if self._class_indices else ""
            raise ValueError(f"y must have y_pred's shape {y_pred.shape}{extra}, got shape {arr.shape}")
        return y_pred, V.as_float_array(arr, "y", dtype)

    def _add(self, y_pred, y) -> None:
        """update_state on trusted (validated) arrays."""
        total, count = self._batch(y_pred, y)
        self.total += total
        self.count += count

    def _add_batches(self, y_pred, y, size) -> None:
        """update_batches on trusted (validated) arrays."""
        totals, counts = self._batches(y_pred, y, size)
        for total, count in zip(totals, counts):
            self.total += total
            self.count += count

    def _batch(self, y_pred, y) -> tuple[float, int]:
        """(sum of the per-sample values, number of samples counted) of one batch."""
        totals, counts = self._batches(y_pred, y, len(y_pred))
        return totals[0], counts[0]

    def _batches(self, y_pred, y, size) -> tuple[list, list]:
        """(per-batch sums, per-batch counts) of consecutive batches of `size` rows; one pair may stand for
        all of them when the sums are exact integers (the subclasses' one implementation of the metric)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Accuracy(Metric):
    """Keras's "accuracy": argmax vs class index, argmax vs argmax, or a threshold (see the module docs)."""

    _class_indices = True

    def __init__(self, name: str = "accuracy", loss=None):
        super().__init__(name)
        kind = type(loss).__name__
        self._threshold = {"BCELoss": 0.5, "BCEWithLogitsLoss": 0.0, "KerasBCELoss": 0.5}.get(kind)
        self._mse = kind in ("MSELoss", "L1Loss")
        self._ignore_index = getattr(loss, "ignore_index", None)

    def _expect(self, y) -> None:
        """Targets to come are rows of y: skip the ignore_index bookkeeping if no label is ignored."""
        if self._ignore_index is not None and y.ndim == 1 and not np.any(y == self._ignore_index):
            self._ignore_index = None

    def _batches(self, y_pred, y, size):
        # integer hit counts add up exactly in any grouping: one (total, count) for all the batches
        n, c = y_pred.shape
        if y.ndim == 1:   # class indices
            hit = y_pred.argmax(1) == y
            ignore = self._ignore_index
            if ignore is None:
                return [int(np.count_nonzero(hit))], [n]
            kept = y != ignore
            return [int(np.count_nonzero(hit & kept))], [int(np.count_nonzero(kept))]
        if self._threshold is not None or (self._mse and c == 1):
            return _binary(self._scratch, y_pred, y, 0.5 if self._threshold is None else self._threshold, size)
        return [int(np.count_nonzero(y_pred.argmax(1) == y.argmax(1)))], [n]


class CategoricalAccuracy(Accuracy):
    """Keras's "categorical_accuracy": argmax of y_pred == argmax of y (one-hot rows; class indices are
    compared with the argmax)."""

    def __init__(self, name: str = "categorical_accuracy", loss=None):
        super().__init__(name, None)
        self._ignore_index = getattr(loss, "ignore_index", None)


class SparseCategoricalAccuracy(CategoricalAccuracy):
    """Keras's "sparse_categorical_accuracy": argmax of y_pred == y (class indices; rows equal to the loss's
    ignore_index are not counted)."""

    def __init__(self, name: str = "sparse_categorical_accuracy", loss=None):
        super().__init__(name, loss)


class BinaryAccuracy(Metric):
    """Fraction of outputs with (y_pred > threshold) == y, averaged per sample over the columns."""

    def __init__(self, name: str = "binary_accuracy", threshold: float = 0.5):
        super().__init__(name)
        self.threshold = V.check_float(threshold, "threshold")

    def _batches(self, y_pred, y, size):
        return _binary(self._scratch, y_pred, y, self.threshold, size)


class _MeanError(Metric):
    """mean f(y_pred - y) per sample over the columns, then over samples; f is the class's in-place ufunc."""

    _f = None

    def _batches(self, y_pred, y, size):
        d = self._scratch.get("d", y_pred.shape, y_pred.dtype)
        np.subtract(y_pred, y, out=d)
        self._f(d, out=d)
        return _row_sums(d, size), [size] * (len(d) // size)


class MeanAbsoluteError(_MeanError):
    """mean |y_pred - y| (per sample over the columns, then over samples)."""

    _f = np.abs

    def __init__(self, name: str = "mae"):
        super().__init__(name)


class MeanSquaredError(_MeanError):
    """mean (y_pred - y)^2 (per sample over the columns, then over samples)."""

    _f = np.square

    def __init__(self, name: str = "mse"):
        super().__init__(name)


def get(name: str, loss=None, y=None) -> Metric:
    """A fresh metric for `name` (logged under `name`), specialised to the compiled loss.

    y: optionally, all the (prepared) targets the metric will see, which lets it skip work.
    """
    key = canonical_name(name)
    if key == "accuracy":
        metric = Accuracy(name, loss)
        if y is not None:
            metric._expect(y)
        return metric
    if key in ("categorical_accuracy", "sparse_categorical_accuracy"):
        metric = (CategoricalAccuracy if key == "categorical_accuracy" else SparseCategoricalAccuracy)(name, loss)
        if y is not None:
            metric._expect(y)
        return metric
    if key == "binary_accuracy":
        return BinaryAccuracy(name, 0.0 if type(loss).__name__ == "BCEWithLogitsLoss" else 0.5)
    return (MeanAbsoluteError if key == "mae" else MeanSquaredError)(name)


# ----------------------------------------------------------------------------------------- helpers

def _binary(scratch, y_pred, y, threshold, size) -> tuple[list, list]:
    """Per batch of `size` rows: (sum over samples of the fraction of columns where (y_pred > threshold) == y,
    samples)."""
    above = scratch.get("above", y_pred.shape, np.bool_)
    np.greater(y_pred, threshold, out=above)
    np.equal(above, y, out=above)
    hits = np.count_nonzero(above.reshape(-1, size * y_pred.shape[1]), axis=1)
    return [int(h) / y_pred.shape[1] for h in hits.tolist()], [size] * len(hits)


def _row_sums(d, size) -> list:
    """Per batch of `size` rows of d: the float64 sum of its elements over d's columns (one code path for
    one batch and many, so the sums are the same bits)."""
    sums = d.reshape(-1, size * d.shape[1]).sum(axis=1, dtype=np.float64)
    return (sums / d.shape[1]).tolist()
