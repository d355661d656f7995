"""Memory-mapped inputs (np.load(path, mmap_mode="r")): fit, evaluate and predict read X a chunk at a time
and give the bits of the same data in memory; NaN/inf are refused before training; peak memory stays
bounded (in a subprocess); `fastnn train --data-x X.npy --data-y y.npy`.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn
from fastnn import _datasource, _epochs
from fastnn._cli_train import main as train_main
from fastnn.layers import Dense, Dropout

N, D, C = 1003, 12, 3   # 1003 rows: the last batch of 64 is partial


def _data(file_dtype, order="C", n=N, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(file_dtype).kind == "f":
        X = rng.standard_normal((n, D)) * 3
    else:
        X = rng.integers(0, 100, (n, D))
    X = np.asarray(X.astype(file_dtype), order=order)
    y = (X.astype(np.float64) @ rng.standard_normal((D, C))).argmax(axis=1)
    return X, y


def _mapped(tmp_path, name, a):
    path = tmp_path / f"{name}.npy"
    np.save(path, a)
    m = np.load(path, mmap_mode="r")
    assert isinstance(m, np.memmap)
    return m


def _model(dtype, dropout=True, seed=1):
    layers = [Dense(D, 16, activation="relu")] + ([Dropout(0.25)] if dropout else []) + [Dense(16, C)]
    model = fastnn.Sequential(layers, dtype=dtype, seed=seed)
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    return model


def _fit(dtype, X, y, **kw):
    model = _model(dtype)
    history = model.fit(X, y, epochs=2, batch_size=64, verbose=0, **kw)
    return model, history.history


def _same_fit(dtype, mem, mapped, **kw):
    a, ha = _fit(dtype, *mem, **kw)
    b, hb = _fit(dtype, *mapped, **kw)
    assert np.array_equal(a._arena.data, b._arena.data)   # bit-identical weights
    assert ha == hb                                        # same losses and metrics, exactly
    assert a.optimizer.state_dict()["state"].keys() == b.optimizer.state_dict()["state"].keys()
    return a, b


CASES = [("float64", "C"), ("float32", "F"), ("int16", "C"), ("uint8", "F"), (">f8", "C")]


@pytest.mark.parametrize("file_dtype,order", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_on_a_memmap_gives_the_in_memory_bits(tmp_path, file_dtype, order, dtype, shuffle):
    X, y = _data(file_dtype, order)
    Xm, ym = _mapped(tmp_path, "X", X), _mapped(tmp_path, "y", y)
    a, b = _same_fit(dtype, (X, y), (Xm, ym), shuffle=shuffle, validation_split=0.2)
    assert np.array_equal(a.predict(X), b.predict(Xm))
    assert a.evaluate(X, y) == b.evaluate(Xm, ym)


def test_validation_data_as_memmaps(tmp_path):
    X, y = _data("float64")
    Xv, yv = _data("int32", n=300, seed=5)
    mapped = (_mapped(tmp_path, "X", X), _mapped(tmp_path, "y", y))
    val = (_mapped(tmp_path, "Xv", Xv), _mapped(tmp_path, "yv", yv))
    _, ha = _fit("float32", X, y, validation_data=(Xv, yv))
    _, hb = _fit("float32", *mapped, validation_data=val)
    assert ha == hb and "val_accuracy" in hb


@pytest.mark.parametrize("shuffle", [True, False])
def test_small_chunks_and_runs_that_return_early(tmp_path, monkeypatch, shuffle):
    """Chunks of a few batches, runs cut after every batch (the held chunk is reused), tiny read blocks."""
    X, y = _data("float64")
    mapped = (_mapped(tmp_path, "X", X), _mapped(tmp_path, "y", y))
    a, ha = _fit("float32", X, y, shuffle=shuffle)
    monkeypatch.setattr(_datasource, "_CHUNK_BYTES", 3 * 64 * D * 4)   # 3 batches per chunk
    monkeypatch.setattr(_datasource, "_BLOCK_BYTES", 50 * D * 8)       # 50 rows per read
    monkeypatch.setattr(_epochs, "_CHUNK_SECONDS", 1e-9)              # every run stops after one batch
    b, hb = _fit("float32", *mapped, shuffle=shuffle)
    assert np.array_equal(a._arena.data, b._arena.data) and ha == hb
    assert np.array_equal(a.predict(X, batch_size=7), b.predict(mapped[0], batch_size=7))


def test_reading_through_the_mapping_when_there_is_no_preadv(tmp_path, monkeypatch):
    """Without os.preadv, C-order rows are gathered through the mapping (pages dropped after each window)."""
    monkeypatch.delattr(os, "preadv")
    monkeypatch.setattr(_datasource, "_WINDOW_BYTES", 1)   # drop after every row
    X, y = _data("float32")
    Xm = _mapped(tmp_path, "X", X)
    assert _datasource.MappedRows(Xm, np.float32, "X")._fd is None
    _same_fit("float64", (X, y), (Xm, y), shuffle=True)


def test_views_of_a_memmap(tmp_path):
    """Row slices, strided rows and column ranges of a mapped array are still read from the file."""
    big, y = _data("float64", n=2 * N)
    Xm = _mapped(tmp_path, "X", big)
    for view, mem in ((Xm[::2], big[::2]), (Xm[5:5 + N], big[5:5 + N]), (np.asarray(Xm)[:N], big[:N])):
        assert _datasource.is_mapped(view)
        _same_fit("float32", (mem, y[:N]), (view, y[:N]))
    wide = np.concatenate([big[:N], big[:N, :4]], axis=1)
    Wm = _mapped(tmp_path, "W", wide)
    rows = _datasource.MappedRows(Wm[:, 4:4 + D], np.float32, "X")
    assert rows._fd is not None and not rows._coalesce
    _same_fit("float32", (wide[:, 4:4 + D], y[:N]), (Wm[:, 4:4 + D], y[:N]))


def test_no_dropout_sgd_regression_and_a_mapped_float_target(tmp_path):
    X, _ = _data("float64")
    t = (X @ np.linspace(-1, 1, D * 2).reshape(D, 2)).astype(np.float32)
    Xm, tm = _mapped(tmp_path, "X", X), _mapped(tmp_path, "t", t)

    def fit(X, t):
        model = fastnn.Sequential([Dense(D, 8, activation="tanh"), Dense(8, 2)], dtype="float32", seed=3)
        model.compile(fastnn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), "mse", metrics=["mae"])
        return model, model.fit(X, t, epochs=3, batch_size=100, verbose=0, validation_split=0.1).history

    (a, ha), (b, hb) = fit(X, t), fit(Xm, tm)
    assert np.array_equal(a._arena.data, b._arena.data) and ha == hb


@pytest.mark.parametrize("where", [0, 10, N - 1])
def test_nan_in_a_mapped_x_is_refused_before_training(tmp_path, where):
    X, y = _data("float64")
    X[where, 3] = np.nan
    Xm = _mapped(tmp_path, "X", X)
    model = _model("float32")
    before = model._arena.data.copy()
    with pytest.raises(ValueError, match=rf"^X must be finite, got NaN or inf \(first in row {where}\)$"):
        model.fit(Xm, y, verbose=0, validation_split=0.3)
    assert np.array_equal(model._arena.data, before) and model.epoch == 0 and model._step == 0
    for call in (lambda: model.predict(Xm), lambda: model.evaluate(Xm, y, batch_size=16)):
        with pytest.raises(ValueError, match=rf"first in row {where}\)"):
            call()
    with pytest.raises(ValueError) as mem:
        model.fit(X, y, verbose=0)
    with pytest.raises(ValueError) as mapped:
        model.fit(Xm, y, verbose=0)
    assert str(mem.value) == str(mapped.value)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")   # as in memory
def test_inf_after_conversion_and_nan_in_mapped_validation_data(tmp_path):
    X, y = _data("float64")
    X[7, 0] = 1e300   # finite in float64, inf in a float32 model (as for an array in memory)
    model = _model("float32")
    with pytest.raises(ValueError, match=r"first in row 7\)"):
        model.fit(_mapped(tmp_path, "X", X), y, verbose=0)
    _model("float64").fit(_mapped(tmp_path, "X", X), y, epochs=1, verbose=0)   # finite in float64
    Xv = X[:100].copy()
    Xv[42, 1] = np.inf
    with pytest.raises(ValueError, match=r"^validation_data\[0\] must be finite, got NaN or inf \(first in row 42\)$"):
        _model("float64").fit(X, y, verbose=0, validation_data=(_mapped(tmp_path, "Xv", Xv), y[:100]))


def test_divergence_on_a_memmap_restores_the_same_weights(tmp_path):
    X, y = _data("float64")
    X[500:] *= 1e18   # finite, but the loss overflows there
    Xm = _mapped(tmp_path, "X", X)
    models, errors = [], []
    for data in (X, Xm):
        model = _model("float32")
        model.compile(fastnn.optim.SGD(model.parameters(), lr=10.0), "cross_entropy")
        with pytest.raises(FloatingPointError) as err:
            model.fit(data, y, epochs=2, batch_size=64, verbose=0, shuffle=False)
        models.append(model._arena.data.copy())
        errors.append(str(err.value))
    assert np.array_equal(*models) and errors[0] == errors[1]


def test_a_copy_on_write_memmap_is_an_array_in_memory(tmp_path):
    """mode "c": the caller's changes live only in the mapping; they are trained on and kept."""
    X, y = _data("float32")
    np.save(tmp_path / "X.npy", X)
    Xc = np.load(tmp_path / "X.npy", mmap_mode="c")
    Xc[:10] = 0.5
    X[:10] = 0.5
    assert not _datasource.is_mapped(Xc)
    _same_fit("float32", (X, y), (Xc, y))
    assert np.all(Xc[:10] == 0.5)


