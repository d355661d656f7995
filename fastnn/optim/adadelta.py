"""Adadelta (torch.optim.Adadelta, docs/numerics.md section 1.5)."""

from __future__ import annotations

from .._kernels._optim import KIND_ADADELTA
from .._validation import check_bool, check_float
from .optimizer import Optimizer, dummy


class Adadelta(Optimizer):
    """Adadelta, as torch.optim.Adadelta.

    Per parameter: g = (maximize ? -grad : grad) + weight_decay*param; v = rho*v + (1-rho)*g^2;
    d = sqrt(u + eps) / sqrt(v + eps) * g (eps inside both roots); u = rho*u + (1-rho)*d^2;
    param -= lr*d (lr defaults to 1.0).
    State: ``step`` (0-d float32), ``square_avg`` (v) and ``acc_delta`` (u), both starting at zero.
    """

    _kind = KIND_ADADELTA
    _state_kinds = ("square_avg", "acc_delta")
    _torch_flags = {"capturable": False, "foreach": None, "differentiable": False}

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False):
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        group["lr"] = check_float(group["lr"], "lr", low=0)
        group["rho"] = check_float(group["rho"], "rho", low=0, high=1)
        group["eps"] = check_float(group["eps"], "eps", low=0)
        group["weight_decay"] = check_float(group["weight_decay"], "weight_decay", low=0)
        group["maximize"] = check_bool(group["maximize"], "maximize")
        return group

    def _prepare_run(self, group, run, key):
        self._with_state(run, self._state_kinds)
        param, grad = self._flat(run)
        return (self._kind, self._base_flags(group), param, grad, self._flat_state("square_avg", run),
                self._flat_state("acc_delta", run), dummy(param.dtype),
                (group["lr"], group["rho"], group["eps"], group["weight_decay"]), self._flat_steps(run))
