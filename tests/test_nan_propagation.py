"""NaN, +-inf and -0 through every activation and loss, forward and backward (issue 9 item 4).

A NaN must never be swallowed: the kernels, their NumPy twins and the three execution paths
(per-layer, eval plan, train step) give PyTorch's values. The oracle is torch on 64-wide rows of
the same dtype (its vectorised path, the one a real layer takes). Where torch disagrees with
itself fastnn follows torch float64 in both dtypes: float32 gelu(+inf) is NaN in torch's
vectorised erf but +inf in its scalar path and in float64 (fastnn: +inf); elu'(NaN) is NaN on
torch's vectorised path and 1 in its scalar tail (fastnn: NaN, as the table below checks).
"""

import numpy as np
import pytest
from conftest import tols

import fastnn as fnn
from fastnn._kernels import _activations as K
from fastnn._kernels import _losses as KL
from fastnn._reference import activations as RA
from fastnn._reference import losses as RL

ACTS = list(K.CODES)
PARAM = {"leaky_relu": 0.01, "elu": 0.7, "softplus": (2.0, 5.0)}


def _pp(name):
    """The kernel's (param, param2) for `name`."""
    p = PARAM.get(name, 0.0)
    return tuple(p) if isinstance(p, tuple) else (p, 0.0)
SPECIALS = [np.nan, np.inf, -np.inf, -0.0, 0.0, 100.0, -100.0, 1e30, -1e30]
COLS = [0, 3, 4, 7, 8, 15, 16, 31, 33, 62, 63]   # several SIMD lanes, vector bodies and tails


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _torch_act(torch, name, t, p):
    F = torch.nn.functional
    return {
        "linear": lambda: t * 1, "relu": lambda: torch.relu(t), "leaky_relu": lambda: F.leaky_relu(t, p),
        "sigmoid": lambda: torch.sigmoid(t), "tanh": lambda: torch.tanh(t), "gelu": lambda: F.gelu(t),
        "gelu_tanh": lambda: F.gelu(t, approximate="tanh"), "elu": lambda: F.elu(t, p), "silu": lambda: F.silu(t),
        "softmax": lambda: torch.softmax(t, 1), "softsign": lambda: F.softsign(t),
        "softplus": lambda: F.softplus(t, *p),
    }[name]()


def _assert_same(got, want, dtype, what):
    """Same NaN and +-inf positions; finite entries within the dtype's tolerance."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    got, want = np.atleast_1d(got), np.atleast_1d(want)
    for test, label in ((np.isnan, "NaN"), (np.isposinf, "+inf"), (np.isneginf, "-inf")):
        bad = np.argwhere(test(got) != test(want))
        assert not bad.size, f"{what}: {label} differs at {bad[:5].tolist()}: got {got[tuple(bad[0])]}, " \
                             f"want {want[tuple(bad[0])]}"
    fin = np.isfinite(want)
    rtol, atol = tols(dtype)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=atol, err_msg=what)


def _special_z(dtype):
    """Rows of 64 with each special value at COLS, a row of -inf (softmax: NaN) and one with two +inf."""
    z = np.random.default_rng(5).standard_normal((len(SPECIALS) + 2, 64)) * 2
    for r, v in enumerate(SPECIALS):
        z[r, COLS] = v
    z[-2] = -np.inf
    z[-1, [5, 40]] = np.inf
    return z.astype(dtype)


def _backward_inputs(case, dtype):
    """(z, g): ones g at special z; NaN g at finite z (<0, -0, 0, >0, saturated); NaN g at special z."""
    if case == "ones_g":
        z = _special_z(dtype)
        return z, np.ones_like(z)
    if case == "nan_g_finite_z":
        values = [-2.0, -0.0, 0.0, 2.0, -100.0, 100.0]
        z = np.random.default_rng(6).standard_normal((len(values) + 1, 64)) * 2
        for r, v in enumerate(values):
            z[r, COLS] = v
        z = z.astype(dtype)
    else:
        z = _special_z(dtype)
    g = np.ones_like(z)
    g[:-1, COLS] = np.nan   # the last row keeps a finite g
    return z, g


def _kernel_forward(z, name):
    a = np.empty_like(z)
    K.forward(z.copy(), np.empty(0, z.dtype), a, K.CODES[name], *_pp(name))
    return a


def _kernel_backward(g, z, name):
    dz = np.empty_like(z)
    K.backward(g, z, _kernel_forward(z, name), dz, K.CODES[name], *_pp(name))
    return dz


def _twin(z, g, name):
    """The NumPy twin's forward and (given g) backward."""
    with np.errstate(all="ignore"):
        a = np.empty_like(z)
        RA.forward(z.copy(), np.empty(0, z.dtype), a, K.CODES[name], *_pp(name))
        if g is None:
            return a
        dz = np.empty_like(z)
        RA.backward(g, z, a, dz, K.CODES[name], *_pp(name))
        return dz


