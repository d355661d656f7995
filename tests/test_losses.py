"""Losses: compiled kernels vs NumPy twins, public classes vs PyTorch, finite differences,
the docs/numerics.md edge cases, the call/backward protocol and every validation error."""

import numpy as np
import pytest
from conftest import numerical_grad, tols
from numpy.testing import assert_allclose, assert_array_equal

import fastnn
import fastnn.losses as L
from fastnn._kernels import _losses as K
from fastnn._reference import losses as R

REDUCTIONS = ["mean", "sum", "none"]


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------

def make_data(kind, shape, dtype, rng, ignore_index=-100):
    """(y_pred, y) for a loss kind; labels are int64, everything else `dtype`."""
    C = shape[-1]
    x = rng.standard_normal(shape) * 3
    if kind == "reg":
        y = rng.standard_normal(shape)
    elif kind == "prob":  # BCE: probabilities and soft targets
        x = rng.uniform(0.05, 0.95, shape)
        y = rng.uniform(0, 1, shape)
    elif kind == "binary":  # BCEWithLogits: hard 0/1 targets with a few soft ones
        y = (rng.random(shape) < 0.5).astype(float)
        y.flat[::5] = rng.random(y.flat[::5].shape)
    elif kind in ("labels", "labels_ign", "logp", "logp_ign"):
        if kind.startswith("logp"):
            x = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
        y = rng.integers(0, C, shape[:-1])
        if kind.endswith("_ign"):
            y.flat[::4] = ignore_index
        return x.astype(dtype), y.astype(np.int64)
    elif kind == "probs":  # CE probability rows (sum to 1)
        e = np.exp(rng.standard_normal(shape))
        y = e / e.sum(axis=-1, keepdims=True)
    return x.astype(dtype), y.astype(dtype)


def make_kwargs(spec, rng):
    """Constructor kwargs; ("rand", shape) entries become positive random arrays."""
    return {k: rng.uniform(0.5, 2.0, v[1]) if isinstance(v, tuple) and v[0] == "rand" else v
            for k, v in spec.items()}


# (id, class name, constructor kwargs spec, data kind, y_pred shape)
CASES = [
    ("mse", "MSELoss", {}, "reg", (7, 13)),
    ("mse_col", "MSELoss", {}, "reg", (33, 1)),
    ("mse_1d", "MSELoss", {}, "reg", (13,)),
    ("mse_n1", "MSELoss", {}, "reg", (1, 1)),
    ("bce", "BCELoss", {}, "prob", (7, 13)),
    ("bce_w_class", "BCELoss", {"weight": ("rand", (5,))}, "prob", (33, 5)),
    ("bce_w_row", "BCELoss", {"weight": ("rand", (7, 1))}, "prob", (7, 13)),
    ("bce_w_full", "BCELoss", {"weight": ("rand", (33, 1))}, "prob", (33, 1)),
    ("bcel", "BCEWithLogitsLoss", {}, "binary", (33, 5)),
    ("bcel_w", "BCEWithLogitsLoss", {"weight": ("rand", (7, 13))}, "binary", (7, 13)),
    ("bcel_pw", "BCEWithLogitsLoss", {"pos_weight": ("rand", (5,))}, "binary", (33, 5)),
    ("bcel_w_pw", "BCEWithLogitsLoss", {"weight": ("rand", (33, 1)), "pos_weight": ("rand", (5,))},
     "binary", (33, 5)),
    ("bcel_1d", "BCEWithLogitsLoss", {"pos_weight": ("rand", (1,))}, "binary", (13,)),
    ("ce", "CrossEntropyLoss", {}, "labels", (33, 5)),
    ("ce_w", "CrossEntropyLoss", {"weight": ("rand", (13,))}, "labels", (7, 13)),
    ("ce_ignore", "CrossEntropyLoss", {}, "labels_ign", (33, 5)),
    ("ce_ignore_class", "CrossEntropyLoss", {"ignore_index": 2}, "labels_ign", (33, 5)),
    ("ce_ls", "CrossEntropyLoss", {"label_smoothing": 0.2}, "labels", (7, 13)),
    ("ce_w_ls_ignore", "CrossEntropyLoss", {"weight": ("rand", (5,)), "label_smoothing": 0.1},
     "labels_ign", (33, 5)),
    ("ce_ls1", "CrossEntropyLoss", {"label_smoothing": 1.0}, "labels", (7, 13)),
    ("ce_c1", "CrossEntropyLoss", {"label_smoothing": 0.3}, "labels", (7, 1)),
    ("ce_n1", "CrossEntropyLoss", {"weight": ("rand", (13,))}, "labels", (1, 13)),
    ("ce_single", "CrossEntropyLoss", {"weight": ("rand", (13,)), "label_smoothing": 0.1}, "labels", (13,)),
    ("ce_prob", "CrossEntropyLoss", {}, "probs", (33, 5)),
    ("ce_prob_w_ls", "CrossEntropyLoss", {"weight": ("rand", (13,)), "label_smoothing": 0.25}, "probs",
     (7, 13)),
    ("ce_prob_single", "CrossEntropyLoss", {"label_smoothing": 0.1}, "probs", (13,)),
    ("nll", "NLLLoss", {}, "logp", (33, 5)),
    ("nll_w", "NLLLoss", {"weight": ("rand", (13,))}, "logp", (7, 13)),
    ("nll_w_ignore", "NLLLoss", {"weight": ("rand", (5,))}, "logp_ign", (33, 5)),
    ("nll_ignore_class", "NLLLoss", {"ignore_index": 0}, "logp_ign", (7, 13)),
    ("nll_single", "NLLLoss", {}, "logp", (13,)),
]
CASE_IDS = [c[0] for c in CASES]