def test_bad_mapped_inputs_get_the_in_memory_messages(tmp_path):
    X, y = _data("float32")
    model = _model("float32")
    bad_y = y.copy()
    bad_y[5] = C
    for args in ((X, bad_y), (X[:, :5], y), (X[:10], y), (np.zeros((0, D), np.float32), y[:0])):
        with pytest.raises((ValueError, TypeError)) as mem:
            model.fit(*args, verbose=0)
        mapped = [_mapped(tmp_path, f"a{i}", a) for i, a in enumerate(args)]
        with pytest.raises(type(mem.value)) as got:
            model.fit(*mapped, verbose=0)
        assert str(got.value) == str(mem.value)


def test_train_step_and_call_on_a_memmap_slice(tmp_path):
    X, y = _data("float32")
    Xm, ym = _mapped(tmp_path, "X", X), _mapped(tmp_path, "y", y)
    a, b = _model("float32"), _model("float32")
    assert a.train_step(X[:32], y[:32]) == b.train_step(Xm[:32], ym[:32])
    assert np.array_equal(a._arena.data, b._arena.data)
    a.eval(), b.eval()
    assert np.array_equal(a(X[:5]), b(Xm[:5])) and np.array_equal(a(X[3]), b(Xm[3]))


def test_in_memory_inputs_are_not_streamed(tmp_path, monkeypatch):
    """Plain arrays, lists and copies of a memmap go the in-memory way (no MappedRows)."""
    made = []
    init = _datasource.MappedRows.__init__
    monkeypatch.setattr(_datasource.MappedRows, "__init__", lambda self, *a, **k: made.append(a) or init(self, *a, **k))
    X, y = _data("float32", n=100)
    model = _model("float32")
    model.fit(X, y, verbose=0)
    model.fit(X.tolist(), y.tolist(), verbose=0)
    model.predict(X), model.evaluate(X, y)
    assert made == []
    model.predict(_mapped(tmp_path, "X", X))
    assert len(made) == 1


