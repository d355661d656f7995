"""Fused loss value + input-gradient kernels (float32/float64; see _losses.pyx).

Every function writes d loss / d input into grad_out and returns the reduced loss
(reduction='none': the sum of loss_out, which receives the unreduced loss). Element-wise
losses take flat C-contiguous 1-D arrays; CE/NLL take (N, C) rows and int64 labels.
"""

from typing import Literal

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_Labels = npt.NDArray[np.int64]
_Reduction = Literal["mean", "sum", "none"]

PAR_MIN_CHEAP: int
PAR_MIN_TRANSCENDENTAL: int
SK_OUT_ACTIVATIONS: dict[str, int]

def mse_loss(
    x: _Float, y: _Float, grad_out: _Float, reduction: _Reduction = "mean",
    loss_out: _Float | None = None, grad_up: _Float | None = None,
) -> float: ...
def bce_loss(
    x: _Float, y: _Float, grad_out: _Float, weight: _Float | None = None, reduction: _Reduction = "mean",
    loss_out: _Float | None = None, grad_up: _Float | None = None,
) -> float: ...
def bce_with_logits_loss(
    z: _Float, y: _Float, grad_out: _Float, weight: _Float | None = None, pos_weight: _Float | None = None,
    reduction: _Reduction = "mean", loss_out: _Float | None = None, grad_up: _Float | None = None,
) -> float: ...
def cross_entropy_loss(
    z: _Float, labels: _Labels, grad_out: _Float, weight: _Float | None = None, ignore_index: int = -100,
    label_smoothing: float = 0.0, reduction: _Reduction = "mean",
    loss_out: _Float | None = None, grad_up: _Float | None = None,
) -> float: ...
def cross_entropy_prob_loss(
    z: _Float, target: _Float, grad_out: _Float, weight: _Float | None = None, label_smoothing: float = 0.0,
    reduction: _Reduction = "mean", loss_out: _Float | None = None, grad_up: _Float | None = None,
) -> float: ...
def nll_loss(
    x: _Float, labels: _Labels, grad_out: _Float, weight: _Float | None = None, ignore_index: int = -100,
    reduction: _Reduction = "mean", loss_out: _Float | None = None, grad_up: _Float | None = None,
) -> float: ...

def sklearn_mlp_loss(
    z: _Float, t: _Float, grad_out: _Float, out_act: int, weighted: bool = False
) -> tuple[float, float]: ...
