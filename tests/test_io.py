"""Model files (fastnn.io): bit-exact round trips, resumed training, atomic writes, hostile files, torch interop."""

import io as _io
import json
import os
import pathlib
import pickle
import re
import zipfile

import numpy as np
import pytest

import fastnn as fnn
from fastnn import io as fio
from fastnn import layers as L

# ------------------------------------------------------------------------------------------------ helpers


def _arch(kind):
    """Layer lists covering every activation (strings, objects, separate layers), dropout and no-bias."""
    if kind == "strings":
        return [fnn.Dense(5, 7, activation="relu"), fnn.Dense(7, 6, activation="sigmoid"),
                fnn.Dense(6, 6, activation="tanh"), fnn.Dense(6, 5, activation="leaky_relu"),
                fnn.Dense(5, 5, activation="gelu"), fnn.Dense(5, 4, activation="elu"),
                fnn.Dense(4, 4, activation="silu"), fnn.Dense(4, 3, activation="softmax")]
    if kind == "objects":
        return [fnn.Dense(5, 8, activation=fnn.LeakyReLU(0.3), init="he_normal"), fnn.Dropout(0.25),
                fnn.Dense(8, 6, activation=fnn.GELU("tanh"), use_bias=False, init="torch"),
                fnn.Dense(6, 5, activation=fnn.Softmax(dim=1), init="lecun_uniform"),
                fnn.Dense(5, 3, activation=fnn.ELU(0.7), init="glorot_normal")]
    if kind == "layers":
        return [fnn.Tanh(), fnn.Dense(5, 9), fnn.ReLU(), fnn.Dropout(0.5), fnn.Dense(9, 9, use_bias=False),
                fnn.LeakyReLU(negative_slope=0.05), fnn.Identity(), fnn.Dense(9, 4), fnn.GELU(), fnn.SiLU(),
                fnn.Dropout(0.0), fnn.Dense(4, 3, init="he_uniform"), fnn.Sigmoid()]
    if kind == "single":
        return [fnn.Dense(5, 3, use_bias=False)]
    raise AssertionError(kind)


ARCHS = ["strings", "objects", "layers", "single"]


def _model(kind="objects", dtype="float64", seed=7):
    return fnn.Sequential(_arch(kind), dtype=dtype, seed=seed)


def _assert_same_model(a, b):
    assert type(b) is fnn.Sequential
    assert b.dtype == a.dtype and b.seed == a.seed and b._step == a._step and b.epoch == a.epoch
    assert repr(b) == repr(a)
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert type(la) is type(lb)
        assert la._config() == lb._config()
        if isinstance(la, fnn.Dense):
            assert type(la.activation) is type(lb.activation)
            assert la.activation._config() == lb.activation._config()
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert pb.data.dtype == pa.data.dtype
        assert pb.data.tobytes() == pa.data.tobytes(), pa.name


def _compile(model, opt, loss, metrics=None):
    model.compile(optimizer=opt, loss=loss, metrics=metrics)
    return model


def _loop(model, x, y, steps, start=0, batch=8):
    """The lecture's PyTorch-style loop (steps start .. start+steps-1) with the compiled optimizer and loss."""
    loss_fn, opt = model.loss, model.optimizer
    model.train()
    for s in range(start, start + steps):
        i = (s * batch) % len(x)
        out = model(x[i:i + batch])
        loss_fn(out, y[i:i + batch])
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()


def _data(n=40, d=5, c=3, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, d)), r.integers(0, c, n)


