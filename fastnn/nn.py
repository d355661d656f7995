"""PyTorch's ``torch.nn`` names for fastnn's classes, so that ``from torch import nn`` code runs with
``from fastnn import nn``: re-exports only (the registries stay in fastnn.layers and fastnn.losses).

    from fastnn import nn
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    loss_fn = nn.CrossEntropyLoss()

``nn.Linear(in_features, out_features, bias=True)`` is a function returning a fastnn Dense layer
with torch.nn.Linear's keywords and its default initialisation (``init="torch"``); everything else is
the fastnn class itself. ``nn.functional`` is fastnn.functional. There is no ``nn.Module``: a fastnn
model is a Sequential of these layers.
"""

from __future__ import annotations

from . import functional
from .layers import (
    ELU,
    GELU,
    Dense,
    Dropout,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Softsign,
    Tanh,
)
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
from .model import Sequential

__all__ = [
    "Linear", "Sequential", "functional",
    "ELU", "GELU", "Dropout", "Identity", "LeakyReLU", "ReLU", "Sigmoid", "SiLU", "Softmax", "Softplus",
    "Softsign", "Tanh",
    "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "MSELoss", "NLLLoss",
]


def Linear(in_features: int, out_features: int, bias: bool = True) -> Dense:   # noqa: N802 - torch's name
    """torch.nn.Linear(in_features, out_features, bias=True) as a fastnn Dense layer (init="torch": the
    distribution of torch.nn.Linear's default initialisation, seeded by the Sequential's seed).

    The weight has fastnn's layout (in_features, out_features): the transpose of torch's."""
    return Dense(in_features, out_features, use_bias=bias, init="torch")
