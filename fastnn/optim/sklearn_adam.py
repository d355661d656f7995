"""scikit-learn's MLP Adam (sklearn.neural_network._stochastic_optimizers.AdamOptimizer, docs/numerics.md
section 11.2)."""

from __future__ import annotations

from .._kernels._optim import KIND_SK_ADAM
from .._validation import check_betas, check_float
from .optimizer import LATER, Optimizer, dummy


class SklearnAdam(Optimizer):
    """Adam as scikit-learn's MLPClassifier/MLPRegressor run it (``solver="adam"``).

    Per step (t counts the steps): m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
    lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t); param += -lr_t * m / (sqrt(v) + eps), i.e. epsilon
    outside the bias correction (torch's Adam divides sqrt(v) by sqrt(1 - b2^t) first, so the two
    differ). In float64 the update is sklearn's NumPy expression bit for bit on the same gradient
    (float32: as NumPy evaluates it on float32 arrays, the update in float64). No weight decay:
    scikit-learn's ``alpha`` is part of its loss (fastnn.losses.SklearnMLPLoss).
    State per parameter: ``step`` (float32, as every fastnn count: exact up to 2**24 steps), ``m``, ``v``.
    """

    _kind = KIND_SK_ADAM
    _state_kinds = ("m", "v")
    _load_defaults: dict = {}
    torch_counterpart = False

    def __init__(self, params=LATER, lr=0.001, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    def _check_group(self, group):
        group["lr"] = check_float(group["lr"], "lr", low=0)
        group["betas"] = check_betas(group["betas"])
        group["eps"] = check_float(group["eps"], "eps", low=0, low_open=True)
        return group

    def _run_key(self, group, p):
        st = self.state.get(p)
        return float(st["step"]) if st else 0.0

    def _prepare_run(self, group, run, step):
        self._with_state(run, self._state_kinds)
        param, grad = self._flat(run)
        return (self._kind, 0, param, grad, self._flat_state("m", run), self._flat_state("v", run),
                dummy(param.dtype), (group["lr"], *group["betas"], group["eps"]), self._flat_steps(run))
