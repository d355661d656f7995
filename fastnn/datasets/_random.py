"""random_state handling shared by the splitters and generators (scikit-learn's convention)."""

from __future__ import annotations

import numbers

import numpy as np


def check_random_state(random_state, name: str = "random_state"):
    """None -> a fresh unseeded RandomState; int -> RandomState(int); RandomState/Generator -> itself.

    An int seeds the legacy np.random.RandomState exactly as scikit-learn does, so the same
    random_state gives the same split or data set as scikit-learn.
    """
    if random_state is None:
        return np.random.RandomState()
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= random_state < 2**32:
            raise ValueError(f"{name} must be an int in [0, 2**32 - 1], got {random_state}")
        return np.random.RandomState(int(random_state))
    raise TypeError(
        f"{name} must be None, an int, a np.random.RandomState or a np.random.Generator, got {random_state!r}"
    )
