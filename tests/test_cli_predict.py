"""`fastnn predict`: train -> save -> predict on new rows, by column name or by width, and its errors (exit 2)."""

import csv
import io
import re

import numpy as np
import pytest

import fastnn
from fastnn._cli_predict import main
from fastnn._cli_train import main as train
from fastnn.datasets import load_csv

NAMES = ["setosa", "versicolor", "virginica"]


def _flowers(path, n=120, seed=0):
    r = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write("petal,species,sepal,noise\n")
        for i in range(n):
            c = i % 3
            f.write(f"{r.normal(3 * c, 0.6):.4f},{NAMES[c]},{r.normal(-2 * c, 0.6) * 100:.3f},{r.normal():.3f}\n")


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    """(directory, the training CSV, the saved model) for a 3-class model trained by `fastnn train`."""
    d = tmp_path_factory.mktemp("predict")
    _flowers(d / "flowers.csv")
    assert train(["--data", str(d / "flowers.csv"), "--target", "species", "--epochs", "30", "--hidden", "16",
                  "--lr", "0.01", "--quiet", "--save", str(d / "m.fnn")]) == 0
    return d, d / "flowers.csv", d / "m.fnn"


def _rows(text):
    return list(csv.reader(io.StringIO(text)))


def _expected(model_path, X):
    """Labels and softmax probabilities computed here from the loaded model."""
    model = fastnn.load_model(model_path)
    out = np.asarray(model.predict(X), dtype=np.float64)
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return [model.meta["classes"][i] for i in p.argmax(axis=1)], p


def test_train_saves_task_classes_features_and_target(flowers):
    _, _, model_path = flowers
    assert fastnn.load_model(model_path).meta == {
        "task": "classification", "classes": NAMES, "features": ["petal", "sepal", "noise"], "target": "species"}


def test_new_rows_without_the_target_in_another_column_order(flowers, capsys):
    d, _, model_path = flowers
    new = d / "new.csv"
    new.write_text("noise,sepal,petal\n0.1,-400,6\n\n0.2,0,0\n 0 , -200 , 3 \n")   # load_csv's rules: blanks, spaces
    assert main(["--model", str(model_path), "--data", str(new)]) == 0
    captured = capsys.readouterr()
    rows = _rows(captured.out)
    X = np.array([[6, -400, 0.1], [0, 0, 0.2], [3, -200, 0]], np.float32)   # in the trained order
    labels, proba = _expected(model_path, X)
    assert rows == [["species"]] + [[label] for label in labels]
    assert labels[:2] == ["virginica", "setosa"]
    assert captured.err == ""

    assert main(["--model", str(model_path), "--data", str(new), "--proba"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[0] == ["species", "proba_setosa", "proba_versicolor", "proba_virginica"]
    got = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    np.testing.assert_allclose(got, proba, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)
    assert [row[0] for row in rows[1:]] == labels


def test_rows_with_the_target_column_and_output_file(flowers, capsys):
    d, data, model_path = flowers
    out = d / "pred.csv"
    assert main(["--model", str(model_path), "--data", str(data), "--output", str(out), "--proba"]) == 0
    assert capsys.readouterr().out.strip() == f"120 predictions written to {out}"
    rows = _rows(out.read_text())
    X, y, classes = load_csv(data, "species")
    labels, _ = _expected(model_path, X)
    assert [r[0] for r in rows[1:]] == labels
    accuracy = np.mean([label == classes[t] for label, t in zip(labels, y)])
    assert accuracy >= 0.9   # the target column was ignored, not used as a feature


def test_regression_by_width_for_a_model_trained_on_npz(tmp_path, capsys):
    r = np.random.default_rng(1)
    X = r.uniform(-2, 2, (300, 2))
    y = 3 * X[:, 0] - X[:, 1] + 10
    np.savez(tmp_path / "reg.npz", X=X, y=y)
    assert train(["--data", str(tmp_path / "reg.npz"), "--epochs", "40", "--quiet", "--hidden", "16",
                  "--save", str(tmp_path / "reg.fnn")]) == 0
    capsys.readouterr()
    model = fastnn.load_model(tmp_path / "reg.fnn")
    assert model.meta == {"task": "regression"}   # a .npz names no columns
    (tmp_path / "new.csv").write_text("u,v\n1,2\n-1,0.5\n")
    assert main(["--model", str(tmp_path / "reg.fnn"), "--data", str(tmp_path / "new.csv")]) == 0
    rows = _rows(capsys.readouterr().out)
    want = model.predict(np.array([[1, 2], [-1, 0.5]], np.float32))[:, 0]
    assert rows[0] == ["prediction"] and [np.float32(v[0]) for v in rows[1:]] == list(want)   # exact text
    assert abs(float(rows[1][0]) - 11) < 1.5
    # a third column: the target, named with --target (the file does not record it)
    (tmp_path / "with_y.csv").write_text("u,y,v\n1,11,2\n-1,6.5,0.5\n")
    assert main(["--model", str(tmp_path / "reg.fnn"), "--data", str(tmp_path / "with_y.csv"),
                 "--target", "y"]) == 0
    assert _rows(capsys.readouterr().out)[1:] == rows[1:]
    assert main(["--model", str(tmp_path / "reg.fnn"), "--data", str(tmp_path / "with_y.csv")]) == 2
    assert "the model takes 2 feature columns, the file has 3; if one of them is the target, name it with " \
           "--target COLUMN" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "reg.fnn"), "--data", str(tmp_path / "new.csv"), "--proba"]) == 2
    assert "--proba needs a classification model; " in capsys.readouterr().err


