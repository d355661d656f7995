"""GEMM dispatch (see _blas.pxd): the switch for the own small-GEMM kernels and their test hook."""

import numpy as np
import numpy.typing as npt

_Float = npt.NDArray[np.float32] | npt.NDArray[np.float64]

def small_gemm_available() -> bool: ...
def set_small_gemm(enabled: bool) -> None: ...
def gemm_small(a: _Float, b: _Float, c: _Float, trans_a: bool = False, trans_b: bool = False) -> None: ...