def build(case, dtype, rng, reduction):
    """(our loss, y_pred, y, upstream gradient for 'none' or None, kwargs)."""
    _, cls, spec, kind, shape = case
    kwargs = make_kwargs(spec, rng)
    x, y = make_data(kind, shape, dtype, rng, kwargs.get("ignore_index", -100))
    loss_fn = getattr(L, cls)(**kwargs, reduction=reduction)
    up = rng.standard_normal(loss_fn._loss_shape(x)).astype(dtype) if reduction == "none" else None
    return loss_fn, x, y, up, kwargs


# ------------------------------------------------------------------------------------------
# compiled kernels vs NumPy twins
# ------------------------------------------------------------------------------------------

def kernel_calls(case, dtype, rng, reduction, with_up):
    """Kernel-level positional args and kwargs for one case (flat arrays for element-wise losses)."""
    loss_fn, x, y, up, _ = build(case, dtype, rng, reduction)
    x, t = loss_fn._prepare(x, y)
    name = {"MSELoss": "mse_loss", "BCELoss": "bce_loss", "BCEWithLogitsLoss": "bce_with_logits_loss",
            "NLLLoss": "nll_loss"}.get(type(loss_fn).__name__)
    kw = {"reduction": reduction}
    if isinstance(loss_fn, L._ElementwiseLoss):
        for w in ("weight", "pos_weight"):
            if getattr(loss_fn, "_" + w) is not None:
                kw[w] = loss_fn._converted(w, x.dtype, x.shape).ravel()
        x, t = x.ravel(), t.ravel()
        n_loss = x.size
    else:
        C = x.shape[-1]
        x = x.reshape(-1, C)
        if loss_fn.weight is not None:
            kw["weight"] = loss_fn.weight.astype(dtype)
        if t.dtype.kind == "i":
            t = t.reshape(-1)
            kw["ignore_index"] = loss_fn.ignore_index
        else:
            t = t.reshape(-1, C)
        if isinstance(loss_fn, L.CrossEntropyLoss):
            name = "cross_entropy_loss" if t.ndim == 1 else "cross_entropy_prob_loss"
            kw["label_smoothing"] = loss_fn.label_smoothing
        n_loss = x.shape[0]
    if reduction == "none" and with_up:
        kw["grad_up"] = rng.standard_normal(n_loss).astype(dtype)
    return name, x, t, kw, n_loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_kernel_matches_numpy_twin(case, reduction, dtype, rng):
    for with_up in (False, True):
        name, x, t, kw, n_loss = kernel_calls(case, dtype, rng, reduction, with_up)
        results = []
        for module in (K, R):
            grad = np.full_like(x, np.nan)
            loss_out = np.full(n_loss, np.nan, dtype) if reduction == "none" else None
            value = getattr(module, name)(x, t, grad, **kw, loss_out=loss_out)
            results.append((value, grad, loss_out))
        (v_k, g_k, l_k), (v_r, g_r, l_r) = results
        rtol, atol = tols(dtype)
        assert isinstance(v_k, float)
        assert_allclose(v_k, v_r, rtol=rtol, atol=atol)
        assert g_k.dtype == dtype
        assert_allclose(g_k, g_r, rtol=rtol, atol=atol)
        if reduction == "none":
            assert_allclose(l_k, l_r, rtol=rtol, atol=atol)
            assert_allclose(v_k, l_k.sum(dtype=np.float64), rtol=1e-5)


