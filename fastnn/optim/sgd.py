"""SGD with momentum, dampening, Nesterov and weight decay (torch.optim.SGD, docs/numerics.md section 1.1)."""

from __future__ import annotations

from .._kernels._optim import FLAG_FIRST_STEP, FLAG_MOMENTUM, FLAG_NESTEROV, KIND_SGD
from .._validation import check_bool, check_float
from .optimizer import NO_STEPS, Optimizer, dummy


class SGD(Optimizer):
    """Stochastic gradient descent, as torch.optim.SGD.

    g = (maximize ? -grad : grad) + weight_decay * param; with momentum the buffer b starts as g
    and then becomes momentum*b + (1 - dampening)*g; the update is param -= lr * (nesterov ? g +
    momentum*b : b). State: ``momentum_buffer`` (only when momentum != 0), no step counter.
    """

    _kind = KIND_SGD
    _state_kinds = ("momentum_buffer",)
    _torch_flags = {"foreach": None, "differentiable": False, "fused": None}
    _counts_steps = False
    _load_defaults = {"nesterov": False, "maximize": False}  # torch's __setstate__

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        group["lr"] = check_float(group["lr"], "lr", low=0)
        group["momentum"] = check_float(group["momentum"], "momentum", low=0)
        group["dampening"] = check_float(group["dampening"], "dampening")
        group["weight_decay"] = check_float(group["weight_decay"], "weight_decay", low=0)
        group["nesterov"] = check_bool(group["nesterov"], "nesterov")
        group["maximize"] = check_bool(group["maximize"], "maximize")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening == 0, got "
                             f"momentum={group['momentum']!r} and dampening={group['dampening']!r}")
        return group

    def _run_key(self, group, p):
        return "momentum_buffer" in self.state.get(p, ())

    def _prepare_run(self, group, run, has_buffer):
        momentum = group["momentum"]
        flags = self._base_flags(group)
        buf = dummy(run[0].dtype)
        if momentum != 0:
            flags |= FLAG_MOMENTUM | (FLAG_NESTEROV if group["nesterov"] else 0)
            if not has_buffer:  # the kernel writes the first buffer (= g), then clears the flag
                flags |= FLAG_FIRST_STEP
                for p in run:
                    self.state[p]["momentum_buffer"] = self._state_view("momentum_buffer", p)
            buf = self._flat_state("momentum_buffer", run)
        param, grad = self._flat(run)
        return (self._kind, flags, param, grad, buf, dummy(param.dtype), dummy(param.dtype),
                (group["lr"], momentum, group["dampening"], group["weight_decay"]), NO_STEPS)
