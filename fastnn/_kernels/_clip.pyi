import numpy as np

PAR_MIN_NORM: int
PAR_MIN_SCALE: int
CHUNK: int
MAX_CHUNKS: int

def norm_reduce(grad: np.ndarray, norm_type: float) -> float: ...
def scale_(grad: np.ndarray, coef: float) -> None: ...
def clamp_(grad: np.ndarray, lo: float, hi: float) -> None: ...