def _rewrite(src, dst, mutate=None):
    """Copy a model file through np.load/_write_npz, letting mutate(header, arrays) tamper with it."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop(fio.HEADER).tobytes())
    if mutate is not None:
        mutate(header, arrays)
    text = json.dumps(header).encode()
    with open(dst, "wb") as f:
        fio._write_npz(f, {fio.HEADER: np.frombuffer(text, np.uint8), **arrays})
    return dst


def _load_error(path, match):
    with pytest.raises(ValueError, match=match) as info:
        fio.load_model(path)
    assert str(path) in str(info.value)   # the message names the file
    return info


# ------------------------------------------------------------------------------------------------ round trips

@pytest.mark.parametrize("kind", ARCHS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_exact(tmp_path, kind, dtype):
    model = _model(kind, dtype, seed=11)
    x = np.random.default_rng(1).standard_normal((6, 5))
    model(x)
    model(x)    # two training-mode passes: the dropout counter is 2
    model.epoch = 4
    path = tmp_path / "model.fnn"
    model.save(path)
    loaded = fio.load_model(path)
    _assert_same_model(model, loaded)
    assert loaded.training and loaded._step == 2 and loaded.epoch == 4
    assert loaded.optimizer is None
    # same outputs, in eval mode and in training mode (same dropout masks: same seed and counter)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))
    np.testing.assert_array_equal(loaded.train()(x), model.train()(x))
    # a plain .npz: numpy reads it without pickle
    with np.load(path, allow_pickle=False) as z:
        for name, p in model.named_parameters():
            np.testing.assert_array_equal(z[f"param/{name}"], p.data)


def test_epoch_and_str_path(tmp_path):
    model = _model("single")
    path = str(tmp_path / "m.fnn")
    model.epoch = None           # no epoch count: stored as 0
    model.save(path)
    assert fio.load_model(path).epoch == 0
    model.epoch = np.int64(3)
    model.save(path)
    assert fio.load_model(path).epoch == 3
    model.epoch = -1
    with pytest.raises(ValueError, match=r"model.epoch must be in \[0, inf\], got -1"):
        model.save(path)


def test_same_state_gives_same_bytes(tmp_path):
    model = _model("objects")
    model.save(tmp_path / "a")
    model.save(tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_path_is_used_as_given_and_overwritten(tmp_path):
    model = _model("single")
    model.save(tmp_path / "model")               # no suffix is added
    model.save(tmp_path / "model.weird.ext")
    assert sorted(os.listdir(tmp_path)) == ["model", "model.weird.ext"]
    other = _model("single", seed=99)
    other.save(tmp_path / "model")               # replaces the old file
    assert fio.load_model(tmp_path / "model").seed == 99


def test_large_seed_survives(tmp_path):
    model = fnn.Sequential([fnn.Dense(3, 2), fnn.Dropout(0.5)], seed=(1 << 64) - 1)
    model.save(tmp_path / "m")
    assert fio.load_model(tmp_path / "m").seed == (1 << 64) - 1


# ------------------------------------------------------------------------------------------------ optimizer state

def _optimizer_cases():
    cases = [
        ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
        ("SGD", {"lr": 0.05}),
        ("Adam", {"lr": 1e-2, "betas": (0.8, 0.99), "amsgrad": True, "weight_decay": 1e-3}),
        ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
        ("RMSprop", {"lr": 1e-2, "alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 1e-3}),
        ("Adagrad", {"lr": 0.1, "lr_decay": 1e-3, "initial_accumulator_value": 0.1, "weight_decay": 1e-3}),
        ("Adadelta", {"lr": 1.0, "rho": 0.8, "weight_decay": 1e-3}),
    ]
    return [(n, kw) for n, kw in cases if getattr(fnn.optim, n, None) is not None]


@pytest.mark.parametrize("name,kw", _optimizer_cases(), ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_equals_uninterrupted(tmp_path, name, kw, dtype):
    x, y = _data()
    cls = getattr(fnn.optim, name)

    def fresh():
        m = _model("objects", dtype, seed=3)
        return _compile(m, cls(m.parameters(), **kw), fnn.losses.CrossEntropyLoss(label_smoothing=0.1), ["acc"])

    straight = fresh()
    _loop(straight, x, y, 7)

    first = fresh()
    _loop(first, x, y, 4)
    first.save(tmp_path / "ckpt.fnn")
    resumed = fio.load_model(tmp_path / "ckpt.fnn")
    assert type(resumed.optimizer) is cls and resumed.optimizer is not first.optimizer
    assert resumed.metrics_names == ["loss", "acc"]
    assert resumed.optimizer.param_groups[0].keys() == first.optimizer.param_groups[0].keys()
    for k, v in first.optimizer.param_groups[0].items():
        if k != "params":
            assert resumed.optimizer.param_groups[0][k] == v, k
    sa, sb = first.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        for kind, arr in sa["state"][i].items():
            assert sb["state"][i][kind].tobytes() == arr.tobytes(), (i, kind)
    _loop(resumed, x, y, 3, start=4)
    _assert_same_model(straight, resumed)


def test_resume_with_two_param_groups_and_a_frozen_layer(tmp_path):
    x, y = _data()

    def fresh():
        m = _model("layers", "float64", seed=5)
        p = m.parameters()
        opt = fnn.optim.SGD([{"params": p[:2], "lr": 0.1}, {"params": p[3:], "momentum": 0.5}], lr=0.02)
        return _compile(m, opt, fnn.losses.CrossEntropyLoss())   # p[2] is never updated

    a, b = fresh(), fresh()
    _loop(a, x, y, 6)
    _loop(b, x, y, 3)
    b.save(tmp_path / "m")
    c = fio.load_model(tmp_path / "m")
    groups = c.optimizer.param_groups
    assert [g["lr"] for g in groups] == [0.1, 0.02] and [g["momentum"] for g in groups] == [0.0, 0.5]
    assert groups[1]["params"][0] is c.parameters()[3]
    assert c.optimizer.defaults["lr"] == 0.02
    _loop(c, x, y, 3, start=3)
    _assert_same_model(a, c)


def test_fit_resume_equals_uninterrupted(tmp_path):
    r = np.random.default_rng(2)
    X, y = r.standard_normal((90, 5)), r.integers(0, 3, 90)

    def fresh():
        m = _model("objects", "float64", seed=8)
        return _compile(m, fnn.optim.Adam(m.parameters(), lr=1e-2), "cross_entropy", ["accuracy"])

    straight = fresh()
    h1 = straight.fit(X, y, epochs=5, batch_size=16, validation_split=0.2, verbose=0)
    part = fresh()
    part.fit(X, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
    part.save(tmp_path / "ckpt")
    resumed = fio.load_model(tmp_path / "ckpt")
    assert resumed.epoch == 2
    h2 = resumed.fit(X, y, epochs=5, batch_size=16, validation_split=0.2, verbose=0, initial_epoch=resumed.epoch)
    assert h2.history["loss"] == h1.history["loss"][2:]
    assert h2.history["val_accuracy"] == h1.history["val_accuracy"][2:]
    _assert_same_model(straight, resumed)


LOSS_CASES = [
    (lambda: fnn.losses.CrossEntropyLoss(weight=[1.0, 2.0, 0.5], label_smoothing=0.2, reduction="sum",
                                         ignore_index=1), None),
    (lambda: fnn.losses.NLLLoss(weight=np.array([0.3, 1.0, 2.0])), None),
    (lambda: fnn.losses.MSELoss(reduction="sum"), None),
    (lambda: fnn.losses.BCEWithLogitsLoss(weight=np.array([1.0, 2.0, 3.0]), pos_weight=[0.5, 1.5, 2.5]), None),
    (lambda: fnn.losses.BCELoss(weight=[[0.5, 1.0, 2.0]]), "sigmoid"),
]


@pytest.mark.parametrize("make_loss,last", LOSS_CASES)
def test_loss_and_metrics_round_trip(tmp_path, make_loss, last):
    model = fnn.Sequential([fnn.Dense(4, 5, activation="tanh"), fnn.Dense(5, 3, activation=last)], seed=1)
    loss = make_loss()
    metrics = ["mae"] if isinstance(loss, fnn.losses.MSELoss) else ["accuracy"]
    _compile(model, "adagrad" if getattr(fnn.optim, "Adagrad", None) else "sgd", loss, metrics)
    model.save(tmp_path / "m")
    back = fio.load_model(tmp_path / "m").loss
    assert type(back) is type(loss)
    for key in ("reduction", "ignore_index", "label_smoothing"):
        assert getattr(back, key, None) == getattr(loss, key, None)
    for key in ("weight", "pos_weight"):
        a, b = getattr(loss, key, None), getattr(back, key, None)
        assert (a is None and b is None) or (a.tobytes() == b.tobytes() and a.shape == b.shape)


def test_include_optimizer_false(tmp_path):
    model = _compile(_model("single"), "adam", "mse")
    model.save(tmp_path / "m", include_optimizer=False)
    loaded = fio.load_model(tmp_path / "m")
    assert loaded.optimizer is None and loaded.loss is None
    with np.load(tmp_path / "m", allow_pickle=False) as z:
        assert json.loads(z[fio.HEADER].tobytes())["training"] is None


def test_optimizer_without_loss_is_restored(tmp_path):
    x, y = _data()
    model = _model("single")
    model.optimizer = fnn.optim.Adam(model.parameters())      # PyTorch-style loop, attached by hand
    loss_fn = fnn.losses.CrossEntropyLoss()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    model.optimizer.step()
    model.save(tmp_path / "m")
    loaded = fio.load_model(tmp_path / "m")
    assert isinstance(loaded.optimizer, fnn.optim.Adam) and loaded.loss is None
    assert float(loaded.optimizer.state[loaded.parameters()[0]]["step"]) == 1.0


def test_what_cannot_be_saved_raises_before_writing(tmp_path):
    class MyReLU(fnn.ReLU):
        pass

    class MyAdam(fnn.optim.Adam):
        pass

    path = tmp_path / "m"
    with pytest.raises(ValueError, match=r"layer 1: MyReLU cannot be saved"):
        fnn.Sequential([fnn.Dense(3, 2), MyReLU()]).save(path)
    with pytest.raises(ValueError, match=r"layer 0.activation: MyReLU cannot be saved"):
        fnn.Sequential([fnn.Dense(3, 2, activation=MyReLU())]).save(path)
    model = _model("single")
    model.optimizer = MyAdam(model.parameters())
    with pytest.raises(ValueError, match=r"model.optimizer: MyAdam cannot be saved"):
        model.save(path)
    model.save(path, include_optimizer=False)   # the model alone is fine
    model.optimizer = fnn.optim.SGD(_model("single").parameters())
    with pytest.raises(ValueError, match=r"parameters that are not this model's"):
        model.save(tmp_path / "other")
    model.optimizer = object()
    with pytest.raises(ValueError, match=r"not a fastnn optimizer"):
        model.save(tmp_path / "other")
    assert sorted(os.listdir(tmp_path)) == ["m"]
    with pytest.raises(TypeError, match=r"include_optimizer must be a bool"):
        model.save(path, include_optimizer=1)
    with pytest.raises(TypeError, match=r"model must be a fastnn Sequential"):
        fio.save_model("not a model", path)


def test_allow_lists_cover_the_library():
    """Every concrete layer, optimizer and loss fastnn exports can be saved (enter a new one in its registry)."""
    concrete = {c.__name__ for c in vars(L).values()
                if isinstance(c, type) and issubclass(c, L.Layer) and c not in (L.Layer, L.Activation)}
    assert concrete == set(fio._LAYERS)
    optimizers = {n for n in fnn.optim.__all__ if n != "Optimizer"}
    assert optimizers <= set(fio._OPTIMIZERS)
    # Keras's loss classes (fnn.losses.KerasLoss) are not saved themselves: compile keeps the loss they delegate to
    keras = {n for n in fnn.losses.__all__
             if isinstance(getattr(fnn.losses, n), type) and issubclass(getattr(fnn.losses, n), fnn.losses.KerasLoss)}
    assert set(fnn.losses.__all__) - keras <= set(fio._LOSSES)


# ------------------------------------------------------------------------------------------------ atomic writes

@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch, exc):
    path = tmp_path / "model.fnn"
    _model("objects", seed=1).save(path)
    before = path.read_bytes()

    def broken(fileobj, arrays):
        fileobj.write(b"PK\x03\x04 half a file")
        raise exc

    monkeypatch.setattr(fio, "_write_npz", broken)
    with pytest.raises(type(exc)):
        _model("objects", seed=2).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.fnn"]   # the temporary file is gone
    assert fio.load_model(path).seed == 1


def test_failed_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    def no_replace(src, dst):
        raise PermissionError("read-only target")

    monkeypatch.setattr(fio.os, "replace", no_replace)
    with pytest.raises(PermissionError, match="read-only target"):
        _model("single").save(tmp_path / "m")
    assert os.listdir(tmp_path) == []


def test_save_paths(tmp_path):
    model = _model("single")
    for bad in (None, 3, b"bytes.fnn", ["m"]):
        with pytest.raises(TypeError, match=r"path must be a str or os.PathLike"):
            model.save(bad)
        with pytest.raises(TypeError, match=r"path must be a str or os.PathLike"):
            fio.load_model(bad)
    with pytest.raises(ValueError, match=r"path must not be empty"):
        model.save("")
    with pytest.raises(ValueError, match=r"path must name a model file, got .*, which is a directory"):
        model.save(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        model.save(tmp_path / "no" / "such" / "dir.fnn")
    with pytest.raises(FileNotFoundError):
        fio.load_model(tmp_path / "missing.fnn")
    model.save(pathlib.PurePath(tmp_path / "pure"))   # any os.PathLike
    assert fio.load_model(os.fspath(tmp_path / "pure")).seed == model.seed


# ------------------------------------------------------------------------------------------------ hostile files

@pytest.fixture
def saved(tmp_path):
    """A compiled, trained model with dropout saved to a file; returns (model, path)."""
    x, y = _data()
    model = _compile(_model("objects", "float64", seed=4), "adam", fnn.losses.CrossEntropyLoss(weight=[1.0, 2.0, 3.0]),
                     ["accuracy"])
    _loop(model, x, y, 2)
    path = tmp_path / "good.fnn"
    model.save(path)
    return model, path


def test_empty_random_and_foreign_files(tmp_path, saved):
    (tmp_path / "empty").write_bytes(b"")
    _load_error(tmp_path / "empty", "the file is empty")
    (tmp_path / "random").write_bytes(np.random.default_rng(0).bytes(5000))
    _load_error(tmp_path / "random", "does not start with the zip signature")
    np.save(tmp_path / "arr.npy", np.arange(3.0))
    _load_error(tmp_path / "arr.npy", r"single \.npy array")
    (tmp_path / "pickle").write_bytes(pickle.dumps({"weights": [1, 2]}))
    _load_error(tmp_path / "pickle", "looks like a pickle")
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    _load_error(tmp_path / "foreign.zip", "no '__fastnn__' header")
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    _load_error(tmp_path / "plain.npz", "no '__fastnn__' header")
    (tmp_path / "zipjunk").write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(3000))
    _load_error(tmp_path / "zipjunk", "damaged or is not a fastnn model file")


def test_truncated_files(tmp_path, saved):
    data = saved[1].read_bytes()
    cuts = sorted({1, 3, 4, 10, 100, len(data) // 2, len(data) - 23, len(data) - 1,
                   *range(150, len(data), max(1, len(data) // 25))})
    for cut in cuts:
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:cut])
        _load_error(path, "cannot load model file")


def test_flipped_bytes_are_detected(tmp_path, saved):
    model, good = saved
    data = good.read_bytes()
    w = model.parameters()[0].data.tobytes()
    at = data.index(w[:16]) + 5
    bad = bytearray(data)
    bad[at] ^= 0x10
    (tmp_path / "flip").write_bytes(bytes(bad))
    _load_error(tmp_path / "flip", "Bad CRC-32")
    # flips anywhere must never crash or load silently different weights
    r = np.random.default_rng(3)
    for k in range(40):
        bad = bytearray(data)
        bad[int(r.integers(len(bad)))] ^= 1 << int(r.integers(8))
        path = tmp_path / f"flip{k}"
        path.write_bytes(bytes(bad))
        try:
            loaded = fio.load_model(path)
        except ValueError as exc:
            assert str(path) in str(exc)
        else:   # a flip in zip metadata numpy ignores (e.g. a timestamp) may load: then it must be identical
            _assert_same_model(model, loaded)


class _Boom:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_arrays_are_never_loaded(tmp_path, saved):
    marker = tmp_path / "pwned"
    payload = np.array([_Boom(marker)], dtype=object)
    pickle.loads(pickle.dumps(_Boom(marker))).close()     # the payload is live...
    assert marker.exists()
    marker.unlink()
    model, good = saved
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for target in ("param/0.weight", fio.HEADER, "loss/weight", "optimizer/state/0/exp_avg"):
        evil = dict(arrays, **{target: payload})
        path = tmp_path / f"evil_{target.replace('/', '_')}"
        with open(path, "wb") as f:
            np.savez(f, allow_pickle=True, **evil)
        _load_error(path, "plain numeric arrays only")
        assert not marker.exists()                          # ...but loading never runs it


def _widen_layer_2(header, arrays):
    """Layer 2 (Dense 8 -> 6, no bias) claims 9 inputs, with arrays to match: only the planner can object."""
    header["model"]["layers"][2]["config"]["in_features"] = 9
    for name in ("param/2.weight", "optimizer/state/2/exp_avg", "optimizer/state/2/exp_avg_sq"):
        arrays[name] = np.zeros((9, 6))


@pytest.mark.parametrize("mutate,match", [
    (lambda h, a: h["model"]["layers"][0].update({"class": "os.system"}), r"layer class 'os.system', which is not"),
    (lambda h, a: h["model"]["layers"][0].update({"class": "__import__"}), r"layer class '__import__'"),
    (lambda h, a: h["model"]["layers"][0].update({"class": "Layer"}), r"layer class 'Layer'"),
    (lambda h, a: h["model"]["layers"][0]["config"].update({"activation": {"class": "eval", "config": {}}}),
     r"layer class 'eval'"),
    (lambda h, a: h["model"]["layers"][0]["config"].update({"activation": "os.system"}), r"activation must be"),
    (lambda h, a: h["model"]["layers"][0]["config"].update({"__class__": "x"}), r"unknown keyword '__class__'"),
    (lambda h, a: h["model"]["layers"][0]["config"].update({"in_features": "5"}), r"must be an integer"),
    (lambda h, a: h["model"]["layers"][0]["config"].update({"in_features": 6}), r"shape \(5, 8\).*needs \(6, 8\)"),
    (lambda h, a: h["model"]["layers"][0]["config"].update({"in_features": 10**9, "out_features": 10**9}),
     r"needs \(1000000000, 1000000000\)|the weight of shape \(1000000000, 1000000000\) would need"),
    (lambda h, a: h["model"]["layers"][0]["config"].update({"init": "zeros"}), r"init must be one of"),
    (lambda h, a: h["model"]["layers"][1]["config"].update({"p": 1.5}), r"p must be a finite number in \[0, 1\]"),
    (lambda h, a: h["model"]["layers"].append({"class": "Dense", "config": {"in_features": 3, "out_features": 2}}),
     r"array 'param/5.bias' is missing"),
    (_widen_layer_2, r"layer 2 .* expects in_features=9, but the previous layer gives 8"),
    (lambda h, a: h["model"].update({"layers": []}), r"model.layers is empty"),
    (lambda h, a: h["model"].update({"dtype": "object"}), r"model.dtype must be 'float32' or 'float64'"),
    (lambda h, a: h["model"].update({"dtype": "float32"}), r"has dtype float64, expected float32"),
    (lambda h, a: h["model"].update({"seed": -1}), r"model.seed must be an integer in \[0, 2\*\*64\), got -1"),
    (lambda h, a: h["model"].update({"step": 1.5}), r"model.step must be an integer"),
    (lambda h, a: h["model"].update({"class": "Functional"}), r"model.class must be 'Sequential'"),
    (lambda h, a: h.update({"format_version": 99}), r"format version 99 is not supported.*newer fastnn"),
    (lambda h, a: h.update({"format": "keras"}), r"its format is 'keras'"),
    (lambda h, a: h.update({"extra": 1}), r"unknown entry 'extra'"),
    (lambda h, a: h.pop("model"), r"lacks 'model'"),
    (lambda h, a: a.pop("param/2.weight"), r"array 'param/2.weight' is missing"),
    (lambda h, a: a.update({"param/9.weight": np.ones(3)}), r"unexpected member 'param/9.weight"),
    (lambda h, a: a.update({"param/0.bias": a["param/0.bias"].astype(np.float32)}),
     r"'param/0.bias' has dtype float32, expected float64"),
    (lambda h, a: a.update({"param/0.bias": np.zeros(8, np.int64)}), r"has dtype int64"),
    (lambda h, a: a.update({"param/0.bias": np.array(["x"] * 8)}), r"plain numeric arrays only"),
    (lambda h, a: a.update({"param/0.bias": np.zeros(8, [("a", "f8")])}), r"plain numeric arrays only"),
    (lambda h, a: a.update({"param/0.weight": a["param/0.weight"].T.copy()}), r"has shape \(8, 5\)"),
    (lambda h, a: h["training"]["optimizer"].update({"class": "builtins.eval"}), r"optimizer class 'builtins.eval'"),
    (lambda h, a: h["training"]["optimizer"].update({"class": "Optimizer"}), r"optimizer class 'Optimizer'"),
    (lambda h, a: h["training"]["optimizer"]["param_groups"][0].update({"lr": -1.0}),
     r"optimizer cannot be restored: header field training\.optimizer\.param_groups\[0\]: lr must be"),
    (lambda h, a: h["training"]["optimizer"]["param_groups"][0].update({"lr": {"$eval": "1"}}),
     r"must be a number, string, boolean"),
    (lambda h, a: h["training"]["optimizer"]["param_groups"][0].update({"params": [0, 0]}), r"distinct parameter"),
    (lambda h, a: h["training"]["optimizer"]["param_groups"][0].update({"params": [0, 99]}), r"distinct parameter"),
    (lambda h, a: h["training"]["optimizer"]["state"].update({"0": ["step", "__dict__.x"]}),
     r"invalid state name '__dict__.x'"),
    (lambda h, a: a.update({"optimizer/state/0/exp_avg": np.zeros((5, 7))}), r"has shape \(5, 7\)"),
    (lambda h, a: a.update({"optimizer/state/1/step": np.zeros(2, np.float32)}), r"has shape \(2,\)"),
    (lambda h, a: h["training"]["loss"].update({"class": "os.system"}), r"loss class 'os.system'"),
    (lambda h, a: h["training"]["loss"]["config"].update({"__init__": 1}), r"unknown keyword '__init__'"),
    (lambda h, a: h["training"]["loss"]["config"].update({"reduction": "avg"}), r"reduction must be one of"),
    (lambda h, a: a.update({"loss/weight": np.ones(4)}), r"weight must have shape \(3,\)"),
    (lambda h, a: h["training"].update({"metrics": ["accuracy", "import os"]}), r"invalid metric name"),
    (lambda h, a: h["training"].update({"metrics": ["f1"]}), r"cannot be compiled.*metrics entries must be one of"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_tampered_headers_and_arrays(tmp_path, saved, mutate, match):
    path = _rewrite(saved[1], tmp_path / "tampered", mutate)
    _load_error(path, match)


def _activation_spec(header):
    """Layer 0's activation as a {"class", "config"} object (the form that names a class)."""
    config = header["model"]["layers"][0]["config"]
    config["activation"] = {"class": "ReLU", "config": {}}
    return config["activation"]