@pytest.mark.parametrize("name", ["mse_loss", "bce_loss", "bce_with_logits_loss", "cross_entropy_loss",
                                  "cross_entropy_prob_loss", "nll_loss"])
def test_kernel_one_and_two_threads_agree(name, dtype, rng):
    """Above the parallel threshold the result does not depend on the thread count."""
    N, C = 600, 130  # 78000 elements: above every threshold
    z = rng.standard_normal((N, C)).astype(dtype)
    if name in ("mse_loss", "bce_loss", "bce_with_logits_loss"):
        x = rng.uniform(0.05, 0.95, N * C).astype(dtype) if name == "bce_loss" else z.ravel()
        args = (x, rng.random(N * C).astype(dtype))
    elif name == "cross_entropy_prob_loss":
        args = (z, rng.random((N, C)).astype(dtype))
    else:
        args = (z, rng.integers(0, C, N))
    results = []
    for n in (1, 2):
        fastnn.set_num_threads(n)
        grad = np.empty_like(args[0])
        results.append((getattr(K, name)(*args, grad), grad))
    assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    assert_array_equal(results[0][1], results[1][1])


# ------------------------------------------------------------------------------------------
# public classes vs PyTorch
# ------------------------------------------------------------------------------------------

def torch_loss(torch, cls, kwargs, reduction, x, y, up):
    """(loss, d loss / d x) from torch, with upstream gradient `up` (ones if None)."""
    kw = {k: torch.tensor(v, dtype=torch.from_numpy(x).dtype) if isinstance(v, np.ndarray) else v
          for k, v in kwargs.items()}
    xt = torch.tensor(x, requires_grad=True)
    loss = getattr(torch.nn, cls)(**kw, reduction=reduction)(xt, torch.tensor(y))
    loss.backward(torch.ones_like(loss) if up is None else torch.tensor(up))
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_torch(case, reduction, dtype, rng):
    torch = pytest.importorskip("torch")
    loss_fn, x, y, up, kwargs = build(case, dtype, rng, reduction)
    value = loss_fn(x, y)
    grad = loss_fn.backward(up)
    t_value, t_grad = torch_loss(torch, case[1], kwargs, reduction, x, y, up)
    rtol, atol = tols(dtype)
    if reduction == "none":
        assert isinstance(value, np.ndarray) and value.dtype == dtype and value.shape == t_value.shape
    else:
        assert isinstance(value, float)
    assert_allclose(value, t_value, rtol=rtol, atol=atol)
    assert grad.shape == x.shape and grad.dtype == dtype
    assert_allclose(grad, t_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("cls", ["MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss"])
def test_defaults_match_torch(cls):
    torch = pytest.importorskip("torch")
    ours, theirs = getattr(L, cls)(), getattr(torch.nn, cls)()
    for attr in ("reduction", "ignore_index", "label_smoothing", "weight", "pos_weight"):
        if hasattr(theirs, attr):
            assert getattr(ours, attr) == getattr(theirs, attr), attr


# ------------------------------------------------------------------------------------------
# finite differences (float64)
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", [c for c in CASES if np.prod(c[4]) <= 91], ids=lambda c: c[0])
def test_gradient_matches_finite_differences(case, reduction):
    rng = np.random.default_rng(7)
    loss_fn, x, y, up, _ = build(case, np.float64, rng, reduction)

    def f(xv):
        out = loss_fn(xv, y)
        return float(np.sum(out * up)) if reduction == "none" else out

    f(x)
    grad = loss_fn.backward(up)
    assert_allclose(grad, numerical_grad(f, x), rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------------
# docs/numerics.md edge cases
# ------------------------------------------------------------------------------------------

def test_bce_clamps_logs_and_floors_the_gradient_denominator():
    x = np.array([0.0, 1.0, 0.0, 1.0])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    loss_fn = L.BCELoss(reduction="none")
    assert_array_equal(loss_fn(x, y), [100.0, 100.0, 0.0, 0.0])
    assert_array_equal(loss_fn.backward(), [-1e12, 1e12, 0.0, 0.0])
    loss_fn = L.BCELoss(reduction="sum")
    assert loss_fn(x, y) == 200.0
    assert_array_equal(loss_fn.backward(), [-1e12, 1e12, 0.0, 0.0])
    loss_fn = L.BCELoss()  # mean divides by numel, weights or not
    assert loss_fn(x, y) == 50.0
    assert_array_equal(loss_fn.backward(), [-0.25e12, 0.25e12, 0.0, 0.0])
    loss_fn = L.BCELoss(weight=np.array([2.0, 1.0, 1.0, 1.0]))
    assert loss_fn(x, y) == 75.0
    assert_array_equal(loss_fn.backward(), [-0.5e12, 0.25e12, 0.0, 0.0])


def test_bce_edges_match_torch(dtype):
    torch = pytest.importorskip("torch")
    x = np.array([0.0, 1.0, 0.0, 1.0, 1e-20, 0.5], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.3], dtype)
    for reduction in REDUCTIONS:
        loss_fn = L.BCELoss(reduction=reduction)
        value, grad = loss_fn(x, y), loss_fn.backward()
        t_value, t_grad = torch_loss(torch, "BCELoss", {}, reduction, x, y, None)
        assert_allclose(value, t_value, rtol=1e-6)
        assert_allclose(grad, t_grad, rtol=1e-6)


def test_bce_with_logits_is_stable_at_800(dtype):
    z = np.array([800.0, -800.0, 800.0, -800.0], dtype)
    y = np.array([0.0, 1.0, 1.0, 0.0], dtype)
    loss_fn = L.BCEWithLogitsLoss(reduction="none")
    assert_array_equal(loss_fn(z, y), [800.0, 800.0, 0.0, 0.0])
    assert_array_equal(loss_fn.backward(), [1.0, -1.0, 0.0, 0.0])
    loss_fn = L.BCEWithLogitsLoss(reduction="none", pos_weight=np.array([3.0]))
    assert_array_equal(loss_fn(z, y), [800.0, 2400.0, 0.0, 0.0])
    assert_array_equal(loss_fn.backward(), [1.0, -3.0, 0.0, 0.0])
    torch = pytest.importorskip("torch")
    for reduction in REDUCTIONS:
        loss_fn = L.BCEWithLogitsLoss(reduction=reduction, pos_weight=np.array([3.0]))
        value, grad = loss_fn(z, y), loss_fn.backward()
        t_value, t_grad = torch_loss(torch, "BCEWithLogitsLoss", {"pos_weight": np.array([3.0])}, reduction,
                                     z, y, None)
        assert_allclose(value, t_value, rtol=1e-12)
        assert_allclose(grad, t_grad, rtol=1e-12)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_subtracts_the_row_max(dtype, label_smoothing):
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0], [1000.0, 1000.0, 1000.0]], dtype)
    y = np.array([1, 0, 2])
    loss_fn = L.CrossEntropyLoss(reduction="none", label_smoothing=label_smoothing)
    value, grad = loss_fn(z, y), loss_fn.backward()
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    if label_smoothing == 0:
        assert_allclose(value, [2000.0, 2000.0 + np.log(2), np.log(3)], rtol=1e-6)
        assert_allclose(grad, [[1, -1, 0], [-1, 0.5, 0.5], [1 / 3, 1 / 3, -2 / 3]], atol=1e-6)
    torch = pytest.importorskip("torch")
    t_value, t_grad = torch_loss(torch, "CrossEntropyLoss", {"label_smoothing": label_smoothing}, "none",
                                 z, y, None)
    rtol, atol = tols(dtype)
    assert_allclose(value, t_value, rtol=rtol, atol=atol)
    assert_allclose(grad, t_grad, rtol=rtol, atol=atol)


