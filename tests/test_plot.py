"""fastnn.plot: learning curves with the best / early-stopping epochs, the loss landscape and its path."""

import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn import plot
from fastnn.callbacks import EarlyStopping

matplotlib = pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def _by_gid(fig, gid):
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]


def _vline_x(line):
    x = np.unique(np.asarray(line.get_xdata(), dtype=float))
    assert x.size == 1
    return float(x[0])


LOGS = {
    "loss": [2.0, 1.2, 0.8, 0.6, 0.45, 0.35, 0.3, 0.25],
    "accuracy": [0.3, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95],
    "val_loss": [2.1, 1.3, 0.9, 0.95, 0.85, 0.9, 1.0, 1.1],
    "val_accuracy": [0.3, 0.55, 0.66, 0.7, 0.74, 0.73, 0.72, 0.71],
}


def test_history_dict_marks_min_val_loss_and_saves_png(tmp_path):
    out = tmp_path / "curves.png"
    fig = plot.history(LOGS, path=out)
    _assert_png(out)
    assert len(fig.axes) == 2   # loss, accuracy
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    best = _by_gid(fig, "best_epoch")
    assert len(best) == 2 and all(_vline_x(line) == 5 for line in best)   # val_loss min at index 4 -> epoch 5
    assert _by_gid(fig, "early_stopping") == []
    (dot,) = _by_gid(fig, "best_value")
    assert list(dot.get_xdata()) == [5] and list(dot.get_ydata()) == [0.85]
    (val,) = _by_gid(fig, "val_loss")
    np.testing.assert_array_equal(val.get_xdata(), np.arange(1, 9))
    np.testing.assert_array_equal(val.get_ydata(), LOGS["val_loss"])


def test_history_with_early_stopping_callback(tmp_path):
    model = fnn.Sequential([fnn.Dense(2, 2)], seed=0)
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    es.set_model(model)
    model.stop_training = False
    es.on_train_begin()
    logs = {k: [] for k in LOGS}
    for e in range(len(LOGS["loss"])):
        for k in LOGS:
            logs[k].append(LOGS[k][e])
        es.on_epoch_end(e, {k: LOGS[k][e] for k in LOGS})
        if model.stop_training:
            break
    # Keras's rule: best 0.9 at index 2, then 0.95 (wait 1), 0.85 improves (index 4), 0.9, 1.0 -> stop at index 6
    assert (es.best_epoch, es.stopped_epoch) == (4, 6)
    out = tmp_path / "es.png"
    fig = plot.history(logs, path=out, early_stopping=es, metrics=[])
    _assert_png(out)
    assert len(fig.axes) == 1
    assert _vline_x(_by_gid(fig, "best_epoch")[0]) == es.best_epoch + 1
    assert _vline_x(_by_gid(fig, "early_stopping")[0]) == es.stopped_epoch + 1
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "best epoch 5 (val_loss)" in labels and "early stop after epoch 7" in labels


def test_history_best_epoch_follows_a_maximised_monitor():
    model = fnn.Sequential([fnn.Dense(2, 2)], seed=0)
    es = EarlyStopping(monitor="val_accuracy", patience=10)
    es.set_model(model)
    es.on_train_begin()
    for e in range(8):
        es.on_epoch_end(e, {k: LOGS[k][e] for k in LOGS})
    assert es.best_epoch == 4 and es.stopped_epoch == 0
    fig = plot.history(LOGS, early_stopping=es)   # a pyplot figure (no path)
    try:
        assert all(_vline_x(line) == 5 for line in _by_gid(fig, "best_epoch"))
        assert _by_gid(fig, "early_stopping") == []
        (dot,) = _by_gid(fig, "best_value")   # on the accuracy panel: val_accuracy 0.74
        assert list(dot.get_ydata()) == [0.74]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    # a callback that never saw its monitor: the best epoch is recomputed from the history with its mode
    es2 = EarlyStopping(monitor="val_accuracy", mode="max")
    fig = plot.history(LOGS, path=None, early_stopping=es2, metrics=["accuracy"])
    try:
        assert all(_vline_x(line) == 5 for line in _by_gid(fig, "best_epoch"))
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_history_bad_inputs():
    with pytest.raises(TypeError, match="history must be a History .* got list"):
        plot.history([1, 2])
    with pytest.raises(ValueError, match="history has no 'loss' values"):
        plot.history({"val_loss": [1.0]})
    with pytest.raises(ValueError, match="metrics: 'f1' is not in the history"):
        plot.history(LOGS, metrics=["f1"])


