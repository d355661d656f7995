"""pytest-benchmark: one training step, fastnn vs careful NumPy vs PyTorch vs scikit-learn (when installed).

    pytest bench/test_bench_train_step.py --benchmark-only --benchmark-group-by=param:shape,param:dtype,param:threads
"""

import numpy as np
import pytest

from fastnn.benchmarks import shapes as S


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", list(S.TRAIN_IMPLS))
@pytest.mark.parametrize("shape", list(S.SHAPES))
def test_train_step(benchmark, threads, shape, impl, dtype):
    if impl in ("torch", "sklearn"):
        pytest.importorskip(impl)
    sizes, n = S.SHAPES[shape]
    step = S.TRAIN_IMPLS[impl](sizes, n, np.dtype(dtype))
    step()   # warm-up: buffers, optimizer state
    benchmark.extra_info.update(batch=n, gemm_flops=S.gemm_flops(sizes, n), adam_bytes=S.adam_bytes(sizes, dtype),
                                fastnn_path=S.fastnn_step_path() if impl == "fastnn" else None)
    loss = benchmark(step)
    assert np.isfinite(float(loss))
