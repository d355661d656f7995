"""Keras-style training for Sequential: compile, fit, evaluate, predict and train_step.

Semantics follow Keras 3 (NUMERICS.md section 6): the validation split is the last samples, taken
before shuffling; the epoch's 'loss' and metrics are sample-weighted running means over its batches
(the last, partial batch is kept); validation runs after the epoch, in eval mode, with the epoch's
final weights, and is logged as 'val_*'. ``epochs`` is the index of the final epoch, so
``fit(..., epochs=5, initial_epoch=model.epoch)`` continues a run.

Determinism. Epoch e's order is ``np.random.default_rng([model.seed, e]).permutation(n)`` and
dropout masks are drawn from (model.seed, layer, model._step), so the same seed gives bit-identical
History and weights, and resuming at ``initial_epoch=model.epoch`` (same model and optimizer)
reproduces the uninterrupted run.

Data path. X and y are validated and converted to the model's dtype once per call. The epoch's full
batches run on the compiled epoch loop (``Engine.train_batches``): chunks of consecutive batches,
each chunk ONE nogil call that gathers every batch's rows, runs its whole step and the optimizer's
update (whose kernel counts the steps); the chunk's losses and training-mode outputs then update the
loss and metrics with NumPy (the same per-batch sums in the same order, so History is the same
bits). A chunk returns after about 0.1 s of wall time (the C loop looks at the clock after each
batch); between chunks the progress bar is updated and a pending Ctrl-C is delivered. The last,
partial batch goes through ``_train_step(x, t) -> loss`` (forward, the fused loss + gradient,
backward with gradients overwritten, optimizer step; the batch gathered by ``np.take(..., out=)``
into buffers allocated once, unshuffled batches are views), which leaves the batch's training-mode
output in ``self._train_out`` for the metrics. So does every batch when a callback other than the
progress bar overrides a batch hook, ``_train_step`` is replaced on the model, or the engine cannot
run the step whole (a loss without a plan kernel, an optimizer without a kernel kind).
Both paths give the same weights, optimizer state, dropout counter and History bit for bit.
evaluate/predict run ``_predict_batch(x)`` per batch in eval mode.

Interrupts and threads. fit holds the model for training (another thread that trains it or runs
inference on it gets a RuntimeError) and defers Ctrl-C to the next batch or chunk boundary
(fastnn._interrupt), so an interrupted fit leaves weights, optimizer state and counters exactly as
after its last completed batch and re-raises KeyboardInterrupt within about a chunk's time.
predict and evaluate change nothing on the model: any number of threads may call them at once.

Divergence. A NaN/inf batch loss (or NaN/inf weights after an epoch) stops training with the
weights and optimizer state from before the step that went bad. fit keeps one snapshot per epoch
(weights, optimizer state, dropout counter) and, only when something goes wrong, replays the
epoch's earlier batches from it, which is exact because training is deterministic; a replayed
step that makes a weight NaN/inf is undone as well. Without a callback that stops training on
the NaN batch (TerminateOnNaN), fit then raises FloatingPointError; with one it ends cleanly.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _config
from . import _validation as V
from . import callbacks as _cb
from . import losses as _losses
from . import metrics as _metrics
from ._interrupt import deferred
from ._kernels import _runtime
from ._kernels._checks import all_finite
from .layers import Dense

__all__ = ["TrainingMixin"]

_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
               "adadelta": "Adadelta"}
_LOSSES = {"mse": "MSELoss", "bce": "BCELoss", "bce_with_logits": "BCEWithLogitsLoss",
           "cross_entropy": "CrossEntropyLoss", "nll": "NLLLoss"}
_PREDICT_BATCH = 1024   # rows per forward call in predict/evaluate when batch_size is None
_CHUNK_OUTPUTS = 1 << 20   # output elements a compiled chunk keeps for the metrics (bounds its batches)
_CHUNK_SECONDS = 0.1       # target length of one compiled chunk of batches (Ctrl-C and bar latency)


def _finite(a: np.ndarray) -> bool:
    """No NaN or inf in a (one compiled pass for contiguous float arrays, else two reductions)."""
    if a.dtype in V.FLOAT_DTYPES and a.flags.c_contiguous:
        return all_finite(a.reshape(-1))
    return bool(math.isfinite(a.min()) and math.isfinite(a.max()))


def _check_verbose(verbose) -> int:
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, numbers.Integral) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0 (silent), 1 (progress bar), 2 (one line per epoch) or 'auto'; "
                         f"got {verbose!r}")
    return int(verbose)


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


class _Batches:
    """The epoch's batches: views when unshuffled, else gathered into buffers allocated once."""

    def __init__(self, x, t, batch_size, shuffle):
        self.x, self.t, self.n = x, t, len(x)
        self.size = min(batch_size, self.n)
        self.steps = -(-self.n // self.size)
        self.order = None
        self.shuffled = shuffle
        if shuffle:
            self._xbuf = np.empty((self.size,) + x.shape[1:], x.dtype)
            self._tbuf = np.empty((self.size,) + t.shape[1:], t.dtype)

    def shuffle(self, seed: int, epoch: int) -> None:
        self.order = np.random.default_rng([seed, epoch]).permutation(self.n)

    def __call__(self, b: int):
        s = b * self.size
        e = min(s + self.size, self.n)
        if self.order is None:
            return self.x[s:e], self.t[s:e]
        idx = self.order[s:e]
        xb, tb = self._xbuf[:e - s], self._tbuf[:e - s]
        np.take(self.x, idx, axis=0, out=xb, mode="clip")   # mode != 'raise': no hidden buffering
        np.take(self.t, idx, axis=0, out=tb, mode="clip")
        return xb, tb


class _Chunks:
    """fit's compiled epoch loop: batches per call and the buffers a call fills (allocated once per fit).

    A chunk is one nogil call of up to ``limit`` batches (capped by the memory its outputs take for the
    metrics) that returns after about _CHUNK_SECONDS of wall time, however loaded the machine: fit
    delivers Ctrl-C and updates the progress bar between chunks.
    """

    def __init__(self, model, batches, metrics: bool):
        self.full = batches.n // batches.size   # full batches per epoch
        k = self.full
        if metrics:
            k = min(k, max(1, _CHUNK_OUTPUTS // (batches.size * model.out_features)))
        self.limit = k = max(1, min(k, self.full))
        rows = k * batches.size
        self.losses = np.empty(k)
        self.outputs = np.empty((rows, model.out_features), model.dtype) if metrics else None
        t = batches.t
        self.targets = np.empty((rows,) + t.shape[1:], t.dtype) if metrics and batches.shuffled else None


class TrainingMixin:
    """compile / fit / evaluate / predict / train_step for Sequential (Keras semantics, NUMERICS 6)."""

    optimizer = None            #: the compiled optimizer (fastnn.optim.Optimizer)
    loss = None                 #: the compiled loss object (fastnn.losses)
    compiled_metrics = None     #: canonical names of the compiled metrics ("accuracy", "mae", ...)
    history = None              #: the History of the last fit
    stop_training = False       #: set True (by a callback) to stop fit after the current batch/epoch
    epoch = 0                   #: number of epochs completed by fit (resume with initial_epoch=model.epoch)
    _metric_names = ()          # (log name, canonical name) per compiled metric
    _train_out = None           # training-mode output of the last _train_step's batch

    # ------------------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", loss=None, metrics=None):
        """Configure training: optimizer, loss and metrics (strings or objects).

        optimizer: "sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta" (fastnn.optim with torch's
        defaults) or an optimizer over this model's parameters. loss: "mse", "bce" (probabilities:
        the model must end in a sigmoid), "bce_with_logits", "cross_entropy" (logits), "nll" or a
        fastnn.losses object (reduction 'mean' or 'sum'). metrics: names among "accuracy" ("acc"),
        "binary_accuracy", "mae", "mse" (logged under the name given). Sets ``optimizer``, ``loss``
        and ``compiled_metrics``.
        """
        loss_obj = self._resolve_loss(loss)
        names = self._resolve_metrics(metrics, loss_obj)
        opt = self._resolve_optimizer(optimizer)
        self.optimizer, self.loss = opt, loss_obj
        self._metric_names = tuple(names)
        self.compiled_metrics = [canonical for _, canonical in names]

    @property
    def metrics_names(self) -> list[str]:
        """The keys of evaluate's dict: 'loss' then the compiled metrics, as logged."""
        return ["loss"] + [name for name, _ in self._metric_names]

    def _resolve_optimizer(self, optimizer):
        from . import optim

        if isinstance(optimizer, str):
            name = _OPTIMIZERS.get(optimizer.lower())
            if name is None:
                raise ValueError(f"optimizer must be one of {', '.join(map(repr, _OPTIMIZERS))} or a fastnn.optim "
                                 f"optimizer; got {optimizer!r}")
            cls = getattr(optim, name, None)
            if cls is None:
                raise ValueError(f"optimizer {optimizer!r} is not available: fastnn.optim has no {name}")
            return cls(self.parameters())
        if isinstance(optimizer, type) and issubclass(optimizer, optim.Optimizer):
            raise TypeError(f"optimizer must be an instance, e.g. {optimizer.__name__}(model.parameters(), lr=...), "
                            "or a name; got the class itself")
        if not isinstance(optimizer, optim.Optimizer):
            raise TypeError(f"optimizer must be a name ({', '.join(map(repr, _OPTIMIZERS))}) or a fastnn.optim "
                            f"optimizer, got {type(optimizer).__name__}")
        own = {id(p) for p in self.parameters()}
        foreign = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in own]
        if foreign:
            raise ValueError(f"optimizer must optimize this model's parameters, but it holds {len(foreign)} other "
                             f"parameter(s) (first: {foreign[0].name!r}); create it with model.parameters()")
        return optimizer

    def _resolve_loss(self, loss):
        if loss is None:
            raise ValueError(f"compile() needs a loss: one of {', '.join(map(repr, _LOSSES))} or a fastnn.losses "
                             "object")
        if isinstance(loss, str):
            name = _LOSSES.get(loss.lower())
            if name is None:
                raise ValueError(f"loss must be one of {', '.join(map(repr, _LOSSES))} or a fastnn.losses object; "
                                 f"got {loss!r}")
            loss = getattr(_losses, name)()
        elif isinstance(loss, type) and issubclass(loss, _losses._Loss):
            raise TypeError(f"loss must be an instance, e.g. {loss.__name__}(), or a name; got the class itself")
        elif not isinstance(loss, _losses._Loss):
            raise TypeError(f"loss must be a name ({', '.join(map(repr, _LOSSES))}) or a fastnn.losses object, "
                            f"got {type(loss).__name__}")
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
            if kind == "CrossEntropyLoss" and last_act == "softmax":
                import warnings

                warnings.warn("the model ends with a Softmax, but CrossEntropyLoss takes logits (it applies "
                              "log_softmax itself); remove the final Softmax", UserWarning, stacklevel=3)
        else:
            for attr in ("weight", "pos_weight"):
                w = getattr(loss, attr, None)
                if w is not None:
                    V.check_broadcastable(w, f"the loss's {attr}", (1, c), "one output row")
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
        if self.loss is None or self.optimizer is None:
            raise ValueError(f"the model must be compiled before {method}(): call "
                             "model.compile(optimizer=..., loss=..., metrics=...) first")

    # ------------------------------------------------------------------------------ data
    def _prepare_x(self, X, name: str) -> np.ndarray:
        x = V.as_float_array(X, name, self.dtype, ndim=2)
        if x.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one sample (row), got shape {x.shape}")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{name} must have {self.in_features} features (columns) to match the model's input, "
                             f"got shape {x.shape}")
        _check_finite(x, name)
        return x

    def _prepare_y(self, y, n: int, name: str, xname: str) -> np.ndarray:
        loss, c = self.loss, self.out_features
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

    def _prepare_data(self, X, y, xname: str, yname: str):
        x = self._prepare_x(X, xname)
        return x, self._prepare_y(y, len(x), yname, xname)

    # ------------------------------------------------------------------------------ steps
    def train_step(self, xb, yb) -> float:
        """One optimizer step on the batch (xb, yb) in training mode; returns the batch loss.

        Validates and converts the batch, then runs the same step fit uses. Gradients are
        overwritten, not accumulated. The previous train/eval mode is restored afterwards.
        """
        self._check_compiled("train_step")
        x, t = self._prepare_data(xb, yb, "xb", "yb")
        guard = self._arena.guard
        guard.enter_train("train_step()")
        _runtime.sync_omp_threads(_config.omp_threads())
        was = self.training
        self.training = True
        try:
            with deferred():   # Ctrl-C lands before or after the whole step, never inside it
                return self._train_step(x, t)
        finally:
            self.training = was
            guard.exit_train()

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
            from .engine import Engine

            engine = self._compiled_engine = Engine(self)
        return engine

    # ------------------------------------------------------------------------------ evaluate / predict
    def predict(self, X, batch_size=None, verbose=0) -> np.ndarray:
        """The model's outputs for X (n, in_features), computed in eval mode; returns (n, out_features).

        batch_size: rows per forward pass (None: up to 1024). The previous train/eval mode is
        restored afterwards. verbose is accepted for Keras compatibility (no progress display).
        """
        _check_verbose(verbose)
        bs = _PREDICT_BATCH if batch_size is None else V.check_int(batch_size, "batch_size", low=1)
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) == 2:   # X's copy and the predictions, before copying X
            V.check_nbytes("X", (shape[0], shape[1] + self.out_features), self.dtype,
                           what="X in the model's dtype and the predictions")
        x = self._prepare_x(X, "X")
        n = len(x)
        if n <= bs:   # one forward call (batch-1 latency matters)
            return self._predict_batch(x)
        out = np.empty((n, self.out_features), self.dtype)
        for s in range(0, n, bs):
            self._predict_batch(x[s:s + bs], out[s:s + bs])
        return out

    def evaluate(self, X, y, batch_size=None, verbose=0) -> dict:
        """{'loss': ..., metric: ...} over (X, y) in eval mode (sample-weighted means over batches).

        batch_size: rows per forward pass (None: up to 1024). verbose: accepted, no display.
        """
        self._check_compiled("evaluate")
        _check_verbose(verbose)
        bs = _PREDICT_BATCH if batch_size is None else V.check_int(batch_size, "batch_size", low=1)
        x, t = self._prepare_data(X, y, "X", "y")
        return self._evaluate_prepared(x, t, bs, [_metrics.get(n, self.loss, t) for n, _ in self._metric_names])

    def _evaluate_prepared(self, x, t, batch_size, metrics) -> dict:
        """Loss and metrics over prepared (x, t) in eval mode; thread-safe (buffers of its own, no mode change)."""
        n = len(x)
        total = 0.0
        for m in metrics:
            m.reset_state()
        rows = min(batch_size, n)
        out_buf = np.empty((rows, self.out_features), self.dtype)
        grad_buf = np.empty_like(out_buf)
        for s in range(0, n, batch_size):
            xb, tb = x[s:s + batch_size], t[s:s + batch_size]
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
            callbacks=None, verbose=1, initial_epoch=0):
        """Train for epochs initial_epoch .. epochs-1 (Keras semantics); returns the History (also model.history).

        validation_split: fraction of samples, the *last* ones before shuffling, held out for
        validation (ignored when validation_data=(X_val, y_val) is given). callbacks: Callback
        objects and/or fastnn lr schedulers. verbose: 0 silent, 1 progress bar, 2 one line per
        epoch. Every argument is checked before anything trains. A NaN/inf loss restores the
        weights from before the failing step and raises FloatingPointError (or stops cleanly
        with TerminateOnNaN).
        """
        self._check_compiled("fit")
        epochs = V.check_int(epochs, "epochs", low=0)
        initial_epoch = V.check_int(initial_epoch, "initial_epoch", low=0)
        if initial_epoch > epochs:
            raise ValueError(f"initial_epoch must be <= epochs (epochs is the index of the final epoch, as in "
                             f"Keras), got initial_epoch={initial_epoch} and epochs={epochs}")
        batch_size = 32 if batch_size is None else V.check_int(batch_size, "batch_size", low=1)
        split = V.check_float(validation_split, "validation_split", 0.0, 1.0, high_open=True)
        shuffle = V.check_bool(shuffle, "shuffle")
        verbose = _check_verbose(verbose)
        x, t = self._prepare_data(X, y, "X", "y")
        xv = tv = None
        if validation_data is not None:
            rule = "validation_data must be a tuple (X_val, y_val) (sample weights are not supported), got"
            if not isinstance(validation_data, (tuple, list)):
                raise TypeError(f"{rule} {type(validation_data).__name__}")
            if len(validation_data) != 2:
                raise ValueError(f"{rule} {len(validation_data)} items")
            xv, tv = self._prepare_data(*validation_data, "validation_data[0]", "validation_data[1]")
        elif split > 0:
            n = len(x)
            split_at = int(math.floor(n * (1.0 - split)))
            if split_at == 0 or split_at == n:
                raise ValueError(f"validation_split={split!r} leaves {split_at} training and {n - split_at} "
                                 f"validation samples of {n}; both parts must be non-empty")
            x, xv, t, tv = x[:split_at], x[split_at:], t[:split_at], t[split_at:]
        batches = _Batches(x, t, batch_size, shuffle)
        cbs, history, bars = self._callback_list(callbacks, verbose)
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
                self._fit_loop(batches, xv, tv, batch_size, cbs, initial_epoch, epochs, interrupt)
        except BaseException:
            for bar in bars:
                bar.close()
            raise
        finally:
            self.training = was
            guard.exit_train()
        return history

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

    def _fit_loop(self, batches, xv, tv, batch_size, cbs, initial_epoch, epochs, interrupt):
        train_metrics = [_metrics.get(n, self.loss, batches.t) for n, _ in self._metric_names]
        val_metrics = [_metrics.get(n, self.loss, tv) for n, _ in self._metric_names]
        want_batch_logs = cbs.wants_batch_logs
        bars = cbs.batch_callbacks
        # a callback with batch hooks other than the bar, or a _train_step replaced on the model: per batch
        per_batch_hooks = any(type(cb) is not _cb.ProgressBar for cb in bars) or "_train_step" in vars(self)
        snapshot = _Snapshot(self)
        arena = self._arena.data
        chunks = None if per_batch_hooks else _Chunks(self, batches, bool(train_metrics))
        logs = {}
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch, {})
            self.training = True
            snapshot.take(self)
            if batches.shuffled:
                batches.shuffle(self.seed, epoch)
            for m in train_metrics:
                m.reset_state()
            loss_sum, count, done, failed = 0.0, 0, 0, None
            if chunks is not None and self._engine().supports_batches(batches.t, self.loss, self.optimizer):
                loss_sum, count, done, failed = self._fit_compiled(chunks, batches, train_metrics, bars, interrupt)
            for b in range(done, batches.steps if failed is None else done):
                interrupt.check()
                xb, tb = batches(b)
                if want_batch_logs:
                    cbs.on_train_batch_begin(b, {})
                loss = self._train_step(xb, tb)
                if not math.isfinite(loss):
                    failed = (b, loss)
                    break
                m = len(xb)
                loss_sum += loss * m
                count += m
                out = self._train_out
                for metric in train_metrics:
                    metric._add(out, tb)
                done = b + 1
                if want_batch_logs:
                    cbs.on_train_batch_end(b, _running_logs(loss_sum, count, train_metrics))
                if self.stop_training:
                    break
            if failed is None and not _finite(arena):
                failed = (done, None)   # a finite loss but NaN/inf weights: find the step that caused them
            if failed is not None:
                failed = self._diverged(failed, snapshot, batches, epoch, cbs, train_metrics)
            logs = _running_logs(math.nan if failed else loss_sum, count, train_metrics)
            interrupt.check()
            if xv is not None:
                for key, value in self._evaluate_prepared(xv, tv, batch_size, val_metrics).items():
                    logs["val_" + key] = value
            self.epoch = epoch + 1   # this epoch's training is complete (a checkpoint saved now resumes after it)
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)

    def _fit_compiled(self, chunks, batches, train_metrics, bars, interrupt):
        """The epoch's full batches on the compiled epoch loop, chunk by chunk (see the module docstring).

        Returns (loss sum, samples, batches done, failed) as the per-batch loop keeps them; failed is
        (batch, loss) for a non-finite loss (that batch's step ran; fit undoes it), else None. Between
        chunks (each at most about _CHUNK_SECONDS long) a pending Ctrl-C is delivered and the bar is updated.
        """
        engine = self._engine()
        size, order, t = batches.size, batches.order, batches.t
        loss_sum, count = 0.0, 0
        first = 0
        while first < chunks.full:
            interrupt.check()
            k = min(chunks.limit, chunks.full - first)
            done = engine.train_batches(batches.x, t, order, size, first, k, self.loss, self.optimizer,
                                        chunks.losses, chunks.outputs, _CHUNK_SECONDS)
            values = chunks.losses[:done].tolist()
            ok = done if math.isfinite(values[-1]) else done - 1
            for value in values[:ok]:
                loss_sum += value * size
                count += size
            if train_metrics and ok:
                s, rows = first * size, ok * size
                if order is None:
                    tb = t[s:s + rows]
                else:
                    tb = chunks.targets[:rows]
                    np.take(t, order[s:s + rows], axis=0, out=tb, mode="clip")
                for metric in train_metrics:
                    metric._add_batches(chunks.outputs[:rows], tb, size)
            if ok < done:
                self._train_out = engine.last_output
                return loss_sum, count, first + ok, (first + ok, values[-1])
            first += done
            if bars:
                logs = _running_logs(loss_sum, count, train_metrics)
                for bar in bars:
                    bar.on_train_batches_end(first - 1, done, logs)
        self._train_out = engine.last_output
        return loss_sum, count, chunks.full, None

    def _diverged(self, failed, snapshot, batches, epoch, cbs, train_metrics) -> bool:
        """Undo the bad step(s) of this epoch; stop cleanly if a callback asks for it, else raise."""
        b, loss = failed
        undone = self._replay(snapshot, batches, b)
        if loss is None and undone == b:
            return False   # the replay ran clean (nothing to undo after all)
        where = f"epoch {epoch + 1}, batch {undone + 1} of {batches.steps}"
        if loss is None or undone < b:
            what = f"the weights became NaN or inf at {where} (the loss was still finite)"
        else:
            what = f"the loss became {loss} at {where}"
        restored = ("restored the weights and optimizer state from before that step" if _finite(self._arena.data)
                    else "restored the weights from the start of the epoch, which already held NaN or inf")
        stopped_before = self.stop_training
        self.stop_training = False
        logs = _running_logs(math.nan, 1, train_metrics)
        cbs.on_train_batch_end(undone, logs)
        if not self.stop_training:
            self.stop_training = stopped_before
            raise FloatingPointError(
                f"training diverged: {what}; fit stopped and {restored}. Lower the learning rate or check the "
                "data; pass callbacks=[fastnn.callbacks.TerminateOnNaN()] to stop without an exception.")
        return True

    def _replay(self, snapshot, batches, upto: int) -> int:
        """Restore the state before batch `upto` by replaying this epoch from its snapshot.

        A replayed step that leaves a NaN/inf weight is undone too (replay again, one step
        shorter). Returns the index of the first batch whose step was undone.
        """
        snapshot.restore(self)
        for b in range(upto):
            self._train_step(*batches(b))
            if not _finite(self._arena.data):
                snapshot.restore(self)
                for c in range(b):
                    self._train_step(*batches(c))
                return b
        return upto


def _running_logs(loss_sum, count, metrics) -> dict:
    logs = {"loss": loss_sum / count if count else math.nan}
    for m in metrics:
        logs[m.name] = m.result()
    return logs


def _check_finite(a: np.ndarray, name: str) -> None:
    if not _finite(a):
        row = int(np.argwhere(~np.isfinite(a))[0][0])
        raise ValueError(f"{name} must be finite, got NaN or inf (first in row {row})")