def test_missing_matplotlib_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install fastnn\[plot\]"):
        plot.history(LOGS, path=tmp_path / "x.png")
    model = fnn.Sequential([fnn.Dense(2, 2)], seed=0)
    with pytest.raises(ImportError, match=r"pip install fastnn\[plot\]"):
        plot.loss_landscape(model, np.zeros((3, 2)), np.zeros(3, int), [("0.weight", (0, 0)), ("0.bias", 1)])
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------- landscape
def _trained(dtype="float32", steps=30):
    r = np.random.default_rng(0)
    X = r.standard_normal((64, 3)).astype(dtype)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    model = fnn.Sequential([fnn.Dense(3, 8, activation="tanh"), fnn.Dropout(0.2), fnn.Dense(8, 2)],
                           dtype=dtype, seed=1)
    params = [("0.weight", (0, 1)), ("2.bias", (1,))]
    rec = plot.PathRecorder(model, params)
    loss_fn = fnn.losses.CrossEntropyLoss()
    opt = fnn.optim.SGD(model.parameters(), lr=0.5)
    rec.record()
    for _ in range(steps):
        loss_fn(model(X), y)
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
        rec.record()
    return model, X, y, params, rec


def test_path_recorder_in_a_pytorch_loop():
    model, X, y, params, rec = _trained(steps=12)
    path = rec.path
    assert path.shape == (13, 2)
    assert path[-1, 0] == model.named_parameters()[0][1].data[0, 1]
    assert path[-1, 1] == dict(model.named_parameters())["2.bias"].data[1]
    assert not np.allclose(path[0], path[-1])   # the weights moved
    assert rec.labels == ["0.weight[0, 1]", "2.bias[1]"]
    rec.reset()
    assert rec.path.shape == (0, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loss_landscape_restores_weights_and_draws_the_path(tmp_path, dtype):
    model, X, y, params, rec = _trained(dtype)
    model.train()
    before = model._arena.data.copy()
    step = model._step
    out = tmp_path / "landscape.png"
    fig = plot.loss_landscape(model, X, y, params, trajectory=rec, path=out, resolution=15)
    _assert_png(out)
    np.testing.assert_array_equal(model._arena.data, before)   # bit-exact
    assert model.training and model._step == step                  # mode restored, no dropout steps used
    (line,) = _by_gid(fig, "trajectory")
    np.testing.assert_array_equal(np.column_stack([line.get_xdata(), line.get_ydata()]), rec.path)
    (cur,) = _by_gid(fig, "current")
    assert (cur.get_xdata()[0], cur.get_ydata()[0]) == tuple(rec.path[-1])
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo < rec.path[:, 0].min() and hi > rec.path[:, 0].max()   # the window holds the whole path
    assert ax.get_xlabel() == "0.weight[0, 1]" and ax.get_ylabel() == "2.bias[1]"


def test_loss_surface_values_match_direct_evaluation():
    model, X, y, params, _ = _trained("float64", steps=5)
    named = dict(model.named_parameters())
    a0, b0 = named["0.weight"].data[0, 1], named["2.bias"].data[1]
    a_values, b_values = np.array([a0 - 0.5, a0, a0 + 1.0]), np.array([b0, b0 + 0.25])
    surface = plot.loss_surface(model, X, y, params, a_values, b_values)
    assert surface.shape == (2, 3)
    loss_fn = fnn.losses.CrossEntropyLoss()
    model.eval()
    assert surface[0, 1] == pytest.approx(loss_fn(model(X), y), rel=1e-12)   # the current point
    named["0.weight"].data[0, 1] = a0 + 1.0
    named["2.bias"].data[1] = b0 + 0.25
    assert surface[1, 2] == pytest.approx(loss_fn(model(X), y), rel=1e-12)
    named["0.weight"].data[0, 1], named["2.bias"].data[1] = a0, b0
    # an explicit loss and a regression model
    reg = fnn.Sequential([fnn.Dense(3, 1)], dtype="float64", seed=0)
    t = X[:, :1] * 2.0
    s = plot.loss_surface(reg, X, t, [("0.weight", (0, 0)), ("0.bias", 0)], [2.0], [0.0], loss="mse")
    w = dict(reg.named_parameters())["0.weight"].data.copy()
    w[0, 0] = 2.0
    assert s[0, 0] == pytest.approx(np.mean((X @ w - t) ** 2), rel=1e-12)


def test_loss_surface_restores_on_error():
    model, X, y, params, _ = _trained(steps=2)
    before = model._arena.data.copy()
    with pytest.raises(ValueError, match="class indices"):
        plot.loss_surface(model, X, y + 5, params, [0.0, 1.0], [0.0])
    np.testing.assert_array_equal(model._arena.data, before)
    assert model.training


def test_loss_landscape_span_and_no_trajectory(tmp_path):
    model, X, y, params, _ = _trained(steps=3)
    a0 = dict(model.named_parameters())["0.weight"].data[0, 1]
    fig = plot.loss_landscape(model, X, y, params, span=(0.5, 2.0), resolution=5, path=tmp_path / "a.png")
    assert fig.axes[0].get_xlim() == pytest.approx((a0 - 0.5, a0 + 0.5))
    assert _by_gid(fig, "trajectory") == []
    fig = plot.loss_landscape(model, X, y, params, trajectory=np.zeros((0, 2)), resolution=5,
                              path=tmp_path / "b.png")
    assert fig.axes[0].get_xlim() == pytest.approx((a0 - 1.0, a0 + 1.0))


@pytest.mark.parametrize("params,kw,exc,match", [
    ([("0.weight", (0, 1))], {}, ValueError, "params must be two \\(name, index\\) pairs"),
    ([("3.weight", (0, 1)), ("0.bias", 0)], {}, ValueError, r"params\[0\]: no parameter named '3.weight'"),
    ([("0.weight", (3, 0)), ("0.bias", 0)], {}, ValueError, r"index \(3, 0\) must pick one entry of '0.weight', "
                                                            r"which has shape \(3, 8\)"),
    ([("0.weight", 0), ("0.bias", 0)], {}, ValueError, r"params\[0\]: index"),
    ([("0.bias", 2), ("0.bias", (2,))], {}, ValueError, r"two different weights, got 0.bias\[2\] twice"),
    ([("0.bias", 2), "x"], {}, ValueError, r"params\[1\] must be a \(name, index\) pair"),
    ([("0.bias", 2), ("0.bias", 1)], {"trajectory": np.zeros((4, 3))}, ValueError,
     r"trajectory must have shape \(n_points, 2\)"),
    ([("0.bias", 2), ("0.bias", 1)], {"span": -1.0}, ValueError, "span must be a finite number in"),
    ([("0.bias", 2), ("0.bias", 1)], {"span": (1.0, 2.0, 3.0)}, ValueError, "span must be a number or a pair"),
    ([("0.bias", 2), ("0.bias", 1)], {"resolution": 2}, ValueError, r"resolution must be in \[3, 1001\]"),
    ([("0.bias", 2), ("0.bias", 1)], {"loss": "hinge"}, ValueError, "loss must be one of"),
])
def test_loss_landscape_bad_inputs(params, kw, exc, match):
    model, X, y, _, _ = _trained(steps=1)
    with pytest.raises(exc, match=match):
        plot.loss_landscape(model, X, y, params, path="/nonexistent/never-written.png", **kw)


# ----------------------------------------------------------------------------- with model.fit
def test_fit_with_recorder_and_early_stopping_plots(tmp_path):
    r = np.random.default_rng(3)
    X = r.standard_normal((90, 4)).astype(np.float32)
    y = (X[:, 0] - X[:, 2] > 0).astype(np.int64)
    model = fnn.Sequential([fnn.Dense(4, 32, activation="relu"), fnn.Dense(32, 2)], seed=0)
    model.compile(optimizer=fnn.optim.Adam(model.parameters(), lr=0.05), loss="cross_entropy", metrics=["acc"])
    params = [("0.weight", (0, 0)), ("1.weight", (1, 1))]
    rec = plot.PathRecorder(model, params)
    es = EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(X, y, epochs=60, batch_size=16, validation_split=0.3, callbacks=[rec, es], verbose=0)
    steps = -(-63 // 16)   # 63 training rows -> 4 batches per epoch
    assert rec.path.shape == (1 + steps * len(history.epoch), 2)   # the start, then every batch
    assert es.stopped_epoch > 0
    fig = plot.history(history, path=tmp_path / "h.png", early_stopping=es)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "acc"]
    assert {_vline_x(line) for line in _by_gid(fig, "best_epoch")} == {es.best_epoch + 1}
    assert {_vline_x(line) for line in _by_gid(fig, "early_stopping")} == {es.stopped_epoch + 1}
    _assert_png(tmp_path / "h.png")
    # the weights restored by EarlyStopping are the current point; the path ends elsewhere (after the best epoch)
    before = model._arena.data.copy()
    fig = plot.loss_landscape(model, X, y, params, trajectory=rec, resolution=9, path=tmp_path / "l.png")
    np.testing.assert_array_equal(model._arena.data, before)
    named = dict(model.named_parameters())
    (cur,) = _by_gid(fig, "current")
    assert cur.get_xdata()[0] == named["0.weight"].data[0, 0] and cur.get_ydata()[0] == named["1.weight"].data[1, 1]
    _assert_png(tmp_path / "l.png")


def test_history_into_given_axes(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3))
    axes = fig.subplots(1, 2)
    got = plot.history(LOGS, metrics=[], axes=[axes[0]], title="run A")
    assert got is fig and axes[0].get_title() == "run A: loss" and not axes[1].lines
    plot.history(LOGS, metrics=["accuracy"], axes=axes, title="run B")
    assert [ax.get_title() for ax in axes] == ["run B: loss", "run B: accuracy"]
    with pytest.raises(ValueError, match=r"axes must be 2 matplotlib Axes, one per panel \['loss', 'accuracy'\]"):
        plot.history(LOGS, axes=[axes[0]])


