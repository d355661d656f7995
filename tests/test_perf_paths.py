"""Fast paths that must not change results: 64-byte-aligned arenas and optimizer state, the optimizer's
serial/threaded split, and the per-layer GEMM dispatch (BLAS or the own small-GEMM kernels, the plan's rule)."""

import numpy as np
import pytest
import scipy.linalg.blas as sblas

import fastnn as fnn
from fastnn._kernels import _blas, _dense, _optim
from fastnn.engine import Engine
from fastnn.parameter import ALIGNMENT, Arena, aligned_zeros, parameters_from_arrays

DTYPES = [np.float64, np.float32]
OWN = _blas.small_gemm_available()


# ------------------------------------------------------------------------------------------ alignment

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
def test_aligned_zeros_is_an_ordinary_aligned_array(dtype):
    for size in (1, 3, 16, 1001):
        a = aligned_zeros(size, dtype)
        assert a.ctypes.data % ALIGNMENT == 0
        assert a.shape == (size,) and a.dtype == dtype and not a.any()
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
        view = a[1:]
        assert view.base is a            # views share the aligned array as their base, as with np.zeros
        view[...] = 1
        assert a[1:].all() and a[0] == 0
    assert aligned_zeros(0, dtype).shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_arenas_and_optimizer_state_start_on_a_cache_line(dtype):
    arena = Arena([(3, 5), (5,), (7, 2)], dtype)
    assert arena.data.ctypes.data % 64 == 0 and arena.grad.ctypes.data % 64 == 0
    assert arena.size == 15 + 5 + 14                       # packed: parameters stay contiguous
    params = parameters_from_arrays([np.ones((3, 5)), np.ones(5)], dtype=dtype)
    opt = fnn.optim.Adam(params, lr=0.1, amsgrad=True)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    more = parameters_from_arrays([np.ones((4, 4))], dtype=dtype)
    opt.add_param_group({"params": more})                  # state buffers grow: still aligned, state kept
    for kind in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        buf = opt.state[params[0]][kind].base
        assert buf.ctypes.data % 64 == 0 and buf.size == 15 + 5 + 16
        assert opt.state[params[0]][kind].ctypes.data == buf.ctypes.data
    np.testing.assert_allclose(opt.state[params[1]]["exp_avg"], 0.1, rtol=1e-6)


# ------------------------------------------------------------------------------------------ optimizer spans

def _adam_buffers(n, dtype, seed=0):
    r = np.random.default_rng(seed)
    return [r.standard_normal(n).astype(dtype), r.standard_normal(n).astype(dtype),
            r.standard_normal(n).astype(dtype), np.abs(r.standard_normal(n)).astype(dtype),
            np.abs(r.standard_normal(n)).astype(dtype)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 15, 1000, _optim.THRESHOLD + 17, _optim.THRESHOLDS["adam"] + 17,
                               3 * _optim.THRESHOLDS["adam"] + 5])