def _torch_grad(torch, z, g, name):
    zt = torch.tensor(z, requires_grad=True)
    _torch_act(torch, name, zt, PARAM.get(name, 0.0)).backward(torch.tensor(g))
    return zt.grad.numpy()


# ------------------------------------------------------------------------------ activations vs torch

@pytest.mark.parametrize("name", ACTS)
def test_activation_forward_nan_inf_matches_torch(name, dtype, torch):
    z = _special_z(dtype)
    a = _kernel_forward(z, name)
    want = _torch_act(torch, name, torch.tensor(z), PARAM.get(name, 0.0)).numpy().copy()
    if name == "gelu" and dtype == np.float32:
        want[np.isposinf(z)] = np.inf   # torch float32's vectorised erf gives NaN; its float64 and scalar paths inf
    _assert_same(a, want, dtype, f"{name} forward")
    neg_zero = (z == 0) & np.signbit(z) & (want == 0)   # f(-0) keeps torch's sign (relu, elu, tanh, gelu, ...)
    np.testing.assert_array_equal(np.signbit(a[neg_zero]), np.signbit(want[neg_zero]), err_msg=f"{name}(-0)")


@pytest.mark.parametrize("case", ["ones_g", "nan_g_finite_z", "nan_g_special_z"])
@pytest.mark.parametrize("name", ACTS)
def test_activation_backward_nan_inf_matches_torch(name, case, dtype, torch):
    z, g = _backward_inputs(case, dtype)
    _assert_same(_kernel_backward(g, z, name), _torch_grad(torch, z, g, name), dtype, f"{name} backward ({case})")


def test_relu_keeps_nan_and_negative_zero():
    """The issue's case: C's `x > 0 ? x : 0` made relu(NaN) = 0; torch.relu(NaN) is NaN, relu'(NaN) = 1."""
    for dt in (np.float32, np.float64):
        z = np.array([[np.nan, -0.0, 0.0, -1.0, 2.0, np.inf, -np.inf]], dt)
        a = _kernel_forward(z, "relu")
        np.testing.assert_array_equal(a, [[np.nan, 0, 0, 0, 2, np.inf, 0]])
        assert np.signbit(a[0, 1]) and not np.signbit(a[0, 2])
        np.testing.assert_array_equal(_kernel_backward(np.full_like(z, 3), z, "relu"), [[3, 0, 0, 0, 3, 3, 0]])
        np.testing.assert_array_equal(_kernel_backward(np.full_like(z, np.nan), z, "relu"),
                                      [[np.nan, 0, 0, 0, np.nan, np.nan, 0]])


# ------------------------------------------------------------------------------ the NumPy twins

@pytest.mark.parametrize("name", ACTS)
def test_activation_twin_agrees_with_kernel_on_nan_inf(name, dtype):
    z = _special_z(dtype)
    _assert_same(_twin(z, None, name), _kernel_forward(z, name), dtype, f"{name} twin forward")
    for case in ("ones_g", "nan_g_finite_z", "nan_g_special_z"):
        z, g = _backward_inputs(case, dtype)
        _assert_same(_twin(z, g, name), _kernel_backward(g, z, name), dtype, f"{name} twin backward ({case})")


@pytest.mark.parametrize("name", ACTS)
def test_activation_nan_inf_in_the_threaded_path(name, dtype):
    """A block large enough to be split across OpenMP threads keeps every NaN/inf where the twin has it."""
    rng = np.random.default_rng(8)
    z = (rng.standard_normal((256, 1024)) * 3).astype(dtype)   # 262144 elements: at every PAR_MIN
    idx = rng.integers(0, z.size, 2000)
    z.flat[idx] = np.array(SPECIALS, dtype)[rng.integers(0, len(SPECIALS), idx.size)]
    g = np.ones_like(z)
    g.flat[rng.integers(0, z.size, 500)] = np.nan
    a = _kernel_forward(z, name)
    assert np.isnan(a).any()
    _assert_same(a, _twin(z, None, name), dtype, f"{name} threaded forward")
    _assert_same(_kernel_backward(g, z, name), _twin(z, g, name), dtype, f"{name} threaded backward")


# ------------------------------------------------------------------------------ csrc/fnn_math.h

