"""Gradient clipping: kernels vs NumPy twins, clip_grad_norm_/clip_grad_value_ vs torch (docs/numerics.md section 8)."""

import math

import numpy as np
import pytest

import fastnn.clip as clip_module
from fastnn._config import get_num_threads, set_num_threads
from fastnn._kernels import _clip as kernels
from fastnn._reference import clip as reference
from fastnn.clip import clip_grad_norm_, clip_grad_value_
from fastnn.parameter import parameters_from_arrays

DTYPES = [np.float32, np.float64]
NORM_TYPES = [1.0, 2.0, math.inf, -math.inf, 3.0, 0.5, -1.5]
BIG = max(kernels.PAR_MIN_NORM, kernels.PAR_MIN_SCALE) + 4099  # takes the threaded path in every kernel
SIZES = [0, 1, 3, 4, 13, kernels.CHUNK + 3, 3 * kernels.CHUNK, BIG]
SHAPES = [(7, 13), (13,), (13, 5), (5,)]  # a small MLP: W0, b0, W1, b1
NORM_RTOL = {np.float32: 1e-6, np.float64: 1e-12}  # the returned total vs torch
GRAD_TOL = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-15)}


def _grad(rng, n, dtype, scale=1.0):
    return (rng.standard_normal(n) * scale).astype(dtype)


def _with_specials(g, rng, nan=False, inf=False):
    g = g.copy()
    if g.size and inf:
        g[rng.integers(g.size)] = -np.inf
    if g.size and nan:
        g[rng.integers(g.size)] = np.nan
    return g


# ---------------------------------------------------------------------------------------------------------------------
# kernels vs NumPy twins


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_norm_reduce_matches_twin(norm_type, n, dtype, rng):
    g = _grad(rng, n, dtype)
    if n:
        g[n // 2] = 0.0  # a zero: inf terms for negative p
    got, want = kernels.norm_reduce(g, norm_type), reference.norm_reduce(g, norm_type)
    if math.isinf(norm_type):
        assert got == want  # max/min are exact
    else:
        assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 5, kernels.CHUNK + 1, BIG])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("special", ["nan", "inf", "nan+inf"])
def test_norm_reduce_nan_and_inf(special, norm_type, n, dtype, rng):
    g = _with_specials(_grad(rng, n, dtype), rng, nan="nan" in special, inf="inf" in special)
    got, want = kernels.norm_reduce(g, norm_type), reference.norm_reduce(g, norm_type)
    if "nan" in special:
        assert math.isnan(got) and math.isnan(want)  # NaN propagates, also through max and min
    elif norm_type > 0:
        assert got == want == math.inf
    else:
        assert got == pytest.approx(want, rel=1e-12)  # |inf|^p = 0 for p < 0; min ignores inf


def test_norm_reduce_does_not_depend_on_the_thread_count(rng):
    g = _grad(rng, BIG, np.float32)
    threads = get_num_threads()
    try:
        set_num_threads(1)
        one = [kernels.norm_reduce(g, p) for p in NORM_TYPES]
        set_num_threads(2)
        two = [kernels.norm_reduce(g, p) for p in NORM_TYPES]
    finally:
        set_num_threads(threads)
    assert one == two


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_scale_and_clamp_match_twins_bitwise(n, dtype, rng):
    g = _with_specials(_grad(rng, n, dtype, 3.0), rng, nan=True, inf=True)
    for coef in (0.3, 1.0, 0.0, float("nan")):
        a, b = g.copy(), g.copy()
        kernels.scale_(a, coef)
        reference.scale_(b, coef)
        np.testing.assert_array_equal(a, b)
    for lo, hi in ((-1.0, 1.0), (-0.1, 0.1), (0.0, 0.0), (2.0, -2.0), (-math.inf, math.inf)):
        a, b = g.copy(), g.copy()
        kernels.clamp_(a, lo, hi)
        reference.clamp_(b, lo, hi)
        np.testing.assert_array_equal(a, b)
    assert np.isnan(a).sum() == np.isnan(g).sum()  # NaN stays NaN