# ----------------------------------------------------------------------------- PathRecorder after fit
def _fit_data():
    r = np.random.default_rng(3)
    X = r.standard_normal((90, 4)).astype(np.float32)
    y = (X[:, 0] - X[:, 2] > 0).astype(np.int64)
    model = fnn.Sequential([fnn.Dense(4, 16, activation="tanh"), fnn.Dense(16, 2)], seed=0)
    model.compile(optimizer=fnn.optim.Adam(model.parameters(), lr=0.05), loss="cross_entropy")
    return model, X, y


def test_path_recorder_keeps_its_weights_after_fit(tmp_path):
    """fit's set_params used to overwrite the recorder's own `params` (Keras's Callback.params) with
    {'verbose', 'epochs', 'steps'}, so the recorder could no longer name its two weights afterwards."""
    model, X, y = _fit_data()
    params = [("0.weight", (0, 0)), ("1.weight", (1, 1))]
    rec = plot.PathRecorder(model, params)
    model.fit(X, y, epochs=3, batch_size=30, callbacks=[rec], verbose=0)
    assert rec.params == {"verbose": 0, "epochs": 3, "steps": 3}   # Keras's attribute, set by fit
    assert rec.weights == params and rec.labels == ["0.weight[0, 0]", "1.weight[1, 1]"]
    assert rec.path.shape == (1 + 3 * 3, 2)
    before = model._arena.data.copy()
    fig = plot.loss_landscape(model, X, y, rec.weights, trajectory=rec, resolution=7, path=tmp_path / "a.png")
    (line,) = _by_gid(fig, "trajectory")
    np.testing.assert_array_equal(line.get_xdata(), rec.path[:, 0])
    assert fig.axes[0].get_xlabel() == rec.labels[0]
    fig = plot.loss_landscape(model, X, y, trajectory=rec, resolution=7, path=tmp_path / "b.png")  # view from rec
    assert fig.axes[0].get_ylabel() == rec.labels[1]
    np.testing.assert_array_equal(model._arena.data, before)
    _assert_png(tmp_path / "b.png")


