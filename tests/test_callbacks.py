"""fastnn.callbacks: EarlyStopping's exact Keras rule (docs/numerics.md section 6.1), History, TerminateOnNaN,
LearningRateScheduler, fastnn lr schedulers in fit, ModelCheckpoint and the progress display."""

import math
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn.callbacks import (
    Callback,
    EarlyStopping,
    History,
    LearningRateScheduler,
    LRSchedulerCallback,
    ModelCheckpoint,
    ProgressBar,
    TerminateOnNaN,
)
from fastnn.io import load_model


def _tiny(seed=0, lr=0.0, metrics=None, optimizer="sgd"):
    """A 3-4-2 regression model; SGD with lr=0 leaves the weights alone unless a callback sets them."""
    model = fnn.Sequential([fnn.Dense(3, 4, "tanh"), fnn.Dense(4, 2)], dtype="float64", seed=seed)
    opt = fnn.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd" else optimizer
    model.compile(optimizer=opt, loss="mse", metrics=metrics)
    return model


_X = np.random.default_rng(0).standard_normal((6, 3))
_Y = np.random.default_rng(1).standard_normal((6, 2))


class Script(Callback):
    """Writes values[epoch] into logs[key] (None: leaves the key out) and marks the weights with the epoch."""

    def __init__(self, key, values, initial_epoch=0):
        super().__init__()
        self.key, self.values, self.initial_epoch = key, list(values), initial_epoch

    def on_epoch_end(self, epoch, logs=None):
        self.model._arena.data[...] = epoch   # the weights EarlyStopping snapshots now say which epoch they are
        value = self.values[epoch - self.initial_epoch]
        if value is not None:
            logs[self.key] = value


def _run(values, monitor="val_loss", initial_epoch=0, **kw):
    model = _tiny()
    es = EarlyStopping(monitor=monitor, **kw)
    hist = model.fit(_X, _Y, epochs=initial_epoch + len(values), initial_epoch=initial_epoch, batch_size=6,
                     verbose=0, callbacks=[Script(monitor, values, initial_epoch), es])
    return model, es, hist


def reference_early_stopping(values, patience=0, min_delta=0.0, mode="min", baseline=None,
                             restore_best_weights=False, start_from_epoch=0, initial_epoch=0):
    """docs/numerics.md section 6.1 written out: (epochs run, stopped_epoch, best_epoch, epoch of the final weights)."""
    d = abs(min_delta)

    def improves(cur, ref):
        if ref is None:
            return True
        if mode == "min":
            return np.float32(cur + d) < np.float32(ref)
        return np.float32(cur - d) > np.float32(ref)

    wait, best, best_weights, best_epoch, stopped = 0, None, None, 0, 0
    ran = 0
    for e in range(initial_epoch, initial_epoch + len(values)):
        ran += 1
        cur = values[e - initial_epoch]
        if cur is None or e < start_from_epoch:
            continue
        if restore_best_weights and best_weights is None:
            best_weights, best_epoch = e, e
        wait += 1
        if improves(cur, best):
            best, best_epoch = cur, e
            if restore_best_weights:
                best_weights = e
            if baseline is None or improves(cur, baseline):
                wait = 0
            continue
        if wait >= patience and e > 0:
            stopped = e
            break
    last = initial_epoch + ran - 1
    final = best_weights if restore_best_weights and best_weights is not None else last
    return ran, stopped, best_epoch, final


def _check_against_reference(values, initial_epoch=0, **kw):
    ref_kw = dict(kw)
    monitor = ref_kw.pop("monitor", "val_loss")
    mode = ref_kw.get("mode", "auto")
    if mode == "auto":
        ref_kw["mode"] = "max" if monitor.endswith("accuracy") else "min"
    model, es, hist = _run(values, initial_epoch=initial_epoch, **kw)
    ran, stopped, best_epoch, final = reference_early_stopping(values, initial_epoch=initial_epoch, **ref_kw)
    assert len(hist.epoch) == ran, (values, kw)
    assert hist.epoch == list(range(initial_epoch, initial_epoch + ran))
    assert es.stopped_epoch == stopped, (values, kw)
    assert es.best_epoch == best_epoch, (values, kw)
    assert model.stop_training == (stopped > 0)
    np.testing.assert_array_equal(model._arena.data, final, err_msg=str((values, kw)))


