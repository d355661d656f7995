"""Distributed training against one process; run under ``mpiexec -n N python tests/mpi_check.py MODE [DIR]``.

Rank 0 trains a deep copy of the (rank 0) model in-process, without MPI, as the reference. Every rank checks
that its weights are bit-identical to rank 0's; rank 0 checks them against the reference (float64: 1e-12
relative in the max norm; float32: 1e-4, rounding) and the History too. Prints "OK <scenario>" per passed
scenario on rank 0 and exits 1 on the first failure (tests/test_distributed.py runs it).

MODE: "fit" (every optimizer and loss, dropout, shuffle, partial last batch, validation, compiled and per
batch), "more DIR" (sharded, train_step, unseeded models, float32, callbacks, bad input, divergence),
"fault batch|runs" (rank 1 raises mid-epoch: the job must abort).
"""

import copy
import os
import sys

import numpy as np
from mpi4py import MPI

import fastnn as fnn
from fastnn import callbacks as cbm
from fastnn import losses as L
from fastnn.optim import OPTIMIZERS

comm = MPI.COMM_WORLD
RANK, SIZE = comm.Get_rank(), comm.Get_size()
FEATURES, HIDDEN = 6, 12


def log(msg):
    if RANK == 0:
        print(msg, flush=True)


def fail(msg):
    sys.stderr.write(f"rank {RANK}: FAIL {msg}\n")
    sys.stderr.flush()
    comm.Abort(1)


def make_model(dtype, out, last_act=None, dropout=0.25, seed=3):
    layers = [fnn.Dense(FEATURES, HIDDEN, activation="tanh")]
    if dropout:
        layers.append(fnn.Dropout(dropout))
    layers += [fnn.Dense(HIDDEN, HIDDEN, activation="relu"), fnn.Dense(HIDDEN, out, activation=last_act)]
    return fnn.Sequential(layers, dtype=dtype, seed=seed)


def data(kind, n, c, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, FEATURES))
    if kind == "labels":
        y = r.integers(0, c, n)
    elif kind == "binary":
        y = (r.random((n, c)) < 0.5).astype(float)
    elif kind == "probs":
        p = r.random((n, c))
        y = p / p.sum(axis=1, keepdims=True)
    else:
        y = r.standard_normal((n, c))
    return x, y


# (loss, target kind, last activation, metrics)
def loss_cases():
    w = np.array([0.5, 2.0, 1.0, 1.5])
    return [
        (lambda: "mse", "regression", None, ["mae"]),
        (lambda: "bce", "binary", "sigmoid", ["binary_accuracy"]),
        (lambda: L.BCEWithLogitsLoss(pos_weight=np.array([1.5, 0.5, 1.0, 2.0])), "binary", None, ["accuracy"]),
        (lambda: L.CrossEntropyLoss(weight=w, ignore_index=2, label_smoothing=0.1), "labels", None, ["accuracy"]),
        (lambda: L.NLLLoss(weight=w), "labels", None, ["accuracy"]),
        (lambda: L.CrossEntropyLoss(), "probs", None, ["accuracy"]),
        (lambda: L.MSELoss(reduction="sum"), "regression", None, ["mse"]),
        (lambda: L.CrossEntropyLoss(reduction="sum"), "labels", None, []),
    ]


def same_on_all_ranks(a, what):
    ref = comm.bcast(a if RANK == 0 else None, root=0)
    if not np.array_equal(np.asarray(a), np.asarray(ref), equal_nan=True):
        fail(f"{what}: rank {RANK} differs from rank 0")


def close(a, b, rtol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(b).max(), 1e-30)
    err = np.abs(a - b).max() / scale
    if not err <= rtol:
        fail(f"{what}: relative error {err:.3e} > {rtol:g}")


def check_history(h, ref, rtol, what):
    if sorted(h) != sorted(ref):
        fail(f"{what}: history keys {sorted(h)} != {sorted(ref)}")
    for k in ref:
        close(h[k], ref[k], rtol, f"{what} history[{k}]")


