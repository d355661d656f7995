from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

THRESHOLD: int
AVX2_THRESHOLD: int
SGD_THRESHOLD: int
RMSPROP_THRESHOLD: int
ADADELTA_THRESHOLD: int
THRESHOLDS: dict[str, int]

# OptRun kinds and flag bits (see _optim.pxd)
KIND_SGD: int
KIND_ADAM: int
KIND_RMSPROP: int
KIND_ADAGRAD: int
KIND_ADADELTA: int
KIND_SK_SGD: int
KIND_SK_ADAM: int
FLAG_MAXIMIZE: int
FLAG_WEIGHT_DECAY: int
FLAG_MOMENTUM: int
FLAG_NESTEROV: int
FLAG_FIRST_STEP: int
FLAG_AMSGRAD: int
FLAG_DECOUPLED: int
FLAG_CENTERED: int

def apply_run(
    kind: int,
    flags: int,
    param: np.ndarray,
    grad: np.ndarray,
    s0: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    hp: Sequence[float],
    steps: npt.NDArray[np.float32],
) -> None: ...
def next_scalars(kind: int, hp: Sequence[float], steps: npt.NDArray[np.float32]) -> tuple[float, ...]: ...
def sgd_step(
    param: np.ndarray,
    grad: np.ndarray,
    momentum_buffer: np.ndarray,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    first_step: bool,
) -> None: ...
def adam_step(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: np.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    amsgrad: bool,
    maximize: bool,
    step: float,
) -> None: ...
def rmsprop_step(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    momentum_buffer: np.ndarray,
    grad_avg: np.ndarray,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None: ...
def adagrad_step(
    param: np.ndarray,
    grad: np.ndarray,
    state_sum: np.ndarray,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    step: float,
) -> None: ...
def adadelta_step(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    acc_delta: np.ndarray,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None: ...
def sklearn_sgd_step(
    param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float, nesterov: bool
) -> None: ...
def sklearn_adam_step(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    step: float,
) -> None: ...

def avx2_available() -> bool: ...
def set_avx2(enabled: bool) -> None: ...