def test_cross_entropy_all_ignored(dtype):
    z = np.ones((3, 4), dtype)
    y = np.full(3, -100)
    loss_fn = L.CrossEntropyLoss(weight=np.arange(1.0, 5.0), label_smoothing=0.1)
    assert np.isnan(loss_fn(z, y))
    assert_array_equal(loss_fn.backward(), np.zeros((3, 4)))
    loss_fn = L.CrossEntropyLoss(reduction="sum")
    assert loss_fn(z, y) == 0.0
    assert_array_equal(loss_fn.backward(), np.zeros((3, 4)))
    loss_fn = L.NLLLoss()
    assert np.isnan(loss_fn(z, y))
    assert_array_equal(loss_fn.backward(), np.zeros((3, 4)))


@pytest.mark.parametrize("cls, kind", [("CrossEntropyLoss", "labels"), ("NLLLoss", "logp")])
def test_zero_weight_denominator_matches_torch(cls, kind, rng):
    """Kept rows whose class weights are all 0: mean is 0/0 and torch's gradient is NaN there too."""
    torch = pytest.importorskip("torch")
    x, _ = make_data(kind, (3, 4), np.float64, rng)
    y = np.array([0, 1, 1])
    weight = np.array([0.0, 0.0, 1.0, 1.0])
    loss_fn = getattr(L, cls)(weight=weight)
    value, grad = loss_fn(x, y), loss_fn.backward()
    t_value, t_grad = torch_loss(torch, cls, {"weight": weight}, "mean", x, y, None)
    assert np.isnan(value) and np.isnan(t_value)
    assert_allclose(grad, t_grad, equal_nan=True)


