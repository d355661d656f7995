import numpy as np
from numpy.typing import NDArray

PAR_MIN_COLSUM: int

def forward(x: NDArray[np.floating], w: NDArray[np.floating], b: NDArray[np.floating],
            z_out: NDArray[np.floating], a_out: NDArray[np.floating], act: int, param: float = 0.0,
            param2: float = 0.0) -> None: ...
def backward(x: NDArray[np.floating], w: NDArray[np.floating], z: NDArray[np.floating], a: NDArray[np.floating],
             g: NDArray[np.floating], dw_out: NDArray[np.floating], db_out: NDArray[np.floating],
             dx_out: NDArray[np.floating], act: int, param: float = 0.0, accumulate: bool = False,
             accumulate_b: bool | None = None, param2: float = 0.0) -> None: ...
def matmul(a: NDArray[np.floating], b: NDArray[np.floating], c_out: NDArray[np.floating], trans_a: bool = False,
           trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0) -> None: ...
def colsum_sums(dz: NDArray[np.floating], db: NDArray[np.floating], accumulate: bool = False,
                simd: bool = True) -> None: ...
def sum_of_squares(arrays: list[NDArray[np.floating]], simd: bool = True) -> float: ...
