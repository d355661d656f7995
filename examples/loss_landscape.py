"""The loss landscape of a trained network, in the lecture's picture and in the standard one, with the optimizer's path.

    python examples/loss_landscape.py [PNG]        (default: loss_landscape.png in a temporary directory)

A 64-32-10 network learns the bundled handwritten digits with SGD + momentum for 12 epochs, while
two PathRecorders follow the weights after every batch. The figure (matplotlib's Agg backend, no
display needed; pip install fastnn[plot]) has two panels around the trained weights:
- left, the lecture's two-weight slice: the loss as two weights of the output layer vary, every
  other weight fixed, with the optimizer's path through those two weights;
- right, the standard view of Li et al. 2018 ("Visualizing the Loss Landscape of Neural Nets"):
  the loss along two random directions whose every filter has the norm of the same filter of the
  trained weights, with the path projected onto them. Random directions in a space of 2,410
  weights are nearly orthogonal to the path, so the projected path is short: the picture shows
  the shape of the minimum, not the journey (docs/loss-landscape.md).
Exits 1 unless the network learned (test accuracy above 90%), both paths end at the trained
weights and the weights are unchanged by the drawing.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import fastnn as fnn
from fastnn.datasets import load_digits, train_test_split


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else os.path.join(tempfile.mkdtemp(prefix="fastnn-"), "loss_landscape.png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        print("no figure: matplotlib is not installed (pip install fastnn[plot])")
        return 0

    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    model = fnn.Sequential([fnn.Dense(64, 32, activation="relu"), fnn.Dense(32, 10)], seed=0)
    model.compile(optimizer=fnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), loss="cross_entropy",
                  metrics=["accuracy"])
    two_weights = fnn.plot.PathRecorder(model, [("1.weight", (0, 0)), ("1.weight", (1, 1))])
    random_dirs = fnn.plot.PathRecorder(model, directions="filter_normalized", seed=0)
    model.fit(X_train, y_train, epochs=12, batch_size=32, callbacks=[two_weights, random_dirs], verbose=0)
    result = model.evaluate(X_test, y_test)
    accuracy = result["accuracy"] if isinstance(result, dict) else result[-1]
    print(f"test accuracy {accuracy:.3f} after 12 epochs; {len(two_weights.path)} points on each path")

    trained = [p.data.copy() for p in model.parameters()]
    fig = Figure(figsize=(13, 5.2))
    left, right = fig.subplots(1, 2)
    fnn.plot.loss_landscape(model, X_train, y_train, trajectory=two_weights, resolution=31, ax=left,
                            title="two weights of the output layer (all others fixed)")
    fnn.plot.loss_landscape(model, X_train, y_train, trajectory=random_dirs, resolution=31, ax=right,
                            title="two random filter-normalised directions (Li et al. 2018)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"saved the loss landscape to {out}")

    ok = accuracy > 0.9
    ok &= all(np.array_equal(p.data, w) for p, w in zip(model.parameters(), trained))   # drawing left them alone
    w = dict(model.named_parameters())["1.weight"].data
    ok &= bool(np.array_equal(two_weights.path[-1], [w[0, 0], w[1, 1]]))     # the path ends at the trained weights
    ok &= bool(np.allclose(random_dirs.path[-1], 0.0, atol=1e-9))
    print("ok" if ok else "FAILED: see the checks at the end of examples/loss_landscape.py")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