_RSS_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastnn
    from fastnn.layers import Dense

    def hwm(key="VmHWM"):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    X = np.load(sys.argv[1], mmap_mode="r")
    y = np.load(sys.argv[2], mmap_mode="r")
    model = fastnn.Sequential([Dense(X.shape[1], 32, activation="relu"), Dense(32, 10)], dtype="float32", seed=0)
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    model.predict(X[:10])   # warm-up: plans and buffers that do not depend on the file's size
    base = hwm("VmRSS")
    model.fit(X, y, epochs=1, batch_size=256, verbose=0, validation_split=0.1)
    model.predict(X)
    model.evaluate(X, y)
    print(json.dumps({"base": base, "peak": hwm()}))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS read from /proc (Linux)")
def test_peak_memory_stays_well_below_the_file(tmp_path):
    """A 200 MB float64 file: fit (shuffled, with validation), predict and evaluate in a fresh process grow
    its peak resident set by less than half the file's size (in memory, X alone would take the whole file)."""
    rows, cols = 50_000, 512
    path = tmp_path / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, cols))
    rng = np.random.default_rng(0)
    for s in range(0, rows, 5000):
        X[s:s + 5000] = rng.standard_normal((5000, cols))
    X.flush()
    del X
    np.save(tmp_path / "y.npy", rng.integers(0, 10, rows))
    size = os.path.getsize(path)
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path), str(tmp_path / "y.npy")],
                         capture_output=True, text=True, timeout=600, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    growth = r["peak"] - r["base"]
    assert growth < 0.5 * size, f"peak RSS grew by {growth / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"


