"""Adagrad (torch.optim.Adagrad, docs/numerics.md section 1.4)."""

from __future__ import annotations

from .._kernels._optim import KIND_ADAGRAD
from .._validation import check_bool, check_float
from .optimizer import Optimizer, dummy


class Adagrad(Optimizer):
    """Adagrad, as torch.optim.Adagrad.

    Per parameter: t += 1; g = (maximize ? -grad : grad) + weight_decay*param; s = s + g^2;
    param -= lr / (1 + (t-1)*lr_decay) * g / (sqrt(s) + eps).
    State: ``step`` (0-d float32) and ``sum`` (starting at initial_accumulator_value). As in torch, the
    constructor creates it for every parameter it is given; parameters added by ``add_param_group``
    get theirs at their first step, from the constructor's initial_accumulator_value.
    """

    _kind = KIND_ADAGRAD
    _state_kinds = ("sum",)
    _torch_flags = {"foreach": None, "differentiable": False, "fused": None}

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *,
                 maximize=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, maximize=maximize)
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._with_state(group["params"])

    def _check_group(self, group):
        group["lr"] = check_float(group["lr"], "lr", low=0)
        group["lr_decay"] = check_float(group["lr_decay"], "lr_decay", low=0)
        group["weight_decay"] = check_float(group["weight_decay"], "weight_decay", low=0)
        group["initial_accumulator_value"] = check_float(group["initial_accumulator_value"],
                                                         "initial_accumulator_value", low=0)
        group["eps"] = check_float(group["eps"], "eps", low=0)
        group["maximize"] = check_bool(group["maximize"], "maximize")
        return group

    def _with_state(self, run, kinds=()):
        """A missing "step" (0) and "sum" (the constructor's initial_accumulator_value), as torch creates them."""
        for p in run:
            st = self.state[p]
            if "step" not in st:
                st["step"] = self._new_step(p)
            if "sum" not in st:
                st["sum"] = self._state_view("sum", p)
                st["sum"].fill(self.defaults["initial_accumulator_value"])

    def _run_key(self, group, p):
        # the decayed lr depends on the step count, unless lr_decay == 0 (then clr = lr / 1 exactly)
        st = self.state.get(p)
        return float(st["step"]) if st and group["lr_decay"] != 0 else 0.0

    def _prepare_run(self, group, run, key):
        self._with_state(run)
        param, grad = self._flat(run)
        return (self._kind, self._base_flags(group), param, grad, self._flat_state("sum", run), dummy(param.dtype),
                dummy(param.dtype), (group["lr"], group["lr_decay"], group["weight_decay"], group["eps"]),
                self._flat_steps(run))
