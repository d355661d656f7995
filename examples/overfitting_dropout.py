"""Overfitting, and dropout against it: a big network on a small training set, with and without dropout.

    python examples/overfitting_dropout.py [--plot overfitting_dropout.png | --no-plot] [--label-noise 0.2]

200 handwritten digits for training (20 per class), 300 for validation, the rest for testing;
a 64-256-256-10 ReLU network (about 85,000 weights, 400 per training sample) trained for 150
epochs with Adam. 20% of the training labels are replaced by wrong ones, as in messy real data
(--label-noise 0 for clean labels: the same story, less pronounced). Without dropout the
training loss goes to ~0 - the network memorises every training label, wrong ones included -
while the validation loss passes its minimum and climbs again. Dropout(0.5) after each hidden
layer memorises less: a lower validation loss, best and final. The learning curves of both runs
are saved side by side (needs matplotlib: pip install fastnn[plot]). Exits 1 unless the run
without dropout visibly overfits (final val_loss > 1.25 x its minimum; 1.1 x with clean labels)
and dropout gives the lower best and final val_loss.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

import numpy as np

import fastnn as fnn
from fastnn.datasets import load_digits, train_test_split

EPOCHS = 150


def build(p: float, seed: int = 0):
    layers = [fnn.Dense(64, 256, activation="relu")]
    if p:
        layers.append(fnn.Dropout(p))
    layers.append(fnn.Dense(256, 256, activation="relu"))
    if p:
        layers.append(fnn.Dropout(p))
    layers.append(fnn.Dense(256, 10))
    model = fnn.Sequential(layers, seed=seed)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="overfitting_dropout.png", metavar="PNG", help="where to save the figure")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the figure")
    parser.add_argument("--label-noise", type=float, default=0.2, help="fraction of wrong training labels")
    args = parser.parse_args(argv)

    X, y = load_digits()
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=200, stratify=y, random_state=0)
    X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, train_size=300, stratify=y_rest, random_state=0)
    rng = np.random.default_rng(0)
    wrong = rng.random(len(y_train)) < args.label_noise
    y_train = y_train.copy()
    y_train[wrong] = (y_train[wrong] + rng.integers(1, 10, wrong.sum())) % 10   # a different digit
    print(f"{len(X_train)} training digits ({wrong.sum()} with a wrong label), {len(X_val)} validation, "
          f"{len(X_test)} test; {EPOCHS} epochs each")

    runs = {}
    for p in (0.0, 0.5):
        model = build(p)
        history = model.fit(X_train, y_train, epochs=EPOCHS, batch_size=32, validation_data=(X_val, y_val), verbose=0)
        val = np.array(history.history["val_loss"])
        _, acc = model.evaluate(X_test, y_test)   # [loss, accuracy], as Keras returns them
        runs[p] = (history, val, acc)
        label = "without dropout" if p == 0 else f"dropout {p}"
        print(f"{label:>16}: train loss {history.history['loss'][-1]:.4f} | val_loss best {val.min():.4f} "
              f"(epoch {val.argmin() + 1}), final {val[-1]:.4f} | test accuracy {acc:.2%}")

    if not args.no_plot:
        if importlib.util.find_spec("matplotlib") is None:
            print("no figure: matplotlib is not installed (pip install fastnn[plot])")
        else:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            from fastnn import plot

            fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
            for ax, (p, (history, _, _)) in zip(axes, runs.items()):
                plot.history(history, metrics=[], axes=[ax], title="no dropout" if p == 0 else f"dropout {p}")
            fig.suptitle(f"64-256-256-10 on {len(X_train)} training digits ({wrong.sum()} mislabelled): "
                         "training and validation loss without and with dropout")
            fig.tight_layout()
            fig.savefig(args.plot, dpi=100)
            plt.close(fig)
            print(f"figure saved to {args.plot}")

    (_, val0, _), (_, val5, _) = runs[0.0], runs[0.5]
    rise = 1.25 if args.label_noise >= 0.2 else 1.1
    ok = val0[-1] > rise * val0.min() and val5.min() < val0.min() and val5[-1] < val0[-1]
    print("OK: overfitting without dropout, lower validation loss with it" if ok else "worse than expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
