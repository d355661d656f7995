"""Feature scaling and label encoding: StandardScaler, standardize, one_hot, from_one_hot."""

from __future__ import annotations

import numpy as np

from .. import _validation as V


def _features(X, name: str = "X") -> np.ndarray:
    """X as a finite 2-D float array (float32/float64 kept, in native byte order; anything else -> float64)."""
    arr = V.as_float_array(X, name, None, ndim=2, finite=True)
    dtype = V.native_float_dtype(arr.dtype)
    if dtype is None:
        dtype = np.dtype(np.float64)
    return V.as_float_array(arr, name, dtype)   # copies (after a size check) only when needed


class StandardScaler:
    """Standardize features: z = (x - mean_) / scale_, column by column (scikit-learn's StandardScaler).

    fit computes mean_ and var_ (population variance, ddof=0) in float64; scale_ = sqrt(var_),
    set to 1 for (near-)constant columns by scikit-learn's rule, so they map to 0 rather than
    to inf/NaN. Outputs keep a float32/float64 input's dtype (other inputs give float64).
    """

    def __init__(self, with_mean: bool = True, with_std: bool = True):
        self.with_mean = V.check_bool(with_mean, "with_mean")
        self.with_std = V.check_bool(with_std, "with_std")

    def fit(self, X, y=None):
        """Compute the column means and scales of X (n_samples, n_features); returns self."""
        X = _features(X)
        if X.shape[0] == 0:
            raise ValueError(f"X must have at least one row to fit a StandardScaler, got shape {X.shape}")
        n = X.shape[0]
        V.check_nbytes("X", X.shape, np.float64, what="the float64 deviations from the mean", arrays=2)
        mean = X.mean(axis=0, dtype=np.float64)
        var = ((X - mean) ** 2).mean(axis=0)
        self.mean_, self.var_ = mean, var
        # scikit-learn's test for a column indistinguishable from a constant (float64 error bound)
        eps = np.finfo(np.float64).eps
        constant = var <= n * eps * var + (n * mean * eps) ** 2
        self.scale_ = np.where(constant, 1.0, np.sqrt(var))
        self.n_features_in_ = X.shape[1]
        self.n_samples_seen_ = n
        return self

    def _check(self, X, name):
        if not hasattr(self, "mean_"):
            raise RuntimeError("this StandardScaler is not fitted yet: call fit(X) first")
        X = _features(X, name)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} must have {self.n_features_in_} features (columns) like the data the scaler was fitted on, "
                f"got shape {X.shape}"
            )
        return X

    def transform(self, X):
        """(X - mean_) / scale_ as a new array."""
        X = self._check(X, "X")
        out = X.copy()
        if self.with_mean:
            out -= self.mean_.astype(out.dtype)
        if self.with_std:
            out /= self.scale_.astype(out.dtype)
        return out

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    def inverse_transform(self, X):
        """X * scale_ + mean_ as a new array (undoes transform)."""
        X = self._check(X, "X")
        out = X.copy()
        if self.with_std:
            out *= self.scale_.astype(out.dtype)
        if self.with_mean:
            out += self.mean_.astype(out.dtype)
        return out

    def __repr__(self) -> str:
        args = [f"{k}=False" for k in ("with_mean", "with_std") if not getattr(self, k)]
        return f"StandardScaler({', '.join(args)})"


def standardize(X, *others):
    """Standardize X with its own column means and scales (a StandardScaler fitted on X).

    With more arrays, they are scaled with X's statistics and a list is returned:
    X_train, X_test = standardize(X_train, X_test).
    """
    scaler = StandardScaler().fit(X)
    if not others:
        return scaler.transform(X)
    return [scaler.transform(X)] + [scaler.transform(o) for o in others]


def one_hot(labels, num_classes=None, dtype="float32"):
    """Rows of zeros with a 1 at each label: shape (n, num_classes) (torch.nn.functional.one_hot, as floats).

    labels: integer class indices in [0, num_classes). num_classes=None -> max(labels) + 1.
    dtype: a real numeric dtype (float32 by default; ints and bool too, as torch's int64 one_hot).
    """
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            raise TypeError(f"labels must be integer class indices, got floating dtype {arr.dtype}; use .astype(int)")
        raise TypeError(f"labels must be integer class indices, got {V._describe(arr)}")
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D (one class index per row), got shape {arr.shape}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind not in "biuf":
        raise TypeError(f"dtype must be a real numeric dtype such as 'float32', 'float64' or 'int64', got {dtype!r}")
    dtype = dt
    if num_classes is None:
        if arr.size == 0:
            raise ValueError("num_classes must be given when labels is empty")
        if arr.min() < 0:
            raise ValueError(f"labels must be class indices >= 0, got {arr.min()}")
        num_classes = int(arr.max()) + 1
        name = f"num_classes=max(labels) + 1={num_classes}"
    else:
        num_classes = V.check_int(num_classes, "num_classes", low=1)
        name = f"num_classes={num_classes}"
    V.check_nbytes(name, (arr.size, num_classes), dtype, what="the one-hot rows")
    V.check_labels_range(arr, "labels", num_classes, extra=f" (num_classes={num_classes})")
    out = np.zeros((arr.size, num_classes), dtype)
    out[np.arange(arr.size), arr] = 1
    return out


def from_one_hot(Y):
    """Class indices (int64) from one-hot (or probability / score) rows: argmax along axis 1."""
    arr = V.as_float_array(Y, "Y", None, ndim=2)
    if arr.shape[1] == 0:
        raise ValueError(f"Y must have at least one column, got shape {arr.shape}")
    V.check_nbytes("Y", (arr.shape[0],), np.int64, what="the class indices")
    return arr.argmax(axis=1).astype(np.int64)
