"""fastnn in the programs people write: threads, fork and spawn, copies and pickles, Ctrl-C.

Each case runs the way it happens: real threads, real processes (multiprocessing's fork and spawn
start methods, os.fork), real SIGINT delivered to a subprocess. Everything that could hang runs in a
subprocess with a timeout.
"""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastnn as fnn
from fastnn import callbacks as C

TIMEOUT = 120


def _model(dtype="float32", seed=0, dropout=0.0, width=64):
    layers = [fnn.Dense(16, width, activation="relu")]
    if dropout:
        layers.append(fnn.Dropout(dropout))
    layers += [fnn.Dense(width, width, activation="tanh"), fnn.Dense(width, 3)]
    return fnn.Sequential(layers, dtype=dtype, seed=seed)


def _data(n=300, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, 16)), r.integers(0, 3, n)


def _run(code: str, timeout=TIMEOUT):
    """Run `code` in a fresh interpreter; returns the CompletedProcess (fails the test on a hang)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------------------------ threads

def _in_threads(n, fn, *args):
    """Run fn(i, *args) in n threads started together; re-raise the first exception."""
    errors, barrier = [], threading.Barrier(n)

    def work(i):
        try:
            barrier.wait()
            fn(i, *args)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inference_from_many_threads_on_one_model_gives_the_sequential_bits(dtype):
    model = _model(dtype)
    model.compile("adam", "cross_entropy", ["accuracy"])
    r = np.random.default_rng(1)
    batches = [r.standard_normal((int(r.integers(1, 400)), 16)) for _ in range(40)]
    labels = [r.integers(0, 3, len(b)) for b in batches]
    model.eval()
    want_predict = [model.predict(b) for b in batches]
    want_call = [model(b) for b in batches]
    want_eval = [model.evaluate(b, y) for b, y in zip(batches, labels)]
    model.train()   # predict/evaluate run in eval mode whatever the model's mode, and leave it alone
    bad = []

    def work(i):
        for k in np.random.default_rng(i).permutation(len(batches)):
            if not np.array_equal(model.predict(batches[k]), want_predict[k]):
                bad.append(("predict", k))
            if model.evaluate(batches[k], labels[k]) != want_eval[k]:
                bad.append(("evaluate", k))

    _in_threads(4, work)
    assert bad == [] and model.training is True
    model.eval()

    def calls(i):
        for k in np.random.default_rng(10 + i).permutation(len(batches)):
            if not np.array_equal(model(batches[k]), want_call[k]):
                bad.append(("model(x)", k))

    _in_threads(4, calls)
    assert bad == []


def test_training_one_model_from_two_threads_raises_and_never_corrupts():
    x, y = _data(2000)
    model = _model()
    model.compile("adam", "cross_entropy")
    started, outcome = threading.Event(), {}

    class Signal(C.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started.set()

    def trainer():
        outcome["history"] = model.fit(x, y, epochs=30, batch_size=16, verbose=0, callbacks=[Signal()])

    t = threading.Thread(target=trainer)
    t.start()
    assert started.wait(TIMEOUT)
    errors = []
    for call in (lambda: model.train_step(x[:16], y[:16]), lambda: model.fit(x, y, epochs=1, verbose=0),
                 lambda: model.predict(x), lambda: model.evaluate(x, y), lambda: model.train()(x[:4]),
                 lambda: model.eval()(x[:4])):
        try:
            call()
        except RuntimeError as exc:
            errors.append(str(exc))
    t.join(TIMEOUT)
    assert len(errors) == 6 and all("another thread" in e for e in errors), errors
    # the training thread's result is exactly what training alone gives
    alone = _model()
    alone.compile("adam", "cross_entropy")
    alone.fit(x, y, epochs=30, batch_size=16, verbose=0)
    np.testing.assert_array_equal(model._arena.data, alone._arena.data)
    # once training is over, any thread may use the model again
    _in_threads(2, lambda i: model.predict(x))


def test_forward_in_one_thread_and_backward_in_another_raises():
    model = _model()
    x = np.ones((4, 16))
    model(x)
    errors = []

    def other(i):
        try:
            model.backward(np.ones((4, 3)))
        except RuntimeError as exc:
            errors.append(str(exc))

    _in_threads(1, other)
    assert errors and "another thread" in errors[0]
    model.backward(np.ones((4, 3)))   # the thread that ran the forward can


def test_a_plan_per_concurrent_call_and_none_kept_busy():
    model = _model().eval()
    x = np.random.default_rng(0).standard_normal((64, 16))
    _in_threads(4, lambda i: [model.predict(x) for _ in range(50)])
    pool = model._engine()._infer_pool
    assert 1 <= len(pool) <= 4 and len({id(e[0]) for e in pool}) == len(pool)


# ------------------------------------------------------------------------------------------------ processes

def _child_predict_and_train(args):
    """In a worker process: predict, then train a few steps; returns (predictions, weights)."""
    model, x, y = args
    out = model.predict(x)
    model.compile("adam", "cross_entropy")
    for _ in range(3):
        model.train_step(x[:32], y[:32])
    return out, model._arena.data.copy()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes_predict_and_train(method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method on this platform")
    x, y = _data(4000)
    model = _model()
    fnn.set_num_threads(2)
    try:
        model.predict(x)   # the parent's OpenMP pool is up (a large batch, 2 threads) before the fork
        fnn.set_num_threads(1)
        want = _child_predict_and_train((copy.deepcopy(model), x, y))
        fnn.set_num_threads(2)
        with mp.get_context(method).Pool(2) as pool:
            res = pool.map_async(_child_predict_and_train, [(model, x, y)] * 2)
            results = res.get(TIMEOUT)
    finally:
        fnn.set_num_threads(fnn._config._usable_cores())
    for out, weights in results:
        if method == "fork":   # a forked child runs the OpenMP kernels on one thread: the 1-thread bits
            np.testing.assert_array_equal(out, want[0])
            np.testing.assert_array_equal(weights, want[1])
        else:
            np.testing.assert_allclose(out, want[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(weights, want[1], rtol=1e-5, atol=1e-6)


def test_os_fork_after_a_two_thread_predict_does_not_hang():
    res = _run("""
        import os, numpy as np, fastnn as fnn
        fnn.set_num_threads(2)
        m = fnn.Sequential([fnn.Dense(256, 512, activation="relu"), fnn.Dense(512, 10)], seed=0)
        x = np.random.default_rng(0).random((4096, 256)).astype(np.float32)
        m.predict(x)
        fnn.set_num_threads(1); want = m.predict(x); fnn.set_num_threads(2)
        pid = os.fork()
        if pid == 0:
            ok = np.array_equal(m.predict(x), want) and fnn.get_num_threads() == 2
            fnn.set_num_threads(2)            # asking for threads in the child keeps OpenMP on one
            ok = ok and np.array_equal(m.predict(x), want)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """, timeout=60)
    assert res.returncode == 0 and "child 0" in res.stdout, res.stderr


# ------------------------------------------------------------------------------------------------ copies

def _trained(dropout=0.2):
    x, y = _data(200)
    model = _model(dropout=dropout)
    opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
    model.compile(opt, "cross_entropy", ["accuracy"])
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    model.predict(x)
    return model, x, y


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_trained_model_copies_into_an_equal_independent_usable_model(how):
    model, x, y = _trained()
    clone = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))
    assert not np.shares_memory(clone._arena.data, model._arena.data)
    assert clone.optimizer.param_groups[0]["params"][0] is clone.parameters()[0]   # the copy's own parameters
    assert all(np.shares_memory(p.data, clone._arena.data) for p in clone.parameters())
    # training both from here gives the same bits; training the copy leaves the original alone
    before = model._arena.data.copy()
    h_clone = clone.fit(x, y, epochs=4, initial_epoch=2, batch_size=32, verbose=0)
    np.testing.assert_array_equal(model._arena.data, before)
    h_model = model.fit(x, y, epochs=4, initial_epoch=2, batch_size=32, verbose=0)
    assert h_clone.history == h_model.history
    np.testing.assert_array_equal(clone._arena.data, model._arena.data)
    assert clone.optimizer.state_dict()["state"].keys() == model.optimizer.state_dict()["state"].keys()


@pytest.mark.parametrize("make", [
    lambda m: fnn.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True),
    lambda m: fnn.optim.Adam(m.parameters(), amsgrad=True), lambda m: fnn.optim.AdamW(m.parameters()),
    lambda m: fnn.optim.RMSprop(m.parameters(), centered=True, momentum=0.5),
    lambda m: fnn.optim.Adagrad(m.parameters()), lambda m: fnn.optim.Adadelta(m.parameters()),
], ids=["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta"])
def test_optimizers_copy_with_their_state(make):
    model = _model("float64")
    opt = make(model)
    x = np.random.default_rng(0).standard_normal((8, 16))
    for _ in range(3):
        opt.zero_grad()
        model(x)
        model.backward(np.ones((8, 3)))
        opt.step()
    for clone in (copy.deepcopy, lambda obj: pickle.loads(pickle.dumps(obj))):
        m2, o2 = clone((model, opt))
        assert o2.param_groups[0]["params"][0] is m2.parameters()[0]
        for mm, oo in ((model, opt), (m2, o2)):
            oo.zero_grad()
            mm(x)
            mm.backward(np.ones((8, 3)))
            oo.step()
        np.testing.assert_array_equal(m2._arena.data, model._arena.data)
        sd, sd2 = opt.state_dict(), o2.state_dict()
        for i in sd["state"]:
            for k in sd["state"][i]:
                np.testing.assert_array_equal(sd2["state"][i][k], sd["state"][i][k])


def test_losses_callbacks_and_schedulers_copy():
    model, x, y = _trained()
    objs = [fnn.losses.MSELoss(), fnn.losses.BCEWithLogitsLoss(pos_weight=np.ones(3)),
            fnn.losses.CrossEntropyLoss(weight=np.ones(3), label_smoothing=0.1), fnn.losses.NLLLoss(),
            fnn.losses.BCELoss(reduction="sum"), C.EarlyStopping(patience=2, restore_best_weights=True),
            C.ModelCheckpoint("unused.fnn"), C.TerminateOnNaN(), C.History(), C.ProgressBar(1),
            fnn.optim.lr_scheduler.StepLR(model.optimizer, 2), model.history]
    for obj in objs:
        for clone in (copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
            assert type(clone) is type(obj)
            assert {k for k in vars(clone)} == {k for k in vars(obj)}
    loss = fnn.losses.CrossEntropyLoss(label_smoothing=0.1)
    pred = np.random.default_rng(0).standard_normal((5, 3))
    assert copy.deepcopy(loss)(pred, y[:5]) == loss(pred, y[:5])
    stop = C.EarlyStopping(patience=1, restore_best_weights=True)
    model.fit(x, y, epochs=6, initial_epoch=2, verbose=0, validation_split=0.2, callbacks=[stop])
    kept = copy.deepcopy(stop)
    np.testing.assert_array_equal(kept.best_weights, stop.best_weights)


# ------------------------------------------------------------------------------------------------ Ctrl-C

_INTERRUPT = """
import json, os, signal, sys, threading, time
import numpy as np, fastnn as fnn
verbose, per_batch = {verbose}, {per_batch}
r = np.random.default_rng(0)
n, bs = 60000, 64
x = r.standard_normal((n, 32)).astype(np.float32); y = r.integers(0, 4, n)
def make():
    m = fnn.Sequential([fnn.Dense(32, 256, activation="relu"), fnn.Dropout(0.1), fnn.Dense(256, 256, activation="relu"),
                        fnn.Dense(256, 4)], seed=1)
    m.compile(fnn.optim.Adam(m.parameters(), lr=1e-3), "cross_entropy", ["accuracy"])
    return m