def test_cross_entropy_weight_mean_divides_by_weight_sum():
    z = np.zeros((2, 2))
    y = np.array([0, 1])
    loss_fn = L.CrossEntropyLoss(weight=np.array([1.0, 3.0]))
    assert_allclose(loss_fn(z, y), np.log(2))  # (1 + 3) log 2 / (1 + 3), not / N
    assert_allclose(loss_fn.backward(), [[-0.125, 0.125], [0.375, -0.375]])


def test_mse_is_torch_form_not_lecture_form():
    loss_fn = L.MSELoss()
    assert loss_fn(np.array([[3.0], [1.0]]), np.array([[1.0], [1.0]])) == 2.0  # (2^2 + 0) / numel
    assert_array_equal(loss_fn.backward(), [[2.0], [0.0]])  # 2 (x - y) / numel


def test_empty_batch_mean_is_nan():
    loss_fn = L.CrossEntropyLoss()
    assert np.isnan(loss_fn(np.zeros((0, 3)), np.zeros(0, dtype=int)))
    assert loss_fn.backward().shape == (0, 3)
    assert np.isnan(L.MSELoss()(np.zeros(0), np.zeros(0)))
    assert L.MSELoss(reduction="sum")(np.zeros(0), np.zeros(0)) == 0.0


# ------------------------------------------------------------------------------------------
# protocol: dtypes, layouts, backward(grad_output), the fast path
# ------------------------------------------------------------------------------------------

def test_backward_before_call_raises():
    for cls in (L.MSELoss, L.BCELoss, L.BCEWithLogitsLoss, L.CrossEntropyLoss, L.NLLLoss):
        with pytest.raises(RuntimeError, match=rf"{cls.__name__}\.backward\(\) was called before the loss"):
            cls().backward()


def test_backward_grad_output_scales(rng):
    x, y = make_data("labels", (7, 5), np.float32, rng)
    for reduction in ("mean", "sum"):
        loss_fn = L.CrossEntropyLoss(reduction=reduction)
        loss_fn(x, y)
        g = loss_fn.backward()
        for scale in (2.5, np.float64(2.5), np.array(2.5)):
            scaled = loss_fn.backward(scale)
            assert scaled.dtype == np.float32
            assert_allclose(scaled, 2.5 * g, rtol=1e-6)
        assert loss_fn.backward() is g
    loss_fn = L.CrossEntropyLoss(reduction="none")
    loss_fn(x, y)
    up = rng.standard_normal(7)
    assert_allclose(loss_fn.backward(up), loss_fn.backward() * up[:, None].astype(np.float32), rtol=1e-6)


