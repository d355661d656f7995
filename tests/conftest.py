import numpy as np
import pytest

import fastnn
from fastnn._kernels import _blas

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=DTYPES, ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def tols(dtype):
    """(rtol, atol) for comparing a compiled kernel with its float64-exact twin or PyTorch."""
    return (2e-5, 2e-6) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)


def numerical_grad(f, x, h=1e-6):
    """Central differences of the scalar f(x) w.r.t. every entry of the array x (float64)."""
    num = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (f(xp) - f(xm)) / (2 * h)
    return num


def numerical_grads(params, loss, h=1e-6):
    """Central differences of the scalar loss() w.r.t. every entry of each Parameter (float64)."""
    grads = []
    for p in params:
        num = np.empty(p.shape)
        for idx in np.ndindex(p.shape):
            old = p.data[idx]
            p.data[idx] = old + h
            lp = loss()
            p.data[idx] = old - h
            lm = loss()
            p.data[idx] = old
            num[idx] = (lp - lm) / (2 * h)
        grads.append(num)
    return grads


@pytest.fixture(autouse=True)
def _restore_threads():
    """Every test leaves the thread count, and the own small-GEMM kernels switched on, as it found them."""
    n = fastnn.get_num_threads()
    yield
    fastnn.set_num_threads(n)
    _blas.set_small_gemm(True)
