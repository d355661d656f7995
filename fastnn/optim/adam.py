"""Adam and AdamW (torch.optim.Adam / AdamW, docs/numerics.md section 1.2)."""

from __future__ import annotations

from .._kernels._optim import FLAG_AMSGRAD, FLAG_DECOUPLED, KIND_ADAM
from .._validation import check_betas, check_bool, check_float
from .optimizer import LATER, DefaultLR, Optimizer, dummy, resolve_lr

_LR = DefaultLR(1e-3)   # torch's default learning rate, told apart from an lr given (learning_rate=)

class Adam(Optimizer):
    """Adam, as torch.optim.Adam (with ``decoupled_weight_decay=True`` it is AdamW).

    Per parameter: t += 1; g = maximize ? -grad : grad; weight decay either adds
    weight_decay*param to g (L2) or, if decoupled, scales param by 1 - lr*weight_decay;
    m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2 (amsgrad: vmax = max(vmax, v), used for v);
    param -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
    State: ``step`` (0-d float32), ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.
    """

    _kind = KIND_ADAM
    _state_kinds = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _torch_flags = {"foreach": None, "capturable": False, "differentiable": False, "fused": None}
    _load_defaults = {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False}  # torch's __setstate__

    def __init__(self, params=LATER, lr=_LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False, learning_rate=None):
        lr = resolve_lr(lr, learning_rate, type(self).__name__)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        group["lr"] = check_float(group["lr"], "lr", low=0)
        group["betas"] = check_betas(group["betas"])
        group["eps"] = check_float(group["eps"], "eps", low=0)
        group["weight_decay"] = check_float(group["weight_decay"], "weight_decay", low=0)
        for flag in ("amsgrad", "maximize", "decoupled_weight_decay"):
            group[flag] = check_bool(group[flag], flag)
        return group

    def _run_key(self, group, p):
        st = self.state.get(p)
        return float(st["step"]) if st else 0.0

    def _prepare_run(self, group, run, step):
        amsgrad = group["amsgrad"]
        # state exists once stepped; max_exp_avg_sq may be missing if amsgrad was switched on later (starts at zero)
        self._with_state(run, self._state_kinds if amsgrad else () if step else self._state_kinds[:2])
        flags = self._base_flags(group) | (FLAG_AMSGRAD if amsgrad else 0)
        flags |= FLAG_DECOUPLED if group["decoupled_weight_decay"] else 0
        param, grad = self._flat(run)
        max_exp_avg_sq = self._flat_state("max_exp_avg_sq", run) if amsgrad else dummy(param.dtype)
        return (self._kind, flags, param, grad, self._flat_state("exp_avg", run), self._flat_state("exp_avg_sq", run),
                max_exp_avg_sq, (group["lr"], *group["betas"], group["eps"], group["weight_decay"]),
                self._flat_steps(run))


class AdamW(Adam):
    """Adam with decoupled weight decay (param *= 1 - lr*weight_decay), as torch.optim.AdamW."""

    def __init__(self, params=LATER, lr=_LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, learning_rate=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, learning_rate=learning_rate)

    def _check_group(self, group):
        group = super()._check_group(group)
        group["decoupled_weight_decay"] = True  # as torch: AdamW always decouples
        return group