def compare_fit(name, model, ref, rtol, args, kwargs, dist_kwargs=None):
    """Fit `model` distributed and (rank 0) `ref` alone on the same data; compare weights and History."""
    h = model.fit(*args, distributed=True, **kwargs, **(dist_kwargs or {})).history
    same_on_all_ranks(model._arena.data, f"{name} weights")
    same_on_all_ranks(np.array([v for k in sorted(h) for v in h[k]]), f"{name} history")
    if RANK == 0:
        href = ref.fit(*args, **kwargs).history
        close(model._arena.data, ref._arena.data, rtol, f"{name} weights")
        check_history(h, href, rtol, name)
        log(f"OK {name}")
    comm.Barrier()


class PerBatch(cbm.Callback):
    """Needs every batch: the per-batch (non-compiled) path."""

    def on_train_batch_end(self, batch, logs=None):
        pass


def mode_fit():
    cases = loss_cases()
    n, nv, batch = 103, 29, 16   # a partial last batch; 16 rows do not split evenly over 3 ranks
    for i, opt in enumerate(OPTIMIZERS):
        for j in (i, i + len(OPTIMIZERS)) if i + len(OPTIMIZERS) < len(cases) else (i,):
            make_loss, kind, act, metrics = cases[j % len(cases)]
            c = 4
            x, y = data(kind, n, c, 10 + j)
            xv, yv = data(kind, nv, c, 50 + j)
            model = make_model(np.float64, c, act)
            model.compile(optimizer=opt, loss=make_loss(), metrics=metrics)
            ref = copy.deepcopy(model)
            per_batch = j % 2 == 1
            kwargs = dict(epochs=3, batch_size=batch, validation_data=(xv, yv), shuffle=True, verbose=0,
                          callbacks=[PerBatch()] if per_batch else None)
            name = f"fit {opt} {type(model.loss).__name__}({model.loss.reduction}) {kind} " \
                   f"{'per-batch' if per_batch else 'compiled'}"
            compare_fit(name, model, ref, 1e-12, (x, y), kwargs)


