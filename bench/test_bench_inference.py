"""pytest-benchmark: inference latency at batch 1, 32 and 1024 (eval mode; torch under no_grad).

    pytest bench/test_bench_inference.py --benchmark-only --benchmark-group-by=param:shape,param:batch,param:threads
"""

import numpy as np
import pytest

from fastnn.benchmarks import shapes as S

IMPLS = dict(S.INFERENCE_IMPLS)
if S.fastnn_has_predict():
    IMPLS["fastnn.predict"] = lambda sizes, n, dtype: S.fastnn_forward(sizes, n, dtype, method="predict")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("batch", S.INFERENCE_BATCHES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("shape", list(S.SHAPES))
def test_inference(benchmark, threads, shape, batch, impl, dtype):
    if impl == "torch":
        pytest.importorskip("torch")
    sizes, _ = S.SHAPES[shape]
    forward = IMPLS[impl](sizes, batch, np.dtype(dtype))
    forward()
    benchmark.extra_info.update(batch=batch, gemm_flops=S.gemm_flops(sizes, batch, train=False))
    out = benchmark(forward)
    assert np.asarray(out).shape == (batch, sizes[-1])
