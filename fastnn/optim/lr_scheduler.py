"""Learning-rate schedules with torch.optim.lr_scheduler's API and arithmetic (docs/numerics.md section 7).

A scheduler only reads and writes ``optimizer.param_groups[i]["lr"]`` (and sets ``"initial_lr"``), so
it works with every fastnn optimizer. Call ``optimizer.step()`` then ``scheduler.step()`` once per
epoch (``scheduler.step(metric)`` for ReduceLROnPlateau). Each epoch schedule is torch's *chainable*
form, evaluated with the same floating-point expressions in the same order, so the lr sequences are
torch's bit for bit; ``step(epoch)`` (deprecated in torch) uses the closed form, as torch does.

Construction performs torch's initial step: it sets ``group.setdefault("initial_lr", group["lr"])``,
``base_lrs`` and ``last_epoch = 0`` (LinearLR, ConstantLR, and MultiStepLR with a milestone 0, already
change the lr there). ``state_dict()`` is every attribute but the optimizer, under torch's keys, so states
load across fastnn and torch schedulers of the same class.

``needs_metric`` tells a training loop how to step a scheduler: False for the epoch schedules
(``step()``), True for ReduceLROnPlateau (``step(metric)``).
"""

from __future__ import annotations

import copy
import math
import warnings
from bisect import bisect_right
from collections import Counter

from .._validation import check_choice, check_float, check_int

__all__ = [
    "LRScheduler",
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "LinearLR",
    "ConstantLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
]

EPOCH_DEPRECATION_WARNING = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being deprecated where possible. "
    "Please use `scheduler.step()` to step the scheduler. During the deprecation, if epoch is different "
    "from None, the closed form is used instead of the new chainable form, where available."
)


