"""fit's epoch runner: one loop over the epochs, two ways to run an epoch's batches.

Each epoch's full batches run on the compiled epoch loop (``Engine.train_batches``) when the engine
can run the whole step and no callback needs to see every batch: runs of consecutive batches, each
ONE nogil call that gathers the batches' rows, runs their steps and returns after about
_CHUNK_SECONDS, so that Ctrl-C and the progress bar are served between runs. The remaining batches
(the last, partial one; every batch otherwise) step one by one through ``model._train_step``. Both
ways give the same weights, optimizer state, dropout counter and History bit for bit: the losses and
metrics are summed per batch in the same order. ``_train_epoch`` makes the choice. Where a batch's
rows come from (the arrays in memory, or a chunk read from a memory-mapped X) is ``Batches``
(fastnn._datasource).

Determinism and divergence: epoch e's order is ``default_rng([model.seed, e]).permutation(n)``.
A snapshot (weights, optimizer state, dropout counter) is taken at the start of every epoch; after a
NaN/inf loss or weights, the epoch's earlier batches are replayed from it to restore the state from
before the step that went bad (exact, as training is deterministic), and fit raises
FloatingPointError unless a callback (TerminateOnNaN) stops training on the failing batch.

Distributed (fastnn.distributed, docs/distributed.md): ``DistBatches`` (every rank holds all rows and
takes its share of each global batch) and ``ShardBatches`` (each rank holds its shard) give each rank
its rows of every global batch and their offset in it; a step reduces gradients and loss across the
ranks (inside the compiled loop, or per batch through the same plan), so the epoch's loss sums, the
divergence handling and the callbacks' decisions are the same on every rank. The train metrics' and the
validation's sums are reduced at the end of the epoch.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from . import losses as _losses
from . import metrics as _metrics
from ._datasource import Batches
from ._kernels._checks import array_finite

__all__ = ["Batches", "finite", "run_epochs"]   # Batches (where a batch's rows come from) lives in _datasource

_CHUNK_OUTPUTS = 1 << 20   # output elements a compiled run keeps for the metrics (bounds its batches)
_CHUNK_SECONDS = 0.1       # target length of one compiled run of batches (Ctrl-C and bar latency)


def finite(a: np.ndarray) -> bool:
    """No NaN or inf in a (one compiled pass for contiguous float arrays, else two reductions)."""
    ok = array_finite(a)
    if ok is not None:
        return ok
    return bool(math.isfinite(a.min()) and math.isfinite(a.max()))


class _Snapshot:
    """Weights, optimizer state and dropout counter, taken at the start of every epoch."""

    def __init__(self, model):
        self.params = np.empty_like(model._arena.data)

    def take(self, model) -> None:
        np.copyto(self.params, model._arena.data)
        self.opt = model.optimizer.state_dict()
        self.step = model._step

    def restore(self, model) -> None:
        np.copyto(model._arena.data, self.params)
        model.optimizer.load_state_dict(self.opt)
        model._step = self.step


class DistBatches(Batches):
    """Every rank holds all N rows; global batch b is (order or range)[b*size : b*size + size], and rank r
    takes its share of its rows (fastnn.distributed.share)."""

    def __init__(self, x, t, batch_size, shuffle, ctx):
        super().__init__(x, t, batch_size, shuffle)
        self.dist = ctx
        self.lo, hi = ctx.share(self.size)
        self.local = hi - self.lo
        if ctx.size > self.size:
            self.full = 0   # some rank has no rows in a full batch: every step goes through _dist_step

    def part(self, b):
        """(first position, end position, rows of the global batch, offset of this rank's rows in it)."""
        s = b * self.size
        g = min(self.size, self.n - s)
        lo, hi = self.dist.share(g)
        return s + lo, s + hi, g, lo

    def __call__(self, b):
        a, e = self.part(b)[:2]
        if self.order is None:
            return self.x[a:e], self.t[a:e]
        idx = self.order[a:e]
        xb, tb = self._xbuf[:e - a], self._tbuf[:e - a]
        np.take(self.x, idx, axis=0, out=xb, mode="clip")
        np.take(self.t, idx, axis=0, out=tb, mode="clip")
        return xb, tb

    def compiled_args(self):
        """(stride, offset, mask_offset) of Engine.train_batches for this rank's rows of the full batches."""
        return self.size, self.lo, self.lo

    def local_positions(self, first, count):
        """Positions (in order, or rows) of this rank's rows of full batches first .. first+count-1."""
        return ((np.arange(first, first + count) * self.size + self.lo)[:, None] + np.arange(self.local)).reshape(-1)


class ShardBatches(Batches):
    """Each rank holds its own shard (S_r rows). Rank r's local batch size is its share b_r of batch_size; global
    batch b is the concatenation, in rank order, of every rank's rows b*b_r .. (b+1)*b_r - 1 of its shard
    (in the shard's epoch order: default_rng([seed, epoch, r]).permutation(S_r) when shuffled); a rank whose
    shard is used up contributes no rows. An epoch has max_r ceil(S_r / b_r) steps."""

    def __init__(self, x, t, batch_size, shuffle, ctx):
        super().__init__(x, t, batch_size, shuffle)
        self.dist = ctx
        self.sizes = ctx.comm.allgather(len(x))
        self.bs = [hi - lo for lo, hi in (ctx.share(batch_size, r) for r in range(ctx.size))]
        if min(self.bs) < 1:
            raise ValueError(f"batch_size must be at least the number of ranks ({ctx.size}) with "
                             f"distributed='sharded', got {batch_size}")
        self.size, self.local = batch_size, self.bs[ctx.rank]
        self.steps = max(-(-s // b) for s, b in zip(self.sizes, self.bs))
        self.full = min(s // b for s, b in zip(self.sizes, self.bs))
        if shuffle:
            self._xbuf = np.empty((self.local,) + x.shape[1:], x.dtype)
            self._tbuf = np.empty((self.local,) + t.shape[1:], t.dtype)

    def shuffle(self, seed: int, epoch: int) -> None:
        self.order = np.random.default_rng([seed, epoch, self.dist.rank]).permutation(self.n)

    def _rows(self, r, b):
        return max(0, min(self.bs[r], self.sizes[r] - b * self.bs[r]))

    def part(self, b):
        r = self.dist.rank
        rows = [self._rows(q, b) for q in range(self.dist.size)]
        a = min(b * self.local, self.n)
        return a, a + rows[r], sum(rows), sum(rows[:r])

    __call__ = DistBatches.__call__

    def compiled_args(self):
        return self.local, 0, sum(self.bs[:self.dist.rank])

    def local_positions(self, first, count):
        return np.arange(first * self.local, (first + count) * self.local)


class _Chunks:
    """The compiled runs' size and the buffers a run fills (allocated once per fit).

    A run is one nogil call of up to ``limit`` batches (capped by the memory its outputs take for the
    metrics) that returns after about _CHUNK_SECONDS of wall time, however loaded the machine.
    """

    def __init__(self, model, batches, metrics: bool):
        self.full = batches.full   # full batches per epoch (distributed: full on every rank)
        k = self.full
        if batches.max_run is not None:   # a memory-mapped x: a run is at most one chunk of rows read at once
            k = min(k, batches.max_run)
        if metrics:   # batches.size: the global batch, so that every rank runs the same counts
            k = min(k, max(1, _CHUNK_OUTPUTS // (batches.size * model.out_features)))
        self.limit = k = max(1, min(k, self.full))
        rows = k * batches.local
        self.losses = np.empty(k)
        self.outputs = np.empty((rows, model.out_features), model.dtype) if metrics else None
        t = batches.t
        self.targets = np.empty((rows,) + t.shape[1:], t.dtype) if metrics and batches.shuffled else None


class _Progress:
    """An epoch's running sums: loss (sample-weighted), samples, batches done, and the failure if any.

    failed is (batch, loss) for a non-finite loss (that batch's step ran; fit undoes it) or (batch, None)
    for finite losses but NaN/inf weights; None while all is well.
    """

    def __init__(self):
        self.loss_sum, self.count, self.done, self.failed = 0.0, 0, 0, None


def run_epochs(model, batches, xv, tv, batch_size, cbs, initial_epoch, epochs, interrupt) -> dict:
    """fit's epochs initial_epoch .. epochs-1 with validation and callbacks; returns the last epoch's logs."""
    train_metrics = [_metrics.get(n, model.loss, batches.t) for n, _ in model._metric_names]
    val_metrics = [_metrics.get(n, model.loss, tv) for n, _ in model._metric_names]
    # runs of batches only if no callback must see each batch and _train_step is not replaced on the model
    chunks = (_Chunks(model, batches, bool(train_metrics))
              if cbs.takes_runs and "_train_step" not in vars(model) else None)
    snapshot = _Snapshot(model)
    logs = {}
    cbs.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        cbs.on_epoch_begin(epoch, {})
        model.training = True
        snapshot.take(model)
        if batches.shuffled:
            batches.shuffle(model.seed, epoch)
        for m in train_metrics:
            m.reset_state()
        p = _train_epoch(model, batches, chunks, train_metrics, cbs, interrupt)
        if p.failed is None and not finite(model._arena.data):
            p.failed = (p.done, None)   # a finite loss but NaN/inf weights: find the step that caused them
        failed = p.failed is not None and _diverged(model, p.failed, snapshot, batches, epoch, cbs, train_metrics)
        if batches.dist is not None:
            _reduce_metrics(batches.dist, train_metrics)
        logs = _running_logs(math.nan if failed else p.loss_sum, p.count, train_metrics)
        interrupt.check()
        if xv is not None:
            values = (model._evaluate_prepared(xv, tv, batch_size, val_metrics) if batches.dist is None
                      else _dist_evaluate(model, xv, tv, batch_size, val_metrics, batches.dist))
            for key, value in values.items():
                logs["val_" + key] = value
        model.epoch = epoch + 1   # this epoch's training is complete (a checkpoint saved now resumes after it)
        cbs.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return logs


def _train_epoch(model, batches, chunks, train_metrics, cbs, interrupt) -> _Progress:
    """One epoch's batches: the full ones in compiled runs when possible, the rest one by one."""
    p = _Progress()
    if chunks is not None and model._engine().supports_batches(batches.t, model.loss, model.optimizer):
        _compiled_runs(model, chunks, batches, train_metrics, cbs, interrupt, p)
    if p.failed is None:
        _one_by_one(model, batches, train_metrics, cbs, interrupt, p)
    return p


def _one_by_one(model, batches, train_metrics, cbs, interrupt, p: _Progress) -> None:
    """Batches p.done .. the last, each through model._train_step (stops at a failure or stop_training)."""
    want_logs = cbs.wants_batch_logs
    for b in range(p.done, batches.steps):
        interrupt.check()
        xb, tb = batches(b)
        if want_logs:
            cbs.on_train_batch_begin(b, {})
        if batches.dist is None:
            loss, m = model._train_step(xb, tb), len(xb)
        else:
            loss, m = _dist_step(model, batches, b, xb, tb)
        if not math.isfinite(loss):
            p.failed = (b, loss)
            return
        p.loss_sum += loss * m
        p.count += m
        out = model._train_out
        if len(xb):
            for metric in train_metrics:
                metric._add(out, tb)
        p.done = b + 1
        if want_logs:
            cbs.on_train_batch_end(b, _running_logs(p.loss_sum, p.count, train_metrics))
        if model.stop_training:
            return


def _compiled_runs(model, chunks, batches, train_metrics, cbs, interrupt, p: _Progress) -> None:
    """The epoch's full batches on the compiled epoch loop, run by run.

    Between runs (each at most about _CHUNK_SECONDS long) a pending Ctrl-C is delivered and the batch
    callbacks get on_train_batches_end. Stops after a non-finite loss (p.failed).
    """
    engine = model._engine()
    size, local = batches.size, batches.local
    first = 0
    while first < chunks.full:
        interrupt.check()
        k = min(chunks.limit, chunks.full - first)
        if batches.dist is None:
            # the arrays holding batches first.. (as batches at..: the whole x, or a chunk read from a mapped x)
            x, t, order, at, k = batches.run(first, k)
            done = engine.train_batches(x, t, order, size, at, k, model.loss, model.optimizer,
                                        chunks.losses, chunks.outputs, _CHUNK_SECONDS)
        else:
            x, t, order, at = batches.x, batches.t, batches.order, first
            done = engine.train_batches(x, t, order, local, first, k, model.loss, model.optimizer,
                                        chunks.losses, chunks.outputs, _CHUNK_SECONDS, *batches.compiled_args())
        values = chunks.losses[:done].tolist()
        ok = done if math.isfinite(values[-1]) else done - 1
        for value in values[:ok]:
            p.loss_sum += value * size
            p.count += size
        if train_metrics and ok and batches.dist is not None:
            pos = batches.local_positions(first, ok)
            tb = np.take(t, pos if order is None else order[pos], axis=0)
            for metric in train_metrics:
                metric._add_batches(chunks.outputs[:len(pos)], tb, local)
        elif train_metrics and ok:
            s, rows = at * size, ok * size
            if order is None:
                tb = t[s:s + rows]
            else:
                tb = chunks.targets[:rows]
                np.take(t, order[s:s + rows], axis=0, out=tb, mode="clip")
            for metric in train_metrics:
                metric._add_batches(chunks.outputs[:rows], tb, size)
        if ok < done:
            model._train_out = engine.last_output
            p.done, p.failed = first + ok, (first + ok, values[-1])
            return
        first += done
        if cbs.wants_batch_logs:
            cbs.on_train_batches_end(first - 1, done, _running_logs(p.loss_sum, p.count, train_metrics))
    model._train_out = engine.last_output
    p.done = chunks.full


def _diverged(model, failed, snapshot, batches, epoch, cbs, train_metrics) -> bool:
    """Undo the bad step(s) of this epoch; True if a callback stops training on it, False if nothing was bad.

    Raises FloatingPointError otherwise.
    """
    b, loss = failed
    undone = _replay(model, snapshot, batches, b)
    if loss is None and undone == b:
        return False   # the replay ran clean (nothing to undo after all)
    where = f"epoch {epoch + 1}, batch {undone + 1} of {batches.steps}"
    if loss is None or undone < b:
        what = f"the weights became NaN or inf at {where} (the loss was still finite)"
    else:
        what = f"the loss became {loss} at {where}"
    restored = ("restored the weights and optimizer state from before that step" if finite(model._arena.data)
                else "restored the weights from the start of the epoch, which already held NaN or inf")
    stopped_before = model.stop_training
    model.stop_training = False
    logs = _running_logs(math.nan, 1, train_metrics)
    cbs.on_train_batch_end(undone, logs)
    if not model.stop_training:
        model.stop_training = stopped_before
        raise FloatingPointError(
            f"training diverged: {what}; fit stopped and {restored}. Lower the learning rate or check the "
            "data; pass callbacks=[fastnn.callbacks.TerminateOnNaN()] to stop without an exception.")
    return True


def _replay(model, snapshot, batches, upto: int) -> int:
    """Restore the state before batch `upto` by replaying this epoch from its snapshot.

    A replayed step that leaves a NaN/inf weight is undone too (replay again, one step shorter).
    Returns the index of the first batch whose step was undone.
    """
    snapshot.restore(model)
    for b in range(upto):
        _replay_step(model, batches, b)
        if not finite(model._arena.data):
            snapshot.restore(model)
            for c in range(b):
                _replay_step(model, batches, c)
            return b
    return upto


def _replay_step(model, batches, b) -> None:
    if batches.dist is None:
        model._train_step(*batches(b))
    else:
        _dist_step(model, batches, b, *batches(b))


# ---------------------------------------------------------------------------------------------- distributed

def _dist_step(model, batches, b, xb, tb):
    """One distributed step on this rank's rows of global batch b: (global loss, rows of the global batch)."""
    engine = model._engine()
    _, _, rows, offset = batches.part(b)
    if len(xb):
        loss = engine.train_step(xb, tb, model.loss, model.optimizer, offset)
        model._train_out = engine.last_output
    else:   # no rows of this batch on this rank: its part of the allreduce, and the same update
        loss = engine.idle_step(model.loss, model.optimizer)
    return loss, rows


def _reduce_metrics(ctx, metrics) -> None:
    """Sum every metric's (total, count) over the ranks."""
    if not metrics:
        return
    a = ctx.allreduce(np.array([v for m in metrics for v in (m.total, m.count)], np.float64))
    for i, m in enumerate(metrics):
        m.total, m.count = float(a[2 * i]), int(a[2 * i + 1])


def _denominator(loss, t, classes: int) -> float:
    """What a 'mean' loss divides the batch's sum by (as the loss kernels and TrainPlan's hook)."""
    if isinstance(loss, (_losses.CrossEntropyLoss, _losses.NLLLoss)) and t.ndim == 1:
        kept = t[t != loss.ignore_index]
        w = getattr(loss, "weight", None)
        return float(len(kept)) if w is None else float(np.asarray(w, np.float64)[kept].sum())
    if isinstance(loss, _losses.CrossEntropyLoss):
        return float(len(t))
    return float(len(t) * classes)


def _dist_evaluate(model, x, t, batch_size, metrics, ctx) -> dict:
    """Validation across the ranks: loss and metrics from sums reduced once (see docs/distributed.md).

    Every rank holding all rows: each global batch's loss is (sum of the ranks' loss sums) / (sum of their
    denominators), as one process computes it on that batch. Sharded: each rank's own batches.
    """
    for m in metrics:
        m.reset_state()
    n, C = len(x), model.out_features
    sum_loss = copy.copy(model.loss)
    sum_loss.reduction = "sum"
    mean = model.loss.reduction == "mean"
    grad = np.empty((min(batch_size, n), C), model.dtype)
    starts = range(0, n, batch_size)
    S, D, R = np.zeros(len(starts)), np.zeros(len(starts)), np.zeros(len(starts))
    for i, s in enumerate(starts):
        g = min(batch_size, n - s)
        lo, hi = (0, g) if ctx.sharded else ctx.share(g)
        xb, tb = x[s + lo:s + hi], t[s + lo:s + hi]
        R[i] = g
        if len(xb) == 0:
            continue
        out = model._predict_batch(xb)
        S[i] = sum_loss._forward_backward(out, tb, grad[:len(xb)])
        D[i] = _denominator(model.loss, tb, C)
        for m in metrics:
            m._add(out, tb)
    if ctx.sharded:   # each rank's batches are whole: sum of (batch loss x rows) and rows over the ranks
        values = np.divide(S, D, out=np.full_like(S, np.nan), where=D != 0) if mean else S
        parts = ctx.allreduce(np.array([float((values * R).sum()), float(n)]))
        total, rows = parts
    else:
        parts = ctx.allreduce(np.concatenate([S, D]))
        S, D = parts[:len(S)], parts[len(S):]
        values = np.divide(S, D, out=np.full_like(S, np.nan), where=D != 0) if mean else S
        total, rows = float((values * R).sum()), n
    _reduce_metrics(ctx, metrics)
    logs = {"loss": float(total / rows)}
    for m in metrics:
        logs[m.name] = m.result()
    return logs


def _running_logs(loss_sum, count, metrics) -> dict:
    logs = {"loss": loss_sum / count if count else math.nan}
    for m in metrics:
        logs[m.name] = m.result()
    return logs