# ------------------------------------------------------------------------------ EarlyStopping, the Keras cases

def test_patience_0_stops_at_the_first_non_improving_epoch():
    model, es, hist = _run([3.0, 2.0, 2.5, 1.0])
    assert hist.epoch == [0, 1, 2] and es.stopped_epoch == 2 and es.best_epoch == 1 and es.best == 2.0


@pytest.mark.parametrize("patience,ran", [(1, 2), (2, 3), (0, 2)])
def test_constant_metric(patience, ran):
    model, es, hist = _run([1.0] * 6, patience=patience)
    assert len(hist.epoch) == ran and es.stopped_epoch == ran - 1 and es.best_epoch == 0


def test_an_improving_epoch_never_stops_and_baseline_only_gates_the_wait_reset():
    # never beats the baseline 0.5, but improves every epoch: no stop
    _, es, hist = _run([1.0, 0.9, 0.8, 0.7, 0.6], patience=2, baseline=0.5)
    assert len(hist.epoch) == 5 and es.stopped_epoch == 0
    # the baseline keeps the wait counting through improvements; the first plateau then stops at once
    _, es, hist = _run([1.0, 0.9, 0.9, 0.9, 0.9], patience=2, baseline=0.5)
    assert es.stopped_epoch == 2
    _, es, hist = _run([1.0, 0.9, 0.9, 0.9, 0.9], patience=2)
    assert es.stopped_epoch == 3
    # the baseline does not seed `best`: the first value is always an improvement
    _, es, _ = _run([5.0, 6.0, 6.0], patience=5, baseline=1.0)
    assert es.best == 5.0 and es.best_epoch == 0


def test_min_delta_is_absolute_and_strict():
    _, es, _ = _run([1.0, 0.95, 0.9], min_delta=0.1)
    assert es.stopped_epoch == 1
    _, es, _ = _run([1.0, 0.85, 0.7], min_delta=-0.1)   # |min_delta|
    assert es.stopped_epoch == 0 and es.best_epoch == 2


def test_comparisons_are_float32_as_keras_3():
    # 0.7 + 0.1 < 0.8 in float64 but not in float32: not an improvement
    assert 0.7 + 0.1 < 0.8 or np.float32(0.7 + 0.1) >= np.float32(0.8)
    _, es, _ = _run([0.8, 0.7], min_delta=0.1)
    assert es.stopped_epoch == 1 and es.best_epoch == 0


def test_mode_max_and_auto():
    _, es, _ = _run([0.5, 0.6, 0.55], monitor="val_accuracy")   # auto: an accuracy is maximised
    assert es.stopped_epoch == 2 and es.best == 0.6
    _, es, _ = _run([0.5, 0.6, 0.55], monitor="val_custom", mode="max")
    assert es.stopped_epoch == 2
    _, es, _ = _run([0.5, 0.6, 0.55], monitor="loss")   # auto: a loss is minimised
    assert es.stopped_epoch == 1
    _, es, _ = _run([0.5, 0.4, 0.45], monitor="val_mae", mode="auto")
    assert es.stopped_epoch == 2


def test_auto_mode_uses_the_compiled_metric_names():
    model = _tiny(metrics=["acc", "mean_absolute_error"])
    for monitor, direction in [("val_acc", "max"), ("acc", "max"), ("val_mean_absolute_error", "min")]:
        es = EarlyStopping(monitor=monitor)
        es.set_model(model)
        es.on_train_begin()
        assert es._direction == direction


def test_auto_mode_refuses_an_unknown_monitor_before_training():
    model = _tiny(lr=0.1)
    before = model._arena.data.copy()
    with pytest.raises(ValueError, match="cannot tell whether monitor='val_f1' should be minimised or maximised"):
        model.fit(_X, _Y, epochs=2, verbose=0, callbacks=[EarlyStopping(monitor="val_f1")])
    np.testing.assert_array_equal(model._arena.data, before)


