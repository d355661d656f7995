"""ONNX export of fitted MLP estimators (fastnn.io.to_onnx): onnxruntime's label / probabilities / variable
equal the estimator's predict / predict_proba, for fastnn.sklearn's estimators and scikit-learn's (the exporter
reads only the fitted attributes both have)."""

import os
import types
import warnings

import numpy as np
import pytest

import fastnn.io as fio

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
sk_nn = pytest.importorskip("sklearn.neural_network")

TOL = {"float32": 1e-5, "float64": 1e-12}
DTYPES = ("float32", "float64")
HIDDEN = ("identity", "logistic", "tanh", "relu")
TASKS = ("binary", "multiclass", "multilabel", "regression", "poisson")
FLAVOURS = ("fastnn", "sklearn")   # fastnn.sklearn's estimators, and scikit-learn's (the same fitted attributes)


def _module(flavour):
    if flavour == "sklearn":
        return sk_nn
    import fastnn.sklearn

    return fastnn.sklearn


def _data(task, n, n_features, dtype, seed, labels="int"):
    r = np.random.default_rng(seed)
    X = (2 * r.standard_normal((n, n_features))).astype(dtype)
    score = X @ r.standard_normal((n_features, 3))
    if task == "regression":
        return X, score[:, :2] if seed % 2 else score[:, 0]          # one and two outputs
    if task == "poisson":
        return X, r.poisson(np.exp(0.3 * score[:, 0])).astype(np.float64)
    if task == "multilabel":
        return X, (score > 0).astype(np.int64)
    k = score[:, :2 if task == "binary" else 3].argmax(axis=1)
    table = {"int": np.array([-4, 7, 12]), "str": np.array(["cat", "dog", "émeu"]),
             "float": np.array([-1.0, 1.0, 3.0]), "bool": np.array([False, True, True]),
             "object": np.array(["x", "yy", "zzz"], dtype=object)}[labels]
    return X, table[k]


def _fit(flavour, task, dtype, seed=0, n=240, n_features=5, labels="int", **params):
    X, y = _data(task, n, n_features, dtype, seed, labels)
    mod = _module(flavour)
    if task in ("regression", "poisson"):
        est = mod.MLPRegressor(loss="poisson" if task == "poisson" else "squared_error", **params)
    else:
        est = mod.MLPClassifier(**params)
    params.setdefault("max_iter", 40)
    est.set_params(random_state=seed, max_iter=params["max_iter"], learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ConvergenceWarning: a few iterations are all these tests need
        est.fit(X, y)
    return est, X


def _export(est, path):
    fio.to_onnx(est, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _run(path, X):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, {"X": X}))}


