"""Keras-style training with early stopping: fit an MLP on the handwritten digits.

    python examples/fit_early_stopping.py [--plot curves.png]

compile / fit with a validation split and EarlyStopping(restore_best_weights=True): training
stops once the validation loss has not improved for `patience` epochs, and the model keeps the
weights of its best epoch. Prints where it stopped and the held-out test accuracy (about 97%);
exits 1 if early stopping did not trigger or the accuracy is below 95%.
"""

from __future__ import annotations

import argparse
import sys

import fastnn as fnn
from fastnn.callbacks import EarlyStopping
from fastnn.datasets import load_digits, train_test_split


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="PNG", help="save the learning curves (needs matplotlib)")
    args = parser.parse_args(argv)

    X, y = load_digits()                                             # X in [0, 1], y in 0..9
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)

    model = fnn.Sequential([
        fnn.Dense(64, 128, activation="relu"),
        fnn.Dropout(0.2),
        fnn.Dense(128, 10),
    ], seed=0)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    early = EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    history = model.fit(X_train, y_train, epochs=300, batch_size=32, validation_split=0.15,
                        callbacks=[early], verbose=2)

    ran = len(history.epoch)
    print(f"stopped after {ran} of 300 epochs; best val_loss {early.best:.4f} at epoch {early.best_epoch + 1} "
          "(its weights restored)")
    scores = model.evaluate(X_test, y_test, return_dict=True)
    print(f"test loss {scores['loss']:.4f}, test accuracy {scores['accuracy']:.2%} on {len(y_test)} digits")
    if args.plot:
        from fastnn import plot

        plot.history(history, path=args.plot, early_stopping=early)
        print(f"learning curves saved to {args.plot}")
    ok = early.stopped_epoch > 0 and scores["accuracy"] >= 0.95
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
