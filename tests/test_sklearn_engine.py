"""scikit-learn's MLP numerics on fastnn's compiled engine (issue 10, the engine part).

SklearnMLPLoss (the plan's SKLEARN_MLP kind, its L2 term applied by the plan), SklearnAdam and SklearnSGD
(the _optim kinds SK_ADAM, SK_SGD) and Engine.loss_grad, against scikit-learn's own code: its
``_backprop`` on an MLP holding the same coefs_/intercepts_, its AdamOptimizer/SGDOptimizer objects fed
the same gradients, and a NumPy transcription of its stochastic training loop; plus the NumPy twins and
finite differences.
"""

import pickle

import numpy as np
import pytest

import fastnn as fnn
from fastnn._kernels import _losses as K
from fastnn._kernels import _optim
from fastnn._reference import losses as ref_loss
from fastnn._reference import optim as ref_optim
from fastnn.losses import SklearnMLPLoss
from fastnn.optim import SklearnAdam, SklearnSGD

sk_nn = pytest.importorskip("sklearn.neural_network")
sk_opt = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")

OUT_ACTS = ["identity", "logistic", "softmax", "exp"]
HIDDEN = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": None}   # sklearn -> fastnn
DTYPES = [np.float64, np.float32]
# one step vs sklearn's _backprop: float64 to rounding (GEMMs in another order); float32 to its rounding
TOL = {np.float64: 1e-12, np.float32: 2e-5}


# ------------------------------------------------------------------------------------------ helpers

def _targets(rng, out_act, n, k, dtype):
    if out_act == "softmax":
        return np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    if out_act == "logistic":
        return (rng.random((n, k)) < 0.5).astype(dtype)
    if out_act == "exp":
        return rng.poisson(1.0, (n, k)).astype(dtype)
    return rng.standard_normal((n, k)).astype(dtype)


def _model(widths, hidden, dtype, seed):
    layers = [fnn.Dense(a, b, activation=HIDDEN[hidden] if i < len(widths) - 2 else None)
              for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]
    return fnn.Sequential(layers, dtype=dtype, seed=seed)


def _coefs(model):
    return [layer.params[0].data.copy() for layer in model.layers], [layer.params[1].data.copy()
                                                                      for layer in model.layers]


def _grads(model):
    return [layer.params[0].grad.copy() for layer in model.layers], [layer.params[1].grad.copy()
                                                                      for layer in model.layers]


def _sk_mlp(coefs, intercepts, hidden, out_act, alpha):
    """A scikit-learn MLP holding these weights, ready for its private _backprop."""
    regressor = out_act in ("identity", "exp")
    m = (sk_nn.MLPRegressor if regressor else sk_nn.MLPClassifier)(activation=hidden, alpha=alpha)
    m.loss = {"identity": "squared_error", "exp": "poisson"}.get(out_act, "log_loss")
    m.coefs_, m.intercepts_ = [c.copy() for c in coefs], [b.copy() for b in intercepts]
    m.n_layers_, m.out_activation_ = len(coefs) + 1, out_act
    return m


def _sk_backprop(m, X, Y, sw):
    n = len(m.coefs_)
    cg = [np.empty_like(c) for c in m.coefs_]
    ig = [np.empty_like(b) for b in m.intercepts_]
    return m._backprop(X, Y, sw, [X] + [None] * n, [None] * n, cg, ig)


def _t(Y, sw):
    return np.ascontiguousarray(np.column_stack([Y, sw]) if sw is not None else Y, dtype=Y.dtype)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# ------------------------------------------------------------------------------------------ (a) one step