def test_optimizer_result_does_not_depend_on_threads_or_split(dtype, n):
    """Below the threshold one serial loop, above it one span per thread: every element gets the same bits."""
    results = []
    for threads, halves in ((1, False), (2, False), (1, True)):
        fnn.set_num_threads(threads)
        p, g, m, v, vmax = _adam_buffers(n, dtype)
        for _ in range(3):
            parts = (slice(0, n // 2), slice(n // 2, n)) if halves else (slice(0, n),)
            for s in parts:
                _optim.adam_step(p[s], g[s], m[s], v[s], vmax[s], 1e-2, 0.9, 0.999, 1e-8, 0.01, True, True, False,
                                 3.0)
                _optim.sgd_step(p[s], g[s], m[s], 0.01, 0.9, 0.1, 0.0, True, False, False)
        results.append((p, m, v, vmax))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_serial_adam_matches_the_numpy_twin(dtype):
    n = 999
    p, g, m, v, _ = _adam_buffers(n, dtype, seed=3)
    p0, m0, v0 = (a.astype(np.float64) for a in (p, m, v))
    lr, b1, b2, eps, bc1, bc2 = 1e-2, 0.9, 0.999, 1e-8, 1 - 0.9 ** 3, 1 - 0.999 ** 3
    _optim.adam_step(p, g, m, v, p[:0], lr, b1, b2, eps, 0.0, False, False, False, 3.0)
    g64 = g.astype(np.float64)
    m0 += (1 - b1) * (g64 - m0)
    v0 = b2 * v0 + (1 - b2) * g64 * g64
    p0 -= lr / bc1 * m0 / (np.sqrt(v0) / np.sqrt(bc2) + eps)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for got, want in ((p, p0), (m, m0), (v, v0)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.skipif(not _optim.avx2_available(), reason="the AVX2 Adam update needs x86-64 with AVX2 and FMA")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 5, 8, 13, 1001])
def test_avx2_adam_differs_from_the_sse2_loop_only_in_the_fused_lerp(dtype, n):
    """beta1 = 0 makes the lerp exact (c = 0): then both paths give the same bits, for every flag;
    otherwise they agree to an ulp or so (the FMA rounds once)."""
    flags = [(False, False, False, 0.0), (True, True, True, 0.1), (False, True, False, 0.1), (True, False, True, 0.0)]
    try:
        for beta1 in (0.0, 0.9):
            for decoupled, amsgrad, maximize, wd in flags:
                results = []
                for avx2 in (True, False):
                    _optim.set_avx2(avx2)
                    p, g, m, v, vmax = _adam_buffers(n, dtype, seed=n)
                    for _ in range(3):
                        _optim.adam_step(p, g, m, v, vmax if amsgrad else p[:0], 1e-2, beta1, 0.999, 1e-8, wd,
                                         decoupled, amsgrad, maximize, 3.0)
                    results.append((p, m, v, vmax))
                for a, b in zip(*results):
                    if beta1 == 0.0:
                        np.testing.assert_array_equal(a, b)
                    else:
                        np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-7)
    finally:
        _optim.set_avx2(True)


# ------------------------------------------------------------------------------------------ per-layer GEMMs

