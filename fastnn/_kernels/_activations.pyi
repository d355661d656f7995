import numpy as np
from numpy.typing import NDArray

CODES: dict[str, int]           # activation name -> Act code (from the table in _activations.pyx.tp)
PARAM_DEFAULTS: dict[str, tuple[float, float]]  # name -> default (param, param2), for those that take them
PAR_MIN_CHEAP: int
PAR_MIN_TRANSCENDENTAL: int

def forward(z: NDArray[np.floating], b: NDArray[np.floating], a_out: NDArray[np.floating], act: int,
            param: float = 0.0, param2: float = 0.0) -> None: ...
def backward(g: NDArray[np.floating], z: NDArray[np.floating], a: NDArray[np.floating],
             dz_out: NDArray[np.floating], act: int, param: float = 0.0, param2: float = 0.0) -> None: ...
def math_f32(fn: str, x: NDArray[np.float32], out: NDArray[np.float32]) -> None: ...  # exp, expm1, tanh, erf
def math_f64(fn: str, x: NDArray[np.float64], out: NDArray[np.float64], simd: bool = True) -> None: ...  # exp
