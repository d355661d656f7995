"""The inference path's kernels and entries: the own GEMM kernels with the bias and ReLU fused into their store
(_blas.gemm_bias_act, the eval-mode plan's Dense), the inference GEMM rule, InferPlan.forward (the output written
straight into the caller's array) and the model(x) / predict fast entries."""

import numpy as np
import pytest

import fastnn as fnn
from fastnn._kernels import _blas, _plan
from fastnn.engine import Engine

DTYPES = [np.float64, np.float32]
OWN = _blas.small_gemm_available()
SIZES = (1, 7, 17, 33, 100)
own_only = pytest.mark.skipif(not OWN, reason="the own small-GEMM kernels need x86-64 with AVX2 and FMA")


def _bias_relu(z, bias, relu):
    """_activations' bias + activation pass in NumPy: z + b, then `x < 0 ? 0 : x` (NaN and -0 kept)."""
    if bias is not None:
        with np.errstate(invalid="ignore"):
            z = z + bias
    return np.where(z < 0, z.dtype.type(0), z) if relu else z


# ------------------------------------------------------------------------------------------ fused kernel

@own_only
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_kernel_is_the_gemm_then_the_bias_act_pass_bit_for_bit(dtype, relu, with_bias):
    r = np.random.default_rng(11)
    for M in SIZES:
        for N in SIZES + (784,):
            for K in (1, 17, 100, 784):
                a = r.standard_normal((M, K)).astype(dtype)
                b = r.standard_normal((K, N)).astype(dtype)
                bias = r.standard_normal(N).astype(dtype) if with_bias else None
                buf = np.full(M * N + 17, 7.0, dtype)            # sentinels after C: masked tails write nothing more
                c = buf[:M * N].reshape(M, N)
                _blas.gemm_bias_act(a, b, bias, c, relu)
                gemm = np.empty((M, N), dtype)
                _blas.gemm_small(a, b, gemm)
                np.testing.assert_array_equal(c, _bias_relu(gemm, bias, relu), err_msg=f"{M}x{K}x{N}")
                assert (buf[M * N:] == 7.0).all()
                ref = _bias_relu(a.astype(np.float64) @ b.astype(np.float64),
                                 None if bias is None else bias.astype(np.float64), relu)
                tol = 1e-12 if dtype == np.float64 else 2e-5
                np.testing.assert_allclose(c, ref, rtol=tol, atol=tol * np.sqrt(K))


@own_only
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_kernel_bits_do_not_depend_on_the_wide_panels(dtype):
    """The AVX-512VL wide panels (K >= 64, full 4-vector column panels) and the AVX2 ones store the same bits,
    bias and ReLU included."""
    r = np.random.default_rng(5)
    for M, K, N in ((2, 64, 32), (13, 64, 64), (32, 784, 128), (7, 100, 100), (64, 128, 10)):
        a, b = r.standard_normal((M, K)).astype(dtype), r.standard_normal((K, N)).astype(dtype)
        bias = r.standard_normal(N).astype(dtype)
        for relu in (False, True):
            c, narrow = np.empty((M, N), dtype), np.empty((M, N), dtype)
            _blas.gemm_bias_act(a, b, bias, c, relu=relu)
            _blas.gemm_bias_act(a, b, bias, narrow, relu=relu, wide=False)
            np.testing.assert_array_equal(c, narrow)


@own_only
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_relu_keeps_nan_and_zeroes_negatives_as_the_activation_pass(dtype):
    a = np.array([[1.0, 0.0], [-1.0, 2.0]], dtype)
    b = np.array([[0.0, -0.0, 1.0, -3.0, np.nan, 0.5], [0.0, 0.0, -2.0, 1.0, 0.0, np.inf]], dtype)
    bias = np.array([np.nan, -0.0, -1.0, 2.0, 0.0, -np.inf], dtype)
    c = np.empty((2, 6), dtype)
    _blas.gemm_bias_act(a, b, bias, c, True)
    gemm = np.empty((2, 6), dtype)
    _blas.gemm_small(a, b, gemm)
    want = _bias_relu(gemm, bias, True)
    itype = np.int64 if dtype == np.float64 else np.int32
    np.testing.assert_array_equal(c.view(itype), want.view(itype))   # bit for bit, signs of zeros and NaNs included
    assert np.isnan(c[:, 0]).all() and np.isnan(c[:, 4]).all()
    assert c[0, 2] == 0 and not np.signbit(c[0, 2])                   # negatives become +0


