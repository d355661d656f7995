"""The benchmark harness (fastnn.benchmarks): honest baselines, exact accounting, a working `fastnn bench`.

No timing assertions: the NumPy baselines compute what fastnn computes, the FLOP/byte/floor
arithmetic is right for a known shape, and a tiny `--quick` run writes the JSON it promises.
The compiled alternatives (jax.jit, torch.compile, ONNX Runtime; skipped when not installed)
compute the NumPy step's losses and logits, and `--contended` starts and stops its busy process.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import tols

import fastnn
from fastnn._kernels import _blas
from fastnn.benchmarks import cli, harness
from fastnn.benchmarks import compiled as C
from fastnn.benchmarks import optim as O
from fastnn.benchmarks import shapes as S
from fastnn.benchmarks.numpy_mlp import NumpyMLP

SMALL = [13, 9, 7, 5]   # odd widths, two hidden layers
PATHS = ["loop"] + (["train_step"] if hasattr(fastnn.Sequential, "train_step") else [])


def _numpy_twin(model, sizes, n, dtype):
    """A NumpyMLP holding the fastnn model's initial weights."""
    mlp = NumpyMLP(sizes, n, dtype)
    params = model.parameters()
    mlp.set_weights([p.data for p in params[0::2]], [p.data for p in params[1::2]])
    return mlp


@pytest.mark.parametrize("sizes,n", [(SMALL, 6), S.SHAPES["deep"]], ids=["small", "deep"])
def test_numpy_step_computes_fastnns_loss_and_gradients(dtype, sizes, n):
    rtol, atol = tols(dtype)
    _, model, x, y = S.fastnn_trainer(sizes, n, dtype, path="loop")
    mlp = _numpy_twin(model, sizes, n, dtype)
    loss_fn = fastnn.losses.CrossEntropyLoss()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    np_loss = mlp.step(x, y)
    assert np_loss == pytest.approx(loss, rel=rtol)
    for p, g in zip(model.parameters(), mlp.grads):
        np.testing.assert_allclose(g, p.grad, rtol=rtol, atol=atol, err_msg=p.name)
        assert g.dtype == dtype


@pytest.mark.parametrize("path", PATHS)
def test_numpy_step_follows_fastnns_step_for_three_steps(dtype, path):
    rtol, atol = tols(dtype)
    step, model, x, y = S.fastnn_trainer(SMALL, 6, dtype, path=path)
    mlp = _numpy_twin(model, SMALL, 6, dtype)
    for _ in range(3):
        loss = step()
        np_loss = mlp.step(x, y)
        assert np_loss == pytest.approx(float(loss), rel=rtol)
    for p, q in zip(model.parameters(), mlp.params):
        np.testing.assert_allclose(q, p.data, rtol=rtol, atol=10 * atol, err_msg=p.name)


def test_numpy_mlp_forward_is_the_eval_forward(dtype):
    sizes, n = SMALL, 4
    model = S.fastnn_model(sizes, dtype).eval()
    mlp = NumpyMLP(sizes, n, dtype, train=False)
    params = model.parameters()
    mlp.set_weights([p.data for p in params[0::2]], [p.data for p in params[1::2]])
    x, _ = S.batch(sizes, n, dtype)
    np.testing.assert_allclose(mlp.forward(x), model(x), *tols(dtype))


def test_flop_byte_and_floor_accounting_for_tiny():
    sizes, n = S.SHAPES["tiny"]
    assert (sizes, n) == ([784, 128, 10], 64)
    fwd = 2 * 64 * (784 * 128 + 128 * 10)
    backward = 2 * 64 * (784 * 128 + 128 * 10) + 2 * 64 * 128 * 10   # dW of both layers, dX of the last only
    assert S.gemm_flops(sizes, n, train=False) == fwd == 13_008_896
    assert S.gemm_flops(sizes, n) == fwd + backward == 26_181_632
    assert S.param_count(sizes) == 784 * 128 + 128 + 128 * 10 + 10 == 101_770
    assert S.adam_bytes(sizes, "float32") == 7 * 4 * 101_770
    assert S.adam_bytes(sizes, "float64") == 7 * 8 * 101_770
    floor = S.floor_seconds(sizes, n, "float32", 100e9, 50e9)
    assert floor == pytest.approx(26_181_632 / 100e9 + 2_849_560 / 50e9, rel=1e-12)
    assert floor == pytest.approx(0.319e-3, abs=1e-6)   # docs/design.md, "Performance targets": 0.30 ms at ~106 GFLOP/s


