"""`fastnn train`: train an MLP on the bundled digits (or a CSV / .npz file) and report its test metrics.

    fastnn train                                            # digits, 64-128-10, Adam, ~97% test accuracy
    fastnn train --data iris.csv --target species --hidden 32,16 --epochs 100 --early-stopping 10
    fastnn train --data data.npz --task regression --plot curves.png --save model.fnn
    fastnn train --save-onnx model.onnx                     # also (or only) as ONNX: pip install "fastnn[onnx]"
    fastnn train --data-x X.npy --data-y y.npy              # memory-mapped: X may be larger than memory
    fastnn predict --model model.fnn --data new.csv --proba  # then use it (fastnn._cli_predict)

Pipeline: load -> held-out test split (stratified for classification) -> validation split of
the rest -> standardize the features with the training part's statistics (and the target, for
regression) -> Dense layers with the activation (and dropout) -> fit with a progress bar ->
test loss and accuracy (classification) or MSE (regression, in the target's own units).
The model saved with --save (and --save-onnx) takes raw features: the standardization is folded into its first
(and, for regression, last) Dense layer. The --save file also records what the model is for (model.meta:
the task, the class names, the feature columns and the target column when known), which `fastnn predict` uses.
With --data-x/--data-y, X stays memory-mapped (fit, evaluate and predict read it a chunk at a time): the test
part is the last --test-split of the rows and the validation part the last --val-split of the rest (no random or
stratified split, which would copy X), and the features are used as stored (not standardized: store them so).

The task (--task auto): class labels that are not numbers -> classification; numbers that are not all
integers -> regression; integer values -> classification when there are at most AUTO_MAX_CLASSES distinct
values and each occurs in at least AUTO_MIN_CLASS_ROWS rows, else regression (with a note saying so).

Bad arguments or unreadable data: a one-line message on stderr and exit code 2 (argparse's own
errors print the short usage line first). A training run that diverges (NaN loss): exit code 1.
Command modules expose configure(parser) and run(args) -> int; main(argv) runs it standalone.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import sys

import numpy as np

from . import datasets, distributed, plot
from ._argtypes import integer, number
from ._config import set_num_threads
from .callbacks import EarlyStopping
from .datasets import StandardScaler, from_one_hot, train_test_split
from .io import to_onnx
from .layers import ACTIVATIONS, Dense, Dropout, Identity
from .model import Sequential
from .optim import OPTIMIZERS

PROG = "fastnn train"
AUTO_MAX_CLASSES = 100     # --task auto: integer targets with more distinct values are regression
AUTO_MIN_CLASS_ROWS = 2    # ... and so are those with a value seen only once (a count, an id, a measurement)


class UsageError(Exception):
    """A bad argument or unusable data: reported in one line, exit code 2."""


# ----------------------------------------------------------------------------- argument types
def _hidden(text):
    """'128,64' -> [128, 64]; '' or 'none' -> [] (no hidden layer: a linear model)."""
    if text.strip().lower() in ("", "none"):
        return []
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated layer widths like 128,64, got {text!r}"
                                             ) from None
        if size < 1:
            raise argparse.ArgumentTypeError(f"layer widths must be >= 1, got {size} in {text!r}")
        sizes.append(size)
    return sizes


def _hidden_activations() -> list[str]:
    """The activation names a hidden layer can take: the element-wise, non-linear ones of the registry."""
    return sorted(name for name, cls in ACTIVATIONS.items() if cls.elementwise and cls is not Identity)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add `fastnn train`'s arguments to parser."""
    parser.usage = "%(prog)s [options]"   # a one-line usage before argparse errors; --help lists the options
    data = parser.add_argument_group("data")
    data.add_argument("--data", metavar="FILE", default=None,
                      help="a .csv file (header row; with --target) or a .npz file (arrays X or x, and y); "
                           "default: the bundled 8x8 handwritten digits")
    data.add_argument("--data-x", metavar="X.npy", default=None,
                      help="features as a .npy file, memory-mapped (may be larger than memory; with --data-y, "
                           "instead of --data)")
    data.add_argument("--data-y", metavar="Y.npy", default=None, help="the targets for --data-x, a .npy file")
    data.add_argument("--target", metavar="COLUMN", default=None, help="the CSV column to predict")
    data.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                      help="auto (default): classification for text labels, and for integer targets with at most "
                           f"{AUTO_MAX_CLASSES} distinct values each in at least {AUTO_MIN_CLASS_ROWS} rows; "
                           "regression for other numbers (e.g. 214 distinct integers); "
                           "classification or regression forces it")
    data.add_argument("--val-split", type=number(0.0, 1.0, False, True), default=0.1, metavar="FRACTION",
                      help="fraction of the training part held out for validation, 0 for none (default: 0.1)")
    data.add_argument("--test-split", type=number(0.0, 1.0, True, True), default=0.2, metavar="FRACTION",
                      help="fraction of the data held out for the final test (default: 0.2)")
    model = parser.add_argument_group("model")
    model.add_argument("--hidden", type=_hidden, default=[128], metavar="SIZES",
                       help="hidden layer widths, comma-separated, or 'none' (default: 128)")
    model.add_argument("--activation", choices=_hidden_activations(), default="relu",
                       help="hidden-layer activation (default: relu)")
    model.add_argument("--dropout", type=number(0.0, 1.0, False, True), default=0.0, metavar="P",
                       help="dropout probability after each hidden layer (default: 0)")
    model.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="(default: float32)")
    train = parser.add_argument_group("training")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam", help="(default: adam)")
    train.add_argument("--lr", type=number(0.0, None, True, False), default=None, metavar="RATE",
                       help="learning rate (default: the optimizer's PyTorch default, 1e-3 for adam)")
    train.add_argument("--epochs", type=integer(1), default=30, metavar="N", help="(default: 30)")
    train.add_argument("--batch-size", type=integer(1), default=32, metavar="N", help="(default: 32)")
    train.add_argument("--early-stopping", type=integer(0), default=None, metavar="PATIENCE",
                       help="stop when val_loss (loss without validation) has not improved for PATIENCE "
                            "epochs, and keep the best weights (default: off)")
    train.add_argument("--seed", type=integer(0), default=0,
                       help="seeds the splits, the initial weights, dropout and shuffling (default: 0)")
    train.add_argument("--threads", type=integer(1), default=None, metavar="N",
                       help="threads for fastnn's kernels and BLAS (default: all usable cores)")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel training over MPI: mpiexec -n N fastnn train --distributed ... (needs "
                            "pip install 'fastnn[mpi]'); every rank reads the same data, rank 0 reports and saves")
    out = parser.add_argument_group("output")
    out.add_argument("--save", metavar="FILE", default=None, help="save the trained model (fastnn.load_model)")
    out.add_argument("--save-onnx", metavar="FILE", default=None,
                     help="also write the trained model as ONNX (needs the onnx extra: pip install \"fastnn[onnx]\")")
    out.add_argument("--plot", metavar="PNG", default=None, help="save the learning curves (needs matplotlib)")
    out.add_argument("--quiet", action="store_true", help="no progress bar; print only the test metrics")


# ----------------------------------------------------------------------------- data
def _load(args):
    """(X, y, classes or None, description)."""
    if args.data_x is not None or args.data_y is not None:
        return _load_npy_pair(args)
    if args.data is None:
        if args.target is not None:
            raise UsageError("--target needs --data FILE.csv (the bundled digits have no columns to pick)")
        X, y = datasets.load_digits(dtype=args.dtype)
        return X, y, None, "the bundled handwritten digits"
    path = args.data
    suffix = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise UsageError(f"--data: no such file: {path}")
    if suffix in (".csv", ".txt", ".tsv"):
        if args.target is None:
            raise UsageError(f"--data {path}: a CSV file needs --target COLUMN (the column to predict)")
        X, y, classes = datasets.load_csv(path, target=args.target, delimiter="\t" if suffix == ".tsv" else ",",
                                          dtype=args.dtype)
        return X, y, classes, path
    if suffix == ".npz":
        if args.target is not None:
            raise UsageError("--target is for CSV files; a .npz file needs arrays named X (or x) and y")
        X, y = datasets.load_npz(path, dtype=args.dtype)
        return X, y, None, path
    raise UsageError(f"--data {path}: expected a .csv or .npz file, got {suffix or 'no suffix'!r}")


def _load_npy_pair(args):
    """--data-x X.npy --data-y y.npy: X memory-mapped (read a chunk at a time by fit), y read whole."""
    if args.data is not None:
        raise UsageError("--data-x/--data-y replace --data: give either --data FILE or --data-x X.npy --data-y y.npy")
    if args.target is not None:
        raise UsageError("--target is for CSV files; --data-x/--data-y give the features and targets as arrays")
    for option, path, other in (("--data-x", args.data_x, "--data-y"), ("--data-y", args.data_y, "--data-x")):
        if path is None:
            raise UsageError(f"{other} needs {option} FILE.npy too (features and targets in two .npy files)")
        if not os.path.isfile(path):
            raise UsageError(f"{option}: no such file: {path}")
    arrays = []
    for option, path in (("--data-x", args.data_x), ("--data-y", args.data_y)):
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError):
            raise UsageError(f"{option} {path}: not a readable .npy file") from None
        if not isinstance(array, np.ndarray):   # a .npz archive
            array.close()
            raise UsageError(f"{option} {path}: expected one array in a .npy file, got a .npz archive")
        arrays.append(array)
    X, y = arrays
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise UsageError(f"--data-x {args.data_x}: expected a 2-D array of numbers (samples x features), got shape "
                         f"{X.shape} and dtype {X.dtype}")
    if y.ndim == 0 or len(y) != len(X):
        raise UsageError(f"--data-x and --data-y must have one row per sample: {args.data_x} has {len(X)} rows, "
                         f"{args.data_y} has {len(y) if y.ndim else 'none (a scalar)'}")
    return X, np.asarray(y), None, f"{args.data_x} (memory-mapped) and {args.data_y}"


def _tail_split(X, y, size):
    """(X_a, X_b, y_a, y_b) with the last `size` fraction of the rows in b: views, nothing copied (Keras's
    validation_split rule)."""
    at = len(X) - max(1, int(round(len(X) * size)))
    if at < 1:
        raise UsageError(f"{len(X)} rows are too few to hold out a fraction {size:g} of them")
    return X[:at], X[at:], y[:at], y[at:]


def csv_columns(path, delimiter=","):
    """A CSV file's column names: its first non-blank row, each name stripped (load_csv's header rule)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.reader(f, delimiter=delimiter):
            if any(cell.strip() for cell in row):
                return [cell.strip() for cell in row]
    return []


def _columns(args):
    """(feature names or None, target name or None) of the data, as far as the file names them."""
    if args.data is None or args.target is None:
        return None, None
    delimiter = "\t" if args.data.lower().endswith(".tsv") else ","
    return [c for c in csv_columns(args.data, delimiter) if c != args.target], args.target


def _auto_task(y, integral):
    """--task auto for a numeric target: (task, note or None); see the module docstring."""
    if not integral or y.ndim != 1:
        return "regression", None
    _, counts = np.unique(y, return_counts=True)
    if len(counts) <= AUTO_MAX_CLASSES and counts.min() >= AUTO_MIN_CLASS_ROWS:
        return "classification", None
    why = (f"{len(counts)} distinct values, more than {AUTO_MAX_CLASSES}" if len(counts) > AUTO_MAX_CLASSES else
           f"{int((counts < AUTO_MIN_CLASS_ROWS).sum())} of its {len(counts)} values occur in fewer than "
           f"{AUTO_MIN_CLASS_ROWS} rows")
    return "regression", (f"note: the integer target has {why}, so it is taken as a regression target; "
                          "pass --task classification to treat its values as classes")


def _prepare_target(y, classes, task):
    """(task, y, class names or None, note or None) with classification labels as int64 0..k-1."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or y.dtype.kind not in "biufUS":
        raise UsageError(f"the target must hold numbers or class labels, one row per sample; got shape {y.shape} "
                         f"and dtype {y.dtype}")
    labels_like = classes is not None or y.dtype.kind in "USb"
    integral = y.dtype.kind in "iub" or (y.dtype.kind == "f" and bool(np.all(y == np.round(y))))
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise UsageError("the target contains NaN or inf")
    note = None
    if task == "auto":
        task, note = ("classification", None) if labels_like else _auto_task(y, integral)
    if task == "regression":
        if labels_like:
            raise UsageError("--task regression needs a numeric target, but it holds class labels")
        y = y.astype(np.float64).reshape(len(y), -1)
        return task, y, None, note
    if y.ndim == 2:   # one-hot rows -> class indices
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise UsageError(f"classification needs one label per row (or one-hot rows); got shape {y.shape}")
        y = from_one_hot(y)
    elif not integral and not labels_like:
        raise UsageError("--task classification needs integer class labels, but the target has non-integer values")
    values, y = np.unique(y, return_inverse=True)
    y = y.reshape(-1).astype(np.int64)
    names = classes[values] if classes is not None else values
    if len(values) < 2:
        raise UsageError(f"the target has a single class ({names[0]}); classification needs at least two")
    return task, y, names, note


