"""Compiled execution plans (see _plan.pyx): a whole training step, or an inference forward, in one call."""

from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.float32] | npt.NDArray[np.float64]

class StageKind(IntEnum):
    DENSE = 0
    ACT = 1
    DROPOUT = 2

class LossKind(IntEnum):
    MSE = 0
    BCE = 1
    BCE_LOGITS = 2
    CROSS_ENTROPY = 3
    CROSS_ENTROPY_PROB = 4
    NLL = 5
    SKLEARN_MLP = 6

REDUCTIONS: dict[str, int]
REDUCE_SLOTS: int

def finish_reduce(buf: _Float, P: int, mean: bool) -> float: ...

class PlanMismatch(ValueError): ...


class TrainPlan:
    n: int
    in_features: int
    out_features: int
    threads: int
    dtype: np.dtype
    output: _Float
    output_grad: _Float
    loss_out: _Float | None
    uses_blas: bool
    comm_seconds: float
    comm_calls: int
    dist_error: int
    def __init__(self, dtype: Any, n: int, in_features: int, stages: list[Any], loss: Any,
                 threads: int = 1) -> None: ...
    def distribute(self, hook: tuple | None) -> None: ...
    def reset_comm(self) -> None: ...
    def check(self, x: _Float, t: np.ndarray) -> None: ...
    def step(self, x: _Float, t: np.ndarray, seed: int, step: int, optimizer: Any = None,
             mask_offset: int = 0) -> float: ...
    def forward(self, x: _Float, seed: int, step: int) -> _Float: ...
    def backward(self, optimizer: Any = None) -> None: ...
    def run_batches(self, x: _Float, t: np.ndarray, order: npt.NDArray[np.int64] | None, first: int, count: int,
                    seed: int, step: int, losses: npt.NDArray[np.float64], outputs: _Float | None = None,
                    runs: list[tuple] | None = None, seconds: float = 0.0, stride: int = 0, offset: int = 0,
                    mask_offset: int = 0) -> int: ...
    def gemm_choice(self) -> list[tuple[bool, bool, bool]]: ...

class InferPlan:
    capacity: int
    in_features: int
    out_features: int
    threads: int
    dtype: np.dtype
    def __init__(self, dtype: Any, capacity: int, in_features: int, stages: list[Any], threads: int = 1) -> None: ...
    def uses_blas(self, n: int) -> bool: ...
    def run(self, x: np.ndarray) -> _Float | None: ...
    def forward(self, x: np.ndarray, out: np.ndarray | None = None) -> _Float | None: ...

def run_pooled(pool: list[Any], x: Any, out: np.ndarray | None, stages: Any, arena: Any,
               threads: int) -> _Float | None: ...