def _assert_labels(label, expected, proba, tol):
    """Equal labels, except that a row whose two largest probabilities are within tol of each other (a tie up to
    rounding) may name either of the two."""
    assert label.dtype == expected.dtype or (label.dtype == object and expected.dtype.kind in "UO")
    assert label.shape == expected.shape
    if proba.shape[1] == 1 or label.ndim == 2:
        near = np.abs(proba - 0.5) <= tol
        np.testing.assert_array_equal(label[~near], expected[~near])
        return
    top2 = np.sort(proba, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > tol
    np.testing.assert_array_equal(label[clear], expected[clear])


def _assert_same(est, path, X):
    out = _run(path, X)
    tol = TOL[X.dtype.name]
    if hasattr(est, "classes_"):
        assert list(out) == ["label", "probabilities"]
        proba = est.predict_proba(X)
        assert out["probabilities"].dtype == X.dtype and out["probabilities"].shape == proba.shape
        np.testing.assert_allclose(out["probabilities"], proba, rtol=tol, atol=tol)
        expected = est.predict(X)
        if expected.dtype.kind == "b":
            expected = expected.astype(np.int64)
        elif expected.dtype.kind == "U":
            expected = expected.astype(object)
        _assert_labels(out["label"], expected, proba, tol)
    else:
        assert list(out) == ["variable"]
        pred = est.predict(X)
        pred = pred.reshape(len(X), -1)
        assert out["variable"].dtype == X.dtype and out["variable"].shape == pred.shape
        np.testing.assert_allclose(out["variable"], pred, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------------ every activation

@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN)
def test_every_activation_and_task(flavour, activation, dtype, task, tmp_path):
    est, X = _fit(flavour, task, dtype, hidden_layer_sizes=(9, 6), activation=activation)
    _export(est, tmp_path / "m.onnx")
    for rows in (X[:1], X, _data(task, 300, 5, dtype, seed=99)[0]):   # batch 1, the training rows, new rows
        _assert_same(est, tmp_path / "m.onnx", rows)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_architectures(flavour, dtype, tmp_path):
    r = np.random.default_rng(123)
    for k in range(10):
        hidden = tuple(int(w) for w in r.integers(1, 40, r.integers(0, 4)))   # 0 to 3 hidden layers
        task = TASKS[k % len(TASKS)]
        est, X = _fit(flavour, task, dtype, seed=k, n=int(r.integers(30, 200)), n_features=int(r.integers(1, 12)),
                      hidden_layer_sizes=hidden, activation=HIDDEN[int(r.integers(0, 4))], max_iter=10)
        path = tmp_path / f"m{k}.onnx"
        _export(est, path)
        for n in (1, 2, 513):
            _assert_same(est, path, _data(task, n, X.shape[1], dtype, seed=1000 + k)[0])


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("labels", ["int", "str", "float", "bool", "object"])
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_label_types(flavour, task, labels, tmp_path):
    if labels == "bool" and task == "multiclass":
        task = "binary"   # two values only
    est, X = _fit(flavour, task, "float64", labels=labels, hidden_layer_sizes=(8,))
    proto = _export(est, tmp_path / "m.onnx")
    elem = {"int": onnx.TensorProto.INT64, "bool": onnx.TensorProto.INT64, "float": onnx.TensorProto.DOUBLE,
            "str": onnx.TensorProto.STRING, "object": onnx.TensorProto.STRING}[labels]
    assert proto.graph.output[0].type.tensor_type.elem_type == elem
    _assert_same(est, tmp_path / "m.onnx", X)
    out = _run(tmp_path / "m.onnx", X)
    assert set(out["label"].tolist()) <= set(est.classes_.tolist())


# ------------------------------------------------------------------------------------------------ the file

@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", TASKS)
def test_graph_interface(flavour, task, dtype, tmp_path):
    est, X = _fit(flavour, task, dtype, hidden_layer_sizes=(4,))
    proto = _export(est, tmp_path / "m.onnx")
    elem = onnx.TensorProto.FLOAT if dtype == "float32" else onnx.TensorProto.DOUBLE
    assert [o.version for o in proto.opset_import] == [17]   # the default domain only: no ai.onnx.ml
    assert {n.domain for n in proto.graph.node} == {""}
    assert proto.producer_name == "fastnn" and type(est).__name__ in proto.doc_string and dtype in proto.doc_string

    def spec(value):
        t = value.type.tensor_type
        return value.name, t.elem_type, [d.dim_param or d.dim_value for d in t.shape.dim]

    assert [spec(v) for v in proto.graph.input] == [("X", elem, ["batch", 5])]
    n_out = est.coefs_[-1].shape[1]
    if task in ("regression", "poisson"):
        assert [spec(v) for v in proto.graph.output] == [("variable", elem, ["batch", n_out])]
    elif task == "multilabel":
        assert [spec(v) for v in proto.graph.output] == [("label", onnx.TensorProto.INT64, ["batch", 3]),
                                                         ("probabilities", elem, ["batch", 3])]
    else:
        assert [spec(v) for v in proto.graph.output] == [("label", onnx.TensorProto.INT64, ["batch"]),
                                                         ("probabilities", elem, ["batch", len(est.classes_)])]
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        np.testing.assert_array_equal(weights[f"coefs_{i}"], w)
        np.testing.assert_array_equal(weights[f"intercepts_{i}"], b)
        assert weights[f"coefs_{i}"].dtype == np.dtype(dtype)


def test_duck_typed_attributes_only(tmp_path):
    """Any object with the fitted attributes exports (scikit-learn is never needed): here a hand-made
    two-layer relu regressor, checked against NumPy."""
    r = np.random.default_rng(5)
    w0, b0, w1, b1 = r.standard_normal((3, 4)), r.standard_normal(4), r.standard_normal((4, 2)), r.standard_normal(2)
    est = types.SimpleNamespace(coefs_=[w0, w1], intercepts_=[b0, b1], activation="relu", out_activation_="identity")
    fio.to_onnx(est, tmp_path / "m.onnx")
    X = r.standard_normal((50, 3))
    out = _run(tmp_path / "m.onnx", X)["variable"]
    np.testing.assert_allclose(out, np.maximum(X @ w0 + b0, 0) @ w1 + b1, rtol=1e-12, atol=1e-12)


def test_any_fastnn_activation_name(tmp_path):
    """A duck-typed estimator may name any activation of fastnn's registry (ELU here): exported as for a
    Sequential."""
    r = np.random.default_rng(6)
    w0, b0, w1, b1 = r.standard_normal((3, 5)), r.standard_normal(5), r.standard_normal((5, 1)), r.standard_normal(1)
    est = types.SimpleNamespace(coefs_=[w0, w1], intercepts_=[b0, b1], activation="elu", out_activation_="exp")
    fio.to_onnx(est, tmp_path / "m.onnx")
    X = r.standard_normal((40, 3))
    z = X @ w0 + b0
    expected = np.exp(np.where(z > 0, z, np.expm1(z)) @ w1 + b1)
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", X)["variable"], expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_unfitted_estimator(flavour, tmp_path):
    mod = _module(flavour)
    for est in (mod.MLPClassifier(), mod.MLPRegressor()):
        with pytest.raises(ValueError, match=r"model \(MLP(Classifier|Regressor)\) is not fitted: call its fit"):
            fio.to_onnx(est, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_attributes_without_an_export(tmp_path):
    est, _ = _fit("fastnn", "multiclass", "float64", hidden_layer_sizes=(4,))

    def bad(**changes):
        fields = dict(coefs_=est.coefs_, intercepts_=est.intercepts_, activation=est.activation,
                      out_activation_=est.out_activation_, classes_=est.classes_)
        fields.update(changes)
        return types.SimpleNamespace(**fields)

    cases = [
        (bad(activation="swish"), r"SimpleNamespace\.activation must be one of scikit-learn's activation .*'swish'"),
        (bad(activation=None), r"\.activation must be one of scikit-learn's activation names .*None"),
        (bad(out_activation_="cube"), r"\.out_activation_ must be one of .* or 'exp', got 'cube'"),
        (bad(coefs_=[w.astype(np.float32) for w in est.coefs_]), r"intercepts_\[0\] must have the dtype of coefs_"),
        (bad(coefs_=[w.astype(np.int64) for w in est.coefs_]), r"coefs_ must be float32 or float64 arrays, got int64"),
        (bad(coefs_=est.coefs_[:1]), r"coefs_ and .intercepts_ must be non-empty lists of one length, got 1 and 2"),
        (bad(coefs_=[est.coefs_[0], est.coefs_[1][1:]]), r"coefs_\[1\] must be a \(4, k\) matrix"),
        (bad(classes_=np.array([1, "a", 2.0], dtype=object)), r"classes_ must be integers, floats or strings"),
        (bad(classes_=np.array([0, 1])), r"no classifier ONNX export knows"),
        (bad(out_activation_="identity"), r"no classifier ONNX export knows"),
    ]
    for obj, message in cases:
        with pytest.raises(ValueError, match=message):
            fio.to_onnx(obj, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_too_large_for_one_file(tmp_path, monkeypatch):
    import fastnn.onnx as fonnx

    est, _ = _fit("fastnn", "regression", "float64", hidden_layer_sizes=(2,))
    monkeypatch.setattr(fonnx, "_MAX_BYTES", 16)
    with pytest.raises(ValueError, match=r"model is too large for an ONNX file: its weights take \d+ bytes"):
        fio.to_onnx(est, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []
