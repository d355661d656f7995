"""ONNX export (fastnn.io.to_onnx, `fastnn train --save-onnx`): onnxruntime computes what fastnn computes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn as fnn
import fastnn.io as fio
from fastnn._cli_train import main as train_main
from fastnn.datasets import load_digits, train_test_split

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = {"float32": 1e-5, "float64": 1e-12}
DTYPES = ("float32", "float64")

# every activation fastnn has, as (id, factory of a fresh layer)
ACTIVATIONS = [
    ("relu", fnn.ReLU), ("leaky_relu", fnn.LeakyReLU), ("leaky_relu_0.2", lambda: fnn.LeakyReLU(0.2)),
    ("sigmoid", fnn.Sigmoid), ("tanh", fnn.Tanh), ("gelu", fnn.GELU), ("gelu_tanh", lambda: fnn.GELU("tanh")),
    ("elu", fnn.ELU), ("elu_0.7", lambda: fnn.ELU(0.7)), ("silu", fnn.SiLU), ("softmax", fnn.Softmax),
    ("softsign", fnn.Softsign), ("softplus", fnn.Softplus), ("softplus_2_5", lambda: fnn.Softplus(2.0, 5.0)),
    ("softmax_dim1", lambda: fnn.Softmax(1)), ("identity", fnn.Identity),
]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _export(model, path):
    """to_onnx, then the file passes the full checker; returns the loaded ModelProto."""
    fio.to_onnx(model, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _assert_same(model, path, x):
    y = _session(path).run(["y"], {"x": x})[0]
    training = model.training
    ref = model.eval()(x)
    model.train(training)
    assert y.dtype == model.dtype and y.shape == ref.shape
    tol = TOL[model.dtype.name]
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


def _x(n, width, dtype, seed=0):
    return (3 * np.random.default_rng(seed).standard_normal((n, width))).astype(dtype)


# ------------------------------------------------------------------------------------------------ every activation

@pytest.mark.parametrize("n", [1, 257])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [a for _, a in ACTIVATIONS], ids=[name for name, _ in ACTIVATIONS])
def test_every_activation_matches_fastnn(act, dtype, n, tmp_path):
    # the activation fused into a Dense (activation=), as a layer of its own after a bias-free Dense, and first
    model = fnn.Sequential([act(), fnn.Dense(6, 9, activation=act()), fnn.Dense(9, 5, use_bias=False), act()],
                           dtype=dtype, seed=4)
    _export(model, tmp_path / "m.onnx")
    _assert_same(model, tmp_path / "m.onnx", _x(n, 6, dtype))


WIDE = [(name, a) for name, a in ACTIVATIONS if name.startswith(("gelu", "elu", "silu", "sigmoid", "leaky"))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [a for _, a in WIDE], ids=[name for name, _ in WIDE])
def test_activation_over_a_wide_range(act, dtype, tmp_path):
    """Large |x|, the tails and (double GELU) the erf/erfc composition's branch points |x| = sqrt 2, 8 sqrt 2."""
    model = fnn.Sequential([act(), fnn.Dense(1, 1)], dtype=dtype, seed=0)
    model.parameters()[0].data[...] = 1.0
    model.parameters()[1].data[...] = 0.0
    edges = np.sqrt(2.0) * np.array([1.0, -1.0, 8.0, -8.0])
    x = np.concatenate([np.linspace(-60, 60, 24001), edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf),
                        [0.0, 1e-30, -1e-30, 1e30, -1e30]])[:, None].astype(dtype)
    _export(model, tmp_path / "m.onnx")
    _assert_same(model, tmp_path / "m.onnx", x)


# ------------------------------------------------------------------------------------------------ random architectures

def _random_activation(rng):
    return ACTIVATIONS[rng.integers(len(ACTIVATIONS))][1]()