def _split(X, y, size, task, seed):
    """A train_test_split, stratified when the classes allow it."""
    if task == "classification":
        try:
            return train_test_split(X, y, test_size=size, stratify=y, random_state=seed)
        except ValueError:
            pass   # a class too small to stratify: fall back to a plain random split
    return train_test_split(X, y, test_size=size, random_state=seed)


# ----------------------------------------------------------------------------- model
def _build(args, n_features, n_out):
    layers, width = [], n_features
    for h in args.hidden:
        layers.append(Dense(width, h, activation=args.activation))
        if args.dropout > 0:
            layers.append(Dropout(args.dropout))
        width = h
    layers.append(Dense(width, n_out))
    return Sequential(layers, dtype=args.dtype, seed=args.seed)


def _describe_model(args, n_features, n_out):
    widths = [str(n_features)] + [f"{h} ({args.activation}{', dropout ' + str(args.dropout) if args.dropout else ''})"
                                  for h in args.hidden] + [str(n_out)]
    return " -> ".join(widths)


def _fold_scaling(model, x_scaler, y_scaler):
    """Fold x' = (x - mu) / s into the first Dense layer (and y = y' * sy + my into the last): raw in, raw out."""
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    if x_scaler is not None:   # None: features used as stored (--data-x)
        w, b = dense[0].params[0].data, dense[0].params[1].data
        mu, s = x_scaler.mean_, x_scaler.scale_
        w64 = w.astype(np.float64) / s[:, None]
        b[...] = b.astype(np.float64) - (mu / s) @ w.astype(np.float64)
        w[...] = w64
    if y_scaler is not None:
        w, b = dense[-1].params[0].data, dense[-1].params[1].data
        my, sy = y_scaler.mean_, y_scaler.scale_
        w[...] = w.astype(np.float64) * sy
        b[...] = b.astype(np.float64) * sy + my


def _check_output_path(option, path):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: the directory {parent} does not exist")


# ----------------------------------------------------------------------------- run
def _say(args, *parts):
    if not args.quiet and not (args.distributed and distributed.rank() != 0):   # distributed: rank 0 speaks
        print(*parts, flush=True)


