"""pytest-benchmark: one training step, fastnn vs careful NumPy vs PyTorch (when installed).

    pytest bench/ --benchmark-only --benchmark-group-by=param:shape
"""

import numpy as np
import pytest
from shapes import IMPLS, SHAPES

import fastnn


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_train_step(benchmark, shape, impl, dtype, threads):
    if impl == "torch":
        torch = pytest.importorskip("torch")
        torch.set_num_threads(threads)
    fastnn.set_num_threads(threads)
    sizes, n = SHAPES[shape]
    step = IMPLS[impl](sizes, n, np.dtype(dtype))
    step()   # warm-up: buffers, state
    rounds = 5 if shape == "large" else 50
    loss = benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=1)
    assert np.isfinite(loss)