def _random_model(rng, dtype):
    layers = []
    for _ in range(rng.integers(0, 3)):                     # activation layers (and dropout) before the first Dense
        layers.append(_random_activation(rng) if rng.random() < 0.7 else fnn.Dropout(0.3))
    width = in_features = int(rng.integers(1, 12))
    for _ in range(rng.integers(1, 5)):
        out = int(rng.integers(1, 33))
        act = None if rng.random() < 0.3 else (_random_activation(rng) if rng.random() < 0.5 else
                                               str(rng.choice(["relu", "tanh", "sigmoid", "gelu", "elu", "silu",
                                                               "leaky_relu", "softmax", "linear"])))
        layers.append(fnn.Dense(width, out, activation=act, use_bias=bool(rng.random() < 0.7)))
        if rng.random() < 0.3:
            layers.append(fnn.Dropout(float(rng.uniform(0.0, 0.9))))
        if rng.random() < 0.3:
            layers.append(_random_activation(rng))
        width = out
    if rng.random() < 0.4:
        layers.append(fnn.Softmax())
    return fnn.Sequential(layers, dtype=dtype, seed=int(rng.integers(1 << 31))), in_features


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_architectures(dtype, tmp_path):
    rng = np.random.default_rng(2024)
    for k in range(20):
        model, in_features = _random_model(rng, dtype)
        if rng.random() < 0.5:
            model.eval()
        path = tmp_path / f"m{k}.onnx"
        proto = _export(model, path)
        assert not any(node.op_type == "Dropout" for node in proto.graph.node)
        for n in (1, 257):
            _assert_same(model, path, _x(n, in_features, dtype, seed=k))


# ------------------------------------------------------------------------------------------------ the file

@pytest.mark.parametrize("dtype", DTYPES)
def test_graph_interface_and_metadata(dtype, tmp_path):
    model = fnn.Sequential([fnn.Dense(7, 5, activation="relu"), fnn.Dropout(0.3), fnn.Dense(5, 3)],
                           dtype=dtype, seed=0)
    proto = _export(model, tmp_path / "m.onnx")
    elem = onnx.TensorProto.FLOAT if dtype == "float32" else onnx.TensorProto.DOUBLE
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert proto.producer_name == "fastnn" and proto.producer_version == fnn.__version__
    assert "Dropout(p=0.3): left out" in proto.doc_string and "Dense(in_features=7, out_features=5" in \
        proto.doc_string and dtype in proto.doc_string
    for value, name, width in ((proto.graph.input, "x", 7), (proto.graph.output, "y", 3)):
        assert len(value) == 1 and value[0].name == name
        t = value[0].type.tensor_type
        assert t.elem_type == elem
        assert [(d.dim_param, d.dim_value) for d in t.shape.dim] == [("batch", 0), ("", width)]
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    for name, p in model.named_parameters():   # bit-exact copies, W stored as (in, out)
        np.testing.assert_array_equal(weights[name], p.data)
        assert weights[name].dtype == model.dtype
    assert model.training   # exporting does not change the model's mode


def test_import_fastnn_does_not_import_onnx():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(fnn.__file__).parent.parent), env.get("PYTHONPATH")]))
    code = "import sys, fastnn, fastnn.io; assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------------ atomic writes, errors

