"""Keras-style callbacks for Sequential.fit (docs/numerics.md section 6).

Hooks (all optional, with Keras's names and arguments)::

    on_train_begin(logs)            on_train_end(logs)
    on_epoch_begin(epoch, logs)     on_epoch_end(epoch, logs)
    on_train_batch_begin(batch, logs) / on_batch_begin     (the train_ names call the plain ones)
    on_train_batch_end(batch, logs)   / on_batch_end
    on_train_batches_end(batch, count, logs)               (fastnn: a run of batches done at once)

`epoch` is the absolute epoch index (it starts at fit's initial_epoch); `batch` counts from 0 in
each epoch. Batch-end logs hold the running, sample-weighted means of the epoch so far ({"loss",
metrics...}); epoch-end logs add "val_loss", "val_<metric>" when there is validation data, and
"lr" (the learning rate used in the epoch) when a learning-rate callback is present. Callbacks
may write into the logs dict; History and the progress bar run last, so they see those entries.
A callback stops training by setting ``self.model.stop_training = True``.

fit runs an epoch's full batches on its compiled epoch loop, in runs of many batches per call, and
reports each run with ``on_train_batches_end``. A callback that overrides a per-batch hook makes fit
step batch by batch (so that the hook sees every batch), unless its class also defines
``on_train_batches_end`` (in the class that overrides the per-batch hook or a subclass of it): then it
takes the runs (the progress bar does).

fastnn's lr schedulers (fastnn.optim.lr_scheduler) can be passed to fit directly: they are wrapped
in LRSchedulerCallback, which steps them once per epoch (ReduceLROnPlateau with the monitored value).
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import sys
import time
import warnings

import numpy as np

from . import _validation as V
from . import metrics as _metrics
from .optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

__all__ = [
    "Callback", "CallbackList", "History", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
    "LearningRateScheduler", "LRSchedulerCallback", "ProgressBar", "ProgbarLogger",
]

_PER_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")
_BATCH_HOOKS = _PER_BATCH_HOOKS + ("on_train_batches_end",)


def _owner(cls, name: str) -> type:
    """The class in cls's MRO that defines attribute `name`."""
    return next(k for k in cls.__mro__ if name in vars(k))


class Callback:
    """Base class: override the hooks you need. ``self.model`` and ``self.params`` are set by fit."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch (with the last epoch's logs)."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of every epoch."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after every epoch (and its validation) with the epoch's logs."""

    def on_batch_begin(self, batch, logs=None):
        """Called before every training batch."""

    def on_batch_end(self, batch, logs=None):
        """Called after every training batch with the running means of the epoch so far."""

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def on_train_batches_end(self, batch, count, logs=None):
        """Called after `count` batches ending with `batch`, which fit's compiled epoch loop ran in one go.

        logs: the running means of the epoch so far, as for on_train_batch_end. Batches fit steps one
        by one go to on_train_batch_end instead, never to both. Does nothing by default.
        """

    def _uses_batch_hooks(self) -> bool:
        """Whether a batch hook is overridden (fit builds batch logs only if some callback needs them)."""
        cls = type(self)
        return any(getattr(cls, name) is not getattr(Callback, name) for name in _BATCH_HOOKS)

    def _takes_runs(self) -> bool:
        """Whether fit may report batches to this callback in runs (on_train_batches_end).

        True unless a per-batch hook is overridden in a class below the one on_train_batches_end comes
        from (e.g. a plain Callback subclass overriding on_batch_end): such a callback sees every batch.
        """
        cls = type(self)
        runs = _owner(cls, "on_train_batches_end")
        return all(issubclass(runs, _owner(cls, name)) for name in _PER_BATCH_HOOKS
                   if getattr(cls, name) is not getattr(Callback, name))