@own_only
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_kernel_gives_a_row_the_same_bits_alone_or_in_a_batch(dtype):
    r = np.random.default_rng(3)
    for K, N in ((784, 128), (64, 64), (100, 33), (784, 512)):
        a = r.standard_normal((33, K)).astype(dtype)
        b = r.standard_normal((K, N)).astype(dtype)
        bias = r.standard_normal(N).astype(dtype)
        whole = np.empty((33, N), dtype)
        _blas.gemm_bias_act(a, b, bias, whole, True)
        for i in (0, 5, 17, 32):
            for rows in (slice(i, i + 1), slice(max(0, i - 6), i + 1)):
                part = np.empty((rows.stop - rows.start, N), dtype)
                _blas.gemm_bias_act(np.ascontiguousarray(a[rows]), b, bias, part, True)
                np.testing.assert_array_equal(part, whole[rows])


@own_only
def test_fused_kernel_checks_its_buffers():
    a, b, c = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="shapes do not agree"):
        _blas.gemm_bias_act(a, b, np.ones(5, np.float32), c)
    with pytest.raises(ValueError, match="one float dtype"):
        _blas.gemm_bias_act(a, b, np.ones(4, np.float64), c)
    with pytest.raises(ValueError, match="shapes do not agree"):
        _blas.gemm_bias_act(a, np.ones((2, 4), np.float32), None, c)


# ------------------------------------------------------------------------------------------ the rule

def test_inference_rule_extends_the_training_rule_only_where_measured():
    f32, f64 = False, True
    for M, N, K, f64_, threads in [(32, 64, 64, f32, 1), (64, 128, 784, f32, 1), (1, 128, 784, f32, 1),
                                   (4, 128, 784, f32, 2), (32, 64, 64, f64, 2)]:   # own on the training rule already
        assert _blas.infer_rule(M, N, K, f64_, threads)
    assert _blas.infer_rule(32, 512, 784, f32, 1)          # medium b32: 12.8M multiply-adds, B 1.6 MB
    assert _blas.infer_rule(64, 512, 512, f32, 1)
    assert not _blas.infer_rule(65, 512, 784, f32, 1)      # more rows: BLAS's packing pays
    assert not _blas.infer_rule(32, 2048, 2048, f32, 1)    # B beyond L2: BLAS
    assert not _blas.infer_rule(32, 512, 784, f64, 1)      # float64 B of 3.2 MB: BLAS
    assert _blas.infer_rule(32, 128, 784, f64, 1)
    assert not _blas.infer_rule(32, 512, 784, f32, 2)      # threads: BLAS's threads (the training rule)
    assert not _blas.infer_rule(1, 2048, 2048, f32, 1)     # one row over a big B: BLAS's GEMV


# ------------------------------------------------------------------------------------------ InferPlan.forward

def _model(sizes, dtype, act="relu", seed=0):
    layers = [fnn.Dense(i, o, activation=act if k < len(sizes) - 2 else None)
              for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return fnn.Sequential(layers, dtype=dtype, seed=seed).eval()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "tanh", None])