@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch, exc):
    path = tmp_path / "m.onnx"
    old = fnn.Sequential([fnn.Dense(3, 2)], seed=1)
    _export(old, path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise exc

    monkeypatch.setattr(fio.os, "fsync", broken_fsync)   # the new file is written, then the flush fails
    with pytest.raises(type(exc)):
        fio.to_onnx(fnn.Sequential([fnn.Dense(3, 2)], seed=2), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.onnx"]   # the temporary file is gone
    monkeypatch.undo()
    _assert_same(old, path, _x(4, 3, "float32"))


def test_bad_model(tmp_path):
    for bad in (None, [fnn.Dense(3, 2)], "model.fnn", fnn.Dense(3, 2)):
        with pytest.raises(TypeError, match=r"model must be a fastnn Sequential or a fitted MLPClassifier/"
                                            r"MLPRegressor .*, got "):
            fio.to_onnx(bad, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match=r"model must be a fastnn Sequential or a fitted .*, got int"):
        fio.to_onnx(3, None)   # the model is checked first

    class MyReLU(fnn.ReLU):
        pass

    for layers in ([fnn.Dense(3, 2), MyReLU()], [fnn.Dense(3, 2, activation=MyReLU())]):
        with pytest.raises(ValueError, match=r"model.layers\[[01]\] .*MyReLU.* has no ONNX export"):
            fio.to_onnx(fnn.Sequential(layers), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_bad_path(tmp_path):
    model = fnn.Sequential([fnn.Dense(3, 2)], seed=0)
    for bad in (None, 3, b"m.onnx", ["m.onnx"]):
        with pytest.raises(TypeError, match=r"path must be a str or os.PathLike"):
            fio.to_onnx(model, bad)
    with pytest.raises(ValueError, match=r"path must not be empty"):
        fio.to_onnx(model, "")
    with pytest.raises(ValueError, match=r"path must not contain a NUL"):
        fio.to_onnx(model, str(tmp_path / "a\0b"))
    with pytest.raises(ValueError, match=r"path must name a model file.*directory"):
        fio.to_onnx(model, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"does not exist"):   # as save_model
        fio.to_onnx(model, tmp_path / "no" / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_onnx_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)   # `import onnx` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastnn\[onnx\]"'):
        fio.to_onnx(fnn.Sequential([fnn.Dense(3, 2)]), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_too_large_for_one_file(tmp_path, monkeypatch):
    import fastnn.onnx as fonnx

    monkeypatch.setattr(fonnx, "_MAX_BYTES", 16)
    with pytest.raises(ValueError, match=r"model is too large for an ONNX file: its weights take 32 bytes"):
        fio.to_onnx(fnn.Sequential([fnn.Dense(3, 2)], dtype="float32"), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------ fastnn train

def test_cli_save_onnx_end_to_end(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(fnn.__file__).parent.parent), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "fastnn", "train", "--epochs", "2", "--quiet", "--seed", "3",
                           "--hidden", "32", "--dropout", "0.1", "--save-onnx", "out.onnx", "--save", "out.fnn"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    onnx.checker.check_model(onnx.load(str(tmp_path / "out.onnx")), full_check=True)
    X, y = load_digits()
    _, X_test, _, _ = train_test_split(X, y, test_size=0.2, stratify=y, random_state=3)
    model = fnn.load_model(tmp_path / "out.fnn")   # the same model, standardization folded in: raw features
    logits = _session(tmp_path / "out.onnx").run(["y"], {"x": X_test})[0]
    np.testing.assert_array_equal(logits.argmax(axis=1), model.predict(X_test).argmax(axis=1))
    _assert_same(model, tmp_path / "out.onnx", X_test)


def test_cli_save_onnx_regression_float64(tmp_path, capsys):
    r = np.random.default_rng(0)
    X = r.normal(5.0, 3.0, (200, 4))
    np.savez(tmp_path / "r.npz", X=X, y=X @ [1.0, -2.0, 3.0, 0.5] + 7.0)
    rc = train_main(["--data", str(tmp_path / "r.npz"), "--task", "regression", "--dtype", "float64", "--epochs",
                     "2", "--quiet", "--threads", "1", "--save", str(tmp_path / "r.fnn"),
                     "--save-onnx", str(tmp_path / "r.onnx")])
    assert rc == 0
    model = fnn.load_model(tmp_path / "r.fnn")   # the target's scaling is folded into the last layer too
    _assert_same(model, tmp_path / "r.onnx", X)


def test_cli_save_onnx_without_onnx_exits_2_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)   # `import onnx` raises ImportError
    rc = train_main(["--epochs", "2", "--quiet", "--save-onnx", str(tmp_path / "m.onnx")])
    assert rc == 2
    out, err = capsys.readouterr()
    assert err == 'fastnn train: error: --save-onnx needs onnx, an optional extra: pip install "fastnn[onnx]"\n'
    assert "test" not in out and os.listdir(tmp_path) == []


def test_cli_save_onnx_missing_directory_exits_2(tmp_path, capsys):
    rc = train_main(["--epochs", "2", "--quiet", "--save-onnx", str(tmp_path / "no" / "m.onnx")])
    assert rc == 2
    assert capsys.readouterr().err.startswith("fastnn train: error: --save-onnx ")