def test_kernels_refuse_norm_type_zero_and_nan():
    g = np.ones(3)
    for p in (0.0, math.nan):
        with pytest.raises(ValueError, match="norm_type must be a nonzero number or"):
            kernels.norm_reduce(g, p)
        with pytest.raises(ValueError, match="norm_type must be a nonzero number or"):
            reference.norm_reduce(g, p)


# ---------------------------------------------------------------------------------------------------------------------
# clip_grad_norm_ / clip_grad_value_ vs torch

torch = pytest.importorskip("torch")
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def _pair(rng, dtype, none=(1,), scale=1.0, shapes=SHAPES, specials=None):
    """fastnn Parameters (one arena) and torch Parameters with equal grads; grads in `none` are None."""
    params = parameters_from_arrays([np.zeros(s) for s in shapes], dtype=dtype)
    tparams = [torch.nn.Parameter(torch.zeros(s, dtype=TORCH_DTYPE[dtype])) for s in shapes]
    for i, (p, tp) in enumerate(zip(params, tparams)):
        if i in none:
            continue
        g = _grad(rng, p.size, dtype, scale).reshape(p.shape)
        if specials and i in specials:
            g = _with_specials(g.ravel(), rng, **specials[i]).reshape(p.shape)
        p.grad = g
        tp.grad = torch.from_numpy(g.copy())
    return params, tparams


def _assert_grads(params, tparams, dtype, exact=False):
    for p, tp in zip(params, tparams):
        if tp.grad is None:
            assert p.grad is None
            continue
        if exact:
            np.testing.assert_array_equal(p.grad, tp.grad.numpy())
        else:
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), **GRAD_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf, 3.0, 0.5, -math.inf, "inf", 0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])  # clips / leaves the grads alone
def test_clip_grad_norm_matches_torch(max_norm, norm_type, dtype, rng):
    params, tparams = _pair(rng, dtype)
    total = clip_grad_norm_(params, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(ttotal.item(), rel=NORM_RTOL[dtype])
    _assert_grads(params, tparams, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_at_exactly_max_norm_still_shrinks(dtype, rng):
    """docs/numerics.md section 8: at total == max_norm the grads are multiplied by max_norm/(max_norm + 1e-6)."""
    params, tparams = _pair(rng, dtype)
    before = [p.grad.copy() for p in params if p.grad is not None]
    total = clip_grad_norm_(params, math.inf)  # coef = min(inf, 1) = 1: only measures
    assert all(np.array_equal(b, p.grad) for b, p in zip(before, [p for p in params if p.grad is not None]))
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, math.inf).item()
    assert total == pytest.approx(ttotal, rel=NORM_RTOL[dtype])
    assert clip_grad_norm_(params, total) == total
    torch.nn.utils.clip_grad_norm_(tparams, ttotal)
    _assert_grads(params, tparams, dtype)
    t = dtype(total)
    coef = (dtype(1) / (t + dtype(1e-6))) * t
    assert coef < 1
    np.testing.assert_array_equal(before[0] * coef, next(p.grad for p in params if p.grad is not None))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf, 3.0])
@pytest.mark.parametrize("special", ["inf", "nan", "nan+inf"])
def test_nonfinite_grads_match_torch(special, norm_type, dtype, rng):
    """An inf total zeroes finite grads and turns inf ones to NaN; a NaN total makes every grad NaN."""
    specials = {2: dict(nan="nan" in special, inf="inf" in special)}
    params, tparams = _pair(rng, dtype, specials=specials)
    total = clip_grad_norm_(params, 1.0, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 1.0, norm_type).item()
    assert (math.isnan(total) and math.isnan(ttotal)) or total == ttotal == math.inf
    _assert_grads(params, tparams, dtype, exact=True)  # assert_array_equal treats NaN == NaN