def test_restore_best_weights_with_an_early_stop():
    model, es, hist = _run([3.0, 1.0, 2.0, 2.5, 0.5], patience=2, restore_best_weights=True)
    assert es.stopped_epoch == 3 and len(hist.epoch) == 4
    np.testing.assert_array_equal(model._arena.data, 1.0)   # epoch 1's weights


def test_restore_best_weights_without_an_early_stop():
    model, es, hist = _run([3.0, 1.0, 2.0, 2.5], patience=10, restore_best_weights=True)
    assert es.stopped_epoch == 0 and len(hist.epoch) == 4
    np.testing.assert_array_equal(model._arena.data, 1.0)
    model, es, hist = _run([3.0, 1.0, 2.0, 2.5], patience=10, restore_best_weights=False)
    np.testing.assert_array_equal(model._arena.data, 3.0)   # the last epoch's weights stay


def test_restore_best_weights_restores_a_real_training_run():
    """The restored weights are bit-identical to the best epoch's weights during a real run."""
    X, y = fnn.datasets.load_digits()
    model = fnn.Sequential([fnn.Dense(64, 16, "relu"), fnn.Dense(16, 10)], seed=3)
    model.compile(fnn.optim.SGD(model.parameters(), lr=0.5), "cross_entropy")
    snaps = {}

    class Keep(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snaps[epoch] = self.model._arena.data.copy()

    es = EarlyStopping(patience=2, restore_best_weights=True)
    hist = model.fit(X[:300], y[:300], epochs=40, batch_size=16, validation_data=(X[300:400], y[300:400]),
                     callbacks=[Keep(), es], verbose=0)
    best = int(np.argmin(hist.history["val_loss"]))
    assert es.best_epoch == best
    np.testing.assert_array_equal(model._arena.data, snaps[best])
    assert model.evaluate(X[300:400], y[300:400], batch_size=16)["loss"] == pytest.approx(
        hist.history["val_loss"][best], rel=1e-6)


def test_start_from_epoch():
    _, es, hist = _run([5.0, 6.0, 7.0, 1.0, 2.0, 3.0], start_from_epoch=3)
    assert es.stopped_epoch == 4 and es.best_epoch == 3
    _, es, hist = _run([5.0, 6.0, 7.0], start_from_epoch=3)
    assert es.stopped_epoch == 0 and len(hist.epoch) == 3 and es.best is None


def test_missing_monitor_warns_and_never_stops():
    with pytest.warns(UserWarning, match="EarlyStopping is conditioned on 'val_loss', which is not in the logs"):
        model, es, hist = _run([None, None, None])
    assert len(hist.epoch) == 3 and es.stopped_epoch == 0


def test_state_is_reset_on_every_fit():
    model = _tiny()
    es = EarlyStopping(patience=0)
    model.fit(_X, _Y, epochs=3, verbose=0, callbacks=[Script("val_loss", [1.0, 2.0, 3.0]), es])
    assert es.stopped_epoch == 1
    model.fit(_X, _Y, epochs=3, verbose=0, callbacks=[Script("val_loss", [9.0, 8.0, 7.0]), es])
    assert es.stopped_epoch == 0 and es.best == 7.0


def test_early_stopping_stops_real_training_on_validation_loss():
    X, y = fnn.datasets.load_digits()
    model = fnn.Sequential([fnn.Dense(64, 32, "relu"), fnn.Dense(32, 10)], seed=0)
    model.compile(fnn.optim.Adam(model.parameters(), lr=0.05), "cross_entropy", ["accuracy"])
    es = EarlyStopping(patience=1)
    hist = model.fit(X[:400], y[:400], epochs=100, batch_size=8, validation_split=0.5, callbacks=[es], verbose=0)
    assert 0 < es.stopped_epoch < 99 and len(hist.epoch) == es.stopped_epoch + 1
    v = hist.history["val_loss"]
    assert v[-1] >= min(v[:-1])


@pytest.mark.parametrize("trial", range(4))
def test_early_stopping_matches_the_reference_rule_on_random_sequences(trial):
    r = np.random.default_rng(trial)
    warnings.simplefilter("ignore", UserWarning)   # sequences with missing values warn
    for _ in range(120):
        n = int(r.integers(1, 12))
        grid = r.choice([0.1, 0.25, 1.0])
        values = [float(v) for v in np.round(r.integers(0, 8, n) * grid, 6)]
        if r.random() < 0.2:
            values = [None if r.random() < 0.3 else v for v in values]
        kw = dict(patience=int(r.integers(0, 5)), min_delta=float(r.choice([0.0, 0.0, 0.1, 0.25, -0.1, 1.0])),
                  restore_best_weights=bool(r.random() < 0.5), start_from_epoch=int(r.choice([0, 0, 1, 3])))
        mode = str(r.choice(["min", "max", "auto"]))
        kw["monitor"] = "val_accuracy" if mode == "auto" and r.random() < 0.5 else "val_loss"
        kw["mode"] = mode
        if r.random() < 0.3:
            kw["baseline"] = float(np.round(r.integers(0, 8) * grid, 6))
        _check_against_reference(values, initial_epoch=int(r.choice([0, 0, 2])), **kw)


@pytest.mark.parametrize("kw,exc,msg", [
    ({"patience": -1}, ValueError, r"patience must be in \[0, inf\], got -1"),
    ({"patience": 1.5}, TypeError, "patience must be an int"),
    ({"mode": "up"}, ValueError, "mode must be one of 'auto', 'min', 'max'; got 'up'"),
    ({"min_delta": "0.1"}, TypeError, "min_delta must be a real number"),
    ({"baseline": float("nan")}, ValueError, "baseline must be a finite number"),
    ({"restore_best_weights": 1}, TypeError, "restore_best_weights must be a bool"),
    ({"start_from_epoch": -2}, ValueError, "start_from_epoch must be in"),
    ({"monitor": 3}, TypeError, "monitor must be a log name"),
])
def test_early_stopping_bad_arguments(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        EarlyStopping(**kw)


# ------------------------------------------------------------------------------ History

def test_history_contents_keys_and_params():
    X, y = fnn.datasets.load_digits()
    model = fnn.Sequential([fnn.Dense(64, 16, "relu"), fnn.Dense(16, 10)], seed=1)
    model.compile("adam", "cross_entropy", metrics=["acc"])
    hist = model.fit(X[:100], y[:100], epochs=5, initial_epoch=2, batch_size=30, validation_split=0.2, verbose=0)
    assert hist is model.history
    assert isinstance(hist, History)
    assert list(hist.history) == ["loss", "acc", "val_loss", "val_acc"]
    assert hist.epoch == [2, 3, 4]
    assert hist.params == {"verbose": 0, "epochs": 5, "steps": 3}
    for values in hist.history.values():
        assert len(values) == 3 and all(type(v) is float for v in values)
    assert model.epoch == 5


def test_history_without_validation_and_a_user_history_object():
    model = _tiny(metrics=["mae", "mse"])
    mine = History()
    hist = model.fit(_X, _Y, epochs=2, verbose=0, callbacks=[mine])
    assert hist is mine and model.history is mine
    assert list(hist.history) == ["loss", "mae", "mse"]


def test_callback_hook_order_and_logs():
    calls = []

    class Spy(Callback):
        def on_train_begin(self, logs=None):
            calls.append(("train_begin", self.params["steps"]))

        def on_epoch_begin(self, epoch, logs=None):
            calls.append(("epoch_begin", epoch))

        def on_batch_begin(self, batch, logs=None):
            calls.append(("batch_begin", batch))

        def on_train_batch_end(self, batch, logs=None):
            calls.append(("batch_end", batch, sorted(logs)))

        def on_epoch_end(self, epoch, logs=None):
            calls.append(("epoch_end", epoch, sorted(logs)))

        def on_train_end(self, logs=None):
            calls.append(("train_end", sorted(logs)))

    model = _tiny(metrics=["mae"])
    model.fit(_X, _Y, epochs=2, batch_size=4, validation_data=(_X, _Y), verbose=0, callbacks=[Spy()])
    keys = ["loss", "mae"]
    vkeys = sorted(keys + ["val_loss", "val_mae"])
    epoch = [("batch_begin", 0), ("batch_end", 0, keys), ("batch_begin", 1), ("batch_end", 1, keys)]
    assert calls == ([("train_begin", 2), ("epoch_begin", 0)] + epoch + [("epoch_end", 0, vkeys), ("epoch_begin", 1)]
                     + epoch + [("epoch_end", 1, vkeys), ("train_end", vkeys)])


def test_batch_logs_are_running_sample_weighted_means():
    seen = []

    class Spy(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(logs["loss"])

    model = _tiny()
    losses = []
    twin = _tiny()
    for s in (0, 4):
        losses.append(twin.train_step(_X[s:s + 4], _Y[s:s + 4]))
    model.fit(_X, _Y, epochs=1, batch_size=4, shuffle=False, verbose=0, callbacks=[Spy()])
    assert seen[0] == pytest.approx(losses[0], rel=1e-12)
    assert seen[1] == pytest.approx((4 * losses[0] + 2 * losses[1]) / 6, rel=1e-12)


def test_stop_training_from_a_batch_callback_ends_the_epoch_early():
    class StopAt(Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    model = _tiny()
    steps = []

    class Count(Callback):
        def on_batch_begin(self, batch, logs=None):
            steps.append(batch)

    hist = model.fit(_X, _Y, epochs=5, batch_size=2, verbose=0, callbacks=[Count(), StopAt()])
    assert steps == [0, 1] and hist.epoch == [0] and model.epoch == 1


def test_callbacks_argument_is_checked():
    model = _tiny()
    with pytest.raises(TypeError, match="callbacks must be a list of fastnn.callbacks.Callback objects"):
        model.fit(_X, _Y, verbose=0, callbacks=EarlyStopping())
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a fastnn.callbacks.Callback or a fastnn lr "
                                        "scheduler, got function"):
        model.fit(_X, _Y, verbose=0, callbacks=[History(), lambda: None])


# ------------------------------------------------------------------------------ TerminateOnNaN

def _diverging(seed=0):
    """An MSE regression with a learning rate that blows up within a few steps."""
    r = np.random.default_rng(seed)
    X = r.standard_normal((64, 5)) * 10
    y = r.standard_normal((64, 1)) * 100
    model = fnn.Sequential([fnn.Dense(5, 8, "relu"), fnn.Dense(8, 1)], dtype="float32", seed=seed)
    model.compile(fnn.optim.SGD(model.parameters(), lr=5.0), "mse")
    return model, X, y


def test_terminate_on_nan_stops_cleanly_with_the_last_good_weights(capsys):
    model, X, y = _diverging()
    twin, _, _ = _diverging()
    before = None
    for s in range(0, 64 * 100, 8):   # the same batches, step by step, until the loss or a weight is not finite
        s %= 64
        w = twin._arena.data.copy()
        loss = twin.train_step(X[s:s + 8], y[s:s + 8])
        if not (math.isfinite(loss) and np.isfinite(twin._arena.data).all()):
            before = w
            break
    assert before is not None and np.isfinite(before).all()
    hist = model.fit(X, y, epochs=100, batch_size=8, shuffle=False, verbose=0, callbacks=[TerminateOnNaN()])
    assert model.stop_training and math.isnan(hist.history["loss"][-1])
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    np.testing.assert_array_equal(model._arena.data, before)
    assert np.isfinite(model.predict(X)).all()


# ------------------------------------------------------------------------------ learning rates

def test_learning_rate_scheduler_sets_every_group_and_logs_lr():
    model = fnn.Sequential([fnn.Dense(3, 4, "tanh"), fnn.Dense(4, 2)], dtype="float64", seed=0)
    w, b, w2, b2 = model.parameters()
    opt = fnn.optim.SGD([{"params": [w, b]}, {"params": [w2, b2], "lr": 0.3}], lr=0.1)
    model.compile(opt, "mse")
    seen = []
    sched = LearningRateScheduler(lambda epoch, lr: seen.append((epoch, lr)) or lr * 0.5)
    hist = model.fit(_X, _Y, epochs=4, batch_size=3, shuffle=False, verbose=0, callbacks=[sched])
    assert seen == [(0, 0.1), (1, 0.05), (2, 0.025), (3, 0.0125)]
    assert hist.history["lr"] == [0.05, 0.025, 0.0125, 0.00625]
    assert [g["lr"] for g in opt.param_groups] == [0.00625, 0.00625]

    # the rates really drive training: a hand-written loop with the same rates gives the same weights
    twin = fnn.Sequential([fnn.Dense(3, 4, "tanh"), fnn.Dense(4, 2)], dtype="float64", seed=0)
    twin.compile(fnn.optim.SGD(twin.parameters(), lr=0.1), "mse")
    for lr in hist.history["lr"]:
        twin.optimizer.param_groups[0]["lr"] = lr
        for s in (0, 3):
            twin.train_step(_X[s:s + 3], _Y[s:s + 3])
    np.testing.assert_array_equal(model._arena.data, twin._arena.data)


def test_learning_rate_scheduler_one_argument_form_and_bad_output():
    model = _tiny(lr=0.1)
    hist = model.fit(_X, _Y, epochs=3, verbose=0, callbacks=[LearningRateScheduler(lambda e: 0.1 / (e + 1))])
    assert hist.history["lr"] == pytest.approx([0.1, 0.05, 0.1 / 3], rel=1e-15)
    with pytest.raises(ValueError, match=r"must return a finite float >= 0, got 'x' at epoch 0"):
        model.fit(_X, _Y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: "x")])
    with pytest.raises(TypeError, match="schedule must be callable"):
        LearningRateScheduler(0.1)


def _lr_scheduler():
    if not hasattr(fnn.optim, "lr_scheduler"):
        import importlib

        importlib.import_module("fastnn.optim.lr_scheduler")
    return fnn.optim.lr_scheduler


def test_scheduler_objects_step_once_per_epoch():
    sched_mod = _lr_scheduler()
    model = _tiny(lr=0.1)
    step_lr = sched_mod.StepLR(model.optimizer, step_size=2, gamma=0.5)
    hist = model.fit(_X, _Y, epochs=5, verbose=0, callbacks=[step_lr])   # wrapped automatically
    assert hist.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-15)
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.025, rel=1e-15)   # lr_5 = 0.1 * 0.5**(5 // 2)

    model = _tiny(lr=0.1)
    cb = LRSchedulerCallback(sched_mod.ExponentialLR(model.optimizer, gamma=0.9))
    hist = model.fit(_X, _Y, epochs=3, verbose=0, callbacks=[cb])
    assert hist.history["lr"] == pytest.approx([0.1, 0.09, 0.081], rel=1e-15)