def test_plan_forward_writes_run_bits_into_the_callers_array(dtype, act):
    fnn.set_num_threads(1)
    model = _model([30, 40, 24, 5], dtype, act)
    ex = model._execution()
    plan = _plan.InferPlan(ex.dtype, 16, 30, ex.specs(with_grads=False, training=False), 1)
    x = np.random.default_rng(1).standard_normal((9, 30)).astype(dtype)
    want = plan.run(x).copy()
    got = plan.forward(x)
    assert got.shape == (9, 5) and got.dtype == dtype and got.flags.owndata
    np.testing.assert_array_equal(got, want)
    out = np.full((9, 5), np.nan, dtype)
    assert plan.forward(x, out) is out
    np.testing.assert_array_equal(out, want)
    one = plan.forward(x[3])
    assert one.shape == (5,)
    np.testing.assert_array_equal(one, want[3])
    # what it does not take: None, nothing written
    sentinel = np.full((9, 5), 3.0, dtype)
    for bad_out in (np.empty((8, 5), dtype), np.empty((9, 5), np.float16), np.empty((5, 9), dtype).T):
        assert plan.forward(x, bad_out) is None
    assert plan.forward(x.astype(np.float16)) is None
    assert plan.forward(np.empty((17, 30), dtype)) is None      # over capacity
    assert plan.forward(x, sentinel[:9]) is not None
    buf = np.zeros(9 * 30, dtype)
    xin = buf.reshape(9, 30)
    xin[...] = x
    assert plan.forward(xin, buf[:45].reshape(9, 5)) is None    # out overlaps x


@own_only
@pytest.mark.parametrize(("sizes", "dtype"), [([784, 512, 512, 10], np.float32), ([784, 128, 10], np.float64),
                                              ([784, 128, 10], np.float32), ([64, 64, 64, 10], np.float64),
                                              ([64, 64, 64, 10], np.float32), ([30, 40, 24, 5], np.float64)])