SHAPES = [(1, 784, 128), (1, 128, 10), (4, 33, 17), (13, 64, 64), (64, 784, 128), (40, 7, 300), (300, 200, 150)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_any_route_agrees_with_float64(dtype, threads):
    fnn.set_num_threads(threads)
    r = np.random.default_rng(1)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    for (M, K, N) in SHAPES:
        for mode in ("nn", "tn", "nt", "tt"):
            ta, tb = mode[0] == "t", mode[1] == "t"
            a = r.standard_normal((K, M) if ta else (M, K)).astype(dtype)
            b = r.standard_normal((N, K) if tb else (K, N)).astype(dtype)
            c0 = r.standard_normal((M, N)).astype(dtype)
            prod = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
            for alpha, beta in ((1.0, 0.0), (1.0, 1.0), (0.5, 0.25)):
                c = c0.copy()
                _dense.matmul(a, b, c, ta, tb, alpha, beta)
                np.testing.assert_allclose(c, alpha * prod + beta * c0, **tol, err_msg=f"{M}x{K}x{N} {mode}")


@pytest.mark.skipif(not OWN, reason="the own small-GEMM kernels need x86-64 with AVX2 and FMA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulating_matmul_adds_the_rounded_product(dtype):
    """beta = 1 (a gradient's second backward) on the own kernels adds the product, rounded once, to C
    (BLAS's blocked kernels may add C in before the last k block, so this holds on the small route only)."""
    fnn.set_num_threads(1)
    r = np.random.default_rng(2)
    for (M, K, N) in SHAPES[:-1]:   # all small enough for the own kernels, in both dtypes
        a, b = r.standard_normal((M, K)).astype(dtype), r.standard_normal((M, N)).astype(dtype)
        c0 = r.standard_normal((K, N)).astype(dtype)
        prod, c = np.empty_like(c0), c0.copy()
        _dense.matmul(a, b, prod, trans_a=True)
        _dense.matmul(a, b, c, trans_a=True, beta=1.0)
        np.testing.assert_array_equal(c, c0 + prod)


@pytest.mark.skipif(not OWN, reason="the own small-GEMM kernels need x86-64 with AVX2 and FMA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_small_gemms_take_the_plans_kernels_and_the_switch_restores_blas(dtype):
    fnn.set_num_threads(1)
    r = np.random.default_rng(4)
    x, w = r.standard_normal((1, 784)).astype(dtype), r.standard_normal((784, 128)).astype(dtype)
    own, blas, ref = (np.empty((1, 128), dtype) for _ in range(3))
    _dense.matmul(x, w, own)
    _blas.gemm_small(x, w, ref)
    np.testing.assert_array_equal(own, ref)                 # the plan's kernel, bit for bit
    _blas.set_small_gemm(False)
    _dense.matmul(x, w, blas)
    gemv = sblas.sgemv if dtype == np.float32 else sblas.dgemv   # one row: BLAS's GEMV (gemm would pack w)
    np.testing.assert_array_equal(blas[0], gemv(1.0, w.T, x[0]))   # switched off: the same BLAS call, bit for bit
    np.testing.assert_allclose(own, blas, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)


def _mlp(dtype, seed=0):
    return fnn.Sequential([fnn.Dense(30, 40, activation="tanh"), fnn.Dense(40, 24, activation="relu"),
                           fnn.Dense(24, 5)], dtype=dtype, seed=seed)


@pytest.mark.skipif(not OWN, reason="the own small-GEMM kernels need x86-64 with AVX2 and FMA")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 9])
def test_per_layer_path_gives_the_compiled_plans_bits(dtype, n):
    """Same rule, same kernels: model(x), model.backward and the optimizer equal the compiled step bit for bit."""
    fnn.set_num_threads(1)
    r = np.random.default_rng(5)
    x, y = r.standard_normal((n, 30)).astype(dtype), r.integers(0, 5, n)
    ma, mb = _mlp(dtype), _mlp(dtype)
    la, lb = fnn.losses.CrossEntropyLoss(), fnn.losses.CrossEntropyLoss()
    oa, ob = fnn.optim.Adam(ma.parameters(), lr=1e-2), fnn.optim.Adam(mb.parameters(), lr=1e-2)
    engine = Engine(mb)
    for _ in range(3):
        out = ma._forward(x)
        g = np.empty_like(out)
        value = la._forward_backward(out, y, g, None)
        ma.zero_grad()
        ma._backward(g)
        oa.step()
        assert engine.train_step(x, y, lb, ob) == value
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        np.testing.assert_array_equal(pb.grad, pa.grad)
        np.testing.assert_array_equal(pb.data, pa.data)
    ma.eval()
    np.testing.assert_array_equal(ma(x), mb.predict(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_second_backward_accumulates_on_the_small_path(dtype):
    """model.backward twice = twice the gradient (beta = 1 through the own kernels), against float64."""
    fnn.set_num_threads(1)
    r = np.random.default_rng(6)
    x, g = r.standard_normal((3, 30)).astype(dtype), r.standard_normal((3, 5)).astype(dtype)
    model = _mlp(dtype)
    model(x)
    model.backward(g)
    once = [p.grad.copy() for p in model.parameters()]
    model(x)
    model.backward(g)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for p, first in zip(model.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * first, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------ one row: GEMV

@pytest.mark.parametrize("own", [False, True])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("n,k", [(1, 1), (5, 7), (128, 784), (700, 800)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_row_matmul_goes_through_gemv_correctly(own, ta, tb, n, k, dtype):
    """m == 1 runs BLAS ?gemv (or the own one-row kernel): every transpose, alpha and beta, any stride."""
    _blas.set_small_gemm(own)
    rng = np.random.default_rng(n * 1000 + k)
    a = rng.standard_normal((k, 1) if ta else (1, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c = rng.standard_normal((1, n)).astype(dtype)
    want = 0.5 * (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64) + 2.0 * c
    _dense.matmul(a, b, c, ta, tb, 0.5, 2.0)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol * k)


def test_one_row_forward_over_a_big_weight_matches_numpy():
    """A one-row GEMM over a weight larger than L2 goes to BLAS's GEMV, in the plan and the per-layer path."""
    model = fnn.Sequential([fnn.Dense(1024, 1024, activation="relu"), fnn.Dense(1024, 3)], seed=0).eval()
    x = np.random.default_rng(0).standard_normal((1, 1024)).astype(np.float32)
    w1, b1, w2, b2 = (p.data.astype(np.float64) for p in model.parameters())
    want = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ all_finite

@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite_agrees_with_numpy(dtype):
    from fastnn._kernels._checks import all_finite

    info = np.finfo(dtype)
    all_ones = np.array([-1], np.int64 if dtype == np.float64 else np.int32).view(dtype)[0]   # a NaN, sign set
    specials = [0.0, -0.0, info.max, -info.max, info.tiny, info.tiny / 4, np.nan, -np.nan, np.inf, -np.inf, all_ones]
    assert all_finite(np.empty(0, dtype))
    for n in (1, 7, 33, 1000):
        x = np.random.default_rng(n).standard_normal(n).astype(dtype)
        assert all_finite(x)
        for v in specials:
            for pos in {0, n // 2, n - 1}:
                y = x.copy()
                y[pos] = v
                assert all_finite(y) == bool(np.isfinite(y).all()), (n, v, pos)


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_finite_agrees_with_numpy_and_declines_other_layouts(dtype):
    from fastnn._kernels._checks import array_finite

    x = np.random.default_rng(0).standard_normal((9, 13)).astype(dtype)
    assert array_finite(x) is True and array_finite(x[2:5]) is True and array_finite(np.empty((0, 3), dtype))
    for v in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[8, 12] = v
        assert array_finite(y) is False and array_finite(y[8:]) is False and array_finite(y[:8]) is True
    for other in (x[:, ::2], np.asfortranarray(x), x.astype(np.float16), x.astype(np.int64), [1.0, 2.0], 3.0):
        assert array_finite(other) is None   # the caller's NumPy fallback decides


@pytest.mark.parametrize("ignore_index", [None, -100, 3, 2**63 - 1, -2**63])
def test_labels_in_range_agrees_with_numpy(ignore_index):
    from fastnn._kernels._checks import labels_in_range

    c = 10
    specials = [-1, c, c - 1, 0, -100, 3, 2**63 - 1, -2**63, c + 1]
    assert labels_in_range(np.empty(0, np.int64), c, ignore_index)
    for n in (1, 7, 33, 1000):
        y = np.random.default_rng(n).integers(0, c, n)
        assert labels_in_range(y, c, ignore_index)
        for v in specials:
            for pos in {0, n // 2, n - 1}:
                z = y.copy()
                z[pos] = v
                want = bool((((z >= 0) & (z < c)) | (z == ignore_index if ignore_index is not None else False)).all())
                assert labels_in_range(z, c, ignore_index) == want, (n, v, pos)


def test_label_errors_name_the_first_bad_label_with_the_compiled_check():
    """The compiled range check only says "all fine"; the message (first bad label) still comes from NumPy."""
    model = fnn.Sequential([fnn.Dense(3, 4)])
    model.compile(optimizer="adam", loss=fnn.losses.CrossEntropyLoss(ignore_index=-100))
    x = np.zeros((4, 3), np.float32)
    model.train_step(x, np.array([0, -100, 3, 2]))
    for bad in (4, -1, 2**62):
        with pytest.raises(ValueError, match=rf"yb must be class indices in \[0, 3\] or ignore_index=-100, got {bad}"):
            model.train_step(x, np.array([0, bad, 1, 5 if bad != 4 else 0]))


# ------------------------------------------------------------------------------------------ eval forward on the plan

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 6])
def test_eval_forward_runs_the_plan_and_backward_still_works(dtype, n):
    """model(x) in eval mode runs the compiled forward; a backward() after it reruns the stages in eval mode,
    on the input as it was at forward time, and gives the per-layer path's gradients bit for bit."""
    layers = lambda: [fnn.Dense(9, 11, activation="tanh"), fnn.Dropout(0.5), fnn.Dense(11, 4)]  # noqa: E731
    a, b = fnn.Sequential(layers(), dtype=dtype, seed=3).eval(), fnn.Sequential(layers(), dtype=dtype, seed=3).eval()
    r = np.random.default_rng(n)
    x, g = r.standard_normal((n, 9)).astype(dtype), r.standard_normal((n, 4)).astype(dtype)
    out_a = a(x)
    want = b._forward(x).copy()
    np.testing.assert_allclose(out_a, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    x_saved = x.copy()
    x += 100.0                       # the caller's array changes after the forward: backward must not see it
    a.train()                        # and a mode switch before backward does not change what backward differentiates
    a.backward(g)
    b.backward(g)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad)
    np.testing.assert_array_equal(a._execution()._x, x_saved)