def test_no_callback_assigns_the_attributes_fit_sets():
    """Keras's Callback attributes `params` and `model` belong to fit (set_params / set_model)."""
    import inspect
    import re

    from fastnn import callbacks

    classes = [obj for mod in (callbacks, plot) for obj in vars(mod).values()
               if isinstance(obj, type) and issubclass(obj, callbacks.Callback) and obj is not callbacks.Callback]
    assert plot.PathRecorder in classes and callbacks.EarlyStopping in classes
    for cls in classes:
        own = re.findall(r"self\.(params|model)\s*=[^=]", inspect.getsource(cls))
        assert own == [], f"{cls.__name__} assigns self.{own}, which fit overwrites"


# ----------------------------------------------------------------------------- random filter-normalised directions
def _small(dtype="float64", steps=0):
    r = np.random.default_rng(5)
    X = r.standard_normal((50, 3)).astype(dtype)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    model = fnn.Sequential([fnn.Dense(3, 6, activation="tanh"), fnn.Dropout(0.3), fnn.Dense(6, 5, activation="relu"),
                            fnn.Dense(5, 2)], dtype=dtype, seed=2)
    return model, X, y


@pytest.mark.parametrize("biases", ["zero", "keep"])
def test_filter_normalized_directions_hold_each_filters_norm(biases):
    model, _, _ = _small()
    d = plot.filter_normalized_directions(model, seed=3, biases=biases)
    assert d.shape == (2, model._arena.size) and d.dtype == np.float64
    for p in model.parameters():
        dk = d[:, p.offset:p.offset + p.size].reshape(2, *p.shape)
        if p.data.ndim == 2:   # (in, out): the filter of output unit j is the column W[:, j]
            w_norms = np.linalg.norm(p.data, axis=0)
            for k in range(2):
                np.testing.assert_allclose(np.linalg.norm(dk[k], axis=0), w_norms, rtol=1e-12)
                assert not np.allclose(dk[k], p.data)   # a random direction, not the weights
        else:
            np.testing.assert_array_equal(dk, np.broadcast_to(p.data if biases == "keep" else 0.0, dk.shape))
    assert not np.allclose(d[0], d[1])
    np.testing.assert_array_equal(d, plot.filter_normalized_directions(model, seed=3, biases=biases))
    assert not np.allclose(d, plot.filter_normalized_directions(model, seed=4, biases=biases))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_direction_surface_centre_is_the_models_loss_and_weights_come_back_bit_for_bit(dtype):
    model, X, y = _small(dtype)
    model.train()
    before, step = model._arena.data.copy(), model._step
    steps = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    surface = plot.direction_surface(model, X, y, steps, steps[1:4], seed=7)
    assert surface.shape == (3, 5)
    np.testing.assert_array_equal(model._arena.data, before)   # restored bit for bit
    assert model.training and model._step == step                # mode restored, no dropout step used
    loss_fn = fnn.losses.CrossEntropyLoss()
    model.eval()
    assert surface[1, 2] == float(loss_fn(model(X), y))          # the centre is the model's loss, exactly
    # another grid point, evaluated by hand
    d = plot.filter_normalized_directions(model, seed=7)
    model._arena.data[...] = before + 0.5 * d[0] - 0.5 * d[1]
    assert surface[0, 3] == pytest.approx(float(loss_fn(model(X), y)), rel=1e-5 if dtype == "float32" else 1e-12)
    model._arena.data[...] = before
    assert len(np.unique(surface)) > 5   # the directions move the loss


