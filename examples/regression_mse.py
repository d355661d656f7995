"""Regression with MSELoss: an MLP learns a noisy non-linear function of four inputs.

    python examples/regression_mse.py

y = sin(2 x0) cos(x1) + 0.5 x2^2 + noise (std 0.1); x3 is irrelevant. The features are
standardized with the training part's statistics, the network is 4-64-64-1 (tanh), the loss is
MSE, and training stops early on the validation loss. Prints the test MSE next to three
references: predicting the training mean, a least-squares linear model, and the noise floor
(0.01, the best any model can do). Exits 1 unless the MLP's test MSE is below 3x the noise
floor and 5x better than the linear model.
"""

from __future__ import annotations

import sys

import numpy as np

import fastnn as fnn
from fastnn.callbacks import EarlyStopping
from fastnn.datasets import StandardScaler, train_test_split

NOISE = 0.1


def make_data(n, seed=0):
    r = np.random.default_rng(seed)
    X = r.uniform(-2, 2, size=(n, 4))
    y = np.sin(2 * X[:, 0]) * np.cos(X[:, 1]) + 0.5 * X[:, 2] ** 2 + NOISE * r.standard_normal(n)
    return X, y.reshape(-1, 1)


def main() -> int:
    X, y = make_data(3000)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

    model = fnn.Sequential([
        fnn.Dense(4, 64, activation="tanh"),
        fnn.Dense(64, 64, activation="tanh"),
        fnn.Dense(64, 1),
    ], seed=0)
    model.compile(optimizer=fnn.optim.Adam(model.parameters(), lr=3e-3), loss="mse", metrics=["mae"])
    early = EarlyStopping(patience=20, restore_best_weights=True)
    history = model.fit(X_train, y_train, epochs=400, batch_size=64, validation_split=0.15,
                        callbacks=[early], verbose=0)

    mse = float(np.mean((model.predict(X_test) - y_test) ** 2))
    mean_mse = float(np.mean((y_train.mean() - y_test) ** 2))
    A = np.column_stack([X_train, np.ones(len(X_train))])
    coef, *_ = np.linalg.lstsq(A, y_train, rcond=None)
    linear_mse = float(np.mean((np.column_stack([X_test, np.ones(len(X_test))]) @ coef - y_test) ** 2))
    print(f"trained {len(history.epoch)} epochs (best val_loss {early.best:.4f} at epoch {early.best_epoch + 1})")
    print(f"test MSE: MLP {mse:.4f} | linear model {linear_mse:.4f} | training mean {mean_mse:.4f} | "
          f"noise floor {NOISE ** 2:.4f}")
    ok = mse < 3 * NOISE ** 2 and mse < linear_mse / 5
    print("OK" if ok else "worse than expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
