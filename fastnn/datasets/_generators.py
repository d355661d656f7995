"""Toy 2-D classification sets: make_moons (scikit-learn's) and make_spirals (interleaved arms)."""

from __future__ import annotations

import numbers

import numpy as np

from .. import _validation as V
from ._random import check_random_state


def _noise(noise):
    """None or a finite std >= 0; -0.0 is 0.0 (scikit-learn's interval [0, inf) holds -0.0 too)."""
    if noise is None:
        return None
    return V.check_float(noise, "noise", low=0.0) + 0.0   # + 0.0 turns -0.0 into 0.0


# float64 arrays of the points' shape (n_samples, 2) alive at once while a set is made
# (the points, their shuffled copy, the noise), plus int64 labels and the shuffle index
_WORKING_ARRAYS = 4


def _check_size(n_samples: int, name: str = "n_samples") -> None:
    V.check_nbytes(f"{name}={n_samples}", (n_samples, 2), np.float64, what="the points", arrays=_WORKING_ARRAYS)


def _shuffle_and_noise(X, y, shuffle, noise, rng):
    if shuffle:   # scikit-learn's utils.shuffle: shuffle an index array, then take
        idx = np.arange(len(X))
        rng.shuffle(idx)
        X, y = X[idx], y[idx]
    if noise is not None:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y


def make_moons(n_samples=100, noise=None, random_state=None, shuffle=True, dtype="float32"):
    """Two interleaving half circles: X (n_samples, 2), y int64 in {0, 1} (scikit-learn's make_moons).

    n_samples: total (the outer moon, class 0, gets n_samples // 2) or a pair (n_outer, n_inner).
    noise: None, or the standard deviation (>= 0; -0.0 is 0.0) of Gaussian noise added to the
    points (0.0 still draws the noise, as scikit-learn does). The same int random_state
    gives scikit-learn's points (with dtype="float64").
    """
    if isinstance(n_samples, numbers.Integral) and not isinstance(n_samples, bool):
        n_samples = V.check_int(n_samples, "n_samples", low=1)
        _check_size(n_samples)
        n_out = n_samples // 2
        n_in = n_samples - n_out
    else:
        try:
            n_out, n_in = (V.check_int(v, "n_samples[i]", low=0) for v in n_samples)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"n_samples must be an int or a pair of ints (n_outer, n_inner), got {n_samples!r}"
                            ) from exc
        _check_size(n_out + n_in)
    noise = _noise(noise)
    shuffle = V.check_bool(shuffle, "shuffle")
    dtype = V.resolve_dtype(dtype)
    rng = check_random_state(random_state)
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    X = np.vstack([np.append(np.cos(t_out), 1 - np.cos(t_in)),
                   np.append(np.sin(t_out), 1 - np.sin(t_in) - 0.5)]).T
    y = np.hstack([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    X, y = _shuffle_and_noise(X, y, shuffle, noise, rng)
    return X.astype(dtype, copy=False), y


def make_spirals(n_samples=300, n_classes=3, noise=None, random_state=None, shuffle=True, dtype="float32"):
    """n_classes interleaved spiral arms in 2-D: X (n_samples, 2), y int64 in [0, n_classes).

    Class k has n_samples // n_classes points (the first n_samples % n_classes classes one more)
    at radius r in [0, 1] (evenly spaced) and angle 4 r + 2 pi k / n_classes radians: the
    classic spiral set that a linear model cannot separate. noise: None or the standard deviation
    (>= 0; -0.0 is 0.0) of Gaussian noise added to the points (0.1-0.2 makes the arms touch).
    """
    n_samples = V.check_int(n_samples, "n_samples", low=1)
    n_classes = V.check_int(n_classes, "n_classes", low=1)
    _check_size(n_samples)
    if n_samples < n_classes:
        raise ValueError(f"n_samples must be at least n_classes={n_classes} (one point per arm), got {n_samples}")
    noise = _noise(noise)
    shuffle = V.check_bool(shuffle, "shuffle")
    dtype = V.resolve_dtype(dtype)
    rng = check_random_state(random_state)
    counts = np.full(n_classes, n_samples // n_classes)
    counts[: n_samples % n_classes] += 1
    r = np.concatenate([np.linspace(0.0, 1.0, c) if c > 1 else np.ones(c) for c in counts])
    y = np.repeat(np.arange(n_classes, dtype=np.int64), counts)
    t = 4.0 * r + 2.0 * np.pi * y / n_classes
    X = np.column_stack([r * np.sin(t), r * np.cos(t)])
    X, y = _shuffle_and_noise(X, y, shuffle, noise, rng)
    return X.astype(dtype, copy=False), y
