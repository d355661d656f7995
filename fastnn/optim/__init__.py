"""Optimizers with torch.optim's API, stepping fused kernels over fastnn's flat arenas.

``OPTIMIZERS`` (name -> class) is the one list of optimizers: ``compile(optimizer=...)``, ``fastnn train``,
the model file's allow-list and the benchmarks read it. Two of them are scikit-learn's MLP optimizers
(SklearnSGD, SklearnAdam: fastnn.sklearn's solvers "sgd" and "adam"), which torch.optim lacks: their class
says so (``torch_counterpart = False``), and the readers that compare with torch or convert torch
optimizers (fastnn.io.from_torch, the benchmarks' torch rows) leave them out.
A new optimizer is its kernel, its NumPy twin (fastnn._reference), its class file here and an entry below.
``fastnn.optim.lr_scheduler`` (a submodule, as in torch) holds the learning-rate schedules.
"""

from . import lr_scheduler  # noqa: F401 - the submodule, reachable as fastnn.optim.lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD
from .sklearn_adam import SklearnAdam
from .sklearn_sgd import SklearnSGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "SklearnSGD", "SklearnAdam"]

#: Optimizer name -> class: the names ``compile(optimizer=...)`` accepts (the class is built with torch's defaults).
OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta,
              "sklearn_sgd": SklearnSGD, "sklearn_adam": SklearnAdam}

#: What ``compile(optimizer="name")`` builds: Keras 3's defaults where they differ from torch's and mean the
#: same in fastnn's (torch's) update formulas: the learning rates (sgd 0.01, the others 0.001), rmsprop's
#: rho (torch's alpha) 0.9, adagrad's initial_accumulator_value 0.1, adadelta's rho 0.95, adamw's
#: weight_decay 0.004. Epsilons stay torch's (1e-8; adagrad 1e-10, adadelta 1e-6): fastnn places epsilon
#: as torch does (outside the square root; Keras's rmsprop and adagrad add it inside, its adam scales it by
#: sqrt(1 - beta2^t)), so Keras's value would not give Keras's numbers either. The classes themselves
#: (fastnn.optim.SGD(...)) keep torch's defaults. sklearn_sgd gets scikit-learn's MLP default learning rate
#: (learning_rate_init=0.001; SklearnSGD's own default, 0.1, is its SGDOptimizer class's), sklearn_adam keeps its own.
KERAS_DEFAULTS = {
    "sgd": {"lr": 0.01},
    "adam": {"lr": 0.001},
    "adamw": {"lr": 0.001, "weight_decay": 0.004},
    "rmsprop": {"lr": 0.001, "alpha": 0.9},
    "adagrad": {"lr": 0.001, "initial_accumulator_value": 0.1},
    "adadelta": {"lr": 0.001, "rho": 0.95},
    "sklearn_sgd": {"lr": 0.001},
}


def from_name(name: str, params) -> Optimizer:
    """The optimizer ``compile(optimizer=name)`` builds over params: OPTIMIZERS[name] with KERAS_DEFAULTS[name]."""
    return OPTIMIZERS[name](params, **KERAS_DEFAULTS.get(name, {}))