class CallbackList:
    """Calls each callback's hooks in order; skips batch hooks nobody overrides (no per-batch cost)."""

    def __init__(self, callbacks=None, model=None, params=None):
        self.callbacks = list(callbacks or [])
        self._batch = [cb for cb in self.callbacks if cb._uses_batch_hooks()]
        if model is not None:
            self.set_model(model)
        if params is not None:
            self.set_params(params)

    @property
    def wants_batch_logs(self) -> bool:
        """Whether some callback overrides a batch hook (fit builds batch logs only then)."""
        return bool(self._batch)

    @property
    def batch_callbacks(self) -> tuple:
        """The callbacks whose batch hooks run (those that override one)."""
        return tuple(self._batch)

    @property
    def takes_runs(self) -> bool:
        """Whether every batch callback accepts runs of batches (else fit steps batch by batch)."""
        return all(cb._takes_runs() for cb in self._batch)

    def append(self, callback: Callback) -> None:
        self.callbacks.append(callback)
        if callback._uses_batch_hooks():
            self._batch.append(callback)

    def set_model(self, model) -> None:
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict) -> None:
        for cb in self.callbacks:
            cb.set_params(params)

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        for cb in self._batch:
            cb.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        for cb in self._batch:
            cb.on_train_batch_end(batch, logs)

    def on_train_batches_end(self, batch, count, logs=None):
        for cb in self._batch:
            cb.on_train_batches_end(batch, count, logs)

    on_batch_begin = on_train_batch_begin
    on_batch_end = on_train_batch_end

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)