def test_dtype_rules(rng):
    x32, y32 = make_data("reg", (7, 3), np.float32, rng)
    loss_fn = L.MSELoss()
    loss_fn(x32, y32.astype(np.float64))  # targets are converted to y_pred's dtype
    assert loss_fn.backward().dtype == np.float32
    for x in (x32.astype(np.float16), (x32 * 10).astype(np.int32), (x32 * 10).astype(np.int64).tolist()):
        loss_fn(x, y32)  # other numeric dtypes compute in float64
        g = loss_fn.backward()
        assert g.dtype == np.float64
        assert_allclose(g, 2 * (np.asarray(x, np.float64) - y32) / x32.size, rtol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if len(c[4]) == 2 and c[4][0] > 1], ids=lambda c: c[0])
def test_non_contiguous_and_read_only_inputs(case, dtype, rng):
    loss_fn, x, y, _, _ = build(case, dtype, rng, "mean")
    expected = loss_fn(x, y), loss_fn.backward()
    x_nc = np.asfortranarray(x)  # column-major, and a strided view of a wider array
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), dtype)
    wide[:, ::2] = x
    for xv in (x_nc, wide[:, ::2]):
        yv = y.copy()
        yv.setflags(write=False)
        xv.setflags(write=False)
        assert loss_fn(xv, yv) == pytest.approx(expected[0], rel=1e-6)
        assert_allclose(loss_fn.backward(), expected[1], rtol=1e-6, atol=1e-7)
    assert_array_equal(wide[:, ::2], x)  # inputs are never written


def test_forward_backward_fast_path(rng):
    """_forward_backward runs the kernel on prepared arrays into caller-owned buffers."""
    x, y = make_data("labels_ign", (33, 5), np.float32, rng)
    loss_fn = L.CrossEntropyLoss(weight=rng.uniform(0.5, 2, 5), label_smoothing=0.1)
    value, grad = loss_fn(x, y), loss_fn.backward()
    xp, t = loss_fn._prepare(x, y)
    grad_out = np.empty_like(xp)
    assert loss_fn._forward_backward(xp, t, grad_out) == value
    assert_array_equal(grad_out, grad)
    loss_fn = L.BCEWithLogitsLoss(reduction="none", pos_weight=np.ones(5))
    xp, t = loss_fn._prepare(*make_data("binary", (33, 5), np.float64, rng))
    loss_out, up = np.empty((33, 5)), rng.standard_normal((33, 5))
    grad_out = np.empty_like(xp)
    total = loss_fn._forward_backward(xp, t, grad_out, loss_out, up)
    assert_allclose(total, loss_out.sum())
    assert_allclose(grad_out, (1 / (1 + np.exp(-xp)) - t) * up, rtol=1e-12)
    with pytest.raises(ValueError, match="C-contiguous"):
        loss_fn._forward_backward(xp, t, np.empty((5, 33)).T, loss_out)


