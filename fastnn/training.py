"""Keras-style training for Sequential: compile, fit, evaluate, predict and train_step.

Semantics follow Keras 3 (docs/numerics.md section 6): the validation split is the last samples, taken
before shuffling; the epoch's 'loss' and metrics are sample-weighted running means over its batches
(the last, partial batch is kept); validation runs after the epoch, in eval mode, with the epoch's
final weights, and is logged as 'val_*'. ``epochs`` is the index of the final epoch, so
``fit(..., epochs=5, initial_epoch=model.epoch)`` continues a run, reproducing the uninterrupted one.

This module checks the arguments and converts X and y to the model's dtype once per call (a
memory-mapped X, np.load(path, mmap_mode="r"), is instead read a chunk at a time by fit, evaluate
and predict: fastnn._datasource, same bits); the epochs run in fastnn._epochs (compiled runs of
batches or one batch at a time, the same bits either way; divergence handling). Names given to
compile are looked up in the registries ``fastnn.optim.OPTIMIZERS`` and ``fastnn.losses.LOSSES``.

Interrupts and threads. fit holds the model for training (another thread that trains it or runs
inference on it gets a RuntimeError) and defers Ctrl-C to the next batch or run boundary
(fastnn._interrupt), so an interrupted fit leaves weights, optimizer state and counters exactly as
after its last completed batch. predict and evaluate change nothing on the model: any number of
threads may call them at once.

Distributed (``fit(..., distributed=True | "sharded")``, ``train_step(..., distributed=True | "sharded")``):
data-parallel over MPI with global-batch semantics, see fastnn.distributed and docs/distributed.md.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from . import _config
from . import _datasource as D
from . import _validation as V
from . import callbacks as _cb
from . import distributed as _dist
from . import losses as _losses
from . import metrics as _metrics
from . import optim as _optim
from ._epochs import Batches, DistBatches, ShardBatches, finite, run_epochs
from ._interrupt import deferred
from ._kernels import _runtime
from .engine import Engine
from .layers import Dense

__all__ = ["TrainingMixin"]

_PREDICT_BATCH = 1024   # rows per forward call in predict/evaluate when batch_size is None


def _check_verbose(verbose) -> int:
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, numbers.Integral) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0 (silent), 1 (progress bar), 2 (one line per epoch) or 'auto'; "
                         f"got {verbose!r}")
    return int(verbose)


class TrainingMixin:
    """compile / fit / evaluate / predict / train_step for Sequential (Keras semantics, docs/numerics.md section 6)."""

    optimizer = None            #: the compiled optimizer (fastnn.optim.Optimizer)
    loss = None                 #: the compiled loss object (fastnn.losses)
    compiled_metrics = None     #: canonical names of the compiled metrics ("accuracy", "mae", ...)
    history = None              #: the History of the last fit
    stop_training = False       #: set True (by a callback) to stop fit after the current batch/epoch
    epoch = 0                   #: number of epochs completed by fit (resume with initial_epoch=model.epoch)
    _metric_names = ()          # (log name, canonical name) per compiled metric
    _train_out = None           # training-mode output of the last _train_step's batch
    _pending_optimizer = None   # an optimizer name compiled before the model was built (made at build)
    _dist_rank = 0              # this process's rank during a distributed fit (callbacks: rank 0 speaks)

    # ------------------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", loss=None, metrics=None):
        """Configure training: optimizer, loss and metrics (strings or objects).

        optimizer: a name of fastnn.optim.OPTIMIZERS ("sgd", "adam", ...: built with Keras's defaults,
        fastnn.optim.KERAS_DEFAULTS: "sgd" has lr 0.01, the others 0.001) or an optimizer over this
        model's parameters. loss: a name of fastnn.losses.LOSSES: PyTorch's ("mse", "bce" (probabilities:
        the model must end in a sigmoid), "cross_entropy" (logits), ...) or Keras's
        ("sparse_categorical_crossentropy", "categorical_crossentropy" (probabilities: the model ends in
        a softmax), "binary_crossentropy" (a sigmoid), "mean_squared_error", "mae", ...), a fastnn.losses
        object (reduction 'mean' or 'sum') or a Keras-style one (fastnn.losses.SparseCategoricalCrossentropy
        (from_logits=...), ...). metrics: names among "accuracy" ("acc"), "binary_accuracy",
        "categorical_accuracy", "sparse_categorical_accuracy", "mae", "mse" (logged under the name given).
        An optimizer made without parameters (Keras's ``fnn.optim.Adam(learning_rate=1e-3)``; the class's
        other defaults are PyTorch's) takes this model's parameters. Sets ``optimizer``, ``loss`` and
        ``compiled_metrics``. An unbuilt model (Dense(units) without fnn.Input) takes a name or an
        optimizer without parameters; it gets the parameters when the model is built.
        """
        self._check_layers("compile")
        self._build_if_known()   # a model assembled with add() after fnn.Input gets its weights now
        loss_obj = self._resolve_loss(loss)
        names = self._resolve_metrics(metrics, loss_obj)
        opt, pending = self._resolve_optimizer(optimizer)
        self.optimizer, self.loss = opt, loss_obj
        self._pending_optimizer = pending
        self._metric_names = tuple(names)
        self.compiled_metrics = [canonical for _, canonical in names]

    def _check_layers(self, method: str) -> None:
        if self.out_features is None:   # Sequential() before any model.add(fnn.Dense(...))
            raise ValueError(f"{method}(): the model has no Dense layer yet; add its layers first "
                             "(model.add(fnn.Dense(...)))")

    @property
    def metrics_names(self) -> list[str]:
        """The keys of evaluate's dict: 'loss' then the compiled metrics, as logged."""
        return ["loss"] + [name for name, _ in self._metric_names]

    def _resolve_optimizer(self, optimizer):
        """(optimizer, None), or (None, name or optimizer) for a name or an optimizer made without parameters
        (Keras's Adam(learning_rate=...)) given to an unbuilt model."""
        if isinstance(optimizer, str) and optimizer.lower() in _optim.OPTIMIZERS:
            name = optimizer.lower()
            if not self.built:
                return None, name
            return _optim.from_name(name, self.parameters()), None
        optimizer = _from_registry(optimizer, "optimizer", _optim.OPTIMIZERS, _optim.Optimizer,
                                   "a fastnn.optim optimizer", "model.parameters(), lr=...", None)
        if not optimizer.param_groups:   # made without parameters (Keras's habit): it takes this model's
            if not self.built:
                return None, optimizer
            optimizer.add_param_group({"params": self.parameters()})
            return optimizer, None
        if not self.built:
            raise ValueError("optimizer: the model is not built yet, so no optimizer can hold its parameters; "
                             "pass the optimizer's name (compile(optimizer='adam')), or build the model first "
                             "(start with fnn.Input(shape=(n,)), or call it on data)")
        own = {id(p) for p in self.parameters()}
        foreign = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in own]
        if foreign:
            raise ValueError(f"optimizer must optimize this model's parameters, but it holds {len(foreign)} other "
                             f"parameter(s) (first: {foreign[0].name!r}); create it with model.parameters()")
        return optimizer, None

    def _on_built(self) -> None:
        pending = self._pending_optimizer
        if pending is not None:   # compile(optimizer="name" or Adam(learning_rate=...)) before the model was built
            if isinstance(pending, str):
                self.optimizer = _optim.from_name(pending, self.parameters())
            else:
                pending.add_param_group({"params": self.parameters()})
                self.optimizer = pending
            self._pending_optimizer = None

    def _resolve_loss(self, loss):
        if loss is None:
            raise ValueError(f"compile() needs a loss: one of {', '.join(map(repr, _losses.LOSSES))} or a "
                             "fastnn.losses object")
        if isinstance(loss, _losses.KerasLoss):   # Keras's classes: the PyTorch-style loss they delegate to
            loss = loss.loss
        loss = _from_registry(loss, "loss", _losses.LOSSES, _losses._Loss, "a fastnn.losses object", "",
                              lambda cls: cls())
        if loss.reduction == "none":
            raise ValueError("fit needs a scalar loss: the loss's reduction must be 'mean' or 'sum', got 'none'")
        c = self.out_features
        kind = type(loss).__name__
        last = self.layers[-1]
        last_act = last.activation.kind if isinstance(last, Dense) else getattr(last, "kind", None)
        if isinstance(loss, _losses._ClassLoss):
            if c < 2:
                raise ValueError(f"loss {kind} needs at least 2 output classes, but the model has {c} output; "
                                 "use 'bce_with_logits' for a single binary output")
            if loss.weight is not None and loss.weight.shape != (c,):
                raise ValueError(f"the loss's weight must have shape ({c},), one entry per output class, "
                                 f"got shape {loss.weight.shape}")
            if isinstance(loss, _losses._KerasCE) and last_act != "softmax":
                name = ("sparse_" if isinstance(loss, _losses.KerasSparseCrossEntropyLoss) else "") + \
                    "categorical_crossentropy"
                raise ValueError(f"loss {name!r} takes probabilities (Keras's from_logits=False), but the model does "
                                 f"not end in a softmax (its output activation is {last_act!r}); add "
                                 f"activation='softmax' to the last layer, or pass "
                                 f"fastnn.losses.{_keras_class(name)}(from_logits=True)")
            if kind == "CrossEntropyLoss" and last_act == "softmax":
                warnings.warn("the model ends with a Softmax, but CrossEntropyLoss takes logits (it applies "
                              "log_softmax itself); remove the final Softmax", UserWarning, stacklevel=3)
        else:
            for attr in ("weight", "pos_weight"):
                w = getattr(loss, attr, None)
                if w is not None:
                    V.check_broadcastable(w, f"the loss's {attr}", (1, c), "one output row")
            if kind == "KerasBCELoss" and last_act not in ("sigmoid", "softmax"):
                raise ValueError("loss 'binary_crossentropy' takes probabilities (Keras's from_logits=False), but the "
                                 f"model does not end in a sigmoid (its output activation is {last_act!r}); add "
                                 "activation='sigmoid' to the last layer, or pass "
                                 "fastnn.losses.BinaryCrossentropy(from_logits=True)")
            if kind == "BCELoss" and last_act not in ("sigmoid", "softmax"):
                raise ValueError("loss 'bce' (BCELoss) takes probabilities, but the model does not end with a "
                                 "sigmoid; add activation='sigmoid' to the last layer or use loss='bce_with_logits'")
        return loss

    def _resolve_metrics(self, metrics, loss):
        if metrics is None:
            return []
        if isinstance(metrics, str):
            metrics = [metrics]
        if not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics must be a list of metric names, got {type(metrics).__name__}")
        names = []
        for m in metrics:
            canonical = _metrics.canonical_name(m)
            if m in [n for n, _ in names]:
                raise ValueError(f"metrics must not repeat a name, got {m!r} twice")
            if canonical in ("mae", "mse") and isinstance(loss, _losses.NLLLoss):
                raise ValueError(f"metric {m!r} compares outputs with targets of the same shape, but NLLLoss "
                                 "takes class indices")
            names.append((m, canonical))
        return names

    def _check_compiled(self, method: str) -> None:
        if self.loss is None or (self.optimizer is None and self._pending_optimizer is None):
            raise ValueError(f"the model must be compiled before {method}(): call "
                             "model.compile(optimizer=..., loss=..., metrics=...) first")

    # ------------------------------------------------------------------------------ data
    def _prepare_x(self, X, name: str, stream: bool = False):
        """X checked and converted to the model's dtype; stream: a memory-mapped X becomes a
        fastnn._datasource.MappedRows instead (read a chunk at a time; its finite check is the caller's)."""
        mapped = stream and D.is_mapped(X)
        x = V.real_array(X, name, ndim=2) if mapped else V.as_float_array(X, name, self.dtype, ndim=2)
        if x.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one sample (row), got shape {x.shape}")
        self._build_for(x.shape[1])   # an unbuilt model (Dense(units)) takes its input width from the data
        if x.shape[1] != self.in_features:
            raise ValueError(f"{name} must have {self.in_features} features (columns) to match the model's input, "
                             f"got shape {x.shape}")
        if mapped:
            return D.MappedRows(x, self.dtype, name)
        _check_finite(x, name)
        return x

    def _prepare_y(self, y, n: int, name: str, xname: str) -> np.ndarray:
        loss, c = self.loss, self.out_features
        y = D.in_memory(y)   # targets are small: a memory-mapped y is read once
        try:
            arr = y if isinstance(y, np.ndarray) else np.asarray(y)
        except Exception as exc:  # noqa: BLE001 - ragged lists and the like
            raise TypeError(f"{name} must be an array of targets, got {type(y).__name__} ({exc})") from None
        if arr.ndim == 0:
            raise ValueError(f"{name} must hold one target per sample, got a scalar")
        if len(arr) != n:
            raise ValueError(f"{xname} and {name} must have the same number of samples: {xname} has {n} rows, "
                             f"{name} has {len(arr)}")
        if isinstance(loss, _losses._ClassLoss):
            probs = loss._probability_targets
            if isinstance(loss, _losses.KerasCrossEntropyLoss):   # categorical_crossentropy: one-hot rows only
                if arr.ndim != 2 or arr.shape[1] != c or arr.dtype.kind not in "biuf":
                    raise ValueError(f"{name} must be one-hot (or probability) rows of shape ({n}, {c}) for "
                                     f"categorical_crossentropy, got shape {arr.shape}"
                                     + ("; for class indices use 'sparse_categorical_crossentropy'"
                                        if arr.ndim == 1 else ""))
                arr = arr.astype(self.dtype) if arr.dtype.kind != "f" else arr
            if isinstance(loss, _losses.KerasSparseCrossEntropyLoss) and arr.ndim == 2 and arr.shape[1] == c > 1:
                raise ValueError(f"{name} must be class indices of shape ({n},) for sparse_categorical_crossentropy, "
                                 f"got rows of shape {arr.shape}; for one-hot rows use 'categorical_crossentropy'")
            if probs and arr.dtype.kind == "f" and arr.ndim == 2 and arr.shape[1] == c:
                t = V.as_float_array(arr, name, self.dtype)   # probability rows
                _check_finite(t, name)
            else:
                if arr.ndim == 2 and arr.shape[1] == 1:
                    arr = arr[:, 0]   # (n, 1) class indices, as Keras accepts
                if arr.ndim != 1:
                    raise ValueError(f"{name} must be class indices of shape ({n},)"
                                     + (f" or probability rows ({n}, {c})" if probs else "")
                                     + f" for {type(loss).__name__}, got shape {arr.shape}")
                t = V.as_labels(arr, name, n, c, loss.ignore_index)
            for log_name, canonical in self._metric_names:
                if canonical in ("mae", "mse") and t.ndim == 1:
                    raise ValueError(f"metric {log_name!r} compares outputs with targets of the output's shape "
                                     f"({n}, {c}), but {name} holds class indices")
            return t
        t = V.as_float_array(arr, name, self.dtype, ndim=(1, 2))
        if t.ndim == 1 and c == 1:
            t = t.reshape(n, 1)
        if t.ndim != 2 or t.shape[1] != c:
            raise ValueError(f"{name} must have shape ({n}, {c}) to match the model's {c} outputs"
                             + (f" (or ({n},) for one output)" if c == 1 else "") + f", got shape {arr.shape}")
        _check_finite(t, name)
        if isinstance(loss, (_losses.BCELoss, _losses.BCEWithLogitsLoss)):
            V.check_in_range(t, name, 0.0, 1.0, f" ({type(loss).__name__} targets are 0/1 labels or probabilities)")
        return t

    def _prepare_data(self, X, y, xname: str, yname: str, stream: bool = False):
        x = self._prepare_x(X, xname, stream)
        return x, self._prepare_y(y, len(x), yname, xname)

    # ------------------------------------------------------------------------------ steps
    def train_step(self, xb, yb, distributed=False) -> float:
        """One optimizer step on the batch (xb, yb) in training mode; returns the batch loss.

        Validates and converts the batch, then runs the same step fit uses. Gradients are
        overwritten, not accumulated. The previous train/eval mode is restored afterwards.

        distributed (under mpiexec, every rank calls it): True - every rank passes the same global batch and
        steps on its share of the rows; "sharded" - each rank passes its own rows, the global batch is their
        concatenation in rank order. Either way the step (gradients reduced across the ranks, the same
        update everywhere) equals one process's step on the global batch, and the global loss is returned.
        The first distributed step of a model broadcasts rank 0's weights and optimizer state.
        """
        self._check_compiled("train_step")
        mode = _check_distributed(distributed)
        ctx = None if mode is None else _dist.context(mode == "sharded")
        error = None
        try:
            x, t = self._prepare_data(xb, yb, "xb", "yb")
        except (TypeError, ValueError) as exc:
            if ctx is None:
                raise
            error = exc
        if ctx is not None:
            ctx.agree(error)
        engine = self._engine()
        if ctx is not None and engine.synced is not ctx:
            ctx.broadcast_model(self)
            engine.synced = ctx
        engine.distributed = ctx
        guard = self._arena.guard
        guard.enter_train("train_step()")
        _runtime.sync_omp_threads(_config.omp_threads())
        was = self.training
        self.training = True
        try:
            with deferred():   # Ctrl-C lands before or after the whole step, never inside it
                if ctx is None:
                    return self._train_step(x, t)
                return self._dist_train_step(ctx, x, t)
        finally:
            self.training = was
            guard.exit_train()

    def _dist_train_step(self, ctx, x, t) -> float:
        if ctx.sharded:
            sizes = ctx.comm.allgather(len(x))
            offset = sum(sizes[:ctx.rank])
        else:
            lo, hi = ctx.share(len(x))
            x, t, offset = x[lo:hi], t[lo:hi], lo
        engine = self._engine()
        with ctx.abort_on_error():
            if len(x) == 0:
                return engine.idle_step(self.loss, self.optimizer)
            loss = engine.train_step(np.ascontiguousarray(x), np.ascontiguousarray(t), self.loss, self.optimizer,
                                     offset)
        self._train_out = engine.last_output
        return loss

    def _train_step(self, x, t) -> float:
        """Forward, fused loss + gradient, backward, optimizer step on a prepared batch; returns the loss.

        x: (n, in_features) in the model's dtype, t: targets as _prepare_y makes them. Leaves the
        training-mode output of the batch (computed before the update) in ``self._train_out``.
        """
        engine = self._engine()
        loss = engine.train_step(x, t, self.loss, self.optimizer)
        self._train_out = engine.last_output
        return loss

    def _predict_batch(self, x, out=None) -> np.ndarray:
        """The eval-mode output of one prepared batch, written to `out` (or a new array)."""
        return self._engine().forward(x, out)

    def _engine(self):
        """The model's compiled fast paths (fastnn.engine.Engine), made on first use."""
        engine = self.__dict__.get("_compiled_engine")
        if engine is None:
            engine = self._compiled_engine = Engine(self)
        return engine

    # ------------------------------------------------------------------------------ evaluate / predict
    def predict(self, X, batch_size=None, verbose=0) -> np.ndarray:
        """The model's outputs for X (n, in_features), computed in eval mode; returns (n, out_features).

        batch_size: rows per forward pass (None: up to 1024). The previous train/eval mode is
        restored afterwards. verbose is accepted for Keras compatibility (no progress display).
        """
        if type(verbose) is not int or verbose not in (0, 1, 2):   # (the common 0/1/2 without the full check)
            _check_verbose(verbose)
        self._check_layers("predict")
        bs = _PREDICT_BATCH if batch_size is None else V.check_int(batch_size, "batch_size", low=1)
        if (type(X) is np.ndarray and X.dtype == self.dtype and X.ndim == 2 and 0 < X.shape[0] <= bs
                and self._exec is not None and X.shape[1] == self.in_features):
            # one batch already in the model's dtype (batch-1 latency matters): nothing to convert or to size
            # up; the engine reads X in place (or validates and copies a layout its plan does not take)
            _check_finite(X, "X")
            return self._predict_batch(X)
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) == 2:   # X's copy (none if mapped) and the predictions, before copying X
            V.check_nbytes("X", (shape[0], (0 if D.is_mapped(X) else shape[1]) + self.out_features), self.dtype,
                           what="X in the model's dtype and the predictions")
        x = self._prepare_x(X, "X", stream=True)
        n = len(x)
        if n <= bs and isinstance(x, np.ndarray):   # one forward call (batch-1 latency matters)
            return self._predict_batch(x)
        out = np.empty((n, self.out_features), self.dtype)
        for s, xb in D.row_batches(x, bs):   # a mapped X: read (and checked finite) a chunk at a time
            self._predict_batch(xb, out[s:s + len(xb)])
        return out

    def evaluate(self, X, y, batch_size=None, verbose=0, return_dict=False):
        """The loss and metrics over (X, y) in eval mode (sample-weighted means over batches), as Keras
        returns them: the loss (a float) without metrics, the list [loss, metric, ...] (in
        ``metrics_names`` order) with them, or the dict {'loss': ..., metric: ...} with return_dict=True.

        batch_size: rows per forward pass (None: up to 1024). verbose: accepted, no display.
        """
        self._check_compiled("evaluate")
        _check_verbose(verbose)
        return_dict = V.check_bool(return_dict, "return_dict")
        bs = _PREDICT_BATCH if batch_size is None else V.check_int(batch_size, "batch_size", low=1)
        x, t = self._prepare_data(X, y, "X", "y", stream=True)
        logs = self._evaluate_prepared(x, t, bs, [_metrics.get(n, self.loss, t) for n, _ in self._metric_names])
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_prepared(self, x, t, batch_size, metrics) -> dict:
        """Loss and metrics over prepared (x, t) in eval mode; thread-safe (buffers of its own, no mode change)."""
        n = len(x)
        total = 0.0
        for m in metrics:
            m.reset_state()
        rows = min(batch_size, n)
        out_buf = np.empty((rows, self.out_features), self.dtype)
        grad_buf = np.empty_like(out_buf)
        for s, xb in D.row_batches(x, batch_size):   # a mapped x: read a chunk at a time
            tb = t[s:s + len(xb)]
            out = self._predict_batch(xb, out_buf[:len(xb)])
            total += self.loss._forward_backward(out, tb, grad_buf[:len(xb)]) * len(xb)
            for m in metrics:
                m._add(out, tb)
        logs = {"loss": total / n}
        for m in metrics:
            logs[m.name] = m.result()
        return logs

    # ------------------------------------------------------------------------------ fit
    def fit(self, X, y, epochs=1, batch_size=32, validation_split=0.0, validation_data=None, shuffle=True,
            callbacks=None, verbose=1, initial_epoch=0, distributed=False):
        """Train for epochs initial_epoch .. epochs-1 (Keras semantics); returns the History (also model.history).

        epochs is the index of the final epoch, as in Keras: initial_epoch >= epochs trains nothing and
        returns an empty History.

        validation_split: fraction of samples, the *last* ones before shuffling, held out for
        validation (ignored when validation_data=(X_val, y_val) is given). callbacks: Callback
        objects and/or fastnn lr schedulers. verbose: 0 silent, 1 progress bar, 2 one line per
        epoch. Every argument is checked before anything trains (a memory-mapped X is scanned for
        NaN/inf a chunk at a time, then read a chunk of batches at a time). A NaN/inf loss restores the
        weights from before the failing step and raises FloatingPointError (or stops cleanly
        with TerminateOnNaN).

        distributed (run the script under ``mpiexec -n N``; every rank calls fit with the same arguments):
        False (default); True - data-parallel training, every rank passes the whole X, y (and validation
        data), batch_size is the global batch, each rank steps on its share of the rows of every global
        batch; "sharded" - each rank passes only its own shard of X, y (and of the validation data). Every
        rank starts from rank 0's weights; the result equals one process's fit on the same global batches
        (docs/distributed.md says exactly which); only rank 0 prints and saves checkpoints.
        """
        mode = _check_distributed(distributed)
        args = (X, y, epochs, batch_size, validation_split, validation_data, shuffle, callbacks, verbose, initial_epoch)
        if mode is None:
            return self._fit(*args, None, None)
        ctx, agreed = _dist.context(mode == "sharded"), []
        try:
            return self._fit(*args, ctx, agreed)
        except (TypeError, ValueError) as exc:
            if not agreed:   # a check failed on this rank: join the others' error collective, then all raise
                ctx.agree(exc)
            raise

    def _fit(self, X, y, epochs, batch_size, validation_split, validation_data, shuffle, callbacks, verbose,
             initial_epoch, ctx, agreed):
        """fit; ctx: the distributed Context or None; agreed: a list, appended to once the ranks agreed."""
        self._check_compiled("fit")
        epochs = V.check_int(epochs, "epochs", low=0)
        initial_epoch = V.check_int(initial_epoch, "initial_epoch", low=0)
        batch_size = 32 if batch_size is None else V.check_int(batch_size, "batch_size", low=1)
        split = V.check_float(validation_split, "validation_split", 0.0, 1.0, high_open=True)
        shuffle = V.check_bool(shuffle, "shuffle")
        verbose = _check_verbose(verbose)
        x, t = self._prepare_data(X, y, "X", "y", stream=ctx is None)   # distributed: X in memory
        xv = tv = None
        if validation_data is not None:
            rule = "validation_data must be a tuple (X_val, y_val) (sample weights are not supported), got"
            if not isinstance(validation_data, (tuple, list)):
                raise TypeError(f"{rule} {type(validation_data).__name__}")
            if len(validation_data) != 2:
                raise ValueError(f"{rule} {len(validation_data)} items")
            xv, tv = self._prepare_data(*validation_data, "validation_data[0]", "validation_data[1]",
                                        stream=ctx is None)
        elif split > 0:
            n = len(x)
            split_at = int(math.floor(n * (1.0 - split)))
            if split_at == 0 or split_at == n:
                raise ValueError(f"validation_split={split!r} leaves {split_at} training and {n - split_at} "
                                 f"validation samples of {n}; both parts must be non-empty")
            x, xv, t, tv = x[:split_at], x[split_at:], t[:split_at], t[split_at:]
        for part in (x, xv):   # memory-mapped inputs: every row checked finite before anything trains
            if isinstance(part, D.MappedRows):
                part.scan()
        if ctx is not None:
            verbose = verbose if ctx.rank == 0 else 0   # one progress bar: rank 0's
        # callbacks are checked before the ranks agree (_dist_start), so that a bad list on one rank raises on all
        cbs, history, bars = self._callback_list(callbacks, verbose)
        if ctx is None:
            batches = Batches(x, t, batch_size, shuffle)
        else:
            batches = self._dist_start(ctx, agreed, x, t, batch_size, shuffle)
        self._engine().distributed = ctx
        cbs.set_model(self)
        cbs.set_params({"verbose": verbose, "epochs": epochs, "steps": batches.steps})
        self.history = history
        self.stop_training = False
        guard = self._arena.guard
        guard.enter_train("fit()")
        _runtime.sync_omp_threads(_config.omp_threads())
        was = self.training
        try:
            with deferred() as interrupt:   # Ctrl-C is honoured between batches (see fastnn._interrupt)
                if ctx is None:
                    run_epochs(self, batches, xv, tv, batch_size, cbs, initial_epoch, epochs, interrupt)
                else:
                    with ctx.abort_on_error():
                        run_epochs(self, batches, xv, tv, batch_size, cbs, initial_epoch, epochs, interrupt)
        except BaseException:
            for bar in bars:
                bar.close()
            raise
        finally:
            self.training = was
            guard.exit_train()
            self.__dict__.pop("_dist_rank", None)
        return history

    def _dist_start(self, ctx, agreed, x, t, batch_size, shuffle):
        """A distributed fit's start, after every rank checked its arguments: agree, check the row counts, take
        rank 0's model state; returns the epoch's batches."""
        ctx.agree(None)
        agreed.append(True)
        if not ctx.sharded:   # the same on every rank, so every rank raises
            sizes = ctx.comm.allgather(len(x))
            if len(set(sizes)) > 1:
                raise ValueError(f"X must have the same rows on every rank with distributed=True (each rank takes "
                                 f"its share of every global batch), got {sizes}; pass distributed='sharded' for "
                                 "per-rank shards")
        ctx.broadcast_model(self)
        self._engine().synced = ctx
        self._dist_rank = ctx.rank   # callbacks: only rank 0 prints and writes files
        return (ShardBatches if ctx.sharded else DistBatches)(x, t, batch_size, shuffle, ctx)

    def _callback_list(self, callbacks, verbose):
        items = [] if callbacks is None else callbacks
        if isinstance(items, (_cb.Callback,)) or _cb.is_scheduler(items) or not isinstance(items, (list, tuple)):
            raise TypeError(f"callbacks must be a list of fastnn.callbacks.Callback objects (or lr schedulers), "
                            f"got {type(items).__name__}")
        out = []
        for i, cb in enumerate(items):
            if isinstance(cb, _cb.Callback):
                out.append(cb)
            elif _cb.is_scheduler(cb):
                out.append(_cb.LRSchedulerCallback(cb))
            else:
                raise TypeError(f"callbacks[{i}] must be a fastnn.callbacks.Callback or a fastnn lr scheduler, "
                                f"got {type(cb).__name__}")
        history = next((cb for cb in out if isinstance(cb, _cb.History)), None)
        if history is None:
            history = _cb.History()
            out.append(history)
        bars = [cb for cb in out if isinstance(cb, _cb.ProgressBar)]
        if verbose and not bars:
            bars.append(_cb.ProgressBar(verbose))
            out.append(bars[-1])
        return _cb.CallbackList(out), history, bars