def test_reduce_lr_on_plateau_follows_the_monitored_value():
    sched_mod = _lr_scheduler()
    model = _tiny(lr=0.1)
    plateau = sched_mod.ReduceLROnPlateau(model.optimizer, factor=0.5, patience=1)
    values = [1.0, 0.9, 0.95, 0.97, 0.8, 0.85, 0.86, 0.9]
    hist = model.fit(_X, _Y, epochs=len(values), verbose=0,
                     callbacks=[Script("val_loss", values), LRSchedulerCallback(plateau)])
    # bad epochs: 2, 3 (bad=2 > 1: reduce after epoch 3), 5, 6 (reduce after epoch 6)
    assert hist.history["lr"] == pytest.approx([0.1] * 4 + [0.05] * 3 + [0.025], rel=1e-15)

    model = _tiny(lr=0.1)
    plateau = sched_mod.ReduceLROnPlateau(model.optimizer, mode="max", factor=0.1, patience=0)
    hist = model.fit(_X, _Y, epochs=3, verbose=0, callbacks=[
        Script("val_acc", [0.5, 0.4, 0.6]), LRSchedulerCallback(plateau, monitor="val_acc")])
    assert hist.history["lr"] == pytest.approx([0.1, 0.1, 0.01], rel=1e-15)

    with pytest.warns(UserWarning, match="ReduceLROnPlateau is conditioned on 'val_loss'"):
        model.fit(_X, _Y, epochs=1, verbose=0,
                  callbacks=[sched_mod.ReduceLROnPlateau(model.optimizer)])