@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("out_act", OUT_ACTS)
def test_loss_grad_is_sklearns_backprop(out_act, weighted, alpha, dtype):
    """Engine.loss_grad (the plan's forward, SKLEARN_MLP loss, L2, backward) = sklearn's _backprop: loss, coef
    and intercept gradients, for every hidden activation and k in (1, 3)."""
    rng = np.random.default_rng([OUT_ACTS.index(out_act), weighted, int(alpha * 1e3), dtype == np.float32])
    for hidden in HIDDEN:
        for k in (1, 3):
            if out_act == "softmax" and k == 1:
                continue   # sklearn never pairs softmax with one output
            n, widths = 17, [6, 9, 5, k]
            model = _model(widths, hidden, dtype, int(rng.integers(1 << 30)))
            X = rng.standard_normal((n, widths[0])).astype(dtype)
            Y = _targets(rng, out_act, n, k, dtype)
            sw = (rng.random(n) + 0.5).astype(dtype) if weighted else None
            coefs, intercepts = _coefs(model)
            loss_sk, cg, ig = _sk_backprop(_sk_mlp(coefs, intercepts, hidden, out_act, alpha), X, Y, sw)
            value = model._engine().loss_grad(X, _t(Y, sw), SklearnMLPLoss(out_act, alpha, weighted))
            tol, what = TOL[dtype], f"{hidden} k={k}"
            assert isinstance(value, float)
            assert abs(value - float(loss_sk)) <= tol * abs(float(loss_sk)), what
            gw, gb = _grads(model)
            for i in range(len(coefs)):
                assert _rel(gw[i], cg[i]) <= tol, f"{what} coef grad {i}"
                assert _rel(gb[i], ig[i]) <= tol, f"{what} intercept grad {i}"
            assert all(p.has_grad for p in model.parameters())
            assert _coefs(model)[0][0].tobytes() == coefs[0].tobytes()   # no update


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_train_step_is_backprop_then_sklearns_update(dtype):
    """Engine.train_step with SklearnMLPLoss + SklearnAdam = sklearn's _backprop, then its AdamOptimizer."""
    rng = np.random.default_rng(3)
    model = _model([8, 10, 4], "relu", dtype, 5)
    X = rng.standard_normal((12, 8)).astype(dtype)
    Y = _targets(rng, "softmax", 12, 4, dtype)
    coefs, intercepts = _coefs(model)
    m = _sk_mlp(coefs, intercepts, "relu", "softmax", 1e-3)
    params = m.coefs_ + m.intercepts_
    sk = sk_opt.AdamOptimizer(params, 1e-2, 0.9, 0.999, 1e-8)
    loss = SklearnMLPLoss("softmax", 1e-3)
    opt = SklearnAdam(model.parameters(), lr=1e-2)
    for _ in range(3):
        loss_sk, cg, ig = _sk_backprop(m, X, Y, None)
        sk.update_params(params, cg + ig)
        value = model._engine().train_step(X, Y, loss, opt)
        assert abs(value - float(loss_sk)) <= TOL[dtype] * abs(float(loss_sk))
    ours = _coefs(model)
    for a, b in zip(ours[0] + ours[1], params):
        assert _rel(a, b) <= 50 * TOL[dtype]


# ------------------------------------------------------------------------------------------ optimizers

@pytest.fixture(params=[True, False], ids=["avx2", "sse2"])
def avx2(request):
    """Both update loops: fnn_optim.h's AVX2 one (where the CPU has it) and _optim.pyx's SSE2 one."""
    before = _optim.avx2_available()
    _optim.set_avx2(request.param)
    yield _optim.avx2_available()
    _optim.set_avx2(before)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("which", ["adam", "sgd", "sgd_nesterov", "sgd_no_momentum"])
