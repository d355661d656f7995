"""The lecture's training loop, for real: a 2-layer MLP learns the handwritten digits.

    python examples/lecture_loop.py

Five steps per mini-batch, PyTorch style: forward, loss, backward, optimizer step,
zero the gradients. Prints the held-out accuracy (about 97-98%).
"""

from __future__ import annotations

import sys

import numpy as np

import fastnn as fnn
from fastnn.datasets import load_digits


def train_digits(X_train, y_train, epochs=30, batch_size=32, lr=1e-3, seed=0, verbose=True):
    """Train Dense(64 -> 128, relu) -> Dense(128 -> 10) with Adam and cross-entropy; return the model."""
    model = fnn.Sequential([fnn.Dense(X_train.shape[1], 128, activation="relu"), fnn.Dense(128, 10)], seed=seed)
    loss_fn = fnn.losses.CrossEntropyLoss()
    opt = fnn.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    n = len(X_train)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            y_pred = model(X_train[idx])                 # 1. forward
            loss = loss_fn(y_pred, y_train[idx])         # 2. loss
            model.backward(loss_fn.backward())           # 3. backward: gradients into p.grad
            opt.step()                                   # 4. update the weights
            opt.zero_grad()                              # 5. clear the gradients
            total += loss * len(idx)
        if verbose and (epoch + 1) % 5 == 0:
            print(f"epoch {epoch + 1:3d}  train loss {total / n:.4f}")
    return model


def accuracy(model, X, y) -> float:
    model.eval()
    return float((model(X).argmax(axis=1) == y).mean())


def main() -> int:
    X, y = load_digits()
    order = np.random.default_rng(42).permutation(len(X))
    test, train = order[:360], order[360:]
    model = train_digits(X[train], y[train])
    acc = accuracy(model, X[test], y[test])
    print(f"held-out accuracy on {len(test)} digits: {acc:.2%}")
    return 0 if acc >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