def _check_optimizer(optimizer) -> None:
    """Anything with torch's ``param_groups``: a list of dicts that each hold an 'lr'."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "lr" in g for g in groups):
        raise TypeError(f"optimizer must be an Optimizer (param_groups: a list of dicts with an 'lr'), "
                        f"got {type(optimizer).__name__}")


def _lrs(optimizer) -> list:
    return [group["lr"] for group in optimizer.param_groups]


# ------------------------------------------------------------------ checks of a loaded state_dict's entries
# Each takes (value, name, number of param groups) and returns the value to store (or raises naming `name`).

def _int_from(low):
    return lambda v, name, n: check_int(v, name, low=low)


def _float_from(low, high=None, high_open=False, low_open=False):
    return lambda v, name, n: check_float(v, name, low=low, high=high, high_open=high_open, low_open=low_open)


def _bool(v, name, n):
    if not isinstance(v, bool):
        raise TypeError(f"{name} must be a bool, got {v!r}")
    return v


def _real(v, name, n):  # any real number, inf included (best, mode_worse)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    return v


def _lr_list(v, name, n):
    if not isinstance(v, list):
        raise TypeError(f"{name} must be a list of lrs, got {type(v).__name__}")
    if len(v) != n:
        raise ValueError(f"{name} must hold one lr per param group ({n}), got {len(v)}")
    for i, lr in enumerate(v):
        check_float(lr, f"{name}[{i}]", low=0)
    return v


def _lr_values(v, name, n):  # ReduceLROnPlateau's min_lrs (any length: it adapts to added groups)
    return _lr_list(v, name, len(v) if isinstance(v, list) else n)


def _choice(*choices):
    return lambda v, name, n: check_choice(v, name, choices)


def _milestones(v, name, n):
    if not isinstance(v, dict):
        raise TypeError(f"{name} must be a Counter of milestone epochs, got {type(v).__name__}")
    for epoch, count in v.items():
        check_int(epoch, f"{name} (a milestone)", low=0)
        check_int(count, f"{name}[{epoch}]", low=1)
    return Counter(v)


def _optional(check):
    return lambda v, name, n: None if v is None else check(v, name, n)


_EPOCH_FIELDS = {"last_epoch": _int_from(-1), "_step_count": _int_from(0), "base_lrs": _lr_list,
                 "_last_lr": _lr_list, "_is_initial": _bool, "_get_lr_called_within_step": _bool}


#: the hyper-parameters a schedule's error message quotes
_SETTINGS = ("step_size", "milestones", "gamma", "T_max", "eta_min", "start_factor", "end_factor", "total_iters",
             "factor", "power", "min_lrs")


class LRScheduler:
    """Base class of the epoch schedules (torch.optim.lr_scheduler.LRScheduler).

    Subclasses define ``get_lr()``: the lrs for the new ``last_epoch``, computed from the current
    ``group["lr"]`` values (chainable form); optionally ``_get_closed_form_lr()`` for ``step(epoch)``.

    Attributes: ``optimizer``, ``base_lrs`` (the groups' ``initial_lr``), ``last_epoch`` (number of
    ``step()`` calls since the start, 0 after construction), and the class attribute ``needs_metric``
    (False: ``step()`` takes no metric).
    """

    needs_metric = False
    _get_lr_called_within_step = False
    _is_initial = False

    def __init__(self, optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        last_epoch = check_int(last_epoch, "last_epoch", low=-1)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:   # torch raises KeyError; a bad argument is a ValueError here
                    raise ValueError(f"last_epoch={last_epoch} resumes a schedule, but param_groups[{i}] has no "
                                     "'initial_lr' (load the optimizer's state_dict first, or use last_epoch=-1 "
                                     "for a fresh run)")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        """torch's construction step: _step_count = 1 and last_epoch + 1, in 'initial' mode."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The lrs for the current ``last_epoch`` (called by ``step()``; use ``get_last_lr()`` to read)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The lrs the last ``step()`` set, one per param group."""
        return list(self._last_lr)

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (chainable form); ``epoch`` (deprecated, as torch) jumps there in closed form."""
        self._step_count += 1
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
            epoch = check_int(epoch, "epoch", low=0)
        self._get_lr_called_within_step = True
        last = self.last_epoch
        try:
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                values = self._get_closed_form_lr() if hasattr(self, "_get_closed_form_lr") else self.get_lr()
            bad = next((lr for lr in values if not math.isfinite(lr)), None)
            if bad is not None:
                raise OverflowError(f"the learning rate became {bad}")
        except (OverflowError, ZeroDivisionError) as exc:   # nothing changes: the settings cannot reach this epoch
            self.last_epoch = last
            self._step_count -= 1
            settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k in _SETTINGS)
            raise ValueError(f"{type(self).__name__}({settings}) cannot schedule epoch "
                             f"{last + 1 if epoch is None else epoch}: {exc}; check epoch and the settings") from None
        finally:
            self._get_lr_called_within_step = False
        groups = self.optimizer.param_groups
        if len(values) != len(groups):
            raise ValueError(f"the optimizer has {len(groups)} param groups, but the scheduler was built for "
                             f"{len(values)} (param groups added after the scheduler are not scheduled)")
        for group, lr in zip(groups, values):
            group["lr"] = lr
        self._last_lr = _lrs(self.optimizer)

    def state_dict(self) -> dict:
        """Every attribute except the optimizer (torch's keys), as a deep copy."""
        return {key: copy.deepcopy(value) for key, value in self.__dict__.items() if key != "optimizer"}

    #: entry -> its check (see _EPOCH_FIELDS), for the entries of state_dict() and torch's
    _state_fields = _EPOCH_FIELDS

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state_dict() of this scheduler class (fastnn's or torch's).

        Every known entry is checked with the constructor's rules (TypeError/ValueError naming
        ``state_dict[key]``) before anything changes; an entry naming a method or property is refused.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict (as state_dict() returns), got {type(state_dict).__name__}")
        loaded = {}
        n = len(self.optimizer.param_groups)
        for key, value in state_dict.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise TypeError(f"state_dict's keys must be attribute names, got {key!r}")
            if key == "optimizer":
                continue
            if key.startswith("__") or hasattr(type(self), key) and key not in self._state_fields:
                raise ValueError(f"state_dict has an entry {key!r} that is not a state of {type(self).__name__} "
                                 "(it names one of its methods or properties)")
            value = copy.deepcopy(value)
            check = self._state_fields.get(key)
            loaded[key] = value if check is None else check(value, f"state_dict[{key!r}]", n)
        self.__dict__.update(loaded)

    def _warn_get_lr_outside_step(self) -> None:
        if not self._get_lr_called_within_step:
            warnings.warn("To get the last learning rate computed by the scheduler, please use `get_last_lr()`.",
                          UserWarning, stacklevel=3)