@pytest.mark.parametrize("fn", ["exp", "expm1", "tanh", "erf"])
def test_float32_math_specials_in_every_lane(fn):
    """NaN, +-inf, +-0 and saturating magnitudes give libm's value whatever SIMD lane they land in."""
    from scipy.special import erf
    ref = {"exp": np.exp, "expm1": np.expm1, "tanh": np.tanh, "erf": erf}[fn]
    vals = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30, -1e30, 89.0, -104.5, 3e38, -3e38]
    x = np.array(vals * 9 + vals[:5], np.float32)   # 104 entries: each value in many lanes and the tail
    out = np.empty_like(x)
    K.math_f32(fn, x, out)
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(want))


# ------------------------------------------------------------------------------ losses vs torch

def _torch_loss(torch, fn, x, target, **kw):
    xt = torch.tensor(x, requires_grad=True)
    loss = fn(xt, target, **kw)
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), xt.grad.numpy()


def _fnn_loss(loss_fn, x, y):
    value = loss_fn(x, y)
    return value, loss_fn.backward()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["mse", "bce_with_logits", "bce_with_logits_weighted"])
def test_elementwise_loss_nan_inf_matches_torch(kind, reduction, dtype, torch):
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    for v in (np.nan, np.inf, -np.inf):
        for y0 in (0.0, 0.5, 1.0):
            x = rng.standard_normal((3, 4)).astype(dtype)
            y = rng.uniform(0, 1, (3, 4)).astype(dtype)
            x[1, 2], y[1, 2] = v, y0
            what = f"{kind} {reduction} x={v} y={y0}"
            if kind == "mse":
                ours = _fnn_loss(fnn.losses.MSELoss(reduction=reduction), x, y)
                want = _torch_loss(torch, F.mse_loss, x, torch.tensor(y), reduction=reduction)
                twin = RL.mse_loss
                kw = {}
            else:
                kw = {} if kind == "bce_with_logits" else {"weight": np.float64([0.5, 2.0, 1.0, 3.0]),
                                                           "pos_weight": np.float64([1.5, 0.5, 2.0, 1.0])}
                ours = _fnn_loss(fnn.losses.BCEWithLogitsLoss(reduction=reduction, **kw), x, y)
                want = _torch_loss(torch, F.binary_cross_entropy_with_logits, x, torch.tensor(y), reduction=reduction,
                                   **{k: torch.tensor(w.astype(dtype)) for k, w in kw.items()})
                twin = RL.bce_with_logits_loss
                kw = {k: np.broadcast_to(w, x.shape).ravel() for k, w in kw.items()}
            _assert_same(ours[0], want[0], dtype, what + " loss")
            _assert_same(ours[1], want[1], dtype, what + " grad")
            grad, loss_out = np.empty(x.size), np.empty(x.size)
            with np.errstate(all="ignore"):
                value = twin(x.ravel(), y.ravel(), grad, reduction=reduction, loss_out=loss_out, **kw)
            _assert_same(loss_out.reshape(x.shape) if reduction == "none" else value, want[0], dtype, what + " twin")
            _assert_same(grad.reshape(x.shape), want[1], dtype, what + " twin grad")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_nan_is_rejected_by_the_api_and_propagated_by_the_kernel(reduction, dtype, torch):
    """torch.nn.functional.binary_cross_entropy raises for a NaN probability; so does BCELoss (ValueError).
    The kernel (fed a NaN by a compiled plan, e.g. a sigmoid of a NaN) gives a NaN loss and gradient there."""
    x = np.array([0.3, np.nan, 0.0, 1.0, 0.9], dtype)
    y = np.array([1.0, 1.0, 0.0, 1.0, 0.0], dtype)
    with pytest.raises(ValueError, match="y_pred"):
        fnn.losses.BCELoss(reduction=reduction)(x, y)
    finite = x.copy()
    finite[1] = 0.5
    want_loss, want_grad = _torch_loss(torch, torch.nn.functional.binary_cross_entropy, finite, torch.tensor(y),
                                       reduction="none")
    if reduction == "mean":
        want_grad = want_grad / x.size
    for kernel in (KL.bce_loss, RL.bce_loss):
        grad, loss_out = np.empty_like(x), np.empty_like(x)
        with np.errstate(all="ignore"):
            value = kernel(x, y, grad, None, reduction, loss_out if reduction == "none" else None)
        assert np.isnan(value)
        np.testing.assert_array_equal(np.isnan(grad), [False, True, False, False, False])
        keep = [0, 2, 3, 4]
        _assert_same(grad[keep], want_grad[keep], dtype, f"bce grad {kernel.__module__}")
        if reduction == "none":
            np.testing.assert_array_equal(np.isnan(loss_out), [False, True, False, False, False])
            _assert_same(loss_out[keep], want_loss[keep], dtype, f"bce loss {kernel.__module__}")