@pytest.mark.parametrize("where,kind,registry", [
    (lambda h: h["model"]["layers"][0], "layer", L.LAYERS),
    (_activation_spec, "layer", {n: c for n, c in L.LAYERS.items() if issubclass(c, L.Activation)}),
    (lambda h: h["training"]["optimizer"], "optimizer", {c.__name__: c for c in fnn.optim.OPTIMIZERS.values()}),
    (lambda h: h["training"]["loss"], "loss", {c.__name__: c for c in fnn.losses.LOSSES.values()}),
], ids=["layer", "activation", "optimizer", "loss"])
def test_only_registered_classes_load(tmp_path, saved, where, kind, registry):
    """A class name read from a file resolves only through its registry (class names); anything else is refused
    with a message naming the field, the name and the registered names, even a class the module does have."""
    names = ", ".join(registry)
    module_only = ["Layer", "Activation", "Optimizer", "_Loss", "_ClassLoss", "KerasLoss", "get_activation",
                   "Sequential", "MSELoss" if kind != "loss" else "ReLU", "relu", "adam", "mse"]
    for i, name in enumerate(module_only):
        assert name not in registry
        path = _rewrite(saved[1], tmp_path / f"m{i}", lambda h, a, name=name: where(h).update({"class": name}))
        _load_error(path, rf"names {kind} class '{name}', which is not one of {re.escape(names)}$")


