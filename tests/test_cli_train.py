"""`fastnn train`: digits by default, CSV and .npz data, --save / --plot, and bad arguments (exit 2)."""

import re
import sys

import numpy as np
import pytest

import fastnn
from fastnn._cli_train import AUTO_MAX_CLASSES, AUTO_MIN_CLASS_ROWS, _prepare_target, main
from fastnn.datasets import load_digits, train_test_split


def _accuracy(out):
    m = re.search(r"test accuracy (\d\.\d+) \((\d+)/(\d+)\)", out)
    assert m, out
    return float(m.group(1)), int(m.group(2)), int(m.group(3))


def test_digits_defaults_reach_95_percent_with_progress_bar(capsys):
    assert main([]) == 0
    captured = capsys.readouterr()
    out = captured.out
    acc, correct, total = _accuracy(out)
    assert acc >= 0.95 and total == 360
    assert "Epoch 30/30" in captured.err and "Epoch" not in out   # the progress bar ran, on stderr
    assert "1797 samples, 64 features, 10 classes" in out
    assert "1293 train, 144 validation, 360 test" in out


def test_save_gives_a_model_on_raw_features(tmp_path, capsys):
    model_path = tmp_path / "digits.fnn"
    rc = main(["--quiet", "--epochs", "12", "--hidden", "64,32", "--dropout", "0.1", "--early-stopping", "2",
               "--save", str(model_path), "--threads", "1", "--seed", "3"])
    assert rc == 0
    acc, correct, total = _accuracy(capsys.readouterr().out)
    assert acc >= 0.9
    model = fastnn.io.load_model(model_path)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    # the saved model takes raw features (the standardization is folded in): same test split, same answers
    X, y = load_digits()
    _, X_test, _, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=3)
    assert abs(int((model.predict(X_test).argmax(axis=1) == y_test).sum()) - correct) <= 1


