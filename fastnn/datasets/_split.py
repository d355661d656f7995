"""train_test_split with scikit-learn's semantics, size rounding and random streams."""

from __future__ import annotations

import numbers
from math import ceil, floor

import numpy as np

from .. import _validation as V
from ._random import check_random_state


def _size_kind(value, name: str) -> str | None:
    """'i' for an int, 'f' for a float, None for None; anything else -> TypeError."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be None, an int or a float, got {value!r}")
    if isinstance(value, numbers.Integral):
        return "i"
    if isinstance(value, numbers.Real):
        return "f"
    raise TypeError(f"{name} must be None, an int or a float, got {value!r}")


def split_sizes(n_samples: int, test_size=None, train_size=None, default_test_size: float = 0.25):
    """(n_train, n_test) for n_samples rows, rounded as scikit-learn does.

    A float size is a fraction in (0, 1): the test count is rounded up (ceil), the train
    count down (floor); an int size is a count in [1, n_samples - 1]. If one size is None
    it is the complement of the other; if both are, test_size = default_test_size.
    """
    if test_size is None and train_size is None:
        test_size = default_test_size
    kinds = {}
    for name, value in (("test_size", test_size), ("train_size", train_size)):
        kind = kinds[name] = _size_kind(value, name)
        if (kind == "i" and not 0 < value < n_samples) or (kind == "f" and not 0.0 < value < 1.0):
            raise ValueError(
                f"{name} must be an int in [1, n_samples - 1] = [1, {n_samples - 1}] or a float in (0, 1), "
                f"got {value!r} (n_samples={n_samples})"
            )
    if kinds["test_size"] == "f" and kinds["train_size"] == "f" and train_size + test_size > 1:
        raise ValueError(
            f"test_size + train_size must be at most 1, got {test_size!r} + {train_size!r} = {test_size + train_size!r}"
        )
    n_test = ceil(test_size * n_samples) if kinds["test_size"] == "f" else test_size
    n_train = floor(train_size * n_samples) if kinds["train_size"] == "f" else train_size
    if train_size is None:
        n_train = n_samples - n_test
    elif test_size is None:
        n_test = n_samples - n_train
    if n_train + n_test > n_samples:
        raise ValueError(
            f"the train and test sets together need {n_train} + {n_test} = {n_train + n_test} rows, "
            f"more than the {n_samples} samples; reduce test_size and/or train_size"
        )
    if n_train == 0:
        raise ValueError(
            f"with n_samples={n_samples}, test_size={test_size!r} and train_size={train_size!r} "
            "the train set would be empty; adjust test_size or train_size"
        )
    return int(n_train), int(n_test)


def _approximate_mode(class_counts, n_draws, rng):
    """Per-class draw counts summing to n_draws (scikit-learn's tie-breaking, same random stream)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _stratified_indices(y, n_train, n_test, rng):
    if y.ndim == 2:   # multi-label rows: one class per distinct row, as scikit-learn
        y = np.array([" ".join(row.astype("str")) for row in y])
    classes, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    y_indices = y_indices.reshape(-1)
    if class_counts.min() < 2:
        few = classes[class_counts < 2].tolist()
        raise ValueError(
            f"stratify needs at least 2 members in every class; classes with only 1 member: {few}"
        )
    n_classes = len(classes)
    for name, count in (("train", n_train), ("test", n_test)):
        if count < n_classes:
            raise ValueError(
                f"stratify needs a {name} set of at least one row per class: the {name} set has {count} rows, "
                f"y has {n_classes} classes"
            )
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train, test = [], []
    for i in range(n_classes):
        perm = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(perm[: n_i[i]])
        test.extend(perm[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def train_test_split(*arrays, test_size=None, train_size=None, shuffle=True, stratify=None, random_state=None):
    """Split arrays (same number of rows) into random train and test parts: [a_train, a_test, b_train, ...].

    Semantics, size rounding and random streams are scikit-learn's: with both sizes None the
    test part is 25% (rounded up); a float is a fraction in (0, 1), an int a row count; one size
    given -> the other is the complement. shuffle=False takes the first rows for training and the
    next for testing. stratify (labels, one per row; needs shuffle=True) keeps the class
    proportions. An int random_state gives the same split as scikit-learn with that random_state.
    """
    if not arrays:
        raise ValueError("train_test_split needs at least one array")
    arrs = []
    for i, a in enumerate(arrays):
        arr = np.asarray(a)
        if arr.ndim == 0:
            raise ValueError(f"array {i} must have at least one dimension (rows), got a scalar {a!r}")
        arrs.append(arr)
    lengths = [len(a) for a in arrs]
    if len(set(lengths)) != 1:
        raise ValueError(f"all arrays must have the same number of rows, got lengths {lengths}")
    n = lengths[0]
    for i, arr in enumerate(arrs):   # the train and test parts together are a copy of each array
        V.check_nbytes(f"array {i}", arr.shape, arr.dtype, what="its train and test parts")
    V.check_nbytes(f"array 0 ({n} rows)", (n,), np.int64, what="the row indices", arrays=2)
    shuffle = V.check_bool(shuffle, "shuffle")
    n_train, n_test = split_sizes(n, test_size, train_size)
    if not shuffle:
        if stratify is not None:
            raise ValueError("stratify needs shuffle=True (a stratified split without shuffling is not defined)")
        train, test = np.arange(n_train), np.arange(n_train, n_train + n_test)
    else:
        rng = check_random_state(random_state)
        if stratify is None:
            perm = rng.permutation(n)
            test, train = perm[:n_test], perm[n_test:n_test + n_train]
        else:
            y = np.asarray(stratify)
            if y.ndim not in (1, 2) or len(y) != n:
                raise ValueError(f"stratify must hold one label per row: shape ({n},), got shape {y.shape}")
            train, test = _stratified_indices(y, n_train, n_test, rng)
    out = []
    for a in arrs:   # in native byte order, so that the result does not depend on how the input was stored
        native = a.dtype.newbyteorder("=") if a.dtype.byteorder not in "=|" else a.dtype
        out += [a[train].astype(native, copy=False), a[test].astype(native, copy=False)]
    return out