def test_scheduler_of_another_optimizer_is_refused_before_training():
    sched_mod = _lr_scheduler()
    model, other = _tiny(lr=0.1), _tiny(lr=0.1)
    before = model._arena.data.copy()
    with pytest.raises(ValueError, match="drives another optimizer, not the model's"):
        model.fit(_X, _Y, epochs=2, verbose=0, callbacks=[sched_mod.StepLR(other.optimizer, step_size=1)])
    np.testing.assert_array_equal(model._arena.data, before)
    with pytest.raises(TypeError, match="scheduler must be a fastnn.optim.lr_scheduler scheduler"):
        LRSchedulerCallback(model.optimizer)


# ------------------------------------------------------------------------------ ModelCheckpoint

def test_model_checkpoint_saves_every_epoch_or_only_the_best(tmp_path):
    model = _tiny(lr=0.05)
    path = str(tmp_path / "m-{epoch:02d}.fnn")
    model.fit(_X, _Y, epochs=3, verbose=0, callbacks=[ModelCheckpoint(path, save_best_only=False)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-01.fnn", "m-02.fnn", "m-03.fnn"]

    best = tmp_path / "best"
    best.mkdir()
    model = _tiny(lr=0.05)
    weights = {}

    class Keep(Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights[epoch] = self.model._arena.data.copy()

    values = [3.0, 2.0, 2.5, 1.0, 1.5]
    model.fit(_X, _Y, epochs=5, verbose=0, callbacks=[
        Script("val_loss", values), Keep(),
        ModelCheckpoint(str(best / "e{epoch}-{val_loss:.1f}.fnn"), save_best_only=True)])
    # Script marks the weights with the epoch index; Keep sees that
    assert sorted(p.name for p in best.iterdir()) == ["e1-3.0.fnn", "e2-2.0.fnn", "e4-1.0.fnn"]
    loaded = load_model(best / "e4-1.0.fnn")
    np.testing.assert_array_equal(loaded._arena.data, weights[3])
    assert loaded.epoch == 4   # saved at the end of epoch index 3: resuming starts at epoch 4


def test_model_checkpoint_single_file_and_resume(tmp_path):
    X, y = fnn.datasets.load_digits()
    path = tmp_path / "best.fnn"
    model = fnn.Sequential([fnn.Dense(64, 16, "relu"), fnn.Dense(16, 10)], seed=0)
    model.compile("adam", "cross_entropy", ["accuracy"])
    hist = model.fit(X[:200], y[:200], epochs=3, batch_size=32, validation_split=0.25, verbose=0,
                     callbacks=[ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)])
    loaded = load_model(path)
    best = int(np.argmax(hist.history["val_accuracy"]))   # first maximum (strict improvements)
    assert loaded.evaluate(X[150:200], y[150:200], batch_size=32)["accuracy"] == \
        pytest.approx(hist.history["val_accuracy"][best])


def test_model_checkpoint_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="filepath must be a non-empty str or path"):
        ModelCheckpoint(3)
    with pytest.raises(ValueError, match="mode must be one of"):
        ModelCheckpoint(str(tmp_path / "x"), mode="best")
    model = _tiny()
    with pytest.raises(ValueError, match="could not format filepath"):
        model.fit(_X, _Y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "{nope}.fnn"))])


# ------------------------------------------------------------------------------ progress display

def test_verbose_2_prints_one_line_per_epoch(capsys):
    model = _tiny(metrics=["mae"])
    model.fit(_X, _Y, epochs=3, validation_split=0.5, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Epoch 1/3 - ") and lines[2].startswith("Epoch 3/3 - ")
    for part in ("loss: ", "mae: ", "val_loss: ", "val_mae: "):
        assert part in lines[1]


def test_verbose_1_shows_a_bar_per_epoch(capsys):
    pytest.importorskip("tqdm")
    model = _tiny(metrics=["mae"])
    model.fit(_X, _Y, epochs=2, batch_size=2, validation_split=0.5, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "2/2" in out and "val_loss: " in out and "mae: " in out


def test_progress_bar_is_closed_when_fit_fails(capsys):
    model, X, y = _diverging()
    bar = ProgressBar(verbose=1)
    with pytest.raises(FloatingPointError):
        model.fit(X, y, epochs=100, batch_size=8, verbose=1, callbacks=[bar])
    assert bar._bar is None
    with pytest.raises(ValueError, match="verbose must be one of 1, 2"):
        ProgressBar(verbose=0)