class History(Callback):
    """Records the epoch logs: ``history`` = {key: [float per epoch]}, ``epoch`` = indices, ``params``.

    fit returns it and sets ``model.history`` to it. Keys are 'loss', the metrics, then 'val_loss'
    and 'val_<metric>' (and anything callbacks add, such as 'lr').
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value) if isinstance(value, numbers.Real) else value)
        if self.model is not None:
            self.model.history = self

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


# ------------------------------------------------------------------------------------------ helpers

def _monitor_direction(monitor: str, mode: str, model, who: str) -> str:
    """'min' or 'max' for `monitor` (mode 'auto': loss -> min; compiled metrics by kind; *acc/*accuracy/*auc -> max)."""
    if mode != "auto":
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name == "loss" or name.endswith("_loss"):
        return "min"
    for log_name, canonical in getattr(model, "_metric_names", ()) or ():
        if log_name == name:
            return _metrics.direction(canonical)
    try:
        return _metrics.direction(name)
    except ValueError:
        pass
    if name.endswith(("acc", "accuracy", "auc")):
        return "max"
    raise ValueError(
        f"{who} cannot tell whether monitor={monitor!r} should be minimised or maximised; "
        "pass mode='min' or mode='max'"
    )


def _weights(model) -> np.ndarray:
    """The model's flat parameter arena (a view)."""
    return model._arena.data


def _log_values(logs: dict) -> list[str]:
    """['loss: 0.1234', 'accuracy: 0.9500'] (Keras's number format) for the numbers in logs."""
    parts = []
    for key, value in logs.items():
        if isinstance(value, numbers.Real):
            v = float(value)
            parts.append(f"{key}: {v:.4f}" if abs(v) > 1e-3 or v == 0 or not math.isfinite(v) else f"{key}: {v:.4e}")
    return parts


def _format_logs(logs: dict) -> str:
    """'loss: 0.1234 - accuracy: 0.9500' (Keras's number format)."""
    return " - ".join(_log_values(logs))


# ------------------------------------------------------------------------------------------ callbacks

class EarlyStopping(Callback):
    """Stop training when a monitored value stops improving: Keras 3's exact rule (docs/numerics.md section 6.1).

    EarlyStopping(monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
    restore_best_weights=False, start_from_epoch=0)

    An epoch improves when value + |min_delta| < best (mode 'min'; value - |min_delta| > best for
    'max'), compared in float32 as Keras 3. Training stops when `patience` epochs in a row did not
    improve (never at epoch 0, never on an improving epoch); epochs before start_from_epoch and
    epochs without the monitored value are not counted. `baseline` only decides whether an
    improvement resets the wait counter. With restore_best_weights, the weights of the best epoch
    (a copy of the parameter arena) are restored at the end of training, early stop or not.
    After training: ``stopped_epoch`` (0 if not stopped), ``best_epoch``, ``best``, ``wait``.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a log name (str), got {monitor!r}")
        self.monitor = monitor
        self.min_delta = abs(V.check_float(min_delta, "min_delta"))
        self.patience = V.check_int(patience, "patience", low=0)
        self.verbose = V.check_int(int(verbose) if isinstance(verbose, bool) else verbose, "verbose", low=0)
        self.mode = V.check_choice(mode, "mode", ("auto", "min", "max"))
        self.baseline = None if baseline is None else V.check_float(baseline, "baseline")
        self.restore_best_weights = V.check_bool(restore_best_weights, "restore_best_weights")
        self.start_from_epoch = V.check_int(start_from_epoch, "start_from_epoch", low=0)
        self._direction = None if mode == "auto" else mode
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def _improves(self, value, reference) -> bool:
        if reference is None:
            return True
        if self._direction == "min":
            return bool(np.float32(value + self.min_delta) < np.float32(reference))
        return bool(np.float32(value - self.min_delta) > np.float32(reference))

    def _snapshot(self):
        w = _weights(self.model)
        if self.best_weights is None or self.best_weights.shape != w.shape:
            self.best_weights = np.empty_like(w)
        np.copyto(self.best_weights, w)

    def on_train_begin(self, logs=None):
        self._reset()
        self._direction = _monitor_direction(self.monitor, self.mode, self.model, "EarlyStopping")

    def on_epoch_end(self, epoch, logs=None):
        if self._direction is None:   # hooks driven without on_train_begin
            self._direction = _monitor_direction(self.monitor, self.mode, self.model, "EarlyStopping")
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"EarlyStopping is conditioned on {self.monitor!r}, which is not in the logs; "
                          f"available: {', '.join(logs or {}) or 'none'}", UserWarning, stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        current = float(current)
        if self.restore_best_weights and self.best_weights is None:
            self._snapshot()   # the current weights are the best seen so far
            self.best_epoch = epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self._snapshot()
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        speaks = self.verbose > 0 and _rank0(self.model)
        if self.stopped_epoch > 0 and speaks:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if speaks:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            np.copyto(_weights(self.model), self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model after every epoch (or only when the monitored value improves) with model.save.

    ModelCheckpoint(filepath, monitor="val_loss", verbose=0, save_best_only=False, mode="auto",
    save_weights_only=False, initial_value_threshold=None)

    filepath may hold Keras-style fields, formatted with epoch (1-based) and the epoch logs:
    "ckpt-{epoch:02d}-{val_loss:.3f}.fnn". save_best_only compares strictly (no min_delta) with
    the best value so far (initial_value_threshold, else +-inf). The optimizer state is saved
    too (so training can resume) unless save_weights_only.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, mode="auto",
                 save_weights_only=False, initial_value_threshold=None):
        super().__init__()
        self.filepath = _check_path(filepath)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a log name (str), got {monitor!r}")
        self.monitor = monitor
        self.verbose = V.check_int(int(verbose) if isinstance(verbose, bool) else verbose, "verbose", low=0)
        self.save_best_only = V.check_bool(save_best_only, "save_best_only")
        self.mode = V.check_choice(mode, "mode", ("auto", "min", "max"))
        self.save_weights_only = V.check_bool(save_weights_only, "save_weights_only")
        self.initial_value_threshold = (None if initial_value_threshold is None
                                        else V.check_float(initial_value_threshold, "initial_value_threshold"))
        self.best = None
        self._direction = None

    def on_train_begin(self, logs=None):
        if not callable(getattr(self.model, "save", None)):
            raise TypeError(f"ModelCheckpoint needs a model with a save(path) method, got {type(self.model).__name__}")
        if self.save_best_only:
            self._direction = _monitor_direction(self.monitor, self.mode, self.model, "ModelCheckpoint")
            if self.best is None:
                self.best = (self.initial_value_threshold if self.initial_value_threshold is not None
                             else (math.inf if self._direction == "min" else -math.inf))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint could not format filepath {self.filepath!r} with epoch and the "
                             f"logs {sorted(logs)}: {exc!r}") from None
        speaks = _rank0(self.model)
        if not self.save_best_only:
            if self.verbose > 0 and speaks:
                print(f"Epoch {epoch + 1}: saving model to {path}")
            self._save(path)
            return
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"ModelCheckpoint can save the best model only with {self.monitor!r} in the logs; "
                          "skipping", UserWarning, stacklevel=2)
            return
        current = float(current)
        better = current < self.best if self._direction == "min" else current > self.best
        if better:
            if self.verbose > 0 and speaks:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
            self._save(path)
        elif self.verbose > 0 and speaks:
            print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")

    def _save(self, path):
        if not _rank0(self.model):   # distributed fit: the weights are the same on every rank; rank 0 writes
            return
        if self.save_weights_only:
            self.model.save(path, include_optimizer=False)
        else:
            self.model.save(path)


def _rank0(model) -> bool:
    """Whether this process prints and writes files: not a distributed fit, or its rank 0."""
    return getattr(model, "_dist_rank", 0) == 0


def _check_path(filepath):
    if isinstance(filepath, os.PathLike):
        filepath = os.fspath(filepath)
    if not isinstance(filepath, str) or not filepath:
        raise TypeError(f"filepath must be a non-empty str or path, got {filepath!r}")
    return filepath


class TerminateOnNaN(Callback):
    """Stop training cleanly when the batch loss becomes NaN or inf.

    fit restores the last good weights first (those from before the failing step), so the model
    is usable afterwards. Without this callback fit raises FloatingPointError instead.
    """

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


def _set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _get_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch: lr = schedule(epoch, lr) (or schedule(epoch)).

    epoch is the absolute epoch index, lr the current learning rate of the first param group; the
    result is set on every param group and logged as "lr" at the end of the epoch.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule must be callable as schedule(epoch, lr) -> lr, got {schedule!r}")
        self.schedule = schedule
        self.verbose = V.check_int(int(verbose) if isinstance(verbose, bool) else verbose, "verbose", low=0)
        self._two_args = _accepts_two(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        lr = self.schedule(epoch, _get_lr(optimizer)) if self._two_args else self.schedule(epoch)
        if isinstance(lr, np.ndarray) and lr.ndim == 0:
            lr = lr.item()
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"the schedule of LearningRateScheduler must return a finite float >= 0, "
                             f"got {lr!r} at epoch {epoch}")
        _set_lr(optimizer, float(lr))
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = _get_lr(self.model.optimizer)


def _accepts_two(fn) -> bool:
    try:
        inspect.signature(fn).bind(0, 0.1)
        return True
    except TypeError:
        return False
    except ValueError:   # no signature (some builtins): try the Keras 3 form
        return True


def is_scheduler(obj) -> bool:
    """Whether obj is one of fastnn's lr schedulers (fit wraps these in LRSchedulerCallback)."""
    return isinstance(obj, LRScheduler)


class LRSchedulerCallback(Callback):
    """Step a fastnn lr scheduler once per epoch from fit (as torch: after the epoch's optimizer steps).

    ReduceLROnPlateau is stepped with logs[monitor] (a warning and no step if it is missing);
    every other scheduler with step(). The learning rate used in the epoch is logged as "lr".
    The scheduler must drive the model's optimizer.
    """

    def __init__(self, scheduler, monitor="val_loss"):
        super().__init__()
        if not is_scheduler(scheduler):
            raise TypeError("scheduler must be a fastnn.optim.lr_scheduler scheduler "
                            f"(StepLR, ReduceLROnPlateau, ...), got {type(scheduler).__name__}")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a log name (str), got {monitor!r}")
        self.scheduler = scheduler
        self.monitor = monitor
        self._plateau = isinstance(scheduler, ReduceLROnPlateau)

    def on_train_begin(self, logs=None):
        if getattr(self.scheduler, "optimizer", None) is not getattr(self.model, "optimizer", None):
            raise ValueError(f"the {type(self.scheduler).__name__} passed to fit drives another optimizer, not "
                             "the model's (create it with model.optimizer after compile())")

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if logs is not None:
            logs["lr"] = _get_lr(optimizer)
        if not self._plateau:
            self.scheduler.step()
            return
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"ReduceLROnPlateau is conditioned on {self.monitor!r}, which is not in the logs; "
                          f"available: {', '.join(logs or {}) or 'none'}", UserWarning, stacklevel=2)
            return
        self.scheduler.step(float(value))


class ProgressBar(Callback):
    """fit's progress display: verbose=1 a tqdm bar per epoch (loss, metrics, ETA), verbose=2 one line per epoch.

    Where it goes (file=None): the verbose=1 bar to stderr, like tqdm's own default: it is a display
    that redraws itself with carriage returns, so it stays out of stdout, where a program's results go
    (``fastnn train > log.txt``, ``fastnn predict > out.csv``). The verbose=2 lines are a record of
    the training, one line per epoch as Keras prints them: stdout, as Keras. file= sends either anywhere.

    Width: the bar's line fits the terminal without hiding the metrics: ncols columns if given, else
    $COLUMNS less one if set (shutil.get_terminal_size's order; one less, as tqdm, so that a full line
    does not wrap), else the terminal's width read at each redraw (none when not a terminal). Of the
    layouts below, the richest that fits is drawn: the rate is never shown, then the timing, the bar
    and its percentage, the " - " separators and the step counter go, in that order. So at 80
    columns the end-of-epoch line still shows loss, a metric, val_loss and the validation metric
    ("Epoch 20/20 loss: 0.2723 accuracy: 0.9826 val_loss: 0.2629 val_accuracy: 0.9500").
    """

    #: (bar_format without the metrics, separator between the metrics), richest first
    LAYOUTS = (
        ("{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]", " - "),
        ("{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}", " - "),
        ("{desc} {n_fmt}/{total_fmt}", " - "),
        ("{desc} {n_fmt}/{total_fmt}", " "),
        ("{desc}", " "),
    )
    MIN_BAR = 10   # columns: a layout with a bar fits only if the bar gets at least this many

    def __init__(self, verbose=1, file=None, ncols=None):
        super().__init__()
        self.verbose = V.check_choice(verbose, "verbose", (1, 2))
        self.file = file
        self.ncols = None if ncols is None else V.check_int(ncols, "ncols", low=1)
        self._bar = None
        self._last = 0.0

    def _out(self):
        if self.file is not None:
            return self.file
        return sys.stderr if self.verbose == 1 else sys.stdout

    def _uses_batch_hooks(self) -> bool:
        return self.verbose == 1

    def on_train_begin(self, logs=None):
        self._epochs = self.params.get("epochs")
        self._steps = self.params.get("steps")

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        if self.verbose == 1:
            from tqdm.auto import tqdm

            ncols = self.ncols if self.ncols is not None else _columns_from_environment()
            self._bar = tqdm(total=self._steps, desc=f"Epoch {epoch + 1}/{self._epochs}", unit="step",
                             file=self._out(), leave=True, bar_format=self.LAYOUTS[0][0],
                             ncols=ncols, dynamic_ncols=ncols is None)
            self._last = self._start

    def _show(self, logs):
        """Put the metrics of `logs` on the bar, in the richest layout that fits its width."""
        bar = self._bar
        values = _log_values(logs or {})
        state = bar.format_dict   # (re)reads the terminal's width when it is dynamic
        width = state.get("ncols")
        for layout, sep in self.LAYOUTS:
            text = sep.join(values).replace("{", "{{").replace("}", "}}")
            fmt = f"{layout} {text}" if text else layout
            if not width:
                break
            drawn = bar.format_meter(**{**state, "bar_format": fmt.replace("{bar}", "#" * self.MIN_BAR),
                                        "ncols": None})
            if len(drawn) <= width:
                break
        bar.bar_format = fmt

    def on_train_batch_end(self, batch, logs=None):
        bar = self._bar
        if bar is None:
            return
        now = time.perf_counter()
        if now - self._last >= bar.mininterval:   # format the numbers only when tqdm redraws
            self._last = now
            self._show(logs)
        bar.update(1)

    def on_train_batches_end(self, batch, count, logs=None):
        bar = self._bar
        if bar is None:
            return
        self._last = time.perf_counter()
        self._show(logs)
        bar.update(count)

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose == 2:
            seconds = time.perf_counter() - self._start
            line = f"Epoch {epoch + 1}/{self._epochs} - {seconds:.2f}s"
            text = _format_logs(logs or {})
            print(f"{line} - {text}" if text else line, file=self._out(), flush=True)
        elif self._bar is not None:
            self._show(logs)
            self.close()

    def close(self):
        """Close the open bar (fit calls this when training ends with an error)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_end(self, logs=None):
        self.close()


def _columns_from_environment():
    """$COLUMNS - 1 when it holds a width (> 1), else None."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return None
    return columns - 1 if columns > 1 else None


ProgbarLogger = ProgressBar   # Keras's name