def test_direction_surface_restores_on_error():
    model, X, y = _small()
    before = model._arena.data.copy()
    with pytest.raises(ValueError, match="class indices"):
        plot.direction_surface(model, X, y + 5, [0.0, 1.0], [0.5])
    np.testing.assert_array_equal(model._arena.data, before)
    assert model.training


@pytest.mark.parametrize("biases", ["zero", "keep"])
def test_direction_path_is_the_projection_of_every_recorded_parameter_vector(biases):
    model, X, y = _small()
    rec = plot.PathRecorder(model, directions="filter_normalized", seed=11, biases=biases)
    assert rec.weights is None and rec.params == {}
    loss_fn = fnn.losses.CrossEntropyLoss()
    opt = fnn.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    full = [model._arena.data.copy()]
    rec.record()
    for _ in range(15):
        loss_fn(model(X), y)
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
        rec.record()
        full.append(model._arena.data.copy())
    units = 6 + 5 + 2
    assert all(point.shape == (2 * units + (units if biases == "keep" else 0),) for point in rec._points)  # small
    center = model._arena.data
    d = plot.filter_normalized_directions(model, seed=11, biases=biases)
    want = np.linalg.lstsq(d.T, (np.array(full) - center).T, rcond=None)[0].T   # (n, 2) coordinates
    np.testing.assert_allclose(rec.path, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rec.path[-1], 0.0, atol=1e-12)   # the path ends at the trained weights
    assert np.abs(rec.path[0]).max() > 1e-3
    # around another centre: the directions are filter-normalised to that centre's filters
    model._arena.data[...] = full[5]
    d5 = plot.filter_normalized_directions(model, seed=11, biases=biases)
    model._arena.data[...] = center_copy = full[-1]
    want5 = np.linalg.lstsq(d5.T, (np.array(full) - full[5]).T, rcond=None)[0].T
    np.testing.assert_allclose(rec.project(full[5]), want5, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(model._arena.data, center_copy)


def test_fit_with_a_direction_recorder_draws_the_standard_view(tmp_path):
    model, X, y = _fit_data()
    rec = plot.PathRecorder(model, directions="filter_normalized", seed=2)
    model.fit(X, y, epochs=4, batch_size=30, callbacks=[rec], verbose=0)
    assert rec.params["epochs"] == 4 and rec.directions == "filter_normalized" and rec.seed == 2
    assert rec.path.shape == (1 + 4 * 3, 2)
    before = model._arena.data.copy()
    fig = plot.loss_landscape(model, X, y, trajectory=rec, resolution=9, path=tmp_path / "d.png")
    _assert_png(tmp_path / "d.png")
    np.testing.assert_array_equal(model._arena.data, before)
    (line,) = _by_gid(fig, "trajectory")
    np.testing.assert_array_equal(np.column_stack([line.get_xdata(), line.get_ydata()]), rec.path)
    (cur,) = _by_gid(fig, "current")
    assert (cur.get_xdata()[0], cur.get_ydata()[0]) == (0.0, 0.0)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "direction 1 (filter-normalised)" and "seed 2" in ax.get_title()
    assert ax.get_xlim() == (-1.0, 1.0)   # Li et al.'s window (the path is far inside it)
    # the same view without a recorder, and explicit arguments that agree with the recorder
    plot.loss_landscape(model, X, y, directions="filter_normalized", seed=2, trajectory=rec, resolution=5)
    fig = plot.loss_landscape(model, X, y, directions="filter_normalized", resolution=5, span=0.5)
    assert fig.axes[0].get_xlim() == (-0.5, 0.5) and _by_gid(fig, "trajectory") == []


def test_both_views_side_by_side_in_given_axes(tmp_path):
    from matplotlib.figure import Figure

    model, X, y = _fit_data()
    fig = Figure(figsize=(12, 5))
    left, right = fig.subplots(1, 2)
    got = plot.loss_landscape(model, X, y, [("0.weight", (0, 0)), ("1.bias", 1)], resolution=5, ax=left)
    assert got is fig
    plot.loss_landscape(model, X, y, directions="filter_normalized", resolution=5, ax=right)
    assert left.get_xlabel() == "0.weight[0, 0]" and right.get_xlabel() == "direction 1 (filter-normalised)"
    assert len([a for a in fig.axes if a.get_gid() == "colorbar"]) == 2


def _colorbar(fig):
    (cax,) = [a for a in fig.axes if a.get_gid() == "colorbar"]
    return cax


@pytest.mark.parametrize("view", ["weights", "directions"])
@pytest.mark.parametrize("wide", [False, True])
def test_colour_bar_has_a_label_and_a_few_ticks_in_loss_units(view, wide):
    model, X, y, params, _ = _trained("float64", steps=40)
    kw = {"params": params} if view == "weights" else {"directions": "filter_normalized", "seed": 0}
    span = 30.0 if wide else 0.05   # a wide window spans decades of loss, a narrow one a few percent
    fig = plot.loss_landscape(model, X, y, span=span, resolution=21, **kw)
    surface_lo_hi = [float(t) for t in _colorbar(fig).get_ylim()]
    cax = _colorbar(fig)
    assert cax.get_ylabel().startswith("loss: CrossEntropyLoss, ")
    assert cax.get_ylabel().endswith("log scale" if wide else "linear scale")
    labels = [t.get_text() for t in cax.get_yticklabels()]
    ticks = cax.get_yticks()
    assert 3 <= len(labels) <= 7 and len(labels) == len(ticks)
    values = [float(label) for label in labels]   # labels are plain numbers in loss units ...
    np.testing.assert_allclose(values, ticks, rtol=1e-9)   # ... reading as the ticks themselves
    assert all(len(label) <= 8 for label in labels) and values == sorted(values)
    lo, hi = sorted(surface_lo_hi)
    assert lo <= values[0] and values[-1] <= hi
    if wide:   # 1-2-5 steps: each tick is a round number
        assert all(float(f"{v:.2g}") == v for v in values)
    assert not cax.yaxis.get_minorticklocs().size


@pytest.mark.parametrize("lo,hi,log,want", [
    (0.03, 4.2, True, [0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),
    (0.3, 9.0, True, [0.5, 1.0, 2.0, 5.0]),
    (0.3, 2.5, True, [0.3, 0.5, 0.7, 1.0, 1.5, 2.0]),
    (1e-6, 1e3, True, [1e-6, 1e-4, 1e-2, 1.0, 1e2]),
    (0.50, 0.53, False, [0.5, 0.51, 0.52, 0.53]),
])
def test_colour_bar_ticks_are_round_values_inside_the_range(lo, hi, log, want):
    from fastnn.plot import _nice_ticks

    np.testing.assert_allclose(_nice_ticks(lo, hi, log), want, rtol=1e-12)


@pytest.mark.parametrize("call,match", [
    (lambda m, X, y: plot.loss_landscape(m, X, y, [("0.bias", 1), ("0.bias", 2)], directions="filter_normalized"),
     "not both"),
    (lambda m, X, y: plot.loss_landscape(m, X, y), "params: give two"),
    (lambda m, X, y: plot.loss_landscape(m, X, y, directions="pca"), "directions must be one of"),
    (lambda m, X, y: plot.loss_landscape(m, X, y, directions="filter_normalized", biases="drop"),
     "biases must be one of"),
    (lambda m, X, y: plot.loss_landscape(m, X, y, directions="filter_normalized", seed=-1), "seed must be"),
    (lambda m, X, y: plot.loss_landscape(m, X, y, directions="filter_normalized",
                                         trajectory=plot.PathRecorder(m, [("0.bias", 1), ("0.bias", 2)])),
     "recorded two weights"),
    (lambda m, X, y: plot.loss_landscape(m, X, y, [("0.bias", 1), ("0.bias", 2)],
                                         trajectory=plot.PathRecorder(m, directions="filter_normalized")),
     "recorded the random-direction view"),
    (lambda m, X, y: plot.loss_landscape(m, X, y, seed=3,
                                         trajectory=plot.PathRecorder(m, directions="filter_normalized", seed=2)),
     "seed=3 differs from the PathRecorder's seed=2"),
    (lambda m, X, y: plot.loss_landscape(_fit_data()[0], X, y,
                                         trajectory=plot.PathRecorder(m, directions="filter_normalized")),
     "not the ones the directions were drawn for"),
    (lambda m, X, y: plot.loss_landscape(m, X, y, [("0.bias", 2), ("0.bias", 1)],
                                         trajectory=plot.PathRecorder(m, [("0.bias", 1), ("0.bias", 2)])),
     r"params name \['0.bias\[2\]', '0.bias\[1\]'\] but the PathRecorder recorded \['0.bias\[1\]', '0.bias\[2\]'\]"),
    (lambda m, X, y: plot.PathRecorder(m), "exactly one of them"),
    (lambda m, X, y: plot.PathRecorder(m, [("0.bias", 1), ("0.bias", 2)], directions="filter_normalized"),
     "exactly one of them"),
    (lambda m, X, y: plot.direction_surface(m, X, y, [0.0], [0.0], directions=np.zeros((2, 3))),
     r"directions must have shape"),
    (lambda m, X, y: plot.loss_landscape(m, X, y, directions="filter_normalized", ax="left"), "ax must be"),
])
def test_landscape_views_bad_inputs(call, match):
    model, X, y, _, _ = _trained(steps=1)
    with pytest.raises((ValueError, TypeError), match=match):
        call(model, X, y)


def test_recorder_refuses_to_record_another_models_fit():
    model, X, y = _fit_data()
    other, _, _ = _fit_data()
    rec = plot.PathRecorder(other, directions="filter_normalized")
    with pytest.raises(ValueError, match="different model"):
        model.fit(X, y, epochs=1, callbacks=[rec], verbose=0)