def test_optimizer_kernels_are_sklearns_bit_for_bit(which, dtype, avx2):
    """The SK_ADAM / SK_SGD kernels (both loops) and their NumPy twins, fed the same gradients as sklearn's own
    optimizer objects for 200 steps (gradients over 8 decades), leave the same bits (float32 too: the kernels
    round as NumPy evaluates sklearn's expressions on float32 arrays)."""
    rng = np.random.default_rng(["adam", "sgd", "sgd_nesterov", "sgd_no_momentum"].index(which))
    p0 = rng.standard_normal(1031).astype(dtype)
    sk_params, ours, twin = [p0.copy()], p0.copy(), p0.copy()
    state = [np.zeros_like(p0) for _ in range(4)]
    momentum = 0.0 if which == "sgd_no_momentum" else 0.9
    if which == "adam":
        sk = sk_opt.AdamOptimizer(sk_params, 3e-3, 0.9, 0.999, 1e-8)
    else:
        sk = sk_opt.SGDOptimizer(sk_params, 0.05, "constant", momentum, which == "sgd_nesterov")
    for t in range(1, 201):
        g = (rng.standard_normal(p0.size) * 10.0 ** rng.integers(-6, 2)).astype(dtype)
        sk.update_params(sk_params, [g])
        if which == "adam":
            _optim.sklearn_adam_step(ours, g, state[0], state[1], 3e-3, 0.9, 0.999, 1e-8, t)
            ref_optim.sklearn_adam_step(twin, g, state[2], state[3], 3e-3, 0.9, 0.999, 1e-8, t)
        else:
            _optim.sklearn_sgd_step(ours, g, state[0], 0.05, momentum, which == "sgd_nesterov")
            ref_optim.sklearn_sgd_step(twin, g, state[1], 0.05, momentum, which == "sgd_nesterov")
    assert ours.dtype == sk_params[0].dtype == dtype
    assert ours.tobytes() == sk_params[0].tobytes()
    assert twin.tobytes() == sk_params[0].tobytes()
    if which == "adam":
        assert state[0].tobytes() == np.concatenate(sk.ms).tobytes()
        assert state[1].tobytes() == np.concatenate(sk.vs).tobytes()
    else:
        assert state[0].tobytes() == np.concatenate(sk.velocities).tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_optimizer_classes_step_like_sklearn_and_pickle(kind, dtype):
    """SklearnAdam/SklearnSGD over a model's parameters (one fused run) = sklearn's optimizer on the same
    gradients; the state survives pickling and state_dict round trips, and stepping on continues it."""
    rng = np.random.default_rng(11)
    model = _model([5, 7, 3], "tanh", dtype, 2)
    params = model.parameters()
    sk_params = [p.data.copy() for p in params]
    if kind == "adam":
        opt = SklearnAdam(params, lr=1e-2, betas=(0.8, 0.99), eps=1e-7)
        sk = sk_opt.AdamOptimizer(sk_params, 1e-2, 0.8, 0.99, 1e-7)
    else:
        opt = SklearnSGD(params, lr=0.1, momentum=0.7, nesterov=True)
        sk = sk_opt.SGDOptimizer(sk_params, 0.1, "constant", 0.7, True)

    def step(opt, params):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        sk.update_params(sk_params, grads)

    for _ in range(5):
        step(opt, params)
    model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    state = opt.state_dict()
    for _ in range(5):
        step(opt2, model2.parameters())
    for p, q in zip(model2.parameters(), sk_params):
        assert p.data.tobytes() == q.tobytes()
    # a state dict loaded into a fresh optimizer continues from the same state
    model3 = pickle.loads(pickle.dumps(model))
    fresh = (SklearnAdam if kind == "adam" else SklearnSGD)(model3.parameters())
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    names = ("step", "m", "v") if kind == "adam" else ("velocity",)
    assert set(fresh.state[model3.parameters()[0]]) == set(names)


def test_sgd_reads_lr_every_step():
    """The estimator changes param_groups[0]["lr"] between epochs (invscaling, adaptive): the next step uses it."""
    model = _model([3, 2], "relu", np.float64, 0)
    (w, b) = model.parameters()
    opt = SklearnSGD(model.parameters(), lr=0.1, momentum=0.0)
    w.grad, b.grad = np.ones_like(w.data), np.ones_like(b.data)
    before = w.data.copy()
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    np.testing.assert_array_equal(w.data, before - 0.25)


# ------------------------------------------------------------------------------------------ (d) the twins