@pytest.mark.parametrize("special", ["inf", "nan"])
def test_error_if_nonfinite(special, rng):
    params, tparams = _pair(rng, np.float32, specials={0: {special: True}})
    before = [None if p.grad is None else p.grad.copy() for p in params]
    msg = (r"The total norm of order 2.0 for gradients from `parameters` is non-finite, so it cannot be clipped. "
           r"To disable this error and scale the gradients by the non-finite norm anyway, set "
           r"`error_if_nonfinite=False`")
    with pytest.raises(RuntimeError, match=msg):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match=msg):
        torch.nn.utils.clip_grad_norm_(tparams, 1.0, error_if_nonfinite=True)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.grad, b)  # nothing changed
    with pytest.raises(RuntimeError, match="total norm of order inf"):
        clip_grad_norm_(params, 1.0, norm_type="inf", error_if_nonfinite=True)
    params, _ = _pair(rng, np.float32)
    assert clip_grad_norm_(params, 1.0, error_if_nonfinite=True) > 0  # finite: no error


def test_no_grads_and_single_parameter(rng):
    params, _ = _pair(rng, np.float64, none=(0, 1, 2, 3))
    assert clip_grad_norm_(params, 1.0) == 0.0
    clip_grad_value_(params, 0.1)
    assert all(p.grad is None for p in params)
    params, tparams = _pair(rng, np.float64)
    total = clip_grad_norm_(params[0], 0.1)
    assert total == pytest.approx(torch.nn.utils.clip_grad_norm_(tparams[0], 0.1).item(), rel=1e-12)
    np.testing.assert_allclose(params[0].grad, tparams[0].grad.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(params[2].grad, tparams[2].grad.numpy())  # not passed, not touched


def test_one_kernel_call_per_run(rng, monkeypatch):
    calls = []

    def counting(fn):
        def wrapper(g, *args):
            calls.append((fn.__name__, g.size))
            return fn(g, *args)
        return wrapper

    for name in ("norm_reduce", "scale_", "clamp_"):
        monkeypatch.setattr(clip_module, name, counting(getattr(kernels, name)))
    params, _ = _pair(rng, np.float32, none=())
    n = sum(p.size for p in params)
    clip_grad_norm_(params, 0.1)
    clip_grad_value_(params[::-1], 0.1)  # any order: sorted back into the arena
    assert calls == [("norm_reduce", n), ("scale_", n), ("clamp_", n)]
    calls.clear()
    params, _ = _pair(rng, np.float32, none=(1,))  # a None grad splits the arena into two runs
    clip_grad_norm_(params, 0.1)
    assert [c[0] for c in calls] == ["norm_reduce", "norm_reduce", "scale_", "scale_"]


@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0])
def test_several_arenas_mixed_dtypes_order_and_duplicates(norm_type, rng):
    """Two arenas (float32 and float64), shuffled, one parameter listed twice: as torch."""
    p32, t32 = _pair(rng, np.float32, none=(3,))
    p64, t64 = _pair(rng, np.float64, none=(0,), shapes=[(4, 3), (9,)])
    order = [4, 0, 5, 2, 1, 3, 0]  # p32[0] twice: counted and scaled twice, as in torch
    params, tparams = [(p32 + p64)[i] for i in order], [(t32 + t64)[i] for i in order]
    total = clip_grad_norm_(params, 0.3, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 0.3, norm_type)
    assert ttotal.dtype == torch.float64 and total == pytest.approx(ttotal.item(), rel=1e-7)
    _assert_grads(p32, t32, np.float32)
    for p, tp in zip(p64, t64):  # torch's total carries the float32 rounding of its float32 parameters' norms
        if tp.grad is not None:
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-7)


def test_large_float32_norm_is_accurate(rng):
    """Above the thresholds: matches torch's float64 norm to float32 rounding (torch's float32 sum drifts)."""
    params, _ = _pair(rng, np.float32, none=(), shapes=[(BIG,), (999,)])
    grads64 = [torch.from_numpy(p.grad.astype(np.float64)) for p in params]
    exact = torch.linalg.vector_norm(torch.cat(grads64)).item()
    total = clip_grad_norm_(params, 1.0)
    assert total == pytest.approx(exact, rel=1e-7)
    scale = np.float32(1) / (np.float32(total) + np.float32(1e-6)) * np.float32(1.0)
    np.testing.assert_array_equal(params[0].grad, (grads64[0].numpy().astype(np.float32) * scale))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip_value", [0.1, 1.0, 0.0, math.inf])