def test_regression_csv_names_the_value_column_after_the_target(tmp_path, capsys):
    r = np.random.default_rng(2)
    with open(tmp_path / "houses.csv", "w") as f:
        f.write("rooms,price,area\n")
        for _ in range(200):
            rooms, area = r.integers(1, 6), r.uniform(30, 200)
            f.write(f"{rooms},{1000 * rooms + 20 * area + r.normal(0, 5):.2f},{area:.1f}\n")
    assert train(["--data", str(tmp_path / "houses.csv"), "--target", "price", "--epochs", "5", "--quiet",
                  "--save", str(tmp_path / "h.fnn")]) == 0
    capsys.readouterr()
    assert fastnn.load_model(tmp_path / "h.fnn").meta == {"task": "regression", "features": ["rooms", "area"],
                                                         "target": "price"}
    (tmp_path / "new.csv").write_text("area,rooms\n50,2\n")
    assert main(["--model", str(tmp_path / "h.fnn"), "--data", str(tmp_path / "new.csv")]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[0] == ["price"] and len(rows) == 2 and np.isfinite(float(rows[1][0]))


def test_a_model_file_without_meta_gives_raw_outputs_and_class_indices(tmp_path, capsys):
    model = fastnn.Sequential(fastnn.Dense(2, 3), seed=0)
    model.save(tmp_path / "plain.fnn")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n3,-4\n")
    assert main(["--model", str(tmp_path / "plain.fnn"), "--data", str(tmp_path / "x.csv")]) == 0
    captured = capsys.readouterr()
    assert "does not record the model's task and classes" in captured.err
    rows = _rows(captured.out)
    out = model.predict(np.array([[1, 2], [3, -4]], np.float32))
    assert rows[0] == ["output_0", "output_1", "output_2", "class_index"]
    assert [[np.float32(v) for v in row[:3]] for row in rows[1:]] == out.tolist()
    assert [int(row[3]) for row in rows[1:]] == list(out.argmax(axis=1))
    assert main(["--model", str(tmp_path / "plain.fnn"), "--data", str(tmp_path / "x.csv"), "--proba"]) == 2
    err = capsys.readouterr().err
    assert "--proba needs the class names that `fastnn train --save` records" in err and "Traceback" not in err


def test_a_softmax_or_sigmoid_output_is_not_squashed_twice(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    soft = fastnn.Sequential(fastnn.Dense(2, 3, activation="softmax"), seed=0)
    soft.meta = {"task": "classification", "classes": ["x", "y", "z"]}
    soft.save(tmp_path / "s.fnn")
    assert main(["--model", str(tmp_path / "s.fnn"), "--data", str(tmp_path / "x.csv"), "--proba"]) == 0
    got = [float(v) for v in _rows(capsys.readouterr().out)[1][1:]]
    np.testing.assert_allclose(got, soft.predict(np.array([[1, 2]], np.float32))[0], rtol=1e-5)
    binary = fastnn.Sequential(fastnn.Dense(2, 1), seed=0)   # one logit: sigmoid, two classes
    binary.meta = {"task": "classification", "classes": ["no", "yes"]}
    binary.save(tmp_path / "b.fnn")
    assert main(["--model", str(tmp_path / "b.fnn"), "--data", str(tmp_path / "x.csv"), "--proba"]) == 0
    rows = _rows(capsys.readouterr().out)
    p = 1 / (1 + np.exp(-float(binary.predict(np.array([[1, 2]], np.float32))[0, 0])))
    assert rows[0] == ["prediction", "proba_no", "proba_yes"]
    np.testing.assert_allclose([float(v) for v in rows[1][1:]], [1 - p, p], rtol=1e-5)
    assert rows[1][0] == ("yes" if p > 0.5 else "no")


BAD = [
    (["--model", "{tmp}/missing.fnn", "--data", "{tmp}/new.csv"], r"--model: no such file: .*missing.fnn"),
    (["--model", "{model}", "--data", "{tmp}/missing.csv"], r"--data: no such file: .*missing.csv"),
    (["--model", "{tmp}/new.csv", "--data", "{tmp}/new.csv"], r"cannot load model file .*new.csv.*not a fastnn model"),
    (["--model", "{model}", "--data", "{tmp}/data.npz"], r"expected a .csv file, got '.npz'"),
    (["--model", "{model}", "--data", "{tmp}/short.csv"], r"lacks the model's feature column sepal; the model takes "
                                                           r"petal, sepal, noise \(and ignores the target species\)"),
    (["--model", "{model}", "--data", "{tmp}/extra.csv"], r"has column colour the model was not trained on"),
    (["--model", "{model}", "--data", "{tmp}/text.csv"], r"text.csv, line 3, column 'sepal': value 'big' is not a num"),
    (["--model", "{model}", "--data", "{tmp}/ragged.csv"], r"ragged.csv, line 2: expected 3 fields like the header"),
    (["--model", "{model}", "--data", "{tmp}/empty.csv"], r"empty.csv: the file is empty"),
    (["--model", "{model}", "--data", "{tmp}/new.csv", "--target", "kind"], r"--target kind: no column named 'kind'"),
    (["--model", "{model}", "--data", "{tmp}/new.csv", "--output", "{tmp}/no/dir/p.csv"],
     r"--output .*p.csv: the directory .* does not exist"),
]


@pytest.mark.parametrize("argv,match", BAD, ids=[m for _, m in BAD])
def test_bad_input_exits_2_with_one_line(flowers, tmp_path, capsys, argv, match):
    _, _, model_path = flowers
    (tmp_path / "new.csv").write_text("petal,sepal,noise\n1,2,3\n")
    (tmp_path / "short.csv").write_text("petal,noise\n1,3\n")
    (tmp_path / "extra.csv").write_text("petal,sepal,noise,colour\n1,2,3,4\n")
    (tmp_path / "text.csv").write_text("petal,sepal,noise\n1,2,3\n1,big,3\n")
    (tmp_path / "ragged.csv").write_text("petal,sepal,noise\n1,2\n")
    (tmp_path / "empty.csv").write_text("\n\n")
    np.savez(tmp_path / "data.npz", X=np.zeros((2, 3)))
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{model}", str(model_path)) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert re.search(match, captured.err), captured.err
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("fastnn predict: error: ")
    assert captured.out == ""


def test_fastnn_command_has_predict_and_version(flowers, capsys):
    from fastnn.__main__ import main as fastnn_main

    _, data, model_path = flowers
    assert fastnn_main(["predict", "--model", str(model_path), "--data", str(data)]) == 0
    assert _rows(capsys.readouterr().out)[0] == ["species"]
    for flag in ("--version", "-V"):
        with pytest.raises(SystemExit) as exc:
            fastnn_main([flag])
        assert exc.value.code == 0
        assert capsys.readouterr().out.strip() == f"fastnn {fastnn.__version__}"
    with pytest.raises(SystemExit) as exc:
        fastnn_main(["predict", "--data", str(data)])
    assert exc.value.code == 2
    assert "the following arguments are required: --model" in capsys.readouterr().err


def test_load_csv_without_a_target_reads_every_column_as_a_feature(tmp_path):
    (tmp_path / "x.csv").write_text("a, b\n1,2\n\n3 ,4.5\n")
    X, y, classes = load_csv(tmp_path / "x.csv", target=None, dtype="float64")
    assert y is None and classes is None
    np.testing.assert_array_equal(X, [[1, 2], [3, 4.5]])
    (tmp_path / "t.csv").write_text("a,label\n1,cat\n")
    with pytest.raises(ValueError, match=r"t.csv, line 2, column 'label': value 'cat' is not a number"):
        load_csv(tmp_path / "t.csv", target=None)