class _LRScheduler(LRScheduler):
    """torch's backward-compatible name of LRScheduler."""


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs: lr_e = base * gamma**(e // step_size)."""

    _state_fields = {**_EPOCH_FIELDS, "step_size": _int_from(1), "gamma": _float_from(0)}

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = check_int(step_size, "step_size", low=1)
        self.gamma = check_float(gamma, "gamma", low=0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return _lrs(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the lr by ``gamma`` at each milestone epoch (by gamma**k if it is listed k times)."""

    _state_fields = {**_EPOCH_FIELDS, "milestones": _milestones, "gamma": _float_from(0)}

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1) -> None:
        if isinstance(milestones, (str, bytes, dict)) or not hasattr(milestones, "__iter__") \
                or getattr(milestones, "ndim", 1) == 0:
            raise TypeError(f"milestones must be an iterable of ints, got {type(milestones).__name__}")
        milestones = list(milestones)
        for m in milestones:
            check_int(m, "each of milestones", low=0)
        self.milestones = Counter(int(m) for m in milestones)
        self.gamma = check_float(gamma, "gamma", low=0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self.last_epoch not in self.milestones:
            return _lrs(self.optimizer)
        return [group["lr"] * self.gamma ** self.milestones[self.last_epoch] for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        milestones = sorted(self.milestones.elements())
        return [base_lr * self.gamma ** bisect_right(milestones, self.last_epoch) for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the lr by ``gamma`` every epoch: lr_e = base * gamma**e."""

    _state_fields = {**_EPOCH_FIELDS, "gamma": _float_from(0)}

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = check_float(gamma, "gamma", low=0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self._is_initial:
            return _lrs(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing without restarts, torch's recursive form.

    Approximates lr_e = eta_min + (base - eta_min) * (1 + cos(pi * e / T_max)) / 2, by recursion from
    the current lr. Past T_max it rises again (period 2 * T_max); it does not stay at eta_min.
    """

    _state_fields = {**_EPOCH_FIELDS, "T_max": _int_from(1), "eta_min": _float_from(0)}

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = check_int(T_max, "T_max", low=1)
        self.eta_min = check_float(eta_min, "eta_min", low=0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        groups = self.optimizer.param_groups
        if self._is_initial:
            return _lrs(self.optimizer)
        if self._step_count == 1 and self.last_epoch > 0:
            return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos((self.last_epoch) * math.pi / self.T_max))
                    / 2 for base_lr in self.base_lrs]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [group["lr"] + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base_lr, group in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * self.last_epoch / self.T_max))
                / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max))
                * (group["lr"] - self.eta_min) + self.eta_min for group in groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear warm-up (or decay) of the lr factor from ``start_factor`` to ``end_factor`` over ``total_iters``.

    lr_e = base * (start + (end - start) * min(e, total_iters) / total_iters), by torch's recursion.
    """

    _state_fields = {**_EPOCH_FIELDS, "start_factor": _float_from(0, 1, low_open=True),
                     "end_factor": _float_from(0, 1), "total_iters": _int_from(1)}

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        self.start_factor = check_float(start_factor, "start_factor", low=0, high=1, low_open=True)
        self.end_factor = check_float(end_factor, "end_factor", low=0, high=1)
        self.total_iters = check_int(total_iters, "total_iters", low=1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return _lrs(self.optimizer)
        return [group["lr"] * (1.0 + (self.end_factor - self.start_factor)
                               / (self.total_iters * self.start_factor
                                  + (self.last_epoch - 1) * (self.end_factor - self.start_factor)))
                for group in groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * (self.start_factor + (self.end_factor - self.start_factor)
                           * min(self.total_iters, self.last_epoch) / self.total_iters)
                for base_lr in self.base_lrs]


class ConstantLR(LRScheduler):
    """Multiply the lr by ``factor`` until epoch ``total_iters``: lr_e = base * (factor if e < total_iters else 1).

    The chainable form multiplies by ``factor`` at epoch 0 (construction) and by ``1.0 / factor`` at
    ``total_iters``, as torch, so it composes with other schedules stepping the same optimizer. With
    ``factor=0`` that undoing step is a division by zero (torch: ZeroDivisionError): ``step()`` at
    ``total_iters`` raises ValueError and changes nothing (``step(epoch)`` uses the closed form and works).
    """

    _state_fields = {**_EPOCH_FIELDS, "factor": _float_from(0, 1), "total_iters": _int_from(1)}

    def __init__(self, optimizer, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1) -> None:
        self.factor = check_float(factor, "factor", low=0, high=1)
        self.total_iters = check_int(total_iters, "total_iters", low=1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [group["lr"] * self.factor for group in groups]
        if self.last_epoch != self.total_iters:
            return _lrs(self.optimizer)
        if self.factor == 0:
            raise ZeroDivisionError("a factor of 0 cannot be undone (the chainable form multiplies by 1 / factor)")
        return [group["lr"] * (1.0 / self.factor) for group in groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor))
                for base_lr in self.base_lrs]


class PolynomialLR(LRScheduler):
    """Polynomial decay to 0 over ``total_iters`` epochs: lr_e = base * (1 - min(e, total_iters) / total_iters)**power.

    torch's recursion multiplies the current lr by ((1 - e/T) / (1 - (e-1)/T))**power; the lr is 0 from
    epoch ``total_iters`` on and stays there. ``power=0`` keeps the lr constant.
    """

    _state_fields = {**_EPOCH_FIELDS, "total_iters": _int_from(1), "power": _float_from(0)}

    def __init__(self, optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1) -> None:
        self.total_iters = check_int(total_iters, "total_iters", low=1)
        self.power = check_float(power, "power", low=0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_get_lr_outside_step()
        if self._is_initial or self.last_epoch > self.total_iters:
            return _lrs(self.optimizer)
        decay_factor = ((1.0 - self.last_epoch / self.total_iters)
                        / (1.0 - (self.last_epoch - 1) / self.total_iters)) ** self.power
        return [group["lr"] * decay_factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
                for base_lr in self.base_lrs]


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` when a metric has not improved for more than ``patience`` steps.

    ``step(metrics)`` once per epoch. Improvement: (min, rel) m < best*(1 - threshold), (min, abs)
    m < best - threshold, (max, rel) m > best*(1 + threshold), (max, abs) m > best + threshold. When
    the count of bad epochs exceeds ``patience``, each group's lr becomes max(lr*factor, min_lr) if that
    lowers it by more than ``eps``, then ``cooldown`` epochs pass with bad epochs ignored. ``min_lr`` is
    a scalar or one value per param group. Unlike the epoch schedules, construction does not touch the
    optimizer (no initial step, no ``initial_lr``), as in torch. ``needs_metric`` is True.
    """

    needs_metric = True
    _state_fields = {"last_epoch": _int_from(-1), "_last_lr": _lr_list, "factor": _float_from(0, 1, high_open=True),
                     "patience": _int_from(0), "cooldown": _int_from(0), "cooldown_counter": _int_from(0),
                     "num_bad_epochs": _int_from(0), "eps": _float_from(0), "threshold": _float_from(0),
                     "mode": _choice("min", "max"), "threshold_mode": _choice("rel", "abs"), "best": _real,
                     "mode_worse": _real, "min_lrs": _lr_values, "default_min_lr": _optional(_float_from(0)),
                     "_step_count": _int_from(0)}

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr=0,
                 eps: float = 1e-8) -> None:
        self.factor = check_float(factor, "factor", low=0, high=1, high_open=True)
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        n_groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n_groups:
                raise ValueError(f"min_lr must have one value per param group: expected {n_groups} min_lrs, "
                                 f"got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = [check_float(v, f"min_lr[{i}]", low=0) for i, v in enumerate(min_lr)]
        else:
            self.default_min_lr = check_float(min_lr, "min_lr", low=0)
            self.min_lrs = [self.default_min_lr] * n_groups
        self.patience = check_int(patience, "patience", low=0)
        self.cooldown = check_int(cooldown, "cooldown", low=0)
        self.eps = check_float(eps, "eps", low=0)
        self.last_epoch = 0
        self._last_lr = _lrs(optimizer)
        self._init_is_better(mode=mode, threshold=threshold, threshold_mode=threshold_mode)
        self._reset()

    def _reset(self) -> None:
        """Forget the best value and the bad-epoch and cooldown counters."""
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def step(self, metrics, epoch=None) -> None:  # noqa: D417 - torch's signature
        """Record this epoch's metric; lower the lrs after more than ``patience`` bad epochs."""
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"metrics must be a real number (a scalar), got {metrics!r}") from None
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
            epoch = check_int(epoch, "epoch", low=0)
        self.last_epoch = epoch

        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown are ignored
        if self.num_bad_epochs > self.patience:
            self._reduce_lr(epoch)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = _lrs(self.optimizer)

    def _reduce_lr(self, epoch) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"The number of param groups in the optimizer ({len(groups)}) differs from when "
                                   f"ReduceLROnPlateau was initialized ({len(self.min_lrs)}), usually because a "
                                   "param group was added; set the `min_lrs` attribute to one value per group.")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for i, group in enumerate(groups):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min" and self.threshold_mode == "abs":
            return a < best - self.threshold
        if self.mode == "max" and self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def _init_is_better(self, mode, threshold, threshold_mode) -> None:
        check_choice(mode, "mode", ("min", "max"))
        check_choice(threshold_mode, "threshold_mode", ("rel", "abs"))
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold = check_float(threshold, "threshold", low=0)
        self.threshold_mode = threshold_mode

    def get_lr(self) -> list[float]:
        """Not a schedule: the lrs change only in step(metrics); returns the current lrs."""
        return _lrs(self.optimizer)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state_dict() (fastnn's or torch's)."""
        super().load_state_dict(state_dict)
        self._init_is_better(mode=self.mode, threshold=self.threshold, threshold_mode=self.threshold_mode)