def test_clip_grad_value_matches_torch(clip_value, dtype, rng):
    specials = {0: dict(nan=True, inf=True), 2: dict(inf=True)}
    params, tparams = _pair(rng, dtype, specials=specials)
    if dtype == np.float32:  # values on and next to the float32 bound
        g = params[2].grad
        g.ravel()[:4] = [np.float32(0.1), np.nextafter(np.float32(0.1), 1), -np.float32(0.1), np.float32(-1.0)]
        tparams[2].grad = torch.from_numpy(g.copy())
    assert clip_grad_value_(params, clip_value) is None
    torch.nn.utils.clip_grad_value_(tparams, clip_value)
    _assert_grads(params, tparams, dtype, exact=True)


def test_clip_grad_value_large_run(rng):
    params, tparams = _pair(rng, np.float32, none=(), shapes=[(BIG,)], scale=2.0)
    clip_grad_value_(params, 1.5)
    torch.nn.utils.clip_grad_value_(tparams, 1.5)
    _assert_grads(params, tparams, np.float32, exact=True)


# ---------------------------------------------------------------------------------------------------------------------
# bad inputs

BAD = [
    (dict(max_norm=-1.0), ValueError, r"max_norm must be a number >= 0 \(inf allowed\), got -1.0"),
    (dict(max_norm=float("nan")), ValueError, r"max_norm must be a number >= 0 \(inf allowed\), got nan"),
    (dict(max_norm="1"), TypeError, r"max_norm must be a real number, got '1'"),
    (dict(max_norm=1.0, norm_type="two"), ValueError, r"norm_type must be a real number or 'inf', got 'two'"),
    (dict(max_norm=1.0, norm_type=float("nan")), ValueError, r"norm_type must be a real number or 'inf', got nan"),
    (dict(max_norm=1.0, norm_type=True), TypeError, r"norm_type must be a real number or 'inf', got True"),
    (dict(max_norm=1.0, error_if_nonfinite=1), TypeError, r"error_if_nonfinite must be a bool, got 1"),
    (dict(max_norm=1.0, foreach="yes"), TypeError, r"foreach must be a bool, got 'yes'"),
]


@pytest.mark.parametrize("kwargs, exc, match", BAD, ids=[str(k) for k, _, _ in BAD])
def test_clip_grad_norm_bad_arguments(kwargs, exc, match, rng):
    params, _ = _pair(rng, np.float64)
    before = [None if p.grad is None else p.grad.copy() for p in params]
    with pytest.raises(exc, match=match):
        clip_grad_norm_(params, **kwargs)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.grad, b)


def test_bad_parameters_and_clip_value(rng):
    params, _ = _pair(rng, np.float64)
    for bad, name in ((np.ones(3), "ndarray"), ("w", "str"), (3, "int")):
        with pytest.raises(TypeError, match=f"parameters must be a Parameter or an iterable of Parameters, got {name}"):
            clip_grad_norm_(bad, 1.0)
    with pytest.raises(TypeError, match="got an item of type ndarray"):
        clip_grad_value_([params[0], np.ones(3)], 1.0)
    with pytest.raises(ValueError, match=r"clip_value must be a number >= 0 \(inf allowed\), got -0.5"):
        clip_grad_value_(params, -0.5)
    with pytest.raises(TypeError, match=r"clip_value must be a real number, got None"):
        clip_grad_value_(params, None)


def test_empty_generator_warns():
    with pytest.warns(UserWarning, match="`parameters` is an empty generator, no gradient clipping will occur"):
        assert clip_grad_norm_((p for p in []), 1.0) == 0.0