def test_plot_writes_png_with_early_stopping_marked(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    assert main(["--epochs", "40", "--early-stopping", "3", "--plot", str(png), "--lr", "0.01"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"early stopping after epoch \d+; restored the weights of epoch \d+", out)
    assert f"learning curves saved to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _blobs_csv(path, n=240, seed=0):
    r = np.random.default_rng(seed)
    names = ["setosa", "versicolor", "virginica"]
    with open(path, "w") as f:
        f.write("width,species,length,noise\n")
        for i in range(n):
            c = i % 3
            f.write(f"{r.normal(3 * c, 0.6):.4f},{names[c]},{r.normal(-2 * c, 0.6) * 100:.3f},{r.normal():.3f}\n")


def test_csv_with_string_labels(tmp_path, capsys):
    csv = tmp_path / "flowers.csv"
    _blobs_csv(csv)
    assert main(["--data", str(csv), "--target", "species", "--epochs", "40", "--hidden", "16",
                 "--optimizer", "adamw", "--lr", "0.01", "--val-split", "0"]) == 0
    out = capsys.readouterr().out
    assert "240 samples, 3 features, 3 classes" in out
    assert "classes: 0=setosa, 1=versicolor, 2=virginica" in out
    assert "0 validation, 48 test" in out
    assert _accuracy(out)[0] >= 0.9


def test_npz_regression_beats_the_mean_and_saves(tmp_path, capsys):
    r = np.random.default_rng(1)
    X = r.uniform(-2, 2, (500, 3))
    y = np.sin(X[:, 0]) * 3 + X[:, 1] ** 2 + 0.1 * r.standard_normal(500) + 50.0
    np.savez(tmp_path / "reg.npz", X=X, y=y)
    rc = main(["--data", str(tmp_path / "reg.npz"), "--epochs", "60", "--hidden", "64,64", "--quiet",
               "--save", str(tmp_path / "reg.fnn"), "--dtype", "float64"])
    assert rc == 0
    out = capsys.readouterr().out
    m = re.search(r"test MSE (\S+) - test MAE (\S+) - R\^2 (\S+) \(predicting the training mean: MSE (\S+)\)", out)
    assert m, out
    mse, baseline = float(m.group(1)), float(m.group(4))
    assert mse < baseline / 10
    model = fastnn.io.load_model(tmp_path / "reg.fnn")   # raw features in, targets in their own units out
    assert model.dtype == np.float64
    assert np.mean((model.predict(X)[:, 0] - y) ** 2) < baseline / 5


def test_task_override_and_integer_targets(tmp_path, capsys):
    r = np.random.default_rng(2)
    X = r.standard_normal((120, 2))
    y = (X[:, 0] > 0).astype(np.int64) * 5 + 2   # labels 2 and 7 -> classes 0, 1
    np.savez(tmp_path / "cls.npz", x=X, y=y)
    assert main(["--data", str(tmp_path / "cls.npz"), "--epochs", "20", "--quiet"]) == 0
    assert _accuracy(capsys.readouterr().out)[0] >= 0.85
    assert main(["--data", str(tmp_path / "cls.npz"), "--epochs", "2", "--task", "regression", "--quiet"]) == 0
    assert "test MSE" in capsys.readouterr().out


def test_saved_digits_model_records_its_task_and_classes(tmp_path, capsys):
    assert main(["--quiet", "--epochs", "1", "--hidden", "none", "--save", str(tmp_path / "d.fnn")]) == 0
    assert fastnn.load_model(tmp_path / "d.fnn").meta == {"task": "classification", "classes": list(range(10))}
    assert fastnn.io.load_info(tmp_path / "d.fnn")["meta"]["classes"] == list(range(10))


# ----------------------------------------------------------------------------- --task auto
def _ints(n_values, rows_each=AUTO_MIN_CLASS_ROWS, singletons=0):
    return np.concatenate([np.repeat(np.arange(n_values), rows_each), np.arange(n_values, n_values + singletons)])


@pytest.mark.parametrize("y,task,noted", [
    (_ints(AUTO_MAX_CLASSES), "classification", False),                           # at the limit
    (_ints(AUTO_MAX_CLASSES + 1), "regression", True),                            # one value more
    (_ints(AUTO_MAX_CLASSES - 1, singletons=1), "regression", True),              # a value seen once
    (_ints(2, rows_each=AUTO_MIN_CLASS_ROWS), "classification", False),
    (_ints(214, rows_each=3).astype(np.float64), "regression", True),             # 214 distinct, as floats
    (np.array([0.0, 1.0, 2.0, 1.0, 0.0, 2.0]), "classification", False),          # integer-valued floats
    (np.array([0.5, 1.0, 0.5, 1.0]), "regression", False),                        # not integers: no note
    (np.array(["b", "a", "c", "z"]), "classification", False),                    # text: always classes
])
def test_auto_task_rule_and_its_boundaries(y, task, noted):
    got, _, names, note = _prepare_target(y, None, "auto")
    assert got == task
    assert (note is not None) == noted
    if task == "classification":
        assert len(names) == len(np.unique(y))


def test_auto_task_notes_name_the_rule_and_the_override():
    _, _, _, note = _prepare_target(_ints(214, rows_each=3), None, "auto")
    assert note == (f"note: the integer target has 214 distinct values, more than {AUTO_MAX_CLASSES}, so it is "
                    "taken as a regression target; pass --task classification to treat its values as classes")
    _, _, _, note = _prepare_target(_ints(5, singletons=2), None, "auto")
    assert f"2 of its 7 values occur in fewer than {AUTO_MIN_CLASS_ROWS} rows" in note
    task, y, names, note = _prepare_target(_ints(214, rows_each=3), None, "classification")   # forced
    assert (task, len(names), note) == ("classification", 214, None)
    task, _, _, note = _prepare_target(_ints(3), None, "regression")
    assert (task, note) == ("regression", None)


def test_a_csv_float_target_with_214_integer_values_trains_as_regression(tmp_path, capsys):
    r = np.random.default_rng(4)
    x = r.uniform(0, 214, 600)
    with open(tmp_path / "glass.csv", "w") as f:
        f.write("x,noise,y\n")
        for v in x:
            f.write(f"{v:.3f},{r.normal():.3f},{float(int(v))}\n")   # "17.0": integer values written as floats
    assert main(["--data", str(tmp_path / "glass.csv"), "--target", "y", "--epochs", "3", "--val-split", "0",
                 "--save", str(tmp_path / "g.fnn")]) == 0
    out = capsys.readouterr().out
    assert "regression on 1 target" in out
    assert "distinct values, more than 100, so it is taken as a regression target" in out
    assert "test MSE" in out
    assert fastnn.load_model(tmp_path / "g.fnn").meta == {"task": "regression", "features": ["x", "noise"],
                                                         "target": "y"}


def test_help_documents_the_auto_task_rule(capsys):
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"integer targets with at most {AUTO_MAX_CLASSES} distinct values each in at least " \
           f"{AUTO_MIN_CLASS_ROWS} rows" in out
    assert "e.g. 214 distinct integers" in out


def test_fastnn_command_dispatches_train(capsys):
    from fastnn.__main__ import main as fastnn_main

    assert fastnn_main(["train", "--epochs", "1", "--quiet", "--hidden", "none"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        fastnn_main(["train", "--epochs", "0"])
    assert exc.value.code == 2
    assert "--epochs: must be >= 1, got 0" in capsys.readouterr().err


BAD = [
    (["--hidden", "64,x"], r"--hidden: expected comma-separated layer widths like 128,64, got '64,x'"),
    (["--hidden", "0"], "layer widths must be >= 1"),
    (["--lr", "-1"], r"--lr: must be in \(0, inf\), got -1"),
    (["--val-split", "1"], r"--val-split: must be in \[0, 1\), got 1"),
    (["--test-split", "0"], r"--test-split: must be in \(0, 1\)"),
    (["--dropout", "nan"], "--dropout: must be in"),
    (["--epochs", "two"], "--epochs: expected an integer, got 'two'"),
    (["--optimizer", "lbfgs"], "--optimizer: invalid choice: 'lbfgs'"),
    (["--activation", "swish"], "--activation: invalid choice"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--data", "{tmp}/missing.csv", "--target", "y"], "--data: no such file: .*missing.csv"),
    (["--data", "{tmp}/flowers.csv"], "a CSV file needs --target COLUMN"),
    (["--data", "{tmp}/flowers.csv", "--target", "colour"], r"flowers.csv, line 1: no column named 'colour'"),
    (["--data", "{tmp}/bad.csv", "--target", "y"], r"bad.csv, line 3, column 'a': value 'oops' is not a number"),
    (["--data", "{tmp}/data.json"], r"expected a .csv or .npz file, got '.json'"),
    (["--target", "species"], "--target needs --data FILE.csv"),
    (["--data", "{tmp}/flowers.csv", "--target", "species", "--task", "regression"],
     "--task regression needs a numeric target"),
    (["--data", "{tmp}/real.npz", "--task", "classification"], "needs integer class labels"),
    (["--data", "{tmp}/junk.npz"], r"junk.npz: not a readable .npz file"),
    (["--data", "{tmp}/one.npz"], r"the target has a single class \(4\)"),
    (["--save", "{tmp}/no/such/dir/m.fnn"], "--save .*m.fnn: the directory .* does not exist"),
    (["--plot", "{tmp}/no/such/dir/c.png"], "--plot .*c.png: the directory .* does not exist"),
    (["--threads", "0"], "--threads: must be >= 1, got 0"),
]


@pytest.mark.parametrize("argv,match", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, argv, match):
    _blobs_csv(tmp_path / "flowers.csv", n=30)
    (tmp_path / "bad.csv").write_text("a,y\n1,0\noops,1\n")
    (tmp_path / "data.json").write_text("{}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "real.npz", X=np.zeros((10, 2)), y=np.linspace(0, 1, 10))
    np.savez(tmp_path / "one.npz", X=np.zeros((10, 2)), y=np.full(10, 4))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv + ["--epochs", "1"] if "--epochs" not in argv else argv) == 2
    captured = capsys.readouterr()
    assert re.search(match, captured.err), captured.err
    assert "Traceback" not in captured.err
    assert captured.err.strip().splitlines()[-1].startswith("fastnn train: error:")
    assert "test accuracy" not in captured.out


def test_diverging_training_exits_1(capsys):
    assert main(["--optimizer", "sgd", "--lr", "1e6", "--epochs", "3", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.match(r"fastnn train: training diverged: the loss became (nan|inf) .*; try a smaller --lr$", err), err


def test_plot_without_matplotlib_is_a_usage_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["--plot", str(tmp_path / "c.png"), "--epochs", "1"]) == 2
    assert r"pip install fastnn[plot]" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--data", "--target", "--hidden", "--early-stopping", "--val-split", "--test-split", "--save",
                   "--plot", "--threads", "--dtype", "--quiet", "--task"):
        assert option in out
