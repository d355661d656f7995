"""scikit-learn's MLP SGD (sklearn.neural_network._stochastic_optimizers.SGDOptimizer, docs/numerics.md
section 11.2)."""

from __future__ import annotations

from .._kernels._optim import FLAG_NESTEROV, KIND_SK_SGD
from .._validation import check_bool, check_float
from .optimizer import LATER, NO_STEPS, Optimizer, dummy


class SklearnSGD(Optimizer):
    """SGD with momentum as scikit-learn's MLPClassifier/MLPRegressor run it (``solver="sgd"``).

    Per step: v = momentum*v - lr*g; param += (momentum*v - lr*g if nesterov else v). The velocity
    starts at zero (torch's SGD starts its buffer at g and has the opposite sign convention), and
    there is no step count. ``lr`` is read from ``param_groups[i]["lr"]`` at every step (scikit-learn's
    invscaling and adaptive schedules change it between epochs). In float64 the update is sklearn's
    NumPy expression bit for bit on the same gradient (float32: NumPy's float32 arithmetic).
    State per parameter: ``velocity``.
    """

    _kind = KIND_SK_SGD
    _state_kinds = ("velocity",)
    _counts_steps = False
    _load_defaults: dict = {}
    torch_counterpart = False

    def __init__(self, params=LATER, lr=0.1, momentum=0.9, nesterov=True):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

    def _check_group(self, group):
        group["lr"] = check_float(group["lr"], "lr", low=0)
        group["momentum"] = check_float(group["momentum"], "momentum", low=0, high=1)
        group["nesterov"] = check_bool(group["nesterov"], "nesterov")
        return group

    def _prepare_run(self, group, run, key):
        for p in run:
            if "velocity" not in self.state.get(p, ()):
                self.state[p]["velocity"] = self._zeros("velocity", p)
        param, grad = self._flat(run)
        unused = dummy(param.dtype)
        return (self._kind, FLAG_NESTEROV if group["nesterov"] else 0, param, grad, self._flat_state("velocity", run),
                unused, unused, (group["lr"], group["momentum"]), NO_STEPS)