def test_eval_forward_gives_a_row_the_same_bits_alone_or_in_a_batch(dtype, sizes):
    """The fused kernels and the inference rule keep the property the own kernels document (a row's bits do
    not depend on the batch) for shapes whose forward GEMMs all run on the own kernels at one thread (float64
    784x512 weights go to BLAS at 32 rows: not listed)."""
    f64 = dtype == np.float64
    assert all(_blas.infer_rule(n, m, k, f64, 1) for n in (1, 5, 32) for k, m in zip(sizes[:-1], sizes[1:]))
    fnn.set_num_threads(1)
    model = _model(sizes, dtype)
    x = np.random.default_rng(2).standard_normal((32, sizes[0])).astype(dtype)
    whole = model(x)
    for i in (0, 13, 31):
        np.testing.assert_array_equal(model(x[i]), whole[i])
        np.testing.assert_array_equal(model(x[i:i + 5]), whole[i:i + 5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_forward_agrees_with_the_per_layer_path_and_numpy(dtype):
    fnn.set_num_threads(1)
    model = _model([784, 512, 512, 10], dtype)
    x = np.random.default_rng(4).standard_normal((32, 784)).astype(dtype)
    fast = model(x)
    slow = model._forward(x)   # per-layer path, eval mode (BLAS where the training rule says so)
    h = x.astype(np.float64)
    params = model.parameters()
    for k in range(0, len(params), 2):
        h = h @ params[k].data.astype(np.float64) + params[k + 1].data.astype(np.float64)
        if k < len(params) - 2:
            h = np.maximum(h, 0)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(fast, slow, rtol=tol, atol=tol)
    np.testing.assert_allclose(fast, h, rtol=tol, atol=tol)


def test_weights_written_in_place_through_a_numpy_view_change_the_next_prediction():
    """Nothing is packed or cached per weight version: the plan reads the parameter arena itself, so every
    change of the weights - an in-place write through a NumPy view included - is seen by the next call."""
    fnn.set_num_threads(1)
    model = _model([784, 512, 512, 10], np.float32)
    x = np.random.default_rng(5).standard_normal((32, 784)).astype(np.float32)
    before = model(x)
    w = model.parameters()[4].data            # the last Dense's weight, a view into the arena
    w[...] *= 2
    after = model(x)
    np.testing.assert_allclose(after - model.parameters()[5].data, 2 * (before - model.parameters()[5].data),
                               rtol=1e-5, atol=1e-5)
    model.parameters()[0].data[:, :] = 0      # first layer zeroed in place: the output is the bias path only
    np.testing.assert_array_equal(model(x), model(np.zeros_like(x)))
    np.testing.assert_array_equal(model.predict(x, batch_size=32), model(x))


# ------------------------------------------------------------------------------------------ entries

@pytest.mark.parametrize("dtype", DTYPES)
def test_model_call_and_predict_fast_entries_match_the_validated_path(dtype):
    fnn.set_num_threads(1)
    model = _model([30, 40, 24, 5], dtype)
    x = np.random.default_rng(6).standard_normal((9, 30)).astype(dtype)
    want = Engine(model).forward(np.asfortranarray(x).astype(np.float64).astype(dtype, order="C"))
    np.testing.assert_array_equal(model(x), want)
    np.testing.assert_array_equal(model(np.asfortranarray(x)), want)      # another layout: copied, same bits
    assert model(x.astype(np.float64 if dtype == np.float32 else np.float32)).shape == (9, 5)
    np.testing.assert_array_equal(model.predict(x), want)
    np.testing.assert_array_equal(model.predict(np.asfortranarray(x)), want)
    np.testing.assert_array_equal(model.predict(x[::2]), want[::2])
    x_before = x.copy()
    out = model(x)
    out[...] = 0                                                             # the caller owns the result
    np.testing.assert_array_equal(model(x), want)
    np.testing.assert_array_equal(x, x_before)
    bad = x.copy()
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="X must be finite"):
        model.predict(bad)
    with pytest.raises(ValueError, match="30 features"):
        model(np.ones((3, 29), dtype))
    with pytest.raises(ValueError, match="30 features"):
        model.predict(np.ones((3, 29), dtype))
    with pytest.raises(ValueError, match="at least one"):
        model(np.ones((0, 30), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_model_call_fast_entry_still_records_the_pass_for_backward(dtype):
    fnn.set_num_threads(1)
    model = _model([30, 40, 5], dtype)
    x = np.random.default_rng(8).standard_normal((6, 30)).astype(dtype)
    y = np.arange(6) % 5
    loss_fn = fnn.losses.CrossEntropyLoss()
    loss_fn(model(x), y).backward()
    g_eval = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model.train()
    loss_fn(model(x), y).backward()
    for a, b in zip(g_eval, (p.grad for p in model.parameters())):
        np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    model.eval()
    one = model(x[0])                    # one sample: (out,), and its backward takes (out,)
    assert one.shape == (5,)
    model.zero_grad()
    model.backward(np.ones(5, dtype))
    g_one = [p.grad.copy() for p in model.parameters()]
    model.train()
    model.zero_grad()
    model(x[:1])
    model.backward(np.ones((1, 5), dtype))
    for a, b in zip(g_one, (p.grad for p in model.parameters())):
        np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_run_pooled_returns_the_plan_to_the_pool_and_drops_a_stale_one():
    fnn.set_num_threads(1)
    model = _model([30, 40, 5], np.float32)
    ex = model._execution()
    plan = _plan.InferPlan(ex.dtype, 8, 30, ex.specs(with_grads=False, training=False), 1)
    x = np.random.default_rng(9).standard_normal((4, 30)).astype(np.float32)
    entry = (plan, ex.stages, ex.arena, 1)
    pool = [entry]
    out = _plan.run_pooled(pool, x, None, ex.stages, ex.arena, 1)
    np.testing.assert_array_equal(out, plan.run(x))
    assert pool == [entry]
    assert _plan.run_pooled(pool, x.astype(np.float64), None, ex.stages, ex.arena, 1) is None
    assert pool == [entry]                                       # x did not fit: the plan stays pooled
    assert _plan.run_pooled(pool, x, None, ex.stages, ex.arena, 2) is None
    assert pool == []                                            # built for another thread count: dropped
    assert _plan.run_pooled(pool, x, None, ex.stages, ex.arena, 1) is None   # empty pool