def test_weight_is_read_only_copy():
    w = np.array([1.0, 2.0])
    loss_fn = L.CrossEntropyLoss(weight=w)
    w[0] = 100.0
    assert loss_fn.weight[0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        loss_fn.weight[0] = 5.0


# ------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------

X7x5 = np.full((7, 5), 0.5)
LABELS7 = np.arange(7) % 5

BAD_CONSTRUCTORS = [
    (lambda: L.MSELoss(reduction="avg"), ValueError, r"reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
    (lambda: L.CrossEntropyLoss(reduction=None), TypeError, r"reduction must be a str, one of .*got NoneType None"),
    (lambda: L.CrossEntropyLoss(label_smoothing=1.5), ValueError, r"label_smoothing must be .* \[0, 1\], got 1\.5"),
    (lambda: L.CrossEntropyLoss(label_smoothing="0.1"), TypeError, r"label_smoothing must be a real number, got '0.1'"),
    (lambda: L.CrossEntropyLoss(ignore_index=1.0), TypeError, r"ignore_index must be an int, got 1\.0"),
    (lambda: L.NLLLoss(ignore_index=True), TypeError, r"ignore_index must be an int, got True"),
    (lambda: L.CrossEntropyLoss(weight=np.ones((2, 3))), ValueError, r"weight must be 1-D, got 2-D"),
    (lambda: L.NLLLoss(weight=[1.0, np.nan]), ValueError, r"weight must be finite"),
    (lambda: L.BCELoss(weight="heavy"), TypeError, r"weight must hold real numbers"),
    (lambda: L.BCEWithLogitsLoss(pos_weight=[1.0, np.inf]), ValueError, r"pos_weight must be finite"),
]

BAD_CALLS = [
    (L.MSELoss(), np.zeros((3, 1)), np.zeros(3), ValueError,
     r"y must have the same shape as y_pred: y_pred has shape \(3, 1\), y has shape \(3,\)"),
    (L.MSELoss(), np.zeros(3), np.zeros((3, 1)), ValueError, r"y_pred has shape \(3,\), y has shape \(3, 1\)"),
    (L.MSELoss(), np.array(["a", "b"]), np.zeros(2), TypeError, r"y_pred must hold real numbers"),
    (L.MSELoss(), np.zeros(2), [None, 1], TypeError, r"y must hold real numbers"),
    (L.BCELoss(), np.array([0.5, 1.5]), np.zeros(2), ValueError,
     r"y_pred must hold values in \[0, 1\] \(BCELoss takes probabilities.*got values in \[0\.5, 1\.5\]"),
    (L.BCELoss(), np.array([-0.1, 0.5]), np.zeros(2), ValueError, r"y_pred must hold values in \[0, 1\]"),
    (L.BCELoss(), np.array([np.nan, 0.5]), np.zeros(2), ValueError, r"y_pred must hold values in \[0, 1\]"),
    (L.BCELoss(), np.array([0.5, 0.5]), np.array([1.5, 0.0]), ValueError,
     r"y must hold values in \[0, 1\] \(BCELoss targets are probabilities.*got values in \[0\.0, 1\.5\]"),
    (L.BCELoss(), np.array([0.5, 0.5]), np.array([np.nan, 0.0]), ValueError, r"y must hold values in \[0, 1\]"),
    (L.BCELoss(), X7x5, np.zeros((5, 7)), ValueError, r"y_pred has shape \(7, 5\), y has shape \(5, 7\)"),
    (L.BCELoss(weight=np.ones(7)), X7x5, X7x5, ValueError,
     r"weight of shape \(7,\) must broadcast to y_pred's shape \(7, 5\)"),
    (L.BCEWithLogitsLoss(pos_weight=np.ones(3)), X7x5, X7x5, ValueError,
     r"pos_weight of shape \(3,\) must broadcast to y_pred's shape \(7, 5\)"),
    (L.BCEWithLogitsLoss(weight=np.ones((2, 7, 5))), X7x5, X7x5, ValueError,
     r"weight of shape \(2, 7, 5\) must broadcast"),
    (L.BCEWithLogitsLoss(), X7x5, X7x5[:, :4], ValueError, r"y_pred has shape \(7, 5\), y has shape \(7, 4\)"),
    (L.CrossEntropyLoss(), X7x5, LABELS7 + 1, ValueError,
     r"y must be class indices in \[0, 4\] or ignore_index=-100, got 5"),
    (L.CrossEntropyLoss(), X7x5, LABELS7 - 1, ValueError, r"y must be class indices .* got -1"),
    (L.NLLLoss(ignore_index=-1), X7x5, np.full(7, -100), ValueError, r"or ignore_index=-1, got -100"),
    (L.CrossEntropyLoss(), X7x5, LABELS7.astype(float), TypeError,
     r"y must be integer class indices, got floating dtype float64"),
    (L.CrossEntropyLoss(), X7x5, LABELS7 / 10, TypeError, r"y must be integer class indices"),
    (L.CrossEntropyLoss(), X7x5, LABELS7.astype(bool), TypeError, r"y must be integer class indices"),
    (L.CrossEntropyLoss(), X7x5, LABELS7[:6], ValueError, r"y must have shape \(7,\) .* got \(6,\)"),
    (L.CrossEntropyLoss(), X7x5, np.zeros((7, 4)), ValueError,
     r"y must have the same shape as y_pred: y_pred has shape \(7, 5\), y has shape \(7, 4\)"),
    (L.NLLLoss(), X7x5, np.full((7, 5), 0.2), TypeError,
     r"y must be integer class indices for NLLLoss \(probability targets are a CrossEntropyLoss feature\)"),
    (L.CrossEntropyLoss(), np.zeros((2, 7, 5)), LABELS7, ValueError, r"y_pred must be 1-D or 2-D, got 3-D"),
    (L.CrossEntropyLoss(), np.zeros(()), 0, ValueError, r"y_pred must be 1-D or 2-D, got 0-D"),
    (L.CrossEntropyLoss(), np.zeros((7, 0)), LABELS7, ValueError, r"y_pred must have at least one class"),
    (L.CrossEntropyLoss(weight=np.ones(4)), X7x5, LABELS7, ValueError,
     r"weight must have shape \(5,\), one entry per class of y_pred \(7, 5\), got shape \(4,\)"),
    (L.NLLLoss(weight=np.ones(6)), X7x5, LABELS7, ValueError, r"weight must have shape \(5,\)"),
    (L.CrossEntropyLoss(), np.zeros(5), np.array([1, 2]), ValueError,
     r"y must be a single class index \(0-d\) for a 1-D y_pred of shape \(5,\), got shape \(2,\)"),
    (L.CrossEntropyLoss(), np.zeros(5), 5, ValueError, r"y must be class indices in \[0, 4\].* got 5"),
    (L.CrossEntropyLoss(), np.zeros(5), 1.0, TypeError, r"y must be integer class indices"),
    (L.NLLLoss(), [["a"]], [0], TypeError, r"y_pred must hold real numbers"),
]


@pytest.mark.parametrize("make, exc, match", BAD_CONSTRUCTORS)
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("loss_fn, y_pred, y, exc, match", BAD_CALLS)
def test_bad_call_arguments(loss_fn, y_pred, y, exc, match):
    with pytest.raises(exc, match=match):
        loss_fn(y_pred, y)


def test_bad_grad_output(rng):
    x, y = make_data("labels", (7, 5), np.float64, rng)
    loss_fn = L.CrossEntropyLoss(reduction="none")
    loss_fn(x, y)
    with pytest.raises(ValueError, match=r"grad_output must have shape \(7,\), got \(7, 1\)"):
        loss_fn.backward(np.ones((7, 1)))
    with pytest.raises(TypeError, match=r"grad_output must hold real numbers"):
        loss_fn.backward(np.array(["a"] * 7))
    loss_fn = L.CrossEntropyLoss()
    loss_fn(x, y)
    with pytest.raises(TypeError, match=r"grad_output must be a real number, got array"):
        loss_fn.backward(np.ones(7))
    with pytest.raises(ValueError, match=r"grad_output must be a finite number .* got nan"):
        loss_fn.backward(float("nan"))


def test_kernel_wrappers_refuse_inconsistent_buffers():
    x = np.zeros(4)
    with pytest.raises(ValueError, match=r"reduction must be one of 'mean', 'sum', 'none'; got 'avg'"):
        K.mse_loss(x, x, np.empty(4), "avg")
    with pytest.raises(ValueError, match=r"reduction='none' needs a loss_out buffer"):
        K.bce_loss(x, x, np.empty(4), reduction="none")
    with pytest.raises(ValueError, match=r"grad_out has 3 entries, expected 4"):
        K.bce_with_logits_loss(x, x, np.empty(3))
    with pytest.raises(ValueError, match=r"weight has 3 entries, expected 2"):
        K.cross_entropy_loss(np.zeros((4, 2)), np.zeros(4, np.int64), np.empty((4, 2)), weight=np.ones(3))
    with pytest.raises(ValueError, match=r"grad_up has 3 entries, expected 4"):
        K.nll_loss(np.zeros((4, 2)), np.zeros(4, np.int64), np.empty((4, 2)), reduction="none",
                   loss_out=np.empty(4), grad_up=np.ones(3))
    with pytest.raises(ValueError, match=r"labels has 3 entries, expected 4"):
        K.cross_entropy_loss(np.zeros((4, 2)), np.zeros(3, np.int64), np.empty((4, 2)))