def test_optimizer_step_bytes():
    n = 1_000_000
    assert O.step_bytes("sgd", n) == 3 * 4 * n             # param, grad read; param written
    assert O.step_bytes("sgd-momentum", n) == 5 * 4 * n
    assert O.step_bytes("adam", n) == O.step_bytes("adamw", n) == O.step_bytes("adadelta", n) == 7 * 4 * n
    assert O.step_bytes("rmsprop", n) == O.step_bytes("adagrad", n) == 5 * 4 * n
    dst, src = O.copy_buffers(O.step_bytes("adam", n))
    assert dst.nbytes + src.nbytes == 7 * 4 * n
    O.copy_step(0, buffers=(dst, src))()
    assert np.all(dst == 1)
    pools = harness.Pools()
    try:
        O.inplace_step(0, 2, pools.executor(2), dst)()   # a *= 1 over two slices: values unchanged
    finally:
        pools.close()
    assert np.all(dst == 1)


def _run_numpy_opt(name, param, grad, steps):
    cls, kwargs, _ = O.OPTIMIZERS[name]
    p = param.copy()
    opt = O.NUMPY_OPTIMIZERS[cls](p, grad.copy(), **kwargs)
    for _ in range(steps):
        opt.step()
    return p


@pytest.mark.parametrize("name", [name for name in O.OPTIMIZERS if O.fastnn_has(name)])
def test_numpy_optimizers_match_fastnn(dtype, name):
    param, grad = O.problem(101, dtype, seed=3)
    from fastnn.parameter import parameters_from_arrays

    params = parameters_from_arrays([param], ["w"], dtype)
    params[0].grad = grad
    cls, kwargs, _ = O.OPTIMIZERS[name]
    opt = getattr(fastnn.optim, cls)(params, **kwargs)
    for _ in range(4):
        opt.step()
    rtol, atol = tols(dtype)
    np.testing.assert_allclose(_run_numpy_opt(name, param, grad, 4), params[0].data, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", [name for name in O.OPTIMIZERS if O.torch_has(name)])
def test_numpy_optimizers_match_torch(name):
    torch = pytest.importorskip("torch")
    param, grad = O.problem(101, np.float64, seed=4)
    cls, kwargs, _ = O.OPTIMIZERS[name]
    p = torch.nn.Parameter(torch.from_numpy(param.copy()))
    p.grad = torch.from_numpy(grad.copy())
    opt = getattr(torch.optim, cls)([p], **kwargs)
    for _ in range(4):
        opt.step()
    np.testing.assert_allclose(_run_numpy_opt(name, param, grad, 4), p.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_alternate_runs_every_implementation_in_blocks_each_round():
    calls = {"a": 0, "b": 0}

    def make(key):
        def fn():
            calls[key] += 1
        return fn

    pools = harness.Pools()
    try:
        out = harness.alternate({"a": (make("a"), 1), "b": (make("b"), 1)}, pools, rounds=3, budget=0.0,
                                max_block=4, gap=0.0, warmup=2)
    finally:
        pools.close()
    for key in "ab":
        assert out[key].shape == (3 * 4,)        # a no-op fits max_block calls per block, 3 rounds
        assert calls[key] == 2 + 3 * 4           # plus the warm-up calls
        assert np.all(out[key] >= 0)
    s = harness.summary([3.0, 1.0, 2.0])
    assert (s["median_s"], s["min_s"], s["samples"]) == (2.0, 1.0, 3)


def test_pools_pin_every_blas_and_report_them():
    pools = harness.Pools()
    n0 = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    try:
        pools.pin(1)
        rep = pools.report()
    finally:
        pools.close()
    assert fastnn.get_num_threads() == 2                     # restored
    fastnn.set_num_threads(n0)
    assert rep["threads"] == rep["fastnn_num_threads"] == 1
    owners = {lib["owner"] for lib in rep["libraries"] if lib["user_api"] == "blas"}
    assert {"numpy", "scipy"} <= owners
    assert all(lib["num_threads"] == 1 for lib in rep["libraries"])
    assert "fastnn 1" in harness.describe_pools(rep)


TINY_RUN = ["--quick", "--shapes", "tiny", "--dtypes", "float32", "--threads", "1", "--repeats", "2", "--budget", "0",
            "--optimizers", "sgd,adam", "--opt-sizes", "20k", "--batches", "1,32", "--gemm-n", "128",
            "--copy-mib", "4", "--quiet"]


def test_quick_run_writes_json_with_every_section(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main([*TINY_RUN, "--no-alternatives", "--json", str(path)]) == 0   # alternatives: tested below
    printed = capsys.readouterr().out
    assert "Training step" in printed and "Optimizer step" in printed and "Inference" in printed
    result = json.loads(path.read_text())
    assert {"schema", "meta", "pools", "peaks", "train_step", "optimizer_step", "inference", "targets",
            "notes"} <= set(result)
    assert set(result["pools"]) == set(result["peaks"]) == {"1"}
    assert result["pools"]["1"]["fastnn_num_threads"] == 1
    assert min(result["peaks"]["1"][k] for k in ("sgemm_flops", "dgemm_flops", "copy_bytes_per_s",
                                                 "inplace_bytes_per_s")) > 0
    assert result["meta"]["fastnn_step_path"] == S.fastnn_step_path()
    kernels = result["meta"]["machine"]["gemm_kernels"]   # the SIMD level each table was measured at
    assert kernels == ("BLAS only (no AVX2/FMA)" if not _blas.small_gemm_available() else
                       "AVX2+FMA, AVX-512VL wide panels" if _blas.wide_gemm_available() else "AVX2+FMA (no AVX-512VL)")
    assert f"fastnn's own GEMM kernels: {kernels}" in printed

    train = {r["impl"]: r for r in result["train_step"]}
    assert {"fastnn", "numpy"} <= set(train)
    for r in train.values():
        assert r["shape"] == "tiny" and r["threads"] == 1 and r["batch"] == 64
        assert 0 < r["min_s"] <= r["median_s"] and r["samples"] >= 2
        assert r["gemm_flops"] == S.gemm_flops(*S.SHAPES["tiny"])
        assert r["x_floor"] == pytest.approx(r["median_s"] / r["floor_s"])
        peak = result["peaks"]["1"]["sgemm_flops"]
        assert r["pct_peak"] == pytest.approx(100 * r["gemm_flops"] / r["median_s"] / peak)
        assert r["vs_numpy"] == pytest.approx(train["numpy"]["median_s"] / r["median_s"])
        assert r["samples_per_s"] == pytest.approx(64 / r["median_s"])

    opt = result["optimizer_step"]
    assert {(r["optimizer"], r["impl"]) for r in opt} >= {(name, impl) for name in ("sgd", "adam")
                                                          for impl in ("fastnn", "numpy", "memcpy", "inplace")}
    for r in opt:
        assert r["params"] == 20_000 and r["bytes"] == O.step_bytes(r["optimizer"], 20_000)
        assert r["bytes_per_s"] == pytest.approx(r["bytes"] / r["median_s"])
        assert (r["target_pass"] is None) == (r["impl"] != "fastnn")
        assert r["x_copy"] > 0 and r["x_inplace"] > 0

    infer = result["inference"]
    assert {r["batch"] for r in infer} == {1, 32}
    assert {"fastnn", "numpy"} <= {r["impl"] for r in infer}
    assert all(math.isfinite(r["median_s"]) for r in infer)
    assert all(t["target"].startswith(("train tiny", "inference tiny")) for t in result["targets"])


def test_markdown_tables(capsys):
    rows = [{"target": "x", "required": ">= 1.00x", "measured": 1.5, "pass": True}]
    text = cli.format_table(rows, cli.TARGET_COLUMNS, "markdown")
    assert text.splitlines()[1] == "|---|---|---:|---|"
    assert text.splitlines()[2] == "| x | >= 1.00x | 1.50x | pass |"


def test_bad_arguments_name_the_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--shapes", "tiny,huge"])
    assert "unknown shape huge; choose from tiny, medium, large, deep" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--threads", "0"])
    assert "threads must be >= 1, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--opt-sizes", "lots"])
    assert "opt-sizes must be comma-separated integers, got 'lots'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ compiled alternatives

def _numpy_losses(sizes, n, dtype, steps):
    mlp = NumpyMLP(sizes, n, dtype)
    x, y = S.batch(sizes, n, dtype)
    return [mlp.step(x, y) for _ in range(steps)]


def test_torch_compile_step_computes_the_numpy_steps_losses(dtype):
    pytest.importorskip("torch")
    rtol = C.UPDATE_RTOL[dtype]
    fn = C.torch_compile_step(SMALL, 6, dtype)   # has run CHECK_STEPS steps, checked against NumPy
    assert 0 <= fn.check <= rtol and fn.compile_s > 0
    want = _numpy_losses(SMALL, 6, dtype, C.CHECK_STEPS + 2)
    got = [float(fn()) for _ in range(2)]         # the steps after the check: the Adam updates agree too
    np.testing.assert_allclose(got, want[C.CHECK_STEPS:], rtol=rtol)


JAX_SCRIPT = """
import json, sys
import numpy as np
from fastnn.benchmarks import compiled as C
fn = C.jax_step({sizes}, 6, np.{dtype})
losses = [fn() for _ in range(2)]
print(json.dumps({{"check": fn.check, "compile_s": fn.compile_s, "losses": [float(v) for v in losses],
                  "dtypes": [str(v.dtype) for v in losses], "jax": "jax" in sys.modules}}))
"""


def test_jax_step_computes_the_numpy_steps_losses(dtype):
    # in a child process: a process that has imported JAX (multithreaded) must not fork, as later tests do
    for module in ("jax", "optax"):   # not importorskip: that would import JAX here
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed")
    root = os.path.dirname(os.path.dirname(fastnn.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT.format(sizes=SMALL, dtype=dtype.name)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    rtol = C.UPDATE_RTOL[dtype]
    assert out["jax"] and 0 <= out["check"] <= rtol and out["compile_s"] > 0
    want = _numpy_losses(SMALL, 6, dtype, C.CHECK_STEPS + 2)
    np.testing.assert_allclose(out["losses"], want[C.CHECK_STEPS:], rtol=rtol)   # after the checked steps
    assert out["dtypes"] == [dtype.name] * 2                                     # float32 stays float32 under x64


def test_onnxruntime_forward_computes_the_numpy_logits(dtype):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    for n in (1, 5):
        fn = C.ort_forward(SMALL, n, dtype)
        model = S.fastnn_model(SMALL, dtype).eval()
        x, _ = S.batch(SMALL, n, dtype)
        out = fn()
        assert out.dtype == dtype and out.shape == (n, SMALL[-1])
        np.testing.assert_allclose(out, model(x), *tols(dtype))
        assert fn() is out                                 # the preallocated, bound output


def test_check_raises_on_a_different_result():
    assert C._check("x", [2.0, 1.0], [2.0, 1.0], np.float32) == 0.0
    with pytest.raises(C.Mismatch, match="x does not compute the NumPy step's result"):
        C._check("x", [2.0, 1.0], [2.0, 1.01], np.float32)
    assert C._check("x", [2.0, 1.001], [2.0, 1.0], np.float32, losses=True) == pytest.approx(5e-4)   # after updates
    with pytest.raises(C.Mismatch):                    # the first loss, before any update, is held tighter
        C._check("x", [2.001, 1.0], [2.0, 1.0], np.float32, losses=True)


def test_missing_alternative_is_skipped_with_a_printed_reason(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(C, "missing", lambda name: "onnxruntime not installed (pip install onnxruntime)"
                        if name == "onnxruntime" else None)
    path = tmp_path / "bench.json"
    assert cli.main([*TINY_RUN, "--sections", "inference", "--alternatives", "onnxruntime", "--json", str(path)]) == 0
    out = capsys.readouterr()
    assert "note: onnxruntime: skipped, onnxruntime not installed (pip install onnxruntime)" in out.out
    assert "onnxruntime rows skipped" in out.err
    result = json.loads(path.read_text())
    assert {r["impl"] for r in result["inference"]} >= {"fastnn", "numpy"}
    assert "onnxruntime" not in {r["impl"] for r in result["inference"]}
    assert result["meta"]["alternatives"]["onnxruntime"] is False and result["compile"] == []


def test_contended_starts_and_stops_its_busy_process(monkeypatch, tmp_path, capsys):
    seen = []

    class Recording(harness.BusyProcess):
        def __enter__(self):
            super().__enter__()
            seen.append(self)
            assert self.running
            return self

    monkeypatch.setattr(cli, "BusyProcess", Recording)
    path = tmp_path / "bench.json"
    assert cli.main([*TINY_RUN, "--sections", "inference", "--batches", "1", "--no-alternatives", "--threads", "1,2",
                     "--contended", "--json", str(path)]) == 0
    assert len(seen) == 1
    busy = seen[0]
    assert busy.stopped and not busy.running
    with pytest.raises(ProcessLookupError):   # killed and reaped
        os.kill(busy.pid, 0)
    result = json.loads(path.read_text())
    assert result["meta"]["contended"] == {"pid": busy.pid, "stopped": True}
    assert {(r["impl"], r["threads"]) for r in result["contended"]} >= {("fastnn", 2)}
    for r in result["contended"]:
        assert r["impl"].startswith("fastnn") and r["threads"] == 2 and r["vs_1_thread"] > 0
    assert "Contended (--contended)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ the sklearn section

def test_sklearn_section_tiny_run(tmp_path, capsys):
    """`--sections sklearn` on 200 rows, 2 epochs: a row per case x dtype x impl with the work both did (the same
    epochs, losses equal as the estimators' contract says), the GEMM floor arithmetic and its targets."""
    pytest.importorskip("sklearn")
    from fastnn.benchmarks import sklearn_fit as SK

    path = tmp_path / "bench.json"
    assert cli.main(["--sections", "sklearn", "--sklearn-rows", "200", "--sklearn-max-iter", "2", "--sklearn-repeats",
                     "1", "--threads", "1", "--dtypes", "float32,float64", "--gemm-n", "128", "--copy-mib", "4",
                     "--quiet", "--json", str(path)]) == 0
    assert "fit of fastnn.sklearn.MLPClassifier vs sklearn.neural_network.MLPClassifier" in capsys.readouterr().out
    result = json.loads(path.read_text())
    assert result["train_step"] == result["optimizer_step"] == result["inference"] == []
    rows = result["sklearn_fit"]
    assert {(r["case"], r["dtype"], r["impl"]) for r in rows} == {
        (c, d, i) for c in SK.CASES for d in ("float32", "float64") for i in ("fastnn", "sklearn")}
    peaks = result["peaks"]["1"]
    for r in rows:
        hidden = list(SK.CASES[r["case"]][1])
        assert r["rows"] == 200 and r["threads"] == 1 and r["max_iter"] == 2 and r["n_iter"] == 2
        assert r["sizes"] == [64 if r["case"] == "digits" else 784, *hidden, 10]
        assert 0 < r["min_s"] <= r["median_s"] and r["samples"] == 1 and math.isfinite(r["loss"])
        assert r["gemm_flops"] == S.gemm_flops(r["sizes"], 200) * 2
        peak = peaks["sgemm_flops" if r["dtype"] == "float32" else "dgemm_flops"]
        assert r["floor_s"] == pytest.approx(r["gemm_flops"] / peak)
        assert r["x_floor"] == pytest.approx(r["median_s"] / r["floor_s"])
        twin = next(q for q in rows if q["impl"] == "sklearn" and (q["case"], q["dtype"]) == (r["case"], r["dtype"]))
        assert r["vs_sklearn"] == pytest.approx(twin["median_s"] / r["median_s"])
        assert r["loss"] == pytest.approx(twin["loss"], rel=1e-4 if r["dtype"] == "float32" else 1e-9)
    names = [t["target"] for t in result["targets"]]
    assert names == [f"sklearn fit {c} {d} 1 thr: {what}" for c in SK.CASES for d in ("float32", "float64")
                     for what in (["vs scikit-learn", "GEMM floor"] if c == "synthetic" else ["vs scikit-learn"])]