def test_rewrite_helper_is_faithful(tmp_path, saved):
    model, good = saved
    _assert_same_model(model, fio.load_model(_rewrite(good, tmp_path / "copy")))


def test_malformed_headers(tmp_path, saved):
    def write(name, header_bytes, dtype=np.uint8):
        with np.load(saved[1], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays[fio.HEADER] = np.frombuffer(header_bytes, np.uint8).astype(dtype)
        path = tmp_path / name
        with open(path, "wb") as f:
            fio._write_npz(f, arrays)
        return path

    _load_error(write("notjson", b"{not json"), "header is not valid JSON")
    _load_error(write("utf", b"\xff\xfe{}"), "header is not valid JSON")
    _load_error(write("deep", b"[" * 100000 + b"]" * 100000), "header is not valid JSON")
    _load_error(write("list", b"[1, 2]"), "must be an object")
    _load_error(write("float", b"{}", np.float64), r"has dtype float64, expected uint8")


def test_duplicate_and_extra_members(tmp_path, saved):
    data = saved[1].read_bytes()
    path = tmp_path / "dup"
    with zipfile.ZipFile(_io.BytesIO(data)) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        with pytest.warns(UserWarning, match="Duplicate name"):
            dst.writestr("param/0.bias.npy", src.read("param/0.bias.npy"))
    _load_error(path, "lists an array twice")
    path = tmp_path / "extra"
    with zipfile.ZipFile(_io.BytesIO(data)) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("notes.txt", "hi")
    _load_error(path, "unexpected member 'notes.txt'")


def test_tiny_file_claiming_a_huge_array_allocates_nothing(tmp_path, saved):
    """An architecture and .npy header announcing 64 GB, with a few bytes of data, is refused from the headers."""
    with np.load(saved[1], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop(fio.HEADER).tobytes())
    header["model"]["layers"][0]["config"]["in_features"] = 10**9
    fake = _io.BytesIO()
    np.lib.format.write_array_header_1_0(fake, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 8)})
    fake.write(b"\0" * 64)
    path = tmp_path / "huge"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(fio.HEADER + ".npy", _npy(np.frombuffer(json.dumps(header).encode(), np.uint8)))
        zf.writestr("param/0.weight.npy", fake.getvalue())
        for name, arr in arrays.items():
            if name != "param/0.weight":
                zf.writestr(name + ".npy", _npy(arr))
    # refused by the .npy header check, or (on a machine under 30 GiB) already by Dense's size check
    _load_error(path, r"'param/0.weight' is truncated: its shape needs 64000000000 bytes"
                      r"|the weight of shape \(1000000000, 8\) would need 29\.8 GiB")


