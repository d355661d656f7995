"""Keras-style compile, fit, evaluate, predict, train_step (docs/numerics.md 6.2-6.3), bad input, divergence."""

import math

import numpy as np
import pytest

import fastnn as fnn
from fastnn.callbacks import Callback, CallbackList, ProgressBar, TerminateOnNaN

R = np.random.default_rng(7)
X4 = R.standard_normal((10, 4))
Y3 = R.integers(0, 3, 10)


def _clf(seed=0, dropout=0.0, dtype="float32", width=8):
    layers = [fnn.Dense(4, width, "relu")]
    if dropout:
        layers.append(fnn.Dropout(dropout))
    layers.append(fnn.Dense(width, 3))
    return fnn.Sequential(layers, dtype=dtype, seed=seed)


def _spy_batches(model):
    """Record (copy of xb, copy of tb, training flag) for every _train_step call."""
    seen = []
    real = model._train_step

    def spy(x, t):
        seen.append((x.copy(), t.copy(), model.training, x))
        return real(x, t)

    model._train_step = spy
    return seen


# ------------------------------------------------------------------------------ compile

@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"), ("ADAM", "Adam"),
                                      ("rmsprop", "RMSprop"), ("adagrad", "Adagrad"), ("adadelta", "Adadelta")])
def test_compile_optimizer_names(name, cls):
    model = _clf()
    model.compile(name, "cross_entropy")
    opt = model.optimizer
    assert type(opt) is getattr(fnn.optim, cls)
    assert [p for g in opt.param_groups for p in g["params"]] == model.parameters()
    assert opt.defaults["lr"] == type(opt)(model.parameters()).defaults["lr"]   # torch's defaults


@pytest.mark.parametrize("name,cls", [("mse", "MSELoss"), ("bce_with_logits", "BCEWithLogitsLoss"),
                                      ("cross_entropy", "CrossEntropyLoss"), ("nll", "NLLLoss")])
def test_compile_loss_names(name, cls):
    model = _clf()
    model.compile(loss=name)
    assert type(model.loss) is getattr(fnn.losses, cls) and type(model.optimizer) is fnn.optim.Adam
    bce = fnn.Sequential([fnn.Dense(4, 1, "sigmoid")], seed=0)
    bce.compile("sgd", "bce")
    assert type(bce.loss) is fnn.losses.BCELoss


def test_compile_objects_and_metric_names():
    model = _clf()
    opt = fnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = fnn.losses.CrossEntropyLoss(label_smoothing=0.1)
    model.compile(optimizer=opt, loss=loss, metrics=["acc"])
    assert model.optimizer is opt and model.loss is loss
    assert model.compiled_metrics == ["accuracy"] and model.metrics_names == ["loss", "acc"]
    model.compile(opt, loss, metrics="accuracy")
    assert model.compiled_metrics == ["accuracy"]
    w, b = model.parameters()[:2]   # an optimizer over some of the parameters (the rest frozen) is fine
    model.compile(fnn.optim.SGD([w, b], lr=0.1), "cross_entropy")
    frozen = model.parameters()[2].data.copy()
    model.fit(X4, Y3, epochs=2, verbose=0)
    np.testing.assert_array_equal(model.parameters()[2].data, frozen)


@pytest.mark.parametrize("kw,exc,msg", [
    ({"optimizer": "adamax", "loss": "mse"}, ValueError, "optimizer must be one of 'sgd', 'adam'.*got 'adamax'"),
    ({"optimizer": fnn.optim.Adam, "loss": "mse"}, TypeError, r"optimizer must be an instance, e.g. Adam\(model"),
    ({"optimizer": 0.1, "loss": "mse"}, TypeError, "optimizer must be a name .* or a fastnn.optim optimizer, "
                                                   "got float"),
    ({"loss": None}, ValueError, "compile\\(\\) needs a loss"),
    ({"loss": "hinge"}, ValueError, "loss must be one of 'mse', 'bce'.*got 'hinge'"),
    ({"loss": fnn.losses.MSELoss}, TypeError, r"loss must be an instance, e.g. MSELoss\(\)"),
    ({"loss": lambda a, b: 0}, TypeError, "loss must be a name .* or a fastnn.losses object, got function"),
    ({"loss": fnn.losses.MSELoss(reduction="none")}, ValueError, "reduction must be 'mean' or 'sum', got 'none'"),
    ({"loss": "bce"}, ValueError, "BCELoss\\) takes probabilities, but the model does not end with a sigmoid"),
    ({"loss": fnn.losses.CrossEntropyLoss(weight=[1, 2])}, ValueError, r"weight must have shape \(3,\)"),
    ({"loss": fnn.losses.BCEWithLogitsLoss(pos_weight=np.ones((5, 3)))}, ValueError, "pos_weight of shape"),
    ({"loss": "mse", "metrics": ["f1"]}, ValueError, "metrics entries must be one of 'accuracy'.*got 'f1'"),
    ({"loss": "mse", "metrics": [len]}, TypeError, "metrics must be metric names"),
    ({"loss": "mse", "metrics": {"a": "mae"}}, TypeError, "metrics must be a list of metric names, got dict"),
    ({"loss": "mse", "metrics": ["mae", "mae"]}, ValueError, "metrics must not repeat a name"),
    ({"loss": "nll", "metrics": ["mae"]}, ValueError, "metric 'mae' compares outputs with targets of the same shape"),
])
def test_compile_bad_arguments(kw, exc, msg):
    model = _clf()
    with pytest.raises(exc, match=msg):
        model.compile(**kw)
    assert model.optimizer is None and model.loss is None   # nothing half-set


