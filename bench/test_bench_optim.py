"""pytest-benchmark: one optimizer step on 1M and 10M float32 parameters, fastnn vs NumPy vs PyTorch, and a copy.

    pytest bench/test_bench_optim.py --benchmark-only --benchmark-group-by=param:name,param:size,param:threads

extra_info["bytes"] is what the step streams once; GB/s = bytes / time. The "memcpy" rows copy as many bytes
(np.copyto into a second array), the "inplace" rows stream them in place (a *= 1).
"""

import pytest

from fastnn.benchmarks import optim as O

NAMES = [name for name in O.OPTIMIZERS if O.fastnn_has(name)]
IMPLS = ["fastnn", "numpy", "torch", "torch-fused", "memcpy", "inplace"]
# (name, impl): torch's rows only for the optimizers torch.optim has (not scikit-learn's)
CASES = [(name, impl) for name in NAMES for impl in IMPLS if O.torch_has(name) or not impl.startswith("torch")]


@pytest.mark.parametrize("size", O.OPT_SIZES, ids=lambda n: f"{n // 1_000_000}M")
@pytest.mark.parametrize("name,impl", CASES)
def test_optimizer_step(benchmark, threads, pools, name, size, impl):
    nbytes = O.step_bytes(name, size)
    if impl == "fastnn":
        step = O.fastnn_opt_step(name, size)
    elif impl == "numpy":
        step = O.numpy_opt_step(name, size)
    elif impl == "memcpy":
        step = O.copy_step(nbytes, threads, pools.executor(threads))
    elif impl == "inplace":
        step = O.inplace_step(nbytes, threads, pools.executor(threads))
    else:
        pytest.importorskip("torch")
        if impl == "torch-fused" and not O.torch_has_fused(name):
            pytest.skip(f"this PyTorch has no fused CPU {O.OPTIMIZERS[name][0]}")
        step = O.torch_opt_step(name, size, fused=impl == "torch-fused")
    step()
    benchmark.extra_info.update(bytes=nbytes, params=size)
    benchmark(step)