def _npy(arr):
    buf = _io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ torch interop

def _torch_dtype(torch, dtype):
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


@pytest.mark.parametrize("kind", ARCHS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_torch_matches_forward_and_weights(kind, dtype):
    torch = pytest.importorskip("torch")
    model = _model(kind, dtype, seed=21)
    tmodel = fio.to_torch(model)
    assert isinstance(tmodel, torch.nn.Sequential) and tmodel.training
    linears = [m for m in tmodel if isinstance(m, torch.nn.Linear)]
    dense = [layer for layer in model.layers if isinstance(layer, fnn.Dense)]
    assert len(linears) == len(dense)
    for layer, lin in zip(dense, linears):
        assert lin.weight.dtype == _torch_dtype(torch, dtype)
        np.testing.assert_array_equal(lin.weight.detach().numpy().T, layer.params[0].data)
        assert (lin.bias is None) == (not layer.use_bias)
        if layer.use_bias:
            np.testing.assert_array_equal(lin.bias.detach().numpy(), layer.params[1].data)
    x = np.random.default_rng(0).standard_normal((13, 5)).astype(dtype)
    model.eval()
    tmodel.eval()
    want = tmodel(torch.from_numpy(x)).detach().numpy()
    rtol, atol = (1e-12, 1e-14) if dtype == "float64" else (1e-5, 1e-6)
    np.testing.assert_allclose(model(x), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("kind", ARCHS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_round_trip_is_bit_exact(kind, dtype):
    pytest.importorskip("torch")
    model = _model(kind, dtype, seed=22)
    back = fio.from_torch(fio.to_torch(model), seed=model.seed)
    assert back.dtype == model.dtype
    for pa, pb in zip(model.parameters(), back.parameters(), strict=True):
        assert pa.data.tobytes() == pb.data.tobytes()
    x = np.random.default_rng(1).standard_normal((4, 5))
    np.testing.assert_array_equal(back.eval()(x), model.eval()(x))
    if kind in ("strings", "objects"):   # torch has no fused activations: Dense(activation=...) comes back as two
        first_act = type(model.layers[0].activation).__name__
        assert [type(layer).__name__ for layer in back.layers[:2]] == ["Dense", first_act]
    else:
        assert [type(a) for a in back.layers] == [type(b) for b in model.layers]
    if kind != "objects":   # (the same dropout layer index and seed: the same masks in training mode)
        np.testing.assert_array_equal(back.train()(x), model.train()(x))


def test_from_torch_module_kinds():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    tmodel = nn.Sequential(
        nn.Linear(6, 8, dtype=torch.float64), nn.ReLU(inplace=True),
        nn.Sequential(nn.Linear(8, 8, bias=False, dtype=torch.float64), nn.LeakyReLU(0.2), nn.Dropout(0.3)),
        nn.Linear(8, 7, dtype=torch.float64), nn.ELU(alpha=0.5), nn.Linear(7, 7, dtype=torch.float64),
        nn.GELU(approximate="tanh"), nn.Linear(7, 5, dtype=torch.float64), nn.SiLU(), nn.Tanh(), nn.Identity(),
        nn.Linear(5, 4, dtype=torch.float64), nn.Sigmoid(), nn.Linear(4, 3, dtype=torch.float64), nn.Softmax(dim=1),
    ).eval()
    model = fio.from_torch(tmodel, seed=3)
    assert model.dtype == np.float64 and not model.training
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "ReLU", "Dense", "LeakyReLU", "Dropout", "Dense", "ELU", "Dense", "GELU", "Dense",
                     "SiLU", "Tanh", "Identity", "Dense", "Sigmoid", "Dense", "Softmax"]
    assert model.layers[3].negative_slope == 0.2 and model.layers[4].p == 0.3 and model.layers[6].alpha == 0.5
    assert model.layers[8].approximate == "tanh" and not model.layers[2].use_bias
    x = np.random.default_rng(2).standard_normal((9, 6))
    np.testing.assert_allclose(model(x), tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-14)
    f32 = fio.from_torch(tmodel, dtype="float32")
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32.parameters()[0].data, model.parameters()[0].data.astype(np.float32))


def test_from_torch_errors():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with pytest.raises(TypeError, match=r"torch_sequential must be a torch.nn.Sequential, got Linear"):
        fio.from_torch(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"module 1 \(BatchNorm1d\) is not supported"):
        fio.from_torch(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match=r"module 1.0 \(Conv1d\) is not supported"):
        fio.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Conv1d(3, 3, 1))))

    class MyLinear(nn.Linear):
        pass

    with pytest.raises(ValueError, match=r"module 0 \(MyLinear\) is not supported"):
        fio.from_torch(nn.Sequential(MyLinear(2, 3)))
    with pytest.raises(ValueError, match=r"Softmax\(dim=0\)\) is not supported"):
        fio.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=0)))
    with pytest.raises(ValueError, match=r"at least one nn.Linear"):
        fio.from_torch(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match=r"pass dtype='float32' or 'float64'"):
        fio.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"pass dtype="):
        fio.from_torch(nn.Sequential(nn.Linear(2, 3, dtype=torch.float16)))
    assert fio.from_torch(nn.Sequential(nn.Linear(2, 3, dtype=torch.float16)), dtype="float32").dtype == np.float32