def test_compile_refuses_another_models_optimizer_and_one_output_cross_entropy():
    model, other = _clf(), _clf()
    with pytest.raises(ValueError, match="optimizer must optimize this model's parameters, but it holds 4 other"):
        model.compile(fnn.optim.Adam(other.parameters()), "mse")
    one = fnn.Sequential([fnn.Dense(4, 1)], seed=0)
    with pytest.raises(ValueError, match="needs at least 2 output classes, but the model has 1 output; use "
                                         "'bce_with_logits'"):
        one.compile("adam", "cross_entropy")


def test_compile_warns_about_softmax_before_cross_entropy():
    model = fnn.Sequential([fnn.Dense(4, 3, "softmax")], seed=0)
    with pytest.warns(UserWarning, match="CrossEntropyLoss takes logits"):
        model.compile("adam", "cross_entropy")


@pytest.mark.parametrize("call", ["fit", "evaluate", "train_step"])
def test_not_compiled(call):
    model = _clf()
    args = (X4, Y3)
    with pytest.raises(ValueError, match=f"the model must be compiled before {call}\\(\\)"):
        getattr(model, call)(*args)
    assert model.predict(X4).shape == (10, 3)   # predict needs no compile


# ------------------------------------------------------------------------------ fit semantics

def test_epoch_loss_is_the_sample_weighted_mean_with_a_partial_last_batch():
    """lr = 0 and batches 3, 3, 2: the epoch loss is the 8-sample mean, not the mean of the batch means."""
    x, y = X4[:8], Y3[:8]
    model = _clf(dtype="float64")
    model.compile(fnn.optim.SGD(model.parameters(), lr=0.0), "cross_entropy", ["accuracy"])
    seen = _spy_batches(model)
    hist = model.fit(x, y, epochs=1, batch_size=3, verbose=0)
    assert [len(s[0]) for s in seen] == [3, 3, 2] and hist.params["steps"] == 3
    loss_fn = fnn.losses.CrossEntropyLoss()
    out = model.eval()(x)
    full = loss_fn(out, y)
    means = [loss_fn(out[s:s + 3], y[s:s + 3]) for s in range(0, 8, 3)]   # any order: lr = 0
    assert hist.history["loss"][0] == pytest.approx(full, rel=1e-12)
    assert abs(full - np.mean(means)) > 1e-3
    assert hist.history["accuracy"][0] == np.mean(out.argmax(1) == y)


def test_epoch_loss_and_metrics_follow_the_training_batches():
    """Running means over the batches of the training-mode outputs (dropout on), before each update."""
    r = np.random.default_rng(3)
    x, y = r.standard_normal((23, 4)), r.integers(0, 3, 23)
    model = _clf(seed=5, dropout=0.5, dtype="float64")
    model.compile(fnn.optim.SGD(model.parameters(), lr=0.1), "cross_entropy", ["accuracy"])
    twin = _clf(seed=5, dropout=0.5, dtype="float64")
    twin.compile(fnn.optim.SGD(twin.parameters(), lr=0.1), "cross_entropy")
    total = hits = 0.0
    for s in range(0, 23, 5):
        xb, yb = x[s:s + 5], y[s:s + 5]
        step = twin._step
        out = twin(xb)   # the training-mode output the step will see (same dropout mask)
        twin._step = step
        hits += np.sum(out.argmax(1) == yb)
        total += twin.train_step(xb, yb) * len(xb)
    hist = model.fit(x, y, epochs=1, batch_size=5, shuffle=False, verbose=0)
    assert hist.history["loss"][0] == pytest.approx(total / 23, rel=1e-12)
    assert hist.history["accuracy"][0] == hits / 23
    np.testing.assert_array_equal(model._arena.data, twin._arena.data)


def test_validation_split_takes_the_last_samples_before_shuffling():
    r = np.random.default_rng(0)
    x, y = r.standard_normal((20, 4)), r.integers(0, 3, 20)
    model = _clf(dropout=0.3)
    model.compile("adam", "cross_entropy", ["accuracy"])
    seen = _spy_batches(model)
    hist = model.fit(x, y, epochs=3, batch_size=4, validation_split=0.25, verbose=0)
    assert len(seen) == 3 * 4   # 15 training samples -> 4 batches (4, 4, 4, 3)
    train = x[:15].astype(np.float32)
    for e in range(3):
        rows = np.concatenate([s[0] for s in seen[4 * e:4 * e + 4]])
        order = [int(np.flatnonzero((train == row).all(1))[0]) for row in rows]
        assert sorted(order) == list(range(15))
    orders = [[int(np.flatnonzero((train == s[0][0]).all(1))[0]) for s in seen[4 * e:4 * e + 4]] for e in range(3)]
    assert orders[0] != orders[1] != orders[2]   # reshuffled each epoch
    assert all(s[2] for s in seen)   # trained in training mode
    # val_* is evaluated on the last 5 samples, in eval mode, with the final weights
    ev = model.evaluate(x[15:], y[15:], batch_size=4)
    assert hist.history["val_loss"][-1] == ev["loss"] and hist.history["val_accuracy"][-1] == ev["accuracy"]
    assert model.training   # the mode before fit is restored