def _setup(args):
    """Everything before training; any problem raises UsageError (or ValueError/TypeError/OSError)."""
    if args.threads is not None:
        set_num_threads(args.threads)
    if args.plot is not None:
        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError("--plot needs matplotlib, an optional extra: pip install fastnn[plot]")
        _check_output_path("--plot", args.plot)
    if args.save is not None:
        _check_output_path("--save", args.save)
    if args.save_onnx is not None:
        try:   # imported (not just found) before training, so that a broken install fails now, not after
            import onnx  # noqa: F401
        except ImportError:
            raise UsageError('--save-onnx needs onnx, an optional extra: pip install "fastnn[onnx]"') from None
        _check_output_path("--save-onnx", args.save_onnx)
    X, y, classes, source = _load(args)
    if len(X) < 4:
        raise UsageError(f"{source}: {len(X)} rows are too few to split into training and test data")
    task, y, names, note = _prepare_target(y, classes, args.task)
    features, target = _columns(args)
    mapped = args.data_x is not None   # memory-mapped X: contiguous splits, features as stored
    split = _tail_split if mapped else (lambda X, y, size: _split(X, y, size, task, args.seed))
    X_train, X_test, y_train, y_test = split(X, y, args.test_split)
    X_val = y_val = None
    if args.val_split > 0:
        X_train, X_val, y_train, y_val = split(X_train, y_train, args.val_split)
    x_scaler = None if mapped else StandardScaler().fit(X_train)
    y_scaler = StandardScaler().fit(y_train) if task == "regression" else None

    def scale(Xp, yp):
        if Xp is None:
            return None, None
        return (Xp if x_scaler is None else x_scaler.transform(Xp),
                y_scaler.transform(yp) if y_scaler is not None else yp)

    n_out = len(names) if task == "classification" else y.shape[1]
    model = _build(args, X.shape[1], n_out)
    optimizer = OPTIMIZERS[args.optimizer](model.parameters(), **({} if args.lr is None else {"lr": args.lr}))
    loss = "cross_entropy" if task == "classification" else "mse"
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"] if task == "classification" else ["mae"])
    callbacks = []
    early = None
    if args.early_stopping is not None:
        monitor = "val_loss" if X_val is not None else "loss"
        early = EarlyStopping(monitor=monitor, patience=args.early_stopping, restore_best_weights=True)
        callbacks.append(early)

    what = f"{len(names)} classes" if task == "classification" else \
        f"regression on {y.shape[1]} target{'s' if y.shape[1] > 1 else ''}"
    _say(args, f"data: {source}: {len(X)} samples, {X.shape[1]} features, {what}")
    if task == "classification" and (classes is not None or not np.array_equal(names, np.arange(len(names)))):
        shown = ", ".join(f"{i}={c}" for i, c in enumerate(names[:20])) + (" ..." if len(names) > 20 else "")
        _say(args, f"classes: {shown}")
    if note is not None:
        _say(args, note)
    _say(args, f"split: {len(X_train)} train, {0 if X_val is None else len(X_val)} validation, {len(X_test)} test"
               + ("; the last rows held out, features as stored (memory-mapped, not standardized)" if mapped
                  else "; features standardized with the training part's mean and std")
               + ("" if y_scaler is None else " (and the target, for training)"))
    lr = optimizer.param_groups[0]["lr"]
    _say(args, f"model: {_describe_model(args, X.shape[1], n_out)}, {args.dtype}; {args.optimizer} lr={lr:g}, "
               f"{loss} loss, {args.epochs} epochs of batch {args.batch_size}, seed {args.seed}"
               + ("" if early is None else f", early stopping on {early.monitor} (patience {args.early_stopping})"))
    Xs_train, ys_train = scale(X_train, y_train)
    Xs_val, ys_val = scale(X_val, y_val)
    Xs_test, _ = scale(X_test, y_test)
    meta = {"task": task, **({"classes": list(names)} if task == "classification" else {}),
            **({"features": features} if features is not None and len(features) == X.shape[1] else {}),
            **({"target": target} if target is not None else {})}
    return dict(model=model, early=early, callbacks=callbacks, task=task, names=names, meta=meta,
                train=(Xs_train, ys_train), val=None if X_val is None else (Xs_val, ys_val),
                test=(Xs_test, y_test), X_test_raw=X_test, y_train=y_train,
                x_scaler=x_scaler, y_scaler=y_scaler)


