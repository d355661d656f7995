"""Optimizers with torch.optim's API, stepping fused kernels over fastnn's flat arenas.

``OPTIMIZERS`` (name -> class) is the one list of optimizers: ``compile(optimizer=...)``, ``fastnn train``,
the model file's allow-list and the benchmarks read it. A new optimizer is its kernel, its NumPy twin
(fastnn._reference), its class file here and an entry below.
``fastnn.optim.lr_scheduler`` (a submodule, as in torch) holds the learning-rate schedules.
"""

from . import lr_scheduler  # noqa: F401 - the submodule, reachable as fastnn.optim.lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta"]

#: Optimizer name -> class: the names ``compile(optimizer=...)`` accepts (the class is built with torch's defaults).
OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta}