@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("out_act", OUT_ACTS)
def test_loss_kernel_matches_its_twin(out_act, weighted, dtype):
    rng = np.random.default_rng([OUT_ACTS.index(out_act), weighted])
    # 300 x 40 crosses the OpenMP threshold and is 6 softmax blocks (51 rows each); a block keeps the exps of up
    # to 2048 classes (one row of 2048), a wider row recomputes them
    for n, k in ((1, 1), (7, 3), (300, 40), (205, 10), (3, 2048), (2, 2100)):
        if out_act == "softmax" and k == 1:
            k = 2
        z = (rng.standard_normal((n, k)) * 3).astype(dtype)
        Y = _targets(rng, out_act, n, k, dtype)
        sw = (rng.random(n) + 0.5).astype(dtype) if weighted else None
        t = _t(Y, sw)
        g, g_ref = np.empty_like(z), np.empty_like(z)
        code = K.SK_OUT_ACTIVATIONS[out_act]
        value, sw_sum = K.sklearn_mlp_loss(z, t, g, code, weighted)
        value_ref, sw_ref = ref_loss.sklearn_mlp_loss(z, t, g_ref, code, weighted)
        tol = TOL[dtype]
        assert abs(value - value_ref) <= tol * abs(value_ref)
        assert abs(sw_sum - sw_ref) <= 1e-12 * sw_ref
        assert _rel(g, g_ref) <= tol


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_softmax_loss_propagates_nan_as_its_twin(dtype):
    """A NaN logit makes its row's probabilities NaN: the loss is NaN and that row's gradient NaN, the other
    rows' gradients as the twin's (xlogy(0, NaN) is NaN, so the NaN reaches the loss through y = 0 too)."""
    rng = np.random.default_rng(21)
    for col in (0, 4):   # the row's first logit (the max starts there) or a later one
        z = rng.standard_normal((6, 7)).astype(dtype)
        z[2, col] = np.nan
        Y = _targets(rng, "softmax", 6, 7, dtype)
        g, g_ref = np.empty_like(z), np.empty_like(z)
        code = K.SK_OUT_ACTIVATIONS["softmax"]
        value, _ = K.sklearn_mlp_loss(z, Y, g, code, False)
        value_ref, _ = ref_loss.sklearn_mlp_loss(z, Y, g_ref, code, False)
        assert np.isnan(value) and np.isnan(value_ref)
        assert np.isnan(g[2]).all() and np.isnan(g_ref[2]).all()
        rows = [0, 1, 3, 4, 5]
        assert _rel(g[rows], g_ref[rows]) <= TOL[dtype]


# ------------------------------------------------------------------------------------------ (b) finite differences

