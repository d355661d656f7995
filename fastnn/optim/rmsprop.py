"""RMSprop (torch.optim.RMSprop, docs/numerics.md section 1.3)."""

from __future__ import annotations

from .._kernels._optim import FLAG_CENTERED, FLAG_MOMENTUM, KIND_RMSPROP
from .._validation import check_bool, check_float
from .optimizer import Optimizer, dummy


class RMSprop(Optimizer):
    """RMSprop, as torch.optim.RMSprop.

    Per parameter: g = (maximize ? -grad : grad) + weight_decay*param; v = alpha*v + (1-alpha)*g^2;
    a = sqrt(v) + eps, or, if centered, a = sqrt(v - ga^2) + eps with ga = alpha*ga + (1-alpha)*g;
    with momentum > 0: b = momentum*b + g/a and param -= lr*b, else param -= lr*g/a.
    State: ``step`` (0-d float32), ``square_avg``, ``momentum_buffer`` (momentum > 0) and
    ``grad_avg`` (centered), all starting at zero.
    """

    _kind = KIND_RMSPROP
    _state_kinds = ("square_avg", "momentum_buffer", "grad_avg")
    _torch_flags = {"capturable": False, "foreach": None, "differentiable": False}
    _load_defaults = {"momentum": 0, "centered": False, "maximize": False}  # torch's __setstate__

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False):
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        group["lr"] = check_float(group["lr"], "lr", low=0)
        group["momentum"] = check_float(group["momentum"], "momentum", low=0)
        group["alpha"] = check_float(group["alpha"], "alpha", low=0)
        group["eps"] = check_float(group["eps"], "eps", low=0)
        group["weight_decay"] = check_float(group["weight_decay"], "weight_decay", low=0)
        group["centered"] = check_bool(group["centered"], "centered")
        group["maximize"] = check_bool(group["maximize"], "maximize")
        return group

    def _prepare_run(self, group, run, key):
        momentum, centered = group["momentum"], group["centered"]
        kinds = ("square_avg",) + (("momentum_buffer",) if momentum > 0 else ()) + (("grad_avg",) if centered else ())
        self._with_state(run, kinds)  # a buffer switched on later starts at zero
        flags = self._base_flags(group) | (FLAG_MOMENTUM if momentum > 0 else 0) | (FLAG_CENTERED if centered else 0)
        param, grad = self._flat(run)
        buf = self._flat_state("momentum_buffer", run) if momentum > 0 else dummy(param.dtype)
        grad_avg = self._flat_state("grad_avg", run) if centered else dummy(param.dtype)
        return (self._kind, flags, param, grad, self._flat_state("square_avg", run), buf, grad_avg,
                (group["lr"], group["alpha"], group["eps"], group["weight_decay"], momentum), self._flat_steps(run))