def test_unshuffled_batches_are_views_and_shuffled_ones_reuse_one_buffer():
    model = _clf()
    model.compile("sgd", "cross_entropy")
    seen = _spy_batches(model)
    x = X4.astype(np.float32)
    model.fit(x, Y3, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert [np.shares_memory(s[3], x) for s in seen] == [True] * 3
    np.testing.assert_array_equal(np.concatenate([s[0] for s in seen]), x)
    seen.clear()
    model.fit(x, Y3, epochs=2, batch_size=4, verbose=0)
    assert not any(np.shares_memory(s[3], x) for s in seen)
    assert all(np.shares_memory(s[3], seen[0][3]) for s in seen)


def test_validation_data_overrides_the_split_and_eval_mode_is_restored():
    model = _clf(dropout=0.5)
    model.compile("adam", "cross_entropy", ["acc"])
    model.eval()
    xv, yv = X4[:3] + 1, Y3[:3]
    hist = model.fit(X4, Y3, epochs=2, validation_split=0.5, validation_data=(xv, yv), verbose=0)
    assert not model.training
    assert hist.history["val_loss"][-1] == model.evaluate(xv, yv, batch_size=32)["loss"]


def test_batch_size_larger_than_the_data_and_zero_epochs():
    model = _clf()
    model.compile("adam", "cross_entropy")
    seen = _spy_batches(model)
    hist = model.fit(X4, Y3, batch_size=1000, epochs=2, verbose=0)
    assert [len(s[0]) for s in seen] == [10, 10] and hist.params["steps"] == 1
    before = model._arena.data.copy()
    hist = model.fit(X4, Y3, epochs=2, initial_epoch=2, verbose=0)
    assert hist.epoch == [] and hist.history == {}
    np.testing.assert_array_equal(model._arena.data, before)


def _digits_model(seed):
    model = fnn.Sequential([fnn.Dense(64, 32, "relu"), fnn.Dropout(0.2), fnn.Dense(32, 10)], seed=seed)
    model.compile("adam", "cross_entropy", ["accuracy"])
    return model


def test_same_seed_is_bit_identical_and_another_seed_differs():
    X, y = fnn.datasets.load_digits()
    X, y = X[:300], y[:300]
    runs = []
    for seed in (11, 11, 12):
        model = _digits_model(seed)
        hist = model.fit(X, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0)
        runs.append((hist.history, model._arena.data.copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0]["loss"] != runs[2][0]["loss"]
    assert not np.array_equal(runs[0][1], runs[2][1])


def test_resume_with_initial_epoch_equals_the_uninterrupted_run():
    X, y = fnn.datasets.load_digits()
    X, y = X[:300], y[:300]
    straight = _digits_model(4)
    full = straight.fit(X, y, epochs=5, batch_size=32, validation_split=0.2, verbose=0)
    resumed = _digits_model(4)
    first = resumed.fit(X, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0)
    assert resumed.epoch == 3
    second = resumed.fit(X, y, epochs=5, initial_epoch=resumed.epoch, batch_size=32, validation_split=0.2, verbose=0)
    assert second.epoch == [3, 4] and resumed.epoch == 5
    for key, values in full.history.items():
        assert first.history[key] + second.history[key] == values, key
    np.testing.assert_array_equal(resumed._arena.data, straight._arena.data)


def test_fit_reaches_95_percent_on_held_out_digits():
    X, y = fnn.datasets.load_digits()
    order = np.random.default_rng(42).permutation(len(X))
    test, train = order[:360], order[360:]
    model = fnn.Sequential([fnn.Dense(64, 128, "relu"), fnn.Dense(128, 10)], seed=0)
    model.compile("adam", "cross_entropy", ["accuracy"])
    hist = model.fit(X[train], y[train], epochs=30, batch_size=32, validation_split=0.1, verbose=0)
    assert hist.history["loss"][-1] < 0.1 * hist.history["loss"][0]
    result = model.evaluate(X[test], y[test])
    assert result["accuracy"] >= 0.95, result
    assert np.mean(model.predict(X[test]).argmax(1) == y[test]) == result["accuracy"]


def test_regression_with_1d_targets_and_mae():
    r = np.random.default_rng(1)
    x = r.standard_normal((200, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1
    model = fnn.Sequential([fnn.Dense(4, 16, "tanh"), fnn.Dense(16, 1)], dtype="float64", seed=0)
    model.compile(fnn.optim.Adam(model.parameters(), lr=0.01), "mse", ["mae"])
    hist = model.fit(x, y, epochs=40, batch_size=16, verbose=0)
    assert hist.history["mse" if "mse" in hist.history else "loss"][-1] < 0.05 * hist.history["loss"][0]
    pred = model.predict(x)
    ev = model.evaluate(x, y)
    assert ev["mae"] == pytest.approx(np.mean(np.abs(pred[:, 0] - y)), rel=1e-10)
    assert ev["loss"] == pytest.approx(np.mean((pred[:, 0] - y) ** 2), rel=1e-10)


# ------------------------------------------------------------------------------ train_step

def test_train_step_equals_the_explicit_loop():
    model, loop = _clf(seed=2, dropout=0.25), _clf(seed=2, dropout=0.25)
    model.compile(fnn.optim.Adam(model.parameters(), lr=0.01), "cross_entropy")
    opt = fnn.optim.Adam(loop.parameters(), lr=0.01)
    loss_fn = fnn.losses.CrossEntropyLoss()
    model.eval()
    for s in (0, 5, 0):
        xb, yb = X4[s:s + 5], Y3[s:s + 5]
        loss = model.train_step(xb, yb)
        assert type(loss) is float
        expected = loss_fn(loop(xb), yb)
        loop.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
        assert loss == expected
    np.testing.assert_array_equal(model._arena.data, loop._arena.data)   # gradients overwritten, not accumulated
    assert not model.training and model._step == loop._step == 3


def test_train_step_validates_its_batch():
    model = _clf()
    model.compile("adam", "cross_entropy")
    before = model._arena.data.copy()
    with pytest.raises(ValueError, match=r"yb must be class indices in \[0, 2\]"):
        model.train_step(X4[:2], [0, 3])
    with pytest.raises(ValueError, match="xb and yb must have the same number of samples: xb has 2 rows, yb has 3"):
        model.train_step(X4[:2], [0, 1, 2])
    with pytest.raises(ValueError, match="xb must be finite"):
        model.train_step([[np.nan] * 4], [0])
    np.testing.assert_array_equal(model._arena.data, before)


# ------------------------------------------------------------------------------ evaluate / predict

def test_predict_any_batch_size_eval_mode_and_mode_restored():
    model = _clf(dropout=0.5)
    x = np.random.default_rng(0).standard_normal((37, 4))
    step = model._step
    full = model.predict(x)
    assert full.shape == (37, 3) and full.dtype == np.float32
    assert model.training and model._step == step   # eval mode inside, training mode restored, no dropout draw
    for bs in (1, 5, 36, 37, 100):
        np.testing.assert_allclose(model.predict(x, batch_size=bs), full, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.predict(x[3:4]), full[3:4])   # one sample
    model.eval()
    np.testing.assert_array_equal(model(x), full)
    assert not model.training
    model.predict(x)
    assert not model.training


def test_evaluate_returns_the_loss_and_metrics_in_eval_mode():
    model = _clf(dropout=0.5, dtype="float64")
    model.compile("adam", "cross_entropy", ["acc"])
    x = np.random.default_rng(0).standard_normal((37, 4))
    y = np.random.default_rng(1).integers(0, 3, 37)
    result = model.evaluate(x, y, batch_size=8)
    assert list(result) == ["loss", "acc"] and model.training
    out = model.predict(x)
    assert result["loss"] == pytest.approx(fnn.losses.CrossEntropyLoss()(out, y), rel=1e-12)
    assert result["acc"] == np.mean(out.argmax(1) == y)
    assert model.evaluate(x, y) == pytest.approx(result, rel=1e-12)


def _eval_metrics(model, loss, metrics, x, y):
    model.compile("sgd", loss, metrics)
    return model.evaluate(x, y), model.predict(x)


def test_accuracy_follows_the_loss_as_keras():
    r = np.random.default_rng(5)
    x = r.standard_normal((40, 4))
    # class indices -> argmax vs label; ignored rows are not counted
    model = _clf(dtype="float64")
    labels = r.integers(0, 3, 40)
    ev, out = _eval_metrics(model, "cross_entropy", ["accuracy"], x, labels)
    assert ev["accuracy"] == np.mean(out.argmax(1) == labels)
    labels[:10] = -100
    ev, out = _eval_metrics(model, "cross_entropy", ["accuracy"], x, labels)
    assert ev["accuracy"] == np.mean(out[10:].argmax(1) == labels[10:])
    # probability rows -> argmax vs argmax
    probs = r.random((40, 3))
    probs /= probs.sum(1, keepdims=True)
    ev, out = _eval_metrics(model, "cross_entropy", ["accuracy"], x, probs)
    assert ev["accuracy"] == np.mean(out.argmax(1) == probs.argmax(1))
    # logits with bce_with_logits -> threshold 0; probabilities with bce -> threshold 0.5
    binary = (r.random((40, 3)) < 0.5).astype(float)
    ev, out = _eval_metrics(model, "bce_with_logits", ["accuracy", "binary_accuracy"], x, binary)
    assert ev["accuracy"] == ev["binary_accuracy"] == np.mean((out > 0) == binary)
    sig = fnn.Sequential([fnn.Dense(4, 3, "sigmoid")], dtype="float64", seed=0)
    ev, out = _eval_metrics(sig, "bce", ["acc", "binary_accuracy"], x, binary)
    assert ev["acc"] == ev["binary_accuracy"] == np.mean((out > 0.5) == binary)
    # mse: one output -> binary accuracy at 0.5; several -> argmax vs argmax
    one = fnn.Sequential([fnn.Dense(4, 1)], dtype="float64", seed=0)
    ev, out = _eval_metrics(one, "mse", ["accuracy", "mae", "mse"], x, binary[:, 0])
    assert ev["accuracy"] == np.mean((out[:, 0] > 0.5) == binary[:, 0])
    assert ev["mae"] == pytest.approx(np.mean(np.abs(out[:, 0] - binary[:, 0])), rel=1e-12)
    assert ev["mse"] == pytest.approx(ev["loss"], rel=1e-12)
    ev, out = _eval_metrics(model, "mse", ["accuracy"], x, probs)
    assert ev["accuracy"] == np.mean(out.argmax(1) == probs.argmax(1))


# ------------------------------------------------------------------------------ bad input

def _bad_fit_cases():
    x, y = X4, Y3
    nan_x = x.copy()
    nan_x[4, 2] = np.nan
    inf_y = np.zeros((10, 3))
    inf_y[1, 1] = np.inf
    return [
        ("cross_entropy", dict(X=x, y=y[:9]), ValueError, "X and y must have the same number of samples: X has 10 "
                                                          "rows, y has 9"),
        ("cross_entropy", dict(X=x[:0], y=y[:0]), ValueError, r"X must hold at least one sample \(row\), got shape "
                                                              r"\(0, 4\)"),
        ("cross_entropy", dict(X=x[:, 0], y=y), ValueError, "X must be 2-D, got 1-D"),
        ("cross_entropy", dict(X=x[None], y=y), ValueError, "X must be 2-D, got 3-D"),
        ("cross_entropy", dict(X=x[:, :3], y=y), ValueError, r"X must have 4 features \(columns\) to match the "
                                                             r"model's input, got shape \(10, 3\)"),
        ("cross_entropy", dict(X=nan_x, y=y), ValueError, r"X must be finite, got NaN or inf \(first in row 4\)"),
        ("cross_entropy", dict(X=x.astype(str), y=y), TypeError, "X must hold real numbers"),
        ("cross_entropy", dict(X=[[1, 2], [3]], y=y), TypeError, "X must be an array of numbers"),
        ("mse", dict(X=x, y=inf_y), ValueError, r"y must be finite, got NaN or inf \(first in row 1\)"),
        ("cross_entropy", dict(X=x, y=np.array(list("abcabcabca"))), TypeError, "y must be integer class indices"),
        ("cross_entropy", dict(X=x, y=y.astype(float)), TypeError, r"y must be integer class indices, got floating "
                                                                   r"dtype float64; use y.astype\(int\)"),
        ("cross_entropy", dict(X=x, y=np.r_[y[:9], 3]), ValueError, r"y must be class indices in \[0, 2\] or "
                                                                    "ignore_index=-100, got 3"),
        ("nll", dict(X=x, y=np.r_[y[:9], -1]), ValueError, r"y must be class indices in \[0, 2\]"),
        ("cross_entropy", dict(X=x, y=np.zeros((10, 2), int)), ValueError, r"y must be class indices of shape "
                                                                           r"\(10,\) or probability rows"),
        ("cross_entropy", dict(X=x, y=5), ValueError, "y must hold one target per sample, got a scalar"),
        ("mse", dict(X=x, y=np.zeros(10)), ValueError, r"y must have shape \(10, 3\) to match the model's 3 outputs"),
        ("mse", dict(X=x, y=np.array(list("abcabcabca"))), TypeError, "y must hold real numbers"),
        ("bce_with_logits", dict(X=x, y=np.full((10, 3), 2.0)), ValueError, r"y must hold values in \[0, 1\] "
                                                                            r"\(BCEWithLogitsLoss targets"),
        ("cross_entropy", dict(X=x, y=y, validation_split=1.0), ValueError, r"validation_split must be a finite "
                                                                            r"number in \[0, 1\), got 1.0"),
        ("cross_entropy", dict(X=x, y=y, validation_split=-0.1), ValueError, "validation_split must be a finite"),
        ("cross_entropy", dict(X=x, y=y, validation_split="0.1"), TypeError, "validation_split must be a real number"),
        ("cross_entropy", dict(X=x[:1], y=y[:1], validation_split=0.5), ValueError, "validation_split=0.5 leaves 0 "
                                                                                    "training and 1 validation"),
        ("cross_entropy", dict(X=x, y=y, validation_split=1e-17), ValueError, "leaves 10 training and 0 validation "
                                                                              "samples of 10; both parts"),
        ("cross_entropy", dict(X=x, y=y, batch_size=0), ValueError, r"batch_size must be in \[1, inf\], got 0"),
        ("cross_entropy", dict(X=x, y=y, batch_size=2.5), TypeError, "batch_size must be an int, got 2.5"),
        ("cross_entropy", dict(X=x, y=y, epochs=-1), ValueError, r"epochs must be in \[0, inf\], got -1"),
        ("cross_entropy", dict(X=x, y=y, epochs=2, initial_epoch=3), ValueError, "initial_epoch must be <= epochs"),
        ("cross_entropy", dict(X=x, y=y, initial_epoch=-1), ValueError, "initial_epoch must be in"),
        ("cross_entropy", dict(X=x, y=y, shuffle="yes"), TypeError, "shuffle must be a bool"),
        ("cross_entropy", dict(X=x, y=y, verbose=3), ValueError, "verbose must be 0 \\(silent\\), 1"),
        ("cross_entropy", dict(X=x, y=y, validation_data=x), TypeError, "validation_data must be a tuple"),
        ("cross_entropy", dict(X=x, y=y, validation_data=(x, y, y)), ValueError, "validation_data must be a tuple "
                                                                                 r"\(X_val, y_val\).*got 3 items"),
        ("cross_entropy", dict(X=x, y=y, validation_data=(nan_x, y)), ValueError, r"validation_data\[0\] must be "
                                                                                  "finite"),
        ("cross_entropy", dict(X=x, y=y, validation_data=(x, y[:5])), ValueError, r"validation_data\[0\] and "
                                                                                  r"validation_data\[1\] must have "
                                                                                  "the same number of samples"),
    ]


@pytest.mark.parametrize("loss,kw,exc,msg", _bad_fit_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_fit_bad_input_raises_before_training(loss, kw, exc, msg):
    model = _clf()
    model.compile("adam", loss)
    before, step = model._arena.data.copy(), model._step
    with pytest.raises(exc, match=msg):
        model.fit(**{"verbose": 0, **kw})
    np.testing.assert_array_equal(model._arena.data, before)
    assert model._step == step and model.optimizer.state_dict()["state"] == {}


@pytest.mark.parametrize("call,kw,exc,msg", [
    ("predict", dict(X=X4[:, :2]), ValueError, r"X must have 4 features \(columns\)"),
    ("predict", dict(X=X4[0]), ValueError, "X must be 2-D, got 1-D"),
    ("predict", dict(X=np.empty((0, 4))), ValueError, "X must hold at least one sample"),
    ("predict", dict(X=np.full((2, 4), np.inf)), ValueError, "X must be finite"),
    ("predict", dict(X=X4, batch_size=0), ValueError, r"batch_size must be in \[1, inf\], got 0"),
    ("predict", dict(X=X4, verbose="loud"), ValueError, "verbose must be 0"),
    ("evaluate", dict(X=X4, y=Y3[:4]), ValueError, "X and y must have the same number of samples"),
    ("evaluate", dict(X=X4, y=Y3 + 5), ValueError, r"y must be class indices in \[0, 2\]"),
    ("evaluate", dict(X=X4, y=Y3, batch_size=-3), ValueError, "batch_size must be in"),
])
def test_evaluate_and_predict_bad_input(call, kw, exc, msg):
    model = _clf()
    model.compile("adam", "cross_entropy")
    with pytest.raises(exc, match=msg):
        getattr(model, call)(**kw)


# ------------------------------------------------------------------------------ divergence

def _exploding(seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((48, 5)) * 10
    y = r.standard_normal((48, 1)) * 100
    model = fnn.Sequential([fnn.Dense(5, 8, "relu"), fnn.Dense(8, 1)], seed=seed)
    model.compile(fnn.optim.SGD(model.parameters(), lr=2.0, momentum=0.9), "mse")
    return model, x, y


def _last_good(model, x, y, batch_size, corrupt=None):
    """Step through the same (unshuffled) batches until a loss or a weight is not finite; return the
    weights and optimizer state from before that step and the number of good steps."""
    n = len(x)
    for k in range(10_000):
        s = (k * batch_size) % n
        w, sd = model._arena.data.copy(), model.optimizer.state_dict()
        loss = model.train_step(x[s:s + batch_size], y[s:s + batch_size])
        if corrupt:
            corrupt(model)
        if not (math.isfinite(loss) and np.isfinite(model._arena.data).all()):
            return w, sd, k
    raise AssertionError("never diverged")


def _same_state(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for kind in a["state"][i]:
            np.testing.assert_array_equal(a["state"][i][kind], b["state"][i][kind])


def test_a_nan_loss_raises_and_keeps_the_last_good_weights_and_optimizer_state():
    model, x, y = _exploding()
    twin, _, _ = _exploding()
    w, sd, k = _last_good(twin, x, y, 8)
    steps = len(x) // 8
    where = f"at epoch {k // steps + 1}, batch {k % steps + 1} of 6"
    with pytest.raises(FloatingPointError, match=r"training diverged: the (loss became (nan|inf)|weights became NaN or "
                                                 rf"inf) {where}.*restored the weights and optimizer state from "
                                                 "before that step.*TerminateOnNaN"):
        model.fit(x, y, epochs=1000, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_array_equal(model._arena.data, w)
    _same_state(model.optimizer.state_dict(), sd)
    assert model.epoch == k // steps and len(model.history.epoch) == k // steps
    assert np.isfinite(model.predict(x)).all()


def _corrupt_at(step):
    def corrupt(model):
        if model._step == step:
            model.parameters()[2].data[0, 0] = np.nan
    return corrupt


def _with_corruption(model, step):
    real = model._train_step
    corrupt = _corrupt_at(step)

    def train_step(x, t):
        loss = real(x, t)
        corrupt(model)
        return loss

    model._train_step = train_step


@pytest.mark.parametrize("bad_step", [3, 12])
def test_nan_weights_with_a_finite_loss_are_undone_too(bad_step):
    """A step that leaves a NaN weight (here: injected, deterministically) is undone by replaying the epoch.

    Step 3 is caught by the next batch's NaN loss, step 12 (the last of the last epoch) by the
    end-of-epoch check of the weights.
    """
    r = np.random.default_rng(0)
    x, y = r.standard_normal((24, 5)), r.standard_normal((24, 1))

    def make():
        m = fnn.Sequential([fnn.Dense(5, 4, "tanh"), fnn.Dense(4, 1)], dtype="float64", seed=1)
        m.compile(fnn.optim.Adam(m.parameters(), lr=0.01), "mse")
        return m

    model, twin = make(), make()
    w, sd, k = _last_good(twin, x, y, 4, corrupt=_corrupt_at(bad_step))
    assert k == bad_step - 1
    _with_corruption(model, bad_step)
    with pytest.raises(FloatingPointError, match=f"the weights became NaN or inf at epoch {k // 6 + 1}, batch "
                                                 f"{k % 6 + 1} of 6 \\(the loss was still finite\\)"):
        model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    np.testing.assert_array_equal(model._arena.data, w)
    _same_state(model.optimizer.state_dict(), sd)
    assert model._step == bad_step - 1


def test_terminate_on_nan_ends_the_epoch_and_reports_nan():
    model, x, y = _exploding()
    twin, _, _ = _exploding()
    w, _, k = _last_good(twin, x, y, 8)
    seen = []

    class Spy(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(dict(logs))

    hist = model.fit(x, y, epochs=1000, batch_size=8, shuffle=False, validation_split=0.0, verbose=0,
                     callbacks=[TerminateOnNaN(), Spy()])
    assert len(hist.epoch) == k // 6 + 1 and math.isnan(hist.history["loss"][-1])
    assert model.epoch == k // 6 + 1
    np.testing.assert_array_equal(model._arena.data, w)


def test_lists_and_column_labels_are_accepted():
    model = _clf()
    model.compile("adam", "cross_entropy", ["accuracy"])
    h1 = model.fit(X4.tolist(), Y3.tolist(), epochs=1, shuffle=False, verbose=0)
    twin = _clf()
    twin.compile("adam", "cross_entropy", ["accuracy"])
    h2 = twin.fit(X4, Y3.reshape(-1, 1), epochs=1, shuffle=False, verbose=0)   # Keras-style (n, 1) labels
    assert h1.history == h2.history
    np.testing.assert_array_equal(model._arena.data, twin._arena.data)


# ------------------------------------------------------------------------------ the compiled epoch loop

OPTIMIZERS = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "weight_decay": 1e-3}),
    ("Adam", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2, "amsgrad": True}),
    ("RMSprop", {"lr": 1e-2, "centered": True, "momentum": 0.5}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
    ("Adadelta", {}),
]


def _net(dtype, out=3, seed=5):
    return fnn.Sequential([fnn.Dense(6, 16, "relu"), fnn.Dropout(0.3), fnn.Dense(16, 16, "tanh"),
                           fnn.Dense(16, out)], dtype=dtype, seed=seed)


def _fit_both(monkeypatch, make, fit_kw, compiled_expected=True):
    """fit on the compiled epoch loop and forced per batch; returns (model, History, chunk sizes) per path."""
    from fastnn.engine import Engine

    results = []
    for compiled in (True, False):
        model = make()
        chunks = []
        with monkeypatch.context() as mp:
            if compiled:
                real = Engine.train_batches

                def spy(self, x, t, order, batch_size, first, count, *args, _seen=chunks, _real=real, **kw):
                    _seen.append(count)
                    return _real(self, x, t, order, batch_size, first, count, *args, **kw)

                mp.setattr(Engine, "train_batches", spy)
            else:
                mp.setattr(Engine, "supports_batches", lambda *a: False)
            hist = model.fit(**fit_kw)
        results.append((model, hist, chunks))
    (ma, ha, chunks), (mb, hb, none) = results
    assert bool(chunks) == compiled_expected and none == []
    np.testing.assert_array_equal(ma._arena.data, mb._arena.data)
    _same_state(ma.optimizer.state_dict(), mb.optimizer.state_dict())
    assert ha.history == hb.history and ha.epoch == hb.epoch
    assert ma._step == mb._step and ma.epoch == mb.epoch
    return results


@pytest.mark.parametrize("opt_name,opt_kw", OPTIMIZERS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in_order"])
def test_compiled_epoch_loop_is_bit_identical_to_per_batch_steps(monkeypatch, opt_name, opt_kw, dtype, shuffle):
    r = np.random.default_rng(3)
    x, y = r.standard_normal((110, 6)), r.integers(0, 3, 110)   # 99 training rows: 12 batches of 8 and one of 3

    def make():
        model = _net(dtype)
        model.compile(getattr(fnn.optim, opt_name)(model.parameters(), **opt_kw), "cross_entropy", ["accuracy"])
        return model

    (model, hist, chunks), _ = _fit_both(monkeypatch, make, dict(X=x, y=y, epochs=3, batch_size=8, shuffle=shuffle,
                                                                 validation_split=0.1, verbose=0))
    # 12 full batches per epoch, in calls of up to 0.1 s each (here: one call per epoch)
    assert sum(chunks) == 3 * 12 and max(chunks) <= 12
    assert model._step == 3 * 13 and len(hist.history["accuracy"]) == 3


@pytest.mark.parametrize("opt_name,opt_kw", [o for o in OPTIMIZERS if o[0] != "SGD"], ids=lambda v: str(v))
def test_compiled_epoch_loop_counts_steps_in_the_optimizers_step_buffer(monkeypatch, opt_name, opt_kw):
    r = np.random.default_rng(8)
    x, y = r.standard_normal((96, 6)), r.integers(0, 3, 96)   # 12 full batches of 8, no partial one

    def make():
        model = _net("float32")
        model.compile(getattr(fnn.optim, opt_name)(model.parameters(), **opt_kw), "cross_entropy")
        return model

    (model, _, chunks), _ = _fit_both(monkeypatch, make, dict(X=x, y=y, epochs=2, batch_size=8, verbose=0))
    assert sum(chunks) == 2 * 12   # every batch on the compiled loop
    opt = model.optimizer
    for p in model.parameters():
        step = opt.state[p]["step"]
        assert float(step) == 2 * 12 and step.shape == () and step.dtype == np.float32
        assert step.base is opt._steps   # counted in place by the kernel, no copy written back
    assert opt._steps.tolist() == [24.0] * len(model.parameters())


@pytest.mark.parametrize("base", ["Adam", "AdamW", "SGD"])
def test_a_subclass_of_a_fastnn_optimizer_runs_on_the_compiled_epoch_loop(monkeypatch, base):
    r = np.random.default_rng(9)
    x, y = r.standard_normal((90, 6)), r.integers(0, 3, 90)
    sub = type("My" + base, (getattr(fnn.optim, base),), {})   # overrides nothing: it has its base's kernel

    def make():
        model = _net("float64")
        model.compile(sub(model.parameters(), lr=0.01, **({"momentum": 0.9} if base == "SGD" else {})),
                      "cross_entropy", ["accuracy"])
        return model

    (model, _, chunks), _ = _fit_both(monkeypatch, make, dict(X=x, y=y, epochs=2, batch_size=8, verbose=0))
    assert sum(chunks) == 2 * 11 and type(model.optimizer) is sub


@pytest.mark.parametrize("loss,metrics", [("mse", ["mae", "mse", "accuracy"]),
                                          ("bce_with_logits", ["binary_accuracy", "mae", "acc"])])
def test_compiled_epoch_loop_metrics_on_float_targets(monkeypatch, loss, metrics):
    r = np.random.default_rng(4)
    x = r.standard_normal((61, 6))
    y = r.standard_normal((61, 2)) if loss == "mse" else (r.random((61, 2)) < 0.5).astype(float)

    def make():
        model = _net("float32", out=2)
        model.compile("adam", loss, metrics)
        return model

    (_, hist, chunks), _ = _fit_both(monkeypatch, make, dict(X=x, y=y, epochs=2, batch_size=5, verbose=0))
    assert sum(chunks) == 2 * 12 and max(chunks) <= 12 and set(hist.history) == {"loss", *metrics}


def test_compiled_epoch_loop_chunks_follow_the_progress_bar(monkeypatch, capsys):
    r = np.random.default_rng(5)
    x, y = r.standard_normal((203, 6)), r.integers(0, 3, 203)

    def make():
        model = _net("float32")
        model.compile("sgd", "cross_entropy", ["accuracy"])
        return model

    (_, _, chunks), _ = _fit_both(monkeypatch, make, dict(X=x, y=y, epochs=1, batch_size=4, verbose=1))
    assert sum(chunks) == 50   # 51 steps: 50 full batches in timed chunks, the last batch on its own
    assert "51/51" in capsys.readouterr().out


def test_callbacks_with_batch_hooks_or_a_replaced_train_step_force_per_batch_steps(monkeypatch):
    r = np.random.default_rng(6)
    x, y = r.standard_normal((40, 6)), r.integers(0, 3, 40)
    seen = []

    class Batches(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    def make():
        model = _net("float64")
        model.compile("adam", "cross_entropy")
        return model

    _fit_both(monkeypatch, make, dict(X=x, y=y, epochs=1, batch_size=8, verbose=0, callbacks=[Batches()]),
              compiled_expected=False)
    assert seen == [0, 1, 2, 3, 4] * 2
    a, b = make(), make()
    spied = _spy_batches(a)
    a.fit(x, y, epochs=1, batch_size=8, verbose=0)
    b.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert len(spied) == 5
    np.testing.assert_array_equal(a._arena.data, b._arena.data)


def test_a_callback_defining_on_train_batches_end_takes_runs_of_batches(monkeypatch):
    r = np.random.default_rng(7)
    x, y = r.standard_normal((44, 6)), r.integers(0, 3, 44)   # 5 full batches of 8 and one of 4
    runs, singles = [], []

    class Runs(Callback):
        def on_train_batch_end(self, batch, logs=None):
            singles.append(batch)

        def on_train_batches_end(self, batch, count, logs=None):
            runs.append((batch, count))

    class PerBatch(Runs):   # a per-batch hook below the class that takes runs: this one sees every batch
        def on_batch_end(self, batch, logs=None):
            pass

    class Bar(ProgressBar):   # overrides no hook: takes runs, as the progress bar does
        pass

    class BarPerBatch(ProgressBar):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)

    assert [CallbackList([cb]).takes_runs for cb in (Runs(), PerBatch(), Bar(), BarPerBatch(), Callback())] == \
        [True, False, True, False, True]

    def make():
        model = _net("float64")
        model.compile("adam", "cross_entropy", ["accuracy"])
        return model

    _fit_both(monkeypatch, make, dict(X=x, y=y, epochs=1, batch_size=8, verbose=0, callbacks=[Runs()]))
    assert sum(count for _, count in runs) == 5 and runs[-1][0] == 4   # compiled: the full batches in runs ...
    assert singles == [5] + [0, 1, 2, 3, 4, 5]                        # ... the last alone; per batch: each
    runs.clear()
    _fit_both(monkeypatch, make, dict(X=x, y=y, epochs=1, batch_size=8, verbose=0, callbacks=[PerBatch()]),
              compiled_expected=False)
    assert runs == []


def test_compiled_epoch_loop_resumes_like_the_uninterrupted_run(monkeypatch):
    X, y = fnn.datasets.load_digits()
    X, y = X[:300], y[:300]

    def run(compiled):
        with monkeypatch.context() as mp:
            if not compiled:
                mp.setattr(fnn.engine.Engine, "supports_batches", lambda *a: False)
            model = _digits_model(9)
            first = model.fit(X, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
            second = model.fit(X, y, epochs=4, initial_epoch=model.epoch, batch_size=32, validation_split=0.2,
                               verbose=0)
        return model, {k: first.history[k] + second.history[k] for k in first.history}

    (ma, ha), (mb, hb) = run(True), run(False)
    straight = _digits_model(9)
    full = straight.fit(X, y, epochs=4, batch_size=32, validation_split=0.2, verbose=0)
    assert ha == hb == full.history
    np.testing.assert_array_equal(ma._arena.data, mb._arena.data)
    np.testing.assert_array_equal(ma._arena.data, straight._arena.data)
    _same_state(ma.optimizer.state_dict(), mb.optimizer.state_dict())


@pytest.mark.parametrize("shuffle", [False, True])
def test_compiled_epoch_loop_nan_loss_restores_as_per_batch_steps(monkeypatch, shuffle):
    errors = []
    for compiled in (True, False):
        model, x, y = _exploding()
        with monkeypatch.context() as mp:
            if not compiled:
                mp.setattr(fnn.engine.Engine, "supports_batches", lambda *a: False)
            with pytest.raises(FloatingPointError, match="training diverged") as info:
                model.fit(x, y, epochs=1000, batch_size=7, shuffle=shuffle, verbose=0)
        errors.append((str(info.value), model._arena.data.copy(), model.optimizer.state_dict(), model._step,
                       model.epoch, model.history.history))
    (ea, wa, sa, ka, pa, ha), (eb, wb, sb, kb, pb, hb) = errors
    assert ea == eb and (ka, pa) == (kb, pb) and ha == hb
    np.testing.assert_array_equal(wa, wb)
    _same_state(sa, sb)