def _class_cases():
    """(label, row-0 column of the special, label smoothing, weighted, ignored row) cases for CE/NLL."""
    for col in (0, 1):   # the special at the target (class 0) or at another class
        for eps in (0.0, 0.1):
            for weighted in (False, True):
                yield col, eps, weighted, False
    yield 0, 0.0, False, True
    yield 1, 0.1, True, True


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["cross_entropy", "cross_entropy_prob", "nll"])
def test_class_loss_nan_inf_matches_torch(kind, reduction, dtype, torch):
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    for v in (np.nan, np.inf, -np.inf):
        for col, eps, weighted, ignored in _class_cases():
            if kind == "nll" and eps:
                continue
            x = rng.standard_normal((4, 5)).astype(dtype)
            x[0, col] = v
            labels = np.array([0, 2, 4, 1])
            if ignored:
                labels[0] = -100
            w = np.float64([0.5, 1.0, 2.0, 1.5, 0.0]) if weighted else None
            wt = None if w is None else torch.tensor(w.astype(dtype))
            what = f"{kind} {reduction} x[0,{col}]={v} eps={eps} weighted={weighted} ignored={ignored}"
            if kind == "nll":
                ours = _fnn_loss(fnn.losses.NLLLoss(weight=w, reduction=reduction), x, labels)
                want = _torch_loss(torch, F.nll_loss, x, torch.tensor(labels), weight=wt, reduction=reduction)
                twin = (RL.nll_loss, labels, {})
            elif kind == "cross_entropy":
                ours = _fnn_loss(fnn.losses.CrossEntropyLoss(weight=w, reduction=reduction, label_smoothing=eps),
                                 x, labels)
                want = _torch_loss(torch, F.cross_entropy, x, torch.tensor(labels), weight=wt, reduction=reduction,
                                   label_smoothing=eps)
                twin = (RL.cross_entropy_loss, labels, {"label_smoothing": eps})
            else:
                t = rng.uniform(0, 1, x.shape)
                t[0, col] = 0.0   # a zero target at the special: torch's 0 * log p is NaN at -inf
                t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
                ours = _fnn_loss(fnn.losses.CrossEntropyLoss(weight=w, reduction=reduction, label_smoothing=eps),
                                 x, t)
                want = _torch_loss(torch, F.cross_entropy, x, torch.tensor(t), weight=wt, reduction=reduction,
                                   label_smoothing=eps)
                twin = (RL.cross_entropy_prob_loss, t, {"label_smoothing": eps})
            _assert_same(ours[0], want[0], dtype, what + " loss")
            _assert_same(ours[1], want[1], dtype, what + " grad")
            fn, target, kw = twin
            grad, loss_out = np.empty(x.shape), np.empty(x.shape[0])
            with np.errstate(all="ignore"):
                value = fn(x, target, grad, weight=w, reduction=reduction, loss_out=loss_out, **kw)
            _assert_same(loss_out if reduction == "none" else value, want[0], dtype, what + " twin")
            _assert_same(grad, want[1], dtype, what + " twin grad")


# ------------------------------------------------------------------------------ the three execution paths

def _torch_model(torch, layers, x):
    """The model's forward in torch from fastnn's weights: (output, [weight and bias leaves])."""
    h, leaves = torch.tensor(x), []
    for layer in layers:
        if isinstance(layer, fnn.Dense):
            w = torch.tensor(layer.weight.data, requires_grad=True)
            b = torch.tensor(layer.bias.data, requires_grad=True)
            leaves += [w, b]
            h = h @ w + b
            act = layer.activation
        elif isinstance(layer, fnn.Dropout):
            continue
        else:
            act = layer
        h = _torch_act(torch, act.kind, h, (act.param, act.param2) if act.kind == "softplus" else act.param)
    return h, leaves


def _act_layer(act):
    if act == "gelu_tanh":
        return fnn.GELU(approximate="tanh")
    if act == "softplus":
        return fnn.Softplus(*PARAM["softplus"])
    return fnn.ELU(alpha=PARAM["elu"]) if act == "elu" else fnn.layers.get_activation(act)


def _model(act, dtype, split):
    """Dense -> act -> Dense; split=True puts the activation in a stage of its own (behind a p=0 dropout)."""
    layer = _act_layer(act)
    first = [fnn.Dense(5, 16), fnn.Dropout(0.0), layer] if split else [fnn.Dense(5, 16, layer)]
    layers = first + [fnn.Dense(16, 3)]
    return fnn.Sequential(layers, dtype=dtype, seed=3), layers