def _fd_check(model, X, t, loss, scale_of):
    """Central differences of Engine.loss_grad's value over every parameter entry vs its gradient / scale_of."""
    eng = model._engine()
    eng.loss_grad(X, t, loss)
    grads = [p.grad.copy() for p in model.parameters()]
    h = 1e-6
    for p, g in zip(model.parameters(), grads):
        flat = p.data.reshape(-1)
        fd = np.empty(flat.size)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            up = eng.loss_grad(X, t, loss)
            flat[i] = old - h
            down = eng.loss_grad(X, t, loss)
            flat[i] = old
            fd[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(g.reshape(-1) / scale_of, fd, rtol=1e-6, atol=1e-8, err_msg=p.name)


@pytest.mark.parametrize("alpha", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("out_act", OUT_ACTS)
def test_gradient_is_the_loss_gradient_where_sklearn_says_so(out_act, weighted, alpha):
    """float64 finite differences of the engine's loss value (its L2 term included): the gradient is the loss's
    for k == 1 (every output activation) and for k > 1 with softmax, logistic and exp; for identity with
    k > 1 it is k times the loss's (sklearn's squared_loss averages over the outputs, its delta does not)."""
    rng = np.random.default_rng([OUT_ACTS.index(out_act), weighted, int(alpha * 10)])
    for k in (1, 3):
        if out_act == "softmax" and k == 1:
            continue
        n = 9
        model = _model([4, 5, k], "tanh", np.float64, int(rng.integers(1 << 30)))
        X = rng.standard_normal((n, 4)) * 0.5
        Y = _targets(rng, out_act, n, k, np.float64)
        sw = rng.random(n) + 0.5 if weighted else None
        quirk = out_act == "identity" and k > 1   # the data term's gradient scaled by k; the L2 term's not: alpha 0
        loss = SklearnMLPLoss(out_act, 0.0 if quirk else alpha, weighted)
        _fd_check(model, X, _t(Y, sw), loss, k if quirk else 1)


# ------------------------------------------------------------------------------------------ (c) an epoch vs sklearn

def _sk_epochs(m, opt, X, Y, sw, orders, batch):
    """scikit-learn's _fit_stochastic inner loop (full batches): _backprop, then update_params."""
    params = m.coefs_ + m.intercepts_
    losses = []
    for order in orders:
        for b in range(len(order) // batch):
            idx = order[b * batch:(b + 1) * batch]
            value, cg, ig = _sk_backprop(m, X[idx], Y[idx], None if sw is None else sw[idx])
            opt.update_params(params, cg + ig)
            losses.append(float(value))
    return losses


OPTS = [("adam", {}), ("sgd", {"momentum": 0.9, "nesterov": True}), ("sgd", {"momentum": 0.9, "nesterov": False}),
        ("sgd", {"momentum": 0.0, "nesterov": False})]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("opt_name,opt_kw", OPTS, ids=lambda v: str(v))
@pytest.mark.parametrize("out_act,hidden", [("softmax", "relu"), ("logistic", "tanh"), ("identity", "logistic"),
                                            ("exp", "relu")])
def test_train_batches_follow_sklearns_loop(out_act, hidden, opt_name, opt_kw, weighted):
    """Two epochs of Engine.train_batches (shuffled full batches, one nogil call each, 60 steps) with
    SklearnMLPLoss(alpha=1e-4) and SklearnAdam/SklearnSGD = sklearn's _backprop + its optimizer object, to 1e-10
    (float64) in the weights and the batch losses."""
    rng = np.random.default_rng([OUT_ACTS.index(out_act), len(opt_kw), opt_kw.get("nesterov", 2), weighted])
    n, batch, k = 300, 10, (1 if out_act == "logistic" else 3)
    model = _model([8, 16, 12, k], hidden, np.float64, int(rng.integers(1 << 30)))
    for p in model.parameters():   # sklearn-sized weights, so that exp stays tame
        p.data[...] *= 0.5
    X = rng.standard_normal((n, 8))
    Y = _targets(rng, out_act, n, k, np.float64)
    sw = rng.random(n) + 0.5 if weighted else None
    coefs, intercepts = _coefs(model)
    m = _sk_mlp(coefs, intercepts, hidden, out_act, 1e-4)
    params = m.coefs_ + m.intercepts_
    if opt_name == "adam":
        sk = sk_opt.AdamOptimizer(params, 1e-3, 0.9, 0.999, 1e-8)
        opt = SklearnAdam(model.parameters(), lr=1e-3)
    else:
        sk = sk_opt.SGDOptimizer(params, 0.01, "constant", opt_kw["momentum"], opt_kw["nesterov"])
        opt = SklearnSGD(model.parameters(), lr=0.01, **opt_kw)
    orders = [rng.permutation(n).astype(np.int64) for _ in range(2)]
    expected = _sk_epochs(m, sk, X, Y, sw, orders, batch)
    loss = SklearnMLPLoss(out_act, 1e-4, weighted)
    t = _t(Y, sw)
    eng = model._engine()
    got = []
    for order in orders:
        losses = np.empty(n // batch)
        assert eng.train_batches(X, t, order, batch, 0, n // batch, loss, opt, losses) == n // batch
        got += list(losses)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    ours = _coefs(model)
    for a, b in zip(ours[0] + ours[1], params):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())


def test_partial_batch_then_more_batches_continue_the_state():
    """train_step on a partial batch between train_batches calls continues Adam's step count and moments."""
    rng = np.random.default_rng(8)
    model = _model([4, 6, 3], "relu", np.float64, 4)
    X, Y = rng.standard_normal((25, 4)), _targets(rng, "softmax", 25, 3, np.float64)
    m = _sk_mlp(*_coefs(model), "relu", "softmax", 0.0)
    params = m.coefs_ + m.intercepts_
    sk = sk_opt.AdamOptimizer(params, 1e-2, 0.9, 0.999, 1e-8)
    opt, loss, eng = SklearnAdam(model.parameters(), lr=1e-2), SklearnMLPLoss("softmax"), model._engine()
    for _ in range(2):
        order = rng.permutation(25).astype(np.int64)
        eng.train_batches(X, Y, order, 10, 0, 2, loss, opt, np.empty(2))
        rest = order[20:]
        eng.train_step(np.ascontiguousarray(X[rest]), np.ascontiguousarray(Y[rest]), loss, opt)
        for idx in (order[:10], order[10:20], rest):
            _, cg, ig = _sk_backprop(m, X[idx], Y[idx], None)
            sk.update_params(params, cg + ig)
    assert float(opt.state[model.parameters()[0]]["step"]) == sk.t == 6
    ours = _coefs(model)
    for a, b in zip(ours[0] + ours[1], params):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------------------------------ arguments

def test_loss_rejects_bad_arguments_naming_them():
    with pytest.raises(ValueError, match=r"out_activation must be one of 'identity', 'logistic', 'softmax', "
                                         r"'exp'; got 'tanh'"):
        SklearnMLPLoss("tanh")
    with pytest.raises(TypeError, match=r"out_activation must be a str"):
        SklearnMLPLoss(None)
    for bad in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0, inf\)"):
            SklearnMLPLoss("identity", alpha=bad)
    with pytest.raises(TypeError, match=r"weighted must be"):
        SklearnMLPLoss("identity", weighted="yes")


def test_loss_on_arrays_checks_shapes_and_refuses_alpha():
    z = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(4, 3\) \(the targets, then the sample weight"):
        SklearnMLPLoss("identity", weighted=True)(z, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"alpha=0.5 .* runs only on the compiled engine"):
        SklearnMLPLoss("softmax", alpha=0.5)(z, np.eye(2)[[0, 1, 0, 1]])
    loss = SklearnMLPLoss("softmax")
    value = loss(z, np.eye(2)[[0, 1, 0, 1]])
    assert float(value) == pytest.approx(np.log(2), rel=1e-15)
    np.testing.assert_allclose(loss.backward(), (0.5 - np.eye(2)[[0, 1, 0, 1]]) / 4, rtol=1e-15)


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": -1.0}, r"lr must be a finite number in \[0, inf\), got -1.0"),
    ({"lr": float("nan")}, r"lr must be a finite number"),
    ({"betas": (1.0, 0.999)}, r"betas\[0\] must be a finite number in \[0, 1\), got 1.0"),
    ({"betas": (0.9, -0.1)}, r"betas\[1\] must be a finite number in \[0, 1\)"),
    ({"eps": 0.0}, r"eps must be a finite number in \(0, inf\), got 0.0"),
])
def test_adam_rejects_bad_hyper_parameters_naming_them(kwargs, match):
    model = _model([3, 2], "relu", np.float64, 0)
    with pytest.raises(ValueError, match=match):
        SklearnAdam(model.parameters(), **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": -0.1}, r"lr must be a finite number in \[0, inf\), got -0.1"),
    ({"momentum": 1.5}, r"momentum must be a finite number in \[0, 1\], got 1.5"),
    ({"momentum": float("nan")}, r"momentum must be a finite number"),
])
def test_sgd_rejects_bad_hyper_parameters_naming_them(kwargs, match):
    model = _model([3, 2], "relu", np.float64, 0)
    with pytest.raises(ValueError, match=match):
        SklearnSGD(model.parameters(), **kwargs)
    opt = SklearnSGD(model.parameters())
    opt.param_groups[0]["lr"] = float("nan")   # the estimator sets lr between epochs: checked at the next step
    with pytest.raises(ValueError, match=r"param_groups\[0\]: lr must be a finite number"):
        opt.step()


# ------------------------------------------------------------------------------------------ the registry's readers

@pytest.mark.parametrize("name", ["sklearn_sgd", "sklearn_adam"])
def test_registered_optimizers_compile_fit_save_and_load(tmp_path, name):
    """OPTIMIZERS' sklearn entries: compile by name, fit on the compiled epoch loop, save with the model file and
    load; the loaded optimizer continues exactly as the original."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 5)), rng.standard_normal((64, 2))
    model = _model([5, 6, 2], "relu", np.float64, 3)
    model.compile(optimizer=name, loss="mse")
    assert type(model.optimizer) is fnn.optim.OPTIMIZERS[name]
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "m.fnn"
    fnn.io.save_model(model, path)
    loaded = fnn.io.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.state_dict()["param_groups"] == model.optimizer.state_dict()["param_groups"]
    for m in (model, loaded):
        m.fit(X, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    for p, q in zip(model.parameters(), loaded.parameters()):
        assert p.data.tobytes() == q.data.tobytes()


def test_from_torch_names_only_torch_optimizers():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"has no fastnn counterpart; from_torch converts torch.optim.SGD") as info:
        fnn.io.from_torch(tm, optimizer=torch.optim.LBFGS(tm.parameters()))
    assert "Sklearn" not in str(info.value)


def test_the_plan_refuses_to_run_the_sklearn_loss_distributed():
    """Its batch loss is not a sum over rows that an allreduce could split: TrainPlan.distribute says so."""
    model = _model([3, 2], "relu", np.float64, 0)
    eng = model._engine()
    eng.loss_grad(np.zeros((4, 3)), np.zeros((4, 2)), SklearnMLPLoss("identity"))
    buf = np.zeros(model._arena.grad.size + 3)
    with pytest.raises(ValueError, match=r"scikit-learn's MLP loss does not run distributed"):
        eng._plan.distribute((1, 0, 0, 0, 0, buf, model._arena.grad.size))