def test_weight_copy_helpers():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = _model("objects", "float64", seed=5)

    class Net(nn.Module):   # any module: its nn.Linear modules are matched in order
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(5, 8, dtype=torch.float64)
            self.b = nn.Linear(8, 6, bias=False, dtype=torch.float64)
            self.c = nn.Sequential(nn.Linear(6, 5, dtype=torch.float64), nn.Linear(5, 3, dtype=torch.float64))

    net = Net()
    assert fio.copy_weights_to_torch(model, net) is net
    np.testing.assert_array_equal(net.b.weight.detach().numpy().T, model.parameters()[2].data)
    other = _model("objects", "float64", seed=6)
    assert fio.load_torch_weights(other, net) is other
    for pa, pb in zip(model.parameters(), other.parameters()):
        assert pa.data.tobytes() == pb.data.tobytes()
    with pytest.raises(ValueError, match=r"has 4 Dense layers but torch_module has 1 nn.Linear"):
        fio.load_torch_weights(model, nn.Linear(5, 8))
    wrong = nn.Sequential(nn.Linear(5, 8), nn.Linear(8, 6, bias=False), nn.Linear(6, 5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"Dense layer 3 is 5 -> 3 but nn.Linear 3 is 5 -> 2"):
        fio.copy_weights_to_torch(model, wrong)
    biased = nn.Sequential(nn.Linear(5, 8), nn.Linear(8, 6), nn.Linear(6, 5), nn.Linear(5, 3))
    with pytest.raises(ValueError, match=r"Dense layer 1 has use_bias=False but nn.Linear 1 has bias=True"):
        fio.load_torch_weights(model, biased)
    with pytest.raises(TypeError, match=r"torch_module must be a torch.nn.Module"):
        fio.load_torch_weights(model, "net")
    with pytest.raises(TypeError, match=r"model must be a fastnn Sequential"):
        fio.to_torch(net)


def test_torch_trains_the_same_after_export():
    """One SGD step in torch on the exported model equals one fastnn step (the weights map exactly)."""
    torch = pytest.importorskip("torch")
    model = fnn.Sequential([fnn.Dense(5, 7, activation="relu"), fnn.Dense(7, 6, activation="gelu"), fnn.Dense(6, 3)],
                           dtype="float64", seed=9)
    _compile(model, fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), "cross_entropy")
    tmodel = fio.to_torch(model)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    x, y = _data(n=16, d=5, c=3, seed=4)
    for _ in range(3):
        topt.zero_grad()
        torch.nn.CrossEntropyLoss()(tmodel(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
        model.train_step(x, y)
    back = fio.from_torch(tmodel)
    for pa, pb in zip(model.parameters(), back.parameters()):
        np.testing.assert_allclose(pb.data, pa.data, rtol=1e-12, atol=1e-14)


def test_model_checkpoint_files_resume_the_run(tmp_path):
    """ModelCheckpoint saves with model.save after each epoch; any of its files continues the run exactly."""
    from fastnn.callbacks import ModelCheckpoint

    r = np.random.default_rng(5)
    X, y = r.standard_normal((60, 5)), r.integers(0, 3, 60)

    def fresh():
        m = _model("objects", "float32", seed=12)
        return _compile(m, "adamw", "cross_entropy", ["acc"])

    straight = fresh()
    pattern = str(tmp_path / "ckpt-{epoch}.fnn")
    h1 = straight.fit(X, y, epochs=4, batch_size=8, verbose=0, callbacks=[ModelCheckpoint(pattern)])
    assert sorted(os.listdir(tmp_path)) == [f"ckpt-{e}.fnn" for e in (1, 2, 3, 4)]
    resumed = fio.load_model(tmp_path / "ckpt-2.fnn")
    assert resumed.epoch == 2
    h2 = resumed.fit(X, y, epochs=4, batch_size=8, verbose=0, initial_epoch=resumed.epoch)
    assert h2.history["loss"] == h1.history["loss"][2:] and h2.history["acc"] == h1.history["acc"][2:]
    _assert_same_model(straight, resumed)
