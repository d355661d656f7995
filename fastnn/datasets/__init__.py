"""Datasets and data helpers.

Data: load_digits, the UCI handwritten digits (1,797 8x8 images, 10 classes), vendored as a
compressed .npz (about 45 kB; CC BY 4.0, see LICENSE-digits.txt beside this file);
make_moons and make_spirals, toy 2-D classification sets.
Files: load_csv (header row, target column by name) and load_npz. Loading never unpickles.
Helpers: train_test_split (scikit-learn's semantics), StandardScaler / standardize,
one_hot / from_one_hot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import _validation as V
from ._files import load_csv, load_npz
from ._generators import make_moons, make_spirals
from ._preprocessing import StandardScaler, from_one_hot, one_hot, standardize
from ._split import train_test_split

_HERE = Path(__file__).parent

__all__ = [
    "load_digits", "load_csv", "load_npz", "make_moons", "make_spirals",
    "train_test_split", "StandardScaler", "standardize", "one_hot", "from_one_hot",
]


def load_digits(dtype="float32", scale: bool = True):
    """Return (X, y): X of shape (1797, 64) (pixels / 16 when scale, else 0..16), y int64 labels 0..9.

    dtype: 'float32' or 'float64' (anything else: TypeError). scale: a bool.
    """
    dtype = V.resolve_dtype(dtype)
    scale = V.check_bool(scale, "scale")
    with np.load(_HERE / "digits.npz", allow_pickle=False) as f:
        images, target = f["images"], f["target"]
    X = images.reshape(len(images), -1).astype(dtype)
    if scale:
        X /= 16
    return X, target.astype(np.int64)
