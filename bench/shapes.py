"""The DESIGN.md benchmark shapes and the three implementations of one training step.

Every implementation runs the same recipe: ReLU hidden layers, softmax cross-entropy,
Adam(lr=1e-3), one step on a fixed batch.
"""

from __future__ import annotations

import numpy as np

SHAPES = {
    "tiny": ([784, 128, 10], 64),
    "medium": ([784, 512, 512, 10], 256),
    "large": ([2048, 2048, 2048, 10], 1024),
    "deep": ([64] + [64] * 8 + [10], 32),
}


def batch(sizes, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], n)


def fastnn_step(sizes, n, dtype):
    """The PyTorch-style five-step loop in fastnn (the per-layer path)."""
    import fastnn as fnn

    layers = [fnn.Dense(i, o, activation="relu" if k < len(sizes) - 2 else None)
              for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    model = fnn.Sequential(layers, dtype=dtype, seed=0)
    loss_fn = fnn.losses.CrossEntropyLoss()
    opt = fnn.optim.Adam(model.parameters(), lr=1e-3)
    x, y = batch(sizes, n, dtype)

    def step():
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
        return loss

    return step


def numpy_step(sizes, n, dtype):
    from numpy_mlp import NumpyMLP

    mlp = NumpyMLP(sizes, n, dtype)
    x, y = batch(sizes, n, dtype)
    return lambda: mlp.step(x, y)


def torch_step(sizes, n, dtype):
    import torch

    torch.manual_seed(0)
    tdt = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    mods = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(torch.nn.Linear(i, o, dtype=tdt))
        if k < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = batch(sizes, n, dtype)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    return step


IMPLS = {"fastnn": fastnn_step, "numpy": numpy_step, "torch": torch_step}