def _x_with_specials(dtype, n=6):
    """n rows of 5 features; NaN, +inf and -inf in rows 1, 3, 4 (n == 1: a NaN in the only row)."""
    x = np.random.default_rng(4).standard_normal((n, 5)).astype(dtype)
    if n == 1:
        x[0, 2] = np.nan
    else:
        x[1, 0], x[3, 2], x[4, 4] = np.nan, np.inf, -np.inf
    return x


@pytest.mark.parametrize("split", [False, True], ids=["fused", "act_stage"])
@pytest.mark.parametrize("act", ACTS)
def test_per_layer_path_propagates_nan_as_torch(act, split, dtype, torch):
    """model.train(); out = model(x); loss; model.backward(g): outputs, loss and gradients as torch's."""
    model, layers = _model(act, dtype, split)
    x = _x_with_specials(dtype)
    y = np.zeros((6, 3), dtype)
    model.train()
    out = model(x)
    want_out, leaves = _torch_model(torch, layers, x)
    _assert_same(out, want_out.detach().numpy(), dtype, f"{act} per-layer output")
    if act == "relu":   # the symptom: the NaN row came out all zeros and the loss finite
        assert np.isnan(out[1]).all()
    loss_fn = fnn.losses.MSELoss()
    loss = loss_fn(out, y)
    want_loss = torch.nn.functional.mse_loss(want_out, torch.tensor(y))
    assert np.isnan(loss) and np.isnan(want_loss.item())
    model.zero_grad()
    model.backward(loss_fn.backward())
    want_loss.backward()
    for p, leaf in zip(model.parameters(), leaves):
        _assert_same(p.grad, leaf.grad.numpy(), dtype, f"{act} per-layer gradient")


@pytest.mark.parametrize("n", [1, 6, 300])
@pytest.mark.parametrize("act", ACTS)
def test_eval_plan_propagates_nan_as_torch(act, n, dtype, torch):
    """model.eval(); model(x) runs the compiled InferPlan (one row: its GEMV): NaN/inf rows as torch's."""
    model, layers = _model(act, dtype, split=False)
    x = _x_with_specials(dtype, n)
    model.eval()
    out = model(x)
    assert model._engine()._infer_pool   # the compiled plan ran, not the per-layer stages
    _assert_same(out, _torch_model(torch, layers, x)[0].detach().numpy(), dtype, f"{act} eval output")
    if act == "relu":
        assert np.isnan(out[0 if n == 1 else 1]).all()


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce_with_logits", "bce", "nll"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "elu", "gelu", "tanh"])
def test_train_step_plan_propagates_a_nan_weight_as_torch(act, loss, dtype, torch):
    """model.train_step(x, y) runs the compiled TrainPlan (fit refuses a non-finite X, so the NaN is
    placed in a weight): the loss and the SGD-updated weights are NaN where torch's are."""
    F = torch.nn.functional
    out_act = "sigmoid" if loss == "bce" else None
    layers = [fnn.Dense(5, 16, _act_layer(act)), fnn.Dense(16, 3, out_act)]
    model = fnn.Sequential(layers, dtype=dtype, seed=3)
    model.compile(fnn.optim.SGD(model.parameters(), lr=0.1), loss)
    model.parameters()[0].data[0, 0] = np.nan
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 5)).astype(dtype)
    x[:, 0] = 0.0   # NaN * 0 is still NaN: the whole first hidden column goes NaN
    y = rng.integers(0, 3, 6) if loss in ("cross_entropy", "nll") else rng.uniform(0, 1, (6, 3)).astype(dtype)
    want_out, leaves = _torch_model(torch, layers, x)
    if loss == "bce":   # torch's binary_cross_entropy raises for NaN; its formula (clamp keeps NaN) instead
        p, t = want_out, torch.tensor(y)
        want = -(t * torch.clamp(torch.log(p), min=-100) + (1 - t) * torch.clamp(torch.log1p(-p), min=-100)).mean()
    else:
        fn = {"mse": F.mse_loss, "cross_entropy": F.cross_entropy, "nll": F.nll_loss,
              "bce_with_logits": F.binary_cross_entropy_with_logits}[loss]
        want = fn(want_out, torch.tensor(y))
    want.backward()
    value = model.train_step(x, y)
    engine = model._engine()
    assert engine._plan is not None and not engine._python   # the compiled step ran
    assert np.isnan(value) and np.isnan(want.item())
    with torch.no_grad():
        for p, leaf in zip(model.parameters(), leaves):
            _assert_same(p.data, (leaf - 0.1 * leaf.grad).numpy(), dtype, f"{act}/{loss} updated weight")
