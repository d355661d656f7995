"""Loaders for a user's data: load_csv (header row, target column by name) and load_npz (no pickle)."""

from __future__ import annotations

import csv

import numpy as np

from .. import _validation as V


def _to_floats(values):
    """Strings -> float64 array, or None if some value is not a number."""
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        try:   # Python's float() also takes forms NumPy's parser refuses (e.g. "1_000")
            return np.array([float(v) for v in values])
        except ValueError:
            return None


def _check_finite(out, values, lines, path, column):
    """Raise ValueError naming file, line and column for the first unparsable or non-finite value."""
    if out is not None and np.isfinite(out).all():
        return out
    for value, line in zip(values, lines):
        try:
            ok = np.isfinite(float(value))
        except ValueError:
            what = "is empty (missing values are not supported)" if not value else "is not a number"
            raise ValueError(f"{path}, line {line}, column {column!r}: value {value!r} {what}") from None
        if not ok:
            raise ValueError(f"{path}, line {line}, column {column!r}: value {value!r} is not a finite number")
    raise AssertionError("unreachable")   # pragma: no cover


def load_csv(path, target, delimiter=",", dtype="float32"):
    """Read a CSV file with a header row into (X, y, classes).

    target: the name of the target column; every other column is a numeric feature. None: every
    column is a feature (new rows to predict), and y and classes are None.
    X: (n_rows, n_features) of dtype. y: if every target value is a number, its values as
    int64 (all integer-valued) or dtype (otherwise), and classes is None; else the target
    holds class labels, y is their index 0..k-1 in sorted order and classes is the array of
    the k labels (classes[y[i]] is row i's label). Blank lines are skipped; values are
    stripped of surrounding spaces. A missing or unparsable value, a row with the wrong
    number of fields or a missing target column raises ValueError naming the file, the line
    and the column.
    """
    path = V.check_path(path, "path")
    if target is not None and not isinstance(target, str):
        raise TypeError(f"target must be the name of a column (a str) or None, got {target!r}")
    if not isinstance(delimiter, str):
        raise TypeError(f"delimiter must be a single character (a str), got {type(delimiter).__name__} {delimiter!r}")
    if len(delimiter) != 1:
        raise ValueError(f"delimiter must be a single character, got {delimiter!r}")
    dtype = V.resolve_dtype(dtype)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = None
            for row in reader:
                if any(cell.strip() for cell in row):
                    header = [cell.strip() for cell in row]
                    break
            if header is None:
                raise ValueError(f"{path}: the file is empty (expected a header row with column names)")
            if target is not None and header.count(target) != 1:
                if target in header:
                    raise ValueError(f"{path}, line {reader.line_num}: the target column {target!r} appears "
                                     f"{header.count(target)} times in the header")
                raise ValueError(f"{path}, line {reader.line_num}: no column named {target!r} in the header; "
                                 f"columns are {header}")
            rows, lines = [], []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise ValueError(f"{path}, line {reader.line_num}: expected {len(header)} fields like the "
                                     f"header, got {len(row)}")
                rows.append([cell.strip() for cell in row])
                lines.append(reader.line_num)
        except csv.Error as exc:
            raise ValueError(f"{path}, line {reader.line_num}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    if not rows:
        raise ValueError(f"{path}: no data rows after the header")
    t = None if target is None else header.index(target)
    features = [j for j in range(len(header)) if j != t]
    if not features:
        raise ValueError(f"{path}: no feature columns besides the target {target!r}")
    columns = list(zip(*rows))
    X = np.empty((len(rows), len(features)), dtype)
    for k, j in enumerate(features):
        X[:, k] = _check_finite(_to_floats(columns[j]), columns[j], lines, path, header[j])
    if t is None:
        return X, None, None
    labels = columns[t]
    values = _to_floats(labels)
    if values is not None:   # a numeric target: kept as numbers
        _check_finite(values, labels, lines, path, target)
        if np.all(values == np.round(values)):
            return X, values.astype(np.int64), None
        return X, values.astype(dtype), None
    for value, line in zip(labels, lines):
        if not value:
            raise ValueError(f"{path}, line {line}, column {target!r}: the target value is empty")
    classes, y = np.unique(np.array(labels, dtype=str), return_inverse=True)
    return X, y.reshape(-1).astype(np.int64), classes


def load_npz(path, x_key=None, y_key="y", dtype="float32"):
    """Read (X, y) from a NumPy .npz file, never unpickling (allow_pickle=False).

    x_key: the features' key; None tries "X" then "x". y_key: the targets' key. X is returned
    as a 2-D array of dtype (arrays of higher rank are flattened per row, e.g. images);
    y as stored. Missing keys, object arrays, non-numeric or non-finite features and a
    row-count mismatch raise ValueError naming the file.
    """
    path = V.check_path(path, "path")
    if x_key is not None and not isinstance(x_key, str):
        raise TypeError(f"x_key must be None or the name of an array (a str), got {type(x_key).__name__} {x_key!r}")
    if not isinstance(y_key, str):
        raise TypeError(f"y_key must be the name of an array (a str), got {type(y_key).__name__} {y_key!r}")
    dtype = V.resolve_dtype(dtype)
    try:
        npz = np.load(path, allow_pickle=False)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile.BadZipFile, ValueError, ...
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive of named arrays, got a single .npy array")
    with npz:
        keys = list(npz.files)
        if x_key is None:
            x_key = next((k for k in ("X", "x") if k in keys), None)
            if x_key is None:
                raise ValueError(f"{path}: no array named 'X' or 'x' (pass x_key=); arrays are {keys}")
        for key, name in ((x_key, "x_key"), (y_key, "y_key")):
            if key not in keys:
                raise ValueError(f"{path}: no array named {key!r} ({name}); arrays are {keys}")
        try:
            X, y = npz[x_key], npz[y_key]
        except ValueError as exc:   # object arrays need pickle, which is refused
            raise ValueError(f"{path}: cannot load arrays without pickle ({exc})") from None
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: features {x_key!r} must be numbers, got dtype {X.dtype}")
    if X.ndim < 2:
        raise ValueError(f"{path}: features {x_key!r} must have one row per sample (2-D), got shape {X.shape}")
    if y.ndim == 0 or len(y) != len(X):
        raise ValueError(f"{path}: {y_key!r} must have one entry per row of {x_key!r} ({len(X)}), "
                         f"got shape {y.shape}")
    X = np.ascontiguousarray(X.reshape(len(X), -1), dtype=dtype)
    if not np.isfinite(X).all():
        raise ValueError(f"{path}: features {x_key!r} contain NaN or inf")
    return X, y