model = make()
class Batch(fnn.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass
cbs = [Batch()] if per_batch else []
sent = []
def interrupt():
    time.sleep({delay})
    sent.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt, daemon=True).start()
try:
    model.fit(x, y, epochs=50, batch_size=bs, verbose=verbose, callbacks=cbs)
    raise SystemExit("fit was not interrupted")
except KeyboardInterrupt:
    latency = time.perf_counter() - sent[0]
steps = model._step   # one dropout step per completed batch
# the reference: the same batches, one train_step each, exactly `steps` of them
ref = make()
per_epoch = -(-n // bs)
done = 0
while done < steps:
    epoch = done // per_epoch
    order = np.random.default_rng([ref.seed, epoch]).permutation(n)
    b = done % per_epoch
    idx = order[b * bs:(b + 1) * bs]
    ref.train_step(x[idx], y[idx])
    done += 1
same_w = bool(np.array_equal(model._arena.data, ref._arena.data))
sa, sb = model.optimizer.state_dict(), ref.optimizer.state_dict()
same_opt = all(np.array_equal(sa["state"][i][k], sb["state"][i][k]) for i in sb["state"] for k in sb["state"][i])
print(json.dumps(dict(latency=latency, steps=steps, same_w=same_w, same_opt=same_opt,
                      epoch=model.epoch, step_count=float(sa["state"][0]["step"]))))
"""


@pytest.mark.parametrize("verbose,per_batch", [(0, False), (1, False), (2, False), (0, True)],
                         ids=["silent", "bar", "lines", "batch-callback"])
def test_ctrl_c_stops_fit_promptly_with_a_consistent_state(verbose, per_batch):
    res = _run(_INTERRUPT.format(verbose=verbose, per_batch=per_batch, delay=1.5), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["steps"] > 0
    assert out["same_w"] and out["same_opt"], out   # weights and optimizer state = exactly `steps` batches
    assert out["step_count"] == out["steps"], out   # Adam's step count agrees with the dropout counter
    assert out["latency"] < 2.0, out   # about a chunk (0.1 s) or one batch; generous for a loaded shared machine


def test_ctrl_c_outside_fastnn_still_raises_at_once():
    import _signal

    from fastnn._interrupt import deferred
    handler = _signal.getsignal(_signal.SIGINT)
    with deferred() as d:
        os.kill(os.getpid(), _signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            d.check()
    assert _signal.getsignal(_signal.SIGINT) is handler
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            os.kill(os.getpid(), _signal.SIGINT)
            inner = "still running"   # the block finishes first
        assert inner   # pragma: no cover
    assert _signal.getsignal(_signal.SIGINT) is handler


def test_a_compiled_chunk_returns_after_its_time_budget_with_a_consistent_state():
    """train_batches(seconds=...) hands control back after the batch that ends the budget (fit delivers
    Ctrl-C between such calls); the state is that of exactly the batches it ran."""
    x, y = _data(64 * 20)
    a, b = _model(dropout=0.1), _model(dropout=0.1)
    for m in (a, b):
        m.compile("adam", "cross_entropy")
    xa, ta = a._prepare_data(x, y, "X", "y")
    losses = np.empty(20)
    done = a._engine().train_batches(xa, ta, None, 64, 0, 20, a.loss, a.optimizer, losses, None, 1e-9)
    assert done == 1 and a._step == 1
    b.train_step(x[:64], y[:64])
    np.testing.assert_array_equal(a._arena.data, b._arena.data)
    done = a._engine().train_batches(xa, ta, None, 64, 1, 19, a.loss, a.optimizer, losses, None, 0.0)
    assert done == 19 and a._step == 20   # no budget: every batch


def test_training_and_predicting_in_a_thread_with_a_small_stack():
    """The kernels keep at most 16 KiB of scratch on the stack (the softmax loss's block of exps, a narrow GEMM's
    transposed result): training (the torch-style step, fit and scikit-learn's estimator, whose 10-wide output
    layer takes both) and predicting work in a thread started with threading.stack_size(256 KiB), with the
    numbers of the main thread."""
    pytest.importorskip("sklearn")
    out = _run("""
        import threading, numpy as np, fastnn as fnn
        from fastnn.sklearn import MLPClassifier
        fnn.set_num_threads(1)
        r = np.random.default_rng(0)
        X = r.standard_normal((600, 20)).astype(np.float32)
        y = r.integers(0, 10, 600)
        def work(box):
            est = MLPClassifier(hidden_layer_sizes=(300,), max_iter=3, random_state=0).fit(X, y)
            m = fnn.Sequential([fnn.Dense(20, 256, activation="relu"), fnn.Dense(256, 10)], seed=1)
            m.compile(optimizer="adam", loss="cross_entropy")
            m.fit(X, y, epochs=2, batch_size=200, verbose=0)
            box.append((est.coefs_[1].copy(), est.predict_proba(X), m.predict(X)))
        main = []
        work(main)
        threading.stack_size(256 * 1024)
        box = []
        t = threading.Thread(target=work, args=(box,))
        t.start(); t.join()
        for a, b in zip(main[0], box[0]):
            assert np.array_equal(a, b)
        print("ok")
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
