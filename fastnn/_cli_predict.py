"""`fastnn predict`: a saved model's predictions for new rows of a CSV file (train -> use).

    fastnn predict --model model.fnn --data new.csv                    # one label (or value) per row, as CSV
    fastnn predict --model model.fnn --data new.csv --proba --output predictions.csv

The rows are read with fastnn.datasets.load_csv, as `fastnn train` reads them (header row, numbers
only, blank lines skipped). The file the model was saved to by `fastnn train --save` records what it
is for (model.meta): the task, the class names and the feature and target columns. With them:

- columns are matched by name: the model's feature columns are taken in the order it was trained on;
  the target column may be present (it is ignored) or absent; any other column is an error;
- classification prints the label (the stored class name) of each row, and with --proba also one
  probability column per class (softmax of the outputs; sigmoid for a single-output binary model);
- regression prints the predicted value(s), in the target's own units.

A model file without that record (saved by model.save, or by an older fastnn) is used by width: the
file's columns (less --target COLUMN, if given) must be the model's inputs, and the raw outputs are
printed with their argmax as a class index, after a note on stderr. Output goes to stdout (CSV) or
to --output FILE (written atomically). Errors (missing files, a file that is not a fastnn model, wrong
columns, non-numeric cells): one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import io as _io
import os
import sys

import numpy as np

from . import datasets
from ._atomic import _atomic_write
from ._cli_train import csv_columns
from .io import load_model
from .layers import Dense, Sigmoid, Softmax

PROG = "fastnn predict"


class UsageError(Exception):
    """A bad argument or unusable data: reported in one line, exit code 2."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add `fastnn predict`'s arguments to parser."""
    parser.usage = "%(prog)s --model FILE --data FILE.csv [options]"
    parser.add_argument("--model", metavar="FILE", required=True,
                        help="a model file saved by `fastnn train --save` (or model.save)")
    parser.add_argument("--data", metavar="FILE", required=True,
                        help="a .csv (or .tsv) file of new rows with a header row: the model's feature columns, "
                             "with or without the target column")
    parser.add_argument("--output", metavar="FILE", default=None,
                        help="write the predictions to this CSV file instead of printing them")
    parser.add_argument("--proba", action="store_true",
                        help="also give each class's probability, one column per class (classification)")
    parser.add_argument("--target", metavar="COLUMN", default=None,
                        help="a column of the data to ignore (for a model file without the target's name)")