def _report(args, s, history):
    model, task = s["model"], s["task"]
    Xs_test, y_test = s["test"]
    early = s["early"]
    if early is not None and early.stopped_epoch > 0:
        _say(args, f"early stopping after epoch {early.stopped_epoch + 1}; "
                   f"restored the weights of epoch {early.best_epoch + 1} ({early.monitor} {early.best:.4f})")
    if task == "classification":
        loss = model.evaluate(Xs_test, y_test, return_dict=True)["loss"]
        pred = np.asarray(model.predict(Xs_test)).argmax(axis=1)
        correct = int((pred == y_test).sum())
        print(f"test loss {loss:.4f} - test accuracy {correct / len(y_test):.4f} "
              f"({correct}/{len(y_test)})", flush=True)
        return correct / len(y_test)
    pred = s["y_scaler"].inverse_transform(np.asarray(model.predict(Xs_test), dtype=np.float64))
    y_test = np.asarray(y_test, dtype=np.float64)
    mse = float(np.mean((pred - y_test) ** 2))
    mae = float(np.mean(np.abs(pred - y_test)))
    baseline = float(np.mean((s["y_train"].mean(axis=0) - y_test) ** 2))
    r2 = 1.0 - mse / baseline if baseline > 0 else float("nan")
    print(f"test MSE {mse:.6g} - test MAE {mae:.6g} - R^2 {r2:.4f} "
          f"(predicting the training mean: MSE {baseline:.6g})", flush=True)
    return mse


def run(args: argparse.Namespace) -> int:
    """`fastnn train` with parsed arguments; returns the exit code."""
    try:
        s = _setup(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    model = s["model"]
    Xs, ys = s["train"]
    try:
        history = model.fit(Xs, ys, epochs=args.epochs, batch_size=args.batch_size, validation_data=s["val"],
                            shuffle=True, callbacks=s["callbacks"], verbose=0 if args.quiet else 1,
                            distributed=args.distributed)
    except FloatingPointError as exc:
        first = str(exc).split(";")[0]   # "training diverged: the loss became nan at epoch E, batch B of N"
        print(f"{PROG}: {first}; try a smaller --lr", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if args.distributed and distributed.rank() != 0:
        return 0   # the same weights on every rank: rank 0 reports and writes
    _report(args, s, history)
    if args.plot is not None:
        plot.history(history, path=args.plot, early_stopping=s["early"],
                     title=f"fastnn train: {os.path.basename(args.data or args.data_x or 'digits')}")
        _say(args, f"learning curves saved to {args.plot}")
    if args.save is not None or args.save_onnx is not None:
        _fold_scaling(model, s["x_scaler"], s["y_scaler"])
        if s["x_scaler"] is None:   # --data-x: features as stored
            folded = "it takes the features as stored" + ("; the target's standardization is folded into its last "
                                                          "layer" if s["y_scaler"] is not None else "")
        else:
            folded = ("it takes raw features: the standardization is folded into its first layer"
                      + (" and the target's into its last" if s["y_scaler"] is not None else ""))
    if args.save is not None:
        model.meta = s["meta"]   # task, class names, feature and target columns: fastnn predict reads them
        model.save(args.save)
        _say(args, f"model saved to {args.save} (load with fastnn.load_model; {folded})")
    if args.save_onnx is not None:
        to_onnx(model, args.save_onnx)
        _say(args, f"ONNX model saved to {args.save_onnx} (input \"x\", output \"y\"; {folded})")
    return 0


def main(argv=None) -> int:
    """Run `fastnn train` with argv (default: sys.argv[1:]); returns the exit code."""
    parser = argparse.ArgumentParser(prog=PROG, description="Train an MLP and report its test metrics.")
    configure(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # argparse: --help (0) or a bad argument (2, message already on stderr)
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
