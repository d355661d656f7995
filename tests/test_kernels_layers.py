"""Activation, dense and dropout kernels vs their NumPy twins, finite differences and PyTorch."""

import numpy as np
import pytest
from conftest import numerical_grad, tols

from fastnn._kernels import _activations, _dense, _dropout
from fastnn._reference import activations as ref_act
from fastnn._reference import dense as ref_dense
from fastnn._reference import dropout as ref_drop

ACTS = [("linear", 0.0), ("relu", 0.0), ("leaky_relu", 0.01), ("leaky_relu", -0.3), ("sigmoid", 0.0),
        ("tanh", 0.0), ("gelu", 0.0), ("gelu_tanh", 0.0), ("elu", 1.0), ("elu", 0.5), ("silu", 0.0),
        ("softmax", 0.0), ("softsign", 0.0), ("softplus", (1.0, 20.0)), ("softplus", (2.0, 5.0)),
        ("softplus", (0.5, 1.0))]   # (name, param) or (name, (param, param2))


def _pp(param):
    """The kernel's (param, param2) of an ACTS entry."""
    return tuple(param) if isinstance(param, tuple) else (param, 0.0)
SHAPES = [(1, 1), (1, 7), (7, 1), (13, 33), (1100, 257)]   # the last one crosses every parallel threshold
SPECIAL = np.array([0.0, -0.0, 1e-300, -1e-300, 30.0, -30.0, 700.0, -700.0, 800.0, -800.0, 1.0, -1.0])