def _check_distributed(distributed):
    """None (single process), "replicated" (True) or "sharded"."""
    if distributed is False or distributed is None:
        return None
    if distributed is True:
        return "replicated"
    if isinstance(distributed, str) and distributed == "sharded":
        return "sharded"
    raise ValueError(f"distributed must be False, True (every rank passes all rows) or 'sharded' (each rank "
                     f"passes its own rows), got {distributed!r}")


def _from_registry(spec, what: str, registry: dict, base: type, kind: str, example: str, make):
    """An instance of `base` from spec: a name of `registry` (built by make(cls)) or an instance itself."""
    names = ", ".join(map(repr, registry))
    if isinstance(spec, str):
        cls = registry.get(spec.lower())
        if cls is None:
            raise ValueError(f"{what} must be one of {names} or {kind}; got {spec!r}")
        return make(cls)
    if isinstance(spec, type) and issubclass(spec, base):
        raise TypeError(f"{what} must be an instance, e.g. {spec.__name__}({example}), or a name; got the class "
                        "itself")
    if not isinstance(spec, base):
        raise TypeError(f"{what} must be a name ({names}) or {kind}, got {type(spec).__name__}")
    return spec


def _keras_class(name: str) -> str:
    """'sparse_categorical_crossentropy' -> 'SparseCategoricalCrossentropy'."""
    return "".join(part.capitalize() for part in name.split("_"))


def _check_finite(a: np.ndarray, name: str) -> None:
    if not finite(a):
        row = int(np.argwhere(~np.isfinite(a))[0][0])
        raise ValueError(f"{name} must be finite, got NaN or inf (first in row {row})")
