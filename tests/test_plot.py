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
