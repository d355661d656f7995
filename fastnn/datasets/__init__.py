"""Datasets shipped with fastnn.

load_digits: the UCI handwritten digits (1,797 8x8 images, 10 classes), vendored as a
compressed .npz (about 45 kB; CC BY 4.0, see LICENSE-digits.txt beside this file).
Loading never unpickles: np.load(..., allow_pickle=False).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_HERE = Path(__file__).parent


def load_digits(dtype="float32", scale: bool = True):
    """Return (X, y): X of shape (1797, 64) (pixels / 16 when scale, else 0..16), y int64 labels 0..9."""
    with np.load(_HERE / "digits.npz", allow_pickle=False) as f:
        images, target = f["images"], f["target"]
    X = images.reshape(len(images), -1).astype(dtype)
    if scale:
        X /= 16
    return X, target.astype(np.int64)