# ----------------------------------------------------------------------------- input
def _load_rows(args, model):
    """The feature matrix of args.data in the column order the model takes."""
    path = args.data
    if not os.path.isfile(path):
        raise UsageError(f"--data: no such file: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".csv", ".txt", ".tsv"):
        raise UsageError(f"--data {path}: expected a .csv file, got {suffix or 'no suffix'!r}")
    delimiter = "\t" if suffix == ".tsv" else ","
    try:
        header = csv_columns(path, delimiter)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    meta = model.meta or {}
    features = meta.get("features")
    stored_target = meta.get("target")
    if args.target is not None and args.target not in header:
        raise UsageError(f"--target {args.target}: no column named {args.target!r} in {path}; columns are {header}")
    target = args.target if args.target is not None else stored_target if stored_target in header else None
    X, _, _ = datasets.load_csv(path, target=target, delimiter=delimiter, dtype=model.dtype)
    names = [c for c in header if c != target]
    n = model.in_features
    if features is not None:
        missing = [f for f in features if f not in names]
        extra = [c for c in names if c not in features]
        if missing or extra:
            parts = ([f"lacks the model's feature column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"]
                     if missing else []) + \
                    ([f"has column{'s' if len(extra) > 1 else ''} {', '.join(extra)} the model was not trained on"]
                     if extra else [])
            raise UsageError(f"{path}: the file {' and '.join(parts)}; the model takes {', '.join(features)}"
                             + (f" (and ignores the target {stored_target})" if stored_target else ""))
        return X[:, [names.index(f) for f in features]]
    if X.shape[1] != n:
        hint = "" if target is not None or X.shape[1] != n + 1 else \
            "; if one of them is the target, name it with --target COLUMN"
        besides = f" besides the target {target!r}" if target is not None else ""
        raise UsageError(f"{path}: the model takes {n} feature columns, the file has {X.shape[1]}{besides}{hint}")
    return X


# ----------------------------------------------------------------------------- output
def _final_activation(model):
    """The class of the activation the model's outputs pass through last (None for none)."""
    last = model.layers[-1]
    act = last.activation if isinstance(last, Dense) else last
    return type(act)


def _probabilities(model, out):
    """Class probabilities from the outputs: softmax of logits (sigmoid for one output), unless already applied."""
    out = np.asarray(out, dtype=np.float64)
    last = _final_activation(model)
    if out.shape[1] == 1:
        p = out[:, 0] if last is Sigmoid else 1.0 / (1.0 + np.exp(-out[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    if last is Softmax:
        return out
    z = np.exp(out - out.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _table(args, model, out):
    """(header, rows) of the predictions."""
    meta = model.meta or {}
    task = meta.get("task")
    name = meta.get("target") or "prediction"
    if task == "classification":
        classes = meta.get("classes") or list(range(max(out.shape[1], 2)))
        proba = _probabilities(model, out)
        labels = [classes[i] for i in proba.argmax(axis=1)]
        if not args.proba:
            return [name], [[str(label)] for label in labels]
        return [name] + [f"proba_{c}" for c in classes], \
            [[str(label)] + [f"{p:.6g}" for p in row] for label, row in zip(labels, proba)]
    values = out.astype(model.dtype, copy=False)   # str() of a NumPy float: the shortest text that reads back
    if task == "regression":
        cols = [name] if out.shape[1] == 1 else [f"{name}_{j}" for j in range(out.shape[1])]
        return cols, [[str(v) for v in row] for row in values]
    cols = [f"output_{j}" for j in range(out.shape[1])] + (["class_index"] if out.shape[1] > 1 else [])
    index = out.argmax(axis=1)
    return cols, [[str(v) for v in row] + ([str(i)] if out.shape[1] > 1 else []) for row, i in zip(values, index)]


def _csv_text(header, rows) -> str:
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


# ----------------------------------------------------------------------------- run
def _predict(args):
    if not os.path.isfile(args.model):
        raise UsageError(f"--model: no such file: {args.model}")
    if args.output is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise UsageError(f"--output {args.output}: the directory {os.path.dirname(os.path.abspath(args.output))} "
                         "does not exist")
    model = load_model(args.model)
    task = (model.meta or {}).get("task")
    if args.proba and task != "classification":
        raise UsageError(f"--proba needs a classification model; {args.model} is a regression model"
                         if task == "regression" else
                         f"--proba needs the class names that `fastnn train --save` records, and {args.model} "
                         "has none (leave out --proba to get the raw outputs)")
    if task is None:
        print(f"{PROG}: note: {args.model} does not record the model's task and classes (it was not saved by "
              "`fastnn train --save` of this version): printing the raw outputs and their argmax as a class index",
              file=sys.stderr)
    X = _load_rows(args, model)
    out = np.asarray(model.predict(X))
    return _table(args, model, out), len(X)


def run(args: argparse.Namespace) -> int:
    """`fastnn predict` with parsed arguments; returns the exit code."""
    try:
        (header, rows), n = _predict(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    text = _csv_text(header, rows)
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        _atomic_write(args.output, lambda f: f.write(text.encode("utf-8")))
    except (ValueError, OSError) as exc:
        print(f"{PROG}: error: --output {args.output}: {exc}", file=sys.stderr)
        return 2
    print(f"{n} prediction{'s' if n != 1 else ''} written to {args.output}", flush=True)
    return 0


def main(argv=None) -> int:
    """Run `fastnn predict` with argv (default: sys.argv[1:]); returns the exit code."""
    parser = argparse.ArgumentParser(prog=PROG, description="Predict with a saved model for new rows of a CSV file.")
    configure(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