def _z(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _act_tols(dtype):
    # float32 derivatives such as gelu_tanh's cancel (1 - tanh^2) at |z| ~ 5: a few ulp of 1
    # times |g|, so the absolute tolerance is looser than for plain arithmetic.
    return (2e-5, 1e-5) if dtype == np.float32 else tols(dtype)


@pytest.mark.parametrize("act,param", ACTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_kernel_matches_twin(act, param, shape, dtype, rng):
    code = _activations.CODES[act]
    z0 = _z(rng, shape, dtype)
    b = _z(rng, shape[1:], dtype)
    g = _z(rng, shape, dtype)
    z1, z2 = z0.copy(), z0.copy()
    a1, a2 = np.empty_like(z0), np.empty_like(z0)
    _activations.forward(z1, b, a1, code, *_pp(param))
    ref_act.forward(z2, b, a2, code, *_pp(param))
    rtol, atol = _act_tols(dtype)
    np.testing.assert_allclose(z1, z2, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a1, a2, rtol=rtol, atol=atol)
    d1, d2 = np.empty_like(z0), np.empty_like(z0)
    _activations.backward(g, z1, a1, d1, code, *_pp(param))
    ref_act.backward(g, z2, a2, d2, code, *_pp(param))
    np.testing.assert_allclose(d1, d2, rtol=rtol, atol=atol)
    assert a1.dtype == dtype and d1.dtype == dtype


@pytest.mark.parametrize("act,param", ACTS)
def test_activation_in_place_and_no_bias(act, param, rng):
    code = _activations.CODES[act]
    z = _z(rng, (5, 6), np.float64)
    a = np.empty_like(z)
    _activations.forward(z.copy(), np.empty(0), a, code, *_pp(param))
    expect = ref_act.f(z, act, *_pp(param))
    np.testing.assert_allclose(a, expect, rtol=1e-10, atol=1e-12)
    g = _z(rng, (5, 6), np.float64)
    expect_dz = ref_act.df_times(g, z, a, act, *_pp(param))
    _activations.backward(g, z, a, g, code, *_pp(param))   # dz written over g
    np.testing.assert_allclose(g, expect_dz, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act,param", ACTS)
def test_activation_gradient_finite_differences(act, param, rng):
    code = _activations.CODES[act]
    z = _z(rng, (4, 5), np.float64, scale=1.5)
    z[np.abs(z) < 1e-3] = 0.5   # keep clear of the kinks of relu / leaky_relu / elu
    g = rng.standard_normal(z.shape)

    def loss(zz):
        a = np.empty_like(zz)
        _activations.forward(zz.copy(), np.empty(0), a, code, *_pp(param))
        return float((g * a).sum())

    a = np.empty_like(z)
    _activations.forward(z.copy(), np.empty(0), a, code, *_pp(param))
    dz = np.empty_like(z)
    _activations.backward(g, z, a, dz, code, *_pp(param))
    np.testing.assert_allclose(dz, numerical_grad(loss, z), rtol=1e-6, atol=1e-8)


TORCH_ACTS = {
    "relu": lambda F, x, p: F.relu(x), "leaky_relu": lambda F, x, p: F.leaky_relu(x, p),
    "sigmoid": lambda F, x, p: F.sigmoid(x), "tanh": lambda F, x, p: F.tanh(x),
    "gelu": lambda F, x, p: F.gelu(x), "gelu_tanh": lambda F, x, p: F.gelu(x, approximate="tanh"),
    "elu": lambda F, x, p: F.elu(x, p), "silu": lambda F, x, p: F.silu(x),
    "softmax": lambda F, x, p: F.softmax(x, dim=-1), "linear": lambda F, x, p: x * 1,
    "softsign": lambda F, x, p: F.softsign(x), "softplus": lambda F, x, p: F.softplus(x, *p),
}


@pytest.mark.parametrize("act,param", ACTS)
def test_activation_matches_torch_including_edges(act, param, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    code = _activations.CODES[act]
    z = np.concatenate([_z(rng, 200, np.float64), SPECIAL]).astype(dtype).reshape(4, -1)
    if act == "softmax":
        z[0, :4] = [1000, -1000, 999, 0]
    g = _z(rng, z.shape, dtype)
    a = np.empty_like(z)
    _activations.forward(z.copy(), np.empty(0, dtype), a, code, *_pp(param))
    dz = np.empty_like(z)
    _activations.backward(g, z, a, dz, code, *_pp(param))
    zt = torch.tensor(z, requires_grad=True)
    at = TORCH_ACTS[act](F, zt, param)
    at.backward(torch.tensor(g))
    rtol, atol = _act_tols(dtype)
    assert np.isfinite(a).all() and np.isfinite(dz).all()
    np.testing.assert_allclose(a, at.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=rtol, atol=atol)


def test_derivative_conventions_at_zero():
    z = np.zeros((1, 1))
    g = np.ones((1, 1))
    for act, param, expect in [("relu", 0, 0.0), ("leaky_relu", 0.2, 0.2), ("elu", 0.5, 0.5), ("sigmoid", 0, 0.25),
                               ("tanh", 0, 1.0), ("gelu", 0, 0.5), ("gelu_tanh", 0, 0.5), ("silu", 0, 0.5),
                               ("softsign", 0, 1.0)]:
        code = _activations.CODES[act]
        a = np.empty_like(z)
        _activations.forward(z.copy(), np.empty(0), a, code, *_pp(param))
        dz = np.empty_like(z)
        _activations.backward(g, z, a, dz, code, *_pp(param))
        assert dz[0, 0] == pytest.approx(expect, abs=1e-15), act


def test_sigmoid_float32_saturates_without_nan():
    z = np.array([[-1000.0, -89.0, -88.0, 17.0, 1000.0]], np.float32)
    a = np.empty_like(z)
    _activations.forward(z.copy(), np.empty(0, np.float32), a, _activations.CODES["sigmoid"])
    assert np.isfinite(a).all()
    assert a[0, 0] == 0.0 and a[0, -1] == 1.0 and a[0, 3] == np.float32(1.0)


@pytest.mark.parametrize("n,k,m", [(1, 1, 1), (1, 7, 3), (13, 5, 33), (64, 784, 128), (257, 300, 129)])
@pytest.mark.parametrize("act", ["linear", "relu", "tanh", "softmax"])
@pytest.mark.parametrize("accumulate", [False, True])
def test_dense_kernels_match_twin(n, k, m, act, accumulate, dtype, rng):
    code = _activations.CODES[act]
    x, w, b = _z(rng, (n, k), dtype, 1), _z(rng, (k, m), dtype, 0.1), _z(rng, (m,), dtype, 1)
    z1, a1 = np.empty((n, m), dtype), np.empty((n, m), dtype)
    z2, a2 = np.empty_like(z1), np.empty_like(a1)
    _dense.forward(x, w, b, z1, a1, code)
    ref_dense.forward(x, w, b, z2, a2, code)
    rtol, atol = tols(dtype)
    atol = atol * k
    np.testing.assert_allclose(z1, z2, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a1, a2, rtol=rtol, atol=atol)
    g = _z(rng, (n, m), dtype, 1)
    dw0, db0 = _z(rng, (k, m), dtype, 1), _z(rng, (m,), dtype, 1)
    dw1, db1, dx1 = dw0.copy(), db0.copy(), np.empty((n, k), dtype)
    dw2, db2, dx2 = dw0.copy(), db0.copy(), np.empty((n, k), dtype)
    _dense.backward(x, w, z1, a1, g.copy(), dw1, db1, dx1, code, 0.0, accumulate)
    ref_dense.backward(x, w, z2, a2, g.copy(), dw2, db2, dx2, code, 0.0, accumulate)
    np.testing.assert_allclose(dw1, dw2, rtol=rtol, atol=atol * n)
    np.testing.assert_allclose(db1, db2, rtol=rtol, atol=atol * n)
    np.testing.assert_allclose(dx1, dx2, rtol=rtol, atol=atol * m)


def test_dense_backward_without_bias_or_input_grad(rng):
    x, w = rng.standard_normal((6, 4)), rng.standard_normal((4, 3))
    z, a = np.empty((6, 3)), np.empty((6, 3))
    _dense.forward(x, w, np.empty(0), z, a, 0)
    np.testing.assert_allclose(z, x @ w, rtol=1e-13)
    g = rng.standard_normal((6, 3))
    dw = np.empty((4, 3))
    _dense.backward(x, w, z, a, g.copy(), dw, np.empty(0), np.empty((0, 0)), 0)
    np.testing.assert_allclose(dw, x.T @ g, rtol=1e-13)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 7), (33, 17, 65)])
def test_matmul_all_transposes(ta, tb, m, n, k, dtype, rng):
    a = _z(rng, (k, m) if ta else (m, k), dtype, 1)
    b = _z(rng, (n, k) if tb else (k, n), dtype, 1)
    c1 = _z(rng, (m, n), dtype, 1)
    c2 = c1.copy()
    _dense.matmul(a, b, c1, ta, tb, 0.5, 2.0)
    ref_dense.matmul(a, b, c2, ta, tb, 0.5, 2.0)
    rtol, atol = tols(dtype)
    np.testing.assert_allclose(c1, c2, rtol=rtol, atol=atol * k)


def test_philox_known_answers():
    # Random123's published known-answer vectors for Philox4x32-10.
    kat = [
        ([0, 0, 0, 0], 0, (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ([0xFFFFFFFF] * 4, 0xFFFFFFFFFFFFFFFF, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], 0x299F31D0A4093822,
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, expect in kat:
        assert _dropout.philox4x32_10(ctr, key) == expect
        assert ref_drop.philox4x32_10(ctr, key) == expect


@pytest.mark.parametrize("n", [1, 3, 4, 5, 1001, 70001])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_dropout_kernel_matches_twin(n, p, dtype, rng):
    x = _z(rng, n, dtype, 1)
    x[0] = np.inf
    y1, y2 = np.empty_like(x), np.empty_like(x)
    m1, m2 = np.empty(n, np.uint8), np.empty(n, np.uint8)
    _dropout.forward(x, y1, m1, p, 42, 3, (1 << 32) + 7)
    ref_drop.forward(x, y2, m2, p, 42, 3, (1 << 32) + 7)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    if p == 1.0:
        assert not m1.any() and np.isnan(y1[0]) and (y1[1:] == 0).all()
    g = _z(rng, n, dtype, 1)
    d1, d2 = np.empty_like(g), np.empty_like(g)
    _dropout.backward(g, m1, d1, p)
    ref_drop.backward(g, m2, d2, p)
    np.testing.assert_array_equal(d1, d2)
    if 0 < p < 1:
        kept = m1.astype(bool)
        np.testing.assert_allclose(y1[1:][kept[1:]], x[1:][kept[1:]] / dtype.type(1 - p), rtol=1e-6)


def test_dropout_keep_rate_and_streams():
    n = 200_000
    x = np.ones(n, np.float32)
    y, m = np.empty_like(x), np.empty(n, np.uint8)
    _dropout.forward(x, y, m, 0.3, 7, 0, 1)
    assert abs(m.mean() - 0.7) < 5e-3
    m2 = np.empty_like(m)
    _dropout.forward(x, y, m2, 0.3, 7, 1, 1)   # another stream
    m3 = np.empty_like(m)
    _dropout.forward(x, y, m3, 0.3, 7, 0, 2)   # another step
    assert (m != m2).mean() > 0.3 and (m != m3).mean() > 0.3


def test_kernel_wrappers_reject_mismatched_buffers():
    """The private kernels are not a public API, but a misuse must raise, never corrupt memory."""
    f = np.float64
    x, w, z = np.ones((4, 3)), np.ones((3, 2)), np.empty((4, 2))
    with pytest.raises(ValueError, match="kernel buffers disagree"):
        _dense.forward(x, np.ones((5, 2)), np.empty(0), z, z, 0)
    with pytest.raises(ValueError, match="kernel buffers disagree"):
        _dense.forward(x, w, np.empty(0), np.empty((3, 2)), np.empty((3, 2)), 0)
    with pytest.raises(ValueError, match="kernel buffers disagree"):
        _dense.forward(x, w, np.ones(3), z, z, 0)
    with pytest.raises(ValueError, match="kernel buffers disagree"):
        _dense.backward(x, w, z, z, np.ones((4, 2)), np.empty((2, 2)), np.empty(0), np.empty((0, 0)), 0)
    with pytest.raises(ValueError, match="kernel buffers disagree"):
        _dense.matmul(x, np.ones((2, 2)), z)
    with pytest.raises(ValueError, match="unknown activation code 99"):
        _activations.forward(z, np.empty(0, f), z, 99)
    with pytest.raises(ValueError, match="kernel buffers disagree"):
        _activations.backward(z, z, np.empty((4, 3)), z, 1)
    with pytest.raises(ValueError, match="kernel buffers disagree"):
        _dropout.forward(np.ones(5), np.empty(4), np.empty(5, np.uint8), 0.5, 0, 0, 0)
    with pytest.raises(ValueError, match="kernel buffers disagree"):
        _dropout.backward(np.ones(5), np.empty(5, np.uint8), np.empty(5), 1.5)


def _ulp_error(got, exact):
    """|got - exact| in units of the float32 spacing at exact (0 where both agree, NaN included)."""
    with np.errstate(all="ignore"):
        e32 = exact.astype(np.float32)
        err = np.abs(got.astype(np.float64) - exact) / np.spacing(np.abs(e32))
    err[(got == e32) | (np.isnan(got) & np.isnan(exact))] = 0
    return err


@pytest.mark.parametrize("fn,ref,max_ulp", [("exp", np.exp, 1.0), ("expm1", np.expm1, 3.0), ("tanh", np.tanh, 2.0),
                                            ("erf", None, 3.0)])
def test_float32_math_accuracy(fn, ref, max_ulp):
    """fastnn's branch-free float32 exp/expm1/tanh/erf vs double precision over every magnitude."""
    if ref is None:
        from scipy.special import erf as ref
    r = np.random.default_rng(7)
    mags = np.float32(10.0) ** r.uniform(-45, 2.1, 400_000).astype(np.float32)
    x = np.concatenate([mags, -mags, r.uniform(-110, 95, 400_000).astype(np.float32),
                        np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, 88.73, -87.33, -103.9, -104.5,
                                    0.6249999, 0.625, 9.0, -9.0, 1e-45, -1e-45])])
    out = np.empty_like(x)
    _activations.math_f32(fn, x, out)
    with np.errstate(all="ignore"):
        exact = ref(x.astype(np.float64))
    normal = np.isfinite(exact) & (np.abs(exact) >= np.finfo(np.float32).tiny)
    assert _ulp_error(out[normal], exact[normal]).max() <= max_ulp
    sub = np.isfinite(exact) & ~normal   # subnormal results: within one subnormal step
    assert np.all(np.abs(out[sub] - exact[sub]) <= 1.5e-45)
    special = np.isnan(x) | np.isinf(exact)
    np.testing.assert_array_equal(out[special], exact[special].astype(np.float32))
    zeros = x == 0
    expect_sign = np.signbit(x[zeros]) if fn != "exp" else np.zeros(zeros.sum(), bool)   # f(-0) = -0 but exp
    np.testing.assert_array_equal(np.signbit(out[zeros]), expect_sign)


def test_float64_exp_accuracy_and_simd_bits():
    """fastnn's double exp (scikit-learn's softmax loss): under 1 ulp of the exact value over every magnitude,
    libm's answer at the edges (overflow, underflow, +-inf, NaN), and the same bits from the SSE2 and the AVX2
    loop, at every position of a vector (an odd length leaves a tail)."""
    r = np.random.default_rng(11)
    mags = 10.0 ** r.uniform(-320, 2.86, 400_001)
    x = np.concatenate([mags, -mags, r.uniform(-750, 712, 400_000), r.uniform(-30, 5, 400_000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 709.78, 709.79, 710.0, -745.13, -745.14, -708.4,
                         -740.0, 5e-324, -5e-324, 1.0, -1.0, np.log(2) / 2, -np.log(2) / 2]])
    out, base = np.empty_like(x), np.empty_like(x)
    _activations.math_f64("exp", x, out)
    _activations.math_f64("exp", x, base, simd=False)
    np.testing.assert_array_equal(out.view(np.int64), base.view(np.int64))
    with np.errstate(all="ignore"):
        libm = np.exp(x)
        extended = np.finfo(np.longdouble).nmant >= 63   # x86's 80-bit long double: an exact-enough reference
        exact = np.exp(x.astype(np.longdouble)) if extended else libm.astype(np.longdouble)
    normal = np.isfinite(libm) & (libm >= np.finfo(np.float64).tiny)
    ulp = np.spacing(exact[normal].astype(np.float64))
    err = np.abs(out[normal].astype(np.longdouble) - exact[normal]) / ulp
    assert err.max() <= (1.0 if extended else 1.5)
    sub = np.isfinite(libm) & ~normal   # subnormal results: within one subnormal step
    assert np.all(np.abs(out[sub] - libm[sub]) <= 5e-324)
    special = np.isnan(x) | np.isinf(libm) | np.isinf(x)
    np.testing.assert_array_equal(out[special], libm[special])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_column_sums_are_sequential_double_sums_in_simd_and_baseline(dtype):
    """The bias gradient's column sums (csrc/fnn_reduce.h): each column one double add chain over the rows in
    order (Python's float sum), from 0 or from db (accumulate), bit for bit from the AVX2 and the baseline loop;
    widths around the 32-column blocks and their 4-column vectors."""
    from fastnn._kernels import _dense
    r = np.random.default_rng(12)
    for n, m in ((1, 1), (7, 3), (200, 10), (200, 100), (33, 31), (5, 32), (9, 37), (64, 300), (2, 259)):
        dz = r.standard_normal((n, m)).astype(dtype)
        for accumulate in (False, True):
            start = r.standard_normal(m).astype(dtype)
            want = np.array([sum([float(start[j]) if accumulate else 0.0] + [float(v) for v in dz[:, j]])
                             for j in range(m)]).astype(dtype)
            for simd in (True, False):
                db = start.copy()
                _dense.colsum_sums(dz, db, accumulate, simd)
                np.testing.assert_array_equal(db, want, err_msg=f"{n}x{m} accumulate={accumulate} simd={simd}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_sum_of_squares_equals_its_numpy_twin(dtype):
    """scikit-learn's L2 term as the plan computes it: 16 partial sums in double across the weight arrays (element
    j of each array into sum j % 16, the last size % 16 into sum 0), added in a fixed order; the same bits from
    the AVX2 and the baseline loop and from this NumPy twin."""
    from fastnn._kernels import _dense

    def twin(arrays):
        s = np.zeros(16)
        for w in arrays:
            w = w.astype(np.float64)
            full = w.size - w.size % 16
            s = np.add.reduce(np.vstack([s, (w[:full] * w[:full]).reshape(-1, 16)]), axis=0)   # row by row
            for v in w[full:]:
                s[0] += v * v
        t = s[:8] + s[8:]
        return ((t[0] + t[4]) + (t[2] + t[6])) + ((t[1] + t[5]) + (t[3] + t[7]))

    r = np.random.default_rng(13)
    for sizes in ((1,), (15, 16, 17), (6400, 1000), (78400, 1000, 13)):
        arrays = [r.standard_normal(k).astype(dtype) for k in sizes]
        got = _dense.sum_of_squares(arrays)
        assert got == _dense.sum_of_squares(arrays, simd=False)
        assert got == twin(arrays), sizes
        assert got == pytest.approx(sum(float(np.sum(a.astype(np.float64) ** 2)) for a in arrays), rel=1e-13)