# ----------------------------------------------------------------------------------------- fastnn train

def _npy_pair(tmp_path, n=600):
    X, y = _data("float32", n=n)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return str(tmp_path / "X.npy"), str(tmp_path / "y.npy")


def test_cli_trains_on_memory_mapped_npy_files(tmp_path, capsys, monkeypatch):
    px, py = _npy_pair(tmp_path)
    seen = []
    fit = fastnn.Sequential.fit

    def spy(self, X, y, **kw):
        seen.append((X, kw["validation_data"][0]))
        return fit(self, X, y, **kw)

    monkeypatch.setattr(fastnn.Sequential, "fit", spy)
    rc = train_main(["--data-x", px, "--data-y", py, "--epochs", "30", "--hidden", "16", "--quiet",
                     "--save", str(tmp_path / "m.fnn")])
    out = capsys.readouterr().out
    assert rc == 0
    assert all(_datasource.is_mapped(a) for a in seen[0])   # fit got views of the file, not copies
    acc = float(out.split("test accuracy ")[1].split()[0])
    assert acc > 0.6   # 3 classes: well above chance
    model = fastnn.load_model(str(tmp_path / "m.fnn"))
    X = np.load(px)
    test = X[-120:]   # the last 20 % of the rows
    y = np.load(py)[-120:]
    correct = int(out.split("(")[1].split("/")[0])   # "test accuracy 0.xxxx (correct/120)"
    assert int((model.predict(test).argmax(axis=1) == y).sum()) == correct


@pytest.mark.parametrize("argv,match", [
    (["--data-x", "{x}"], "--data-x needs --data-y FILE.npy too"),
    (["--data-y", "{y}"], "--data-y needs --data-x FILE.npy too"),
    (["--data-x", "{tmp}/missing.npy", "--data-y", "{y}"], "--data-x: no such file: .*missing.npy"),
    (["--data-x", "{x}", "--data-y", "{y}", "--data", "{x}"], "--data-x/--data-y replace --data"),
    (["--data-x", "{x}", "--data-y", "{y}", "--target", "c"], "--target is for CSV files"),
    (["--data-x", "{x}", "--data-y", "{short}"], "must have one row per sample: .*X.npy has 600 rows, "
                                                   ".*short.npy has 10"),
    (["--data-x", "{tmp}/junk.npy", "--data-y", "{y}"], "junk.npy: not a readable .npy file"),
    (["--data-x", "{tmp}/pair.npz", "--data-y", "{y}"], "pair.npz: expected one array in a .npy file"),
    (["--data-x", "{y}", "--data-y", "{y}"], r"expected a 2-D array of numbers .*got shape \(600,\)"),
])
def test_cli_npy_pair_errors_exit_2(tmp_path, capsys, argv, match):
    px, py = _npy_pair(tmp_path)
    np.save(tmp_path / "short.npy", np.zeros(10, np.int64))
    (tmp_path / "junk.npy").write_text("not an array")
    np.savez(tmp_path / "pair.npz", X=np.zeros((3, 2)))
    argv = [a.format(x=px, y=py, tmp=tmp_path, short=tmp_path / "short.npy") for a in argv]
    assert train_main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastnn train: error: ")
    assert re.search(match, err), err