def shard_reference(ref, shards, batch, epochs, shuffle, seed):
    """One process: the global batches ShardBatches defines, stepped with train_step."""
    bs = [batch // SIZE + (r < batch % SIZE) for r in range(SIZE)]
    steps = max(-(-len(sx) // b) for (sx, _), b in zip(shards, bs))
    for e in range(epochs):
        orders = [np.random.default_rng([seed, e, r]).permutation(len(sx)) if shuffle else np.arange(len(sx))
                  for r, (sx, _) in enumerate(shards)]
        for k in range(steps):
            xs, ys = [], []
            for r, (sx, sy) in enumerate(shards):
                idx = orders[r][k * bs[r]:(k + 1) * bs[r]]
                xs.append(sx[idx])
                ys.append(sy[idx])
            ref.train_step(np.concatenate(xs), np.concatenate(ys))


def mode_more(tmp):
    c = 4
    # ---- sharded, uneven shards, dropout, shuffle; reference: the documented global batches
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 2e-4)):
        shards = [data("labels", 37 + 11 * r, c, 100 + r) for r in range(SIZE)]
        model = make_model(dtype, c)
        model.compile(optimizer="adam", loss=L.CrossEntropyLoss(weight=np.array([1.0, 2.0, 0.5, 1.0])),
                      metrics=["accuracy"])
        ref = copy.deepcopy(model)
        model.fit(*shards[RANK], epochs=2, batch_size=12, shuffle=True, verbose=0, distributed="sharded")
        same_on_all_ranks(model._arena.data, "sharded weights")
        if RANK == 0:
            shard_reference(ref, shards, 12, 2, True, model.seed)
            close(model._arena.data, ref._arena.data, rtol, f"sharded {np.dtype(dtype).name}")
            log(f"OK sharded {np.dtype(dtype).name}")
        comm.Barrier()

    # ---- sharded validation: a per-element loss's row-weighted batch means = one process on the concatenation
    shards = [data("regression", 30 + 7 * r, c, 150 + r) for r in range(SIZE)]
    vshards = [data("regression", 9 + 5 * r, c, 170 + r) for r in range(SIZE)]
    model = make_model(np.float64, c, dropout=0)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    ref = copy.deepcopy(model)
    h = model.fit(*shards[RANK], epochs=2, batch_size=8, shuffle=False, validation_data=vshards[RANK], verbose=0,
                  distributed="sharded").history
    if RANK == 0:
        shard_reference(ref, shards, 8, 2, False, model.seed)
        close(model._arena.data, ref._arena.data, 1e-12, "sharded validation weights")
        full = ref.evaluate(np.concatenate([a for a, _ in vshards]), np.concatenate([b for _, b in vshards]),
                            batch_size=8, return_dict=True)
        close(h["val_loss"][-1], full["loss"], 1e-12, "sharded val_loss")
        close(h["val_mae"][-1], full["mae"], 1e-12, "sharded val_mae")
        log("OK sharded validation")
    comm.Barrier()

    # ---- float32 fit, compiled, against one process
    x, y = data("labels", 203, c, 7)
    model = make_model(np.float32, c)
    model.compile(optimizer="sgd", loss="cross_entropy", metrics=["accuracy"])
    ref = copy.deepcopy(model)
    compare_fit("fit float32", model, ref, 2e-4, (x, y), dict(epochs=2, batch_size=32, verbose=0))

    # ---- train_step: global batches of varying sizes (fewer rows than ranks too), replicated and sharded
    model = make_model(np.float64, c)
    model.compile(optimizer="rmsprop", loss="cross_entropy")
    ref = copy.deepcopy(model)
    losses, ref_losses = [], []
    for k, rows in enumerate((17, 1, SIZE + 1, 8)):
        xb, yb = data("labels", rows, c, 300 + k)
        losses.append(model.train_step(xb, yb, distributed=True))
        if RANK == 0:
            ref_losses.append(ref.train_step(xb, yb))
    same_on_all_ranks(model._arena.data, "train_step weights")
    same_on_all_ranks(np.array(losses), "train_step losses")
    if RANK == 0:
        close(model._arena.data, ref._arena.data, 1e-12, "train_step weights")
        close(losses, ref_losses, 1e-12, "train_step losses")
        log("OK train_step replicated")
    xs = [data("labels", 3 + r, c, 400 + r) for r in range(SIZE)]
    loss = model.train_step(*xs[RANK], distributed="sharded")
    if RANK == 0:
        ref_loss = ref.train_step(np.concatenate([a for a, _ in xs]), np.concatenate([b for _, b in xs]))
        close(model._arena.data, ref._arena.data, 1e-12, "train_step sharded weights")
        close(loss, ref_loss, 1e-12, "train_step sharded loss")
        log("OK train_step sharded")
    comm.Barrier()

    # ---- unseeded models: rank 0's initial weights everywhere
    model = fnn.Sequential([fnn.Dense(FEATURES, c)], dtype="float64")
    model.compile(optimizer="adagrad", loss="mse")
    ref = copy.deepcopy(model) if RANK == 0 else None
    x, y = data("regression", 50, c, 8)
    compare_fit("unseeded", model, ref, 1e-12, (x, y), dict(epochs=2, batch_size=10, verbose=0))

    # ---- callbacks decide the same on every rank; only rank 0 writes
    x, y = data("regression", 120, c, 9)
    xv, yv = data("regression", 40, c, 10)
    model = make_model(np.float64, c)
    model.compile(optimizer=fnn.optim.SGD(model.parameters(), lr=0.5), loss="mse")
    ref = copy.deepcopy(model)
    path = os.path.join(tmp, "ckpt-{epoch:02d}.fnn")

    def cbs(m):
        return [cbm.EarlyStopping(patience=1), cbm.ReduceLROnPlateau(m.optimizer, patience=0, factor=0.5),
                cbm.ModelCheckpoint(path, verbose=1)]

    h = model.fit(x, y, epochs=12, batch_size=16, validation_data=(xv, yv), callbacks=cbs(model), verbose=0,
                  distributed=True).history
    same_on_all_ranks(np.array([len(h["loss"])]), "epochs run")
    same_on_all_ranks(model._arena.data, "callbacks weights")
    if RANK == 0:
        written = sorted(os.listdir(tmp))
        href = ref.fit(x, y, epochs=12, batch_size=16, validation_data=(xv, yv), callbacks=cbs(ref),
                         verbose=0).history
        check_history(h, href, 1e-12, "callbacks")
        if len(written) != len(h["loss"]):
            fail(f"callbacks: {len(written)} checkpoint files for {len(h['loss'])} epochs")
        log(f"OK callbacks ({len(h['loss'])} epochs, final lr {model.optimizer.param_groups[0]['lr']})")
    comm.Barrier()

    # ---- bad input on one rank: every rank raises, nobody hangs
    x, y = data("regression", 40, c, 11)
    if RANK == 1:
        x = x.copy()
        x[3, 2] = np.nan
    model = make_model(np.float64, c)
    model.compile(optimizer="sgd", loss="mse")
    try:
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, distributed=True)
    except (ValueError, RuntimeError) as exc:
        raised = type(exc).__name__
    else:
        raised = None
    same_on_all_ranks(np.array([raised is not None]), "bad input raised")
    if raised is None:
        fail("bad input: no exception")
    log("OK bad input on rank 1 raises on every rank")

    # ---- a bad callbacks argument on one rank: every rank raises, nobody hangs
    x, y = data("regression", 40, c, 13)
    model = make_model(np.float64, c)
    model.compile(optimizer="sgd", loss="mse")
    try:
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, distributed=True,
                  callbacks=["not a callback"] if RANK == 1 else None)
    except (TypeError, ValueError, RuntimeError) as exc:
        raised = type(exc).__name__
    else:
        raised = None
    same_on_all_ranks(np.array([raised is not None]), "bad callbacks raised")
    if raised is None:
        fail("bad callbacks on rank 1: no exception")
    log("OK bad callbacks on rank 1 raise on every rank")

    # ---- a diverged (global) loss raises FloatingPointError on every rank
    x, y = data("regression", 64, c, 12)
    model = make_model(np.float64, c, dropout=0)
    model.compile(optimizer=fnn.optim.SGD(model.parameters(), lr=1e6), loss="mse")
    try:
        model.fit(x * 1e3, y, epochs=3, batch_size=8, verbose=0, distributed=True)
    except FloatingPointError:
        ok = True
    else:
        ok = False
    same_on_all_ranks(np.array([ok]), "divergence")
    if not ok:
        fail("divergence: no FloatingPointError")
    log("OK diverged loss raises FloatingPointError on every rank")


class RaiseOnRank1(cbm.Callback):
    """Rank 1 raises mid-epoch: after its 4th batch (per batch), or after its first run of batches (compiled)."""

    def on_train_batch_end(self, batch, logs=None):
        if RANK == 1 and batch == 3:
            raise RuntimeError("injected failure on rank 1 (per batch)")


class RaiseOnRank1Runs(cbm.Callback):
    def on_train_batches_end(self, last, count, logs=None):
        if RANK == 1:
            raise RuntimeError("injected failure on rank 1 (between compiled runs)")


def mode_fault(where):
    x, y = data("regression", 40000, 4, 1)
    model = make_model(np.float64, 4)
    model.compile(optimizer="sgd", loss="mse")
    cb = RaiseOnRank1() if where == "batch" else RaiseOnRank1Runs()
    model.fit(x, y, epochs=50, batch_size=8, verbose=0, callbacks=[cb], distributed=True)
    log("UNREACHABLE: fit returned")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "fit":
        mode_fit()
    elif mode == "more":
        mode_more(sys.argv[2])
    elif mode == "fault":
        mode_fault(sys.argv[2])
    comm.Barrier()
    log("ALL OK")
