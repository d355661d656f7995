"""Optimizers with torch.optim's API, stepping fused kernels over fastnn's flat arenas."""

from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
