"""Optimizers with torch.optim's API, stepping fused kernels over fastnn's flat arenas.

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
