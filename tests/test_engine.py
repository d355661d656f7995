"""Engine: the compiled training step and the inference plan against the Python per-layer path and NumPy."""

import tracemalloc
import zlib

import numpy as np
import pytest

import fastnn as fnn
from fastnn._kernels import _activations, _blas, _plan
from fastnn._reference import activations as ref_act
from fastnn._reference import dense as ref_dense
from fastnn._reference import dropout as ref_drop
from fastnn._reference import losses as ref_loss
from fastnn._stages import ActStage, DenseStage
from fastnn.engine import Engine

ACTS = ["relu", "sigmoid", "tanh", "leaky_relu", "gelu", "elu", "silu", "softmax", "softsign", None,
        lambda: fnn.GELU(approximate="tanh"), lambda: fnn.LeakyReLU(0.2), lambda: fnn.ELU(0.5),
        "softplus", lambda: fnn.Softplus(2.0, 5.0)]

# (loss class, keywords, target kind); "W" in a keyword is replaced by a random positive weight
LOSSES = [
    ("MSELoss", {}, "regression"),
    ("MSELoss", {"reduction": "sum"}, "regression"),
    ("MSELoss", {"reduction": "none"}, "regression"),
    ("BCELoss", {}, "binary"),
    ("BCELoss", {"weight": "W", "reduction": "sum"}, "binary"),
    ("BCEWithLogitsLoss", {}, "binary"),
    ("BCEWithLogitsLoss", {"weight": "W", "pos_weight": "W", "reduction": "none"}, "binary"),
    ("CrossEntropyLoss", {}, "labels"),
    ("CrossEntropyLoss", {"weight": "W", "ignore_index": 1, "label_smoothing": 0.1}, "labels"),
    ("CrossEntropyLoss", {"reduction": "sum", "label_smoothing": 0.2}, "labels"),
    ("CrossEntropyLoss", {"reduction": "none"}, "labels"),
    ("CrossEntropyLoss", {}, "probs"),
    ("CrossEntropyLoss", {"weight": "W", "reduction": "sum", "label_smoothing": 0.3}, "probs"),
    ("NLLLoss", {}, "labels"),
    ("NLLLoss", {"weight": "W", "ignore_index": 0, "reduction": "sum"}, "labels"),
    ("NLLLoss", {"reduction": "none"}, "labels"),
]
OPTIMIZERS = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("Adam", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2, "amsgrad": True}),
]
# Relative to each array's largest entry: the plan's own small-GEMM kernels (and BLAS threads) sum in
# another order than the per-layer path, so elements that cancel agree to the array's scale.
TOL = {np.float64: 1e-12, np.float32: 1e-5}
# Several steps of float32 training: rounding differences of 1e-7 pass through sums that cancel (a bias
# gradient is a column sum of O(1) terms; a 'sum' loss of terms of both signs) and Adam's g / sqrt(v)
# magnifies them for gradients near eps. (test_step_is_bitwise_the_python_path_with_blas_gemms checks
# the operations themselves: identical when the GEMMs are BLAS's.)
TOL_STEPS = {np.float64: 1e-12, np.float32: 1e-4}


def _close(actual, desired, rtol, err_msg=""):
    desired = np.asarray(desired, dtype=np.float64)
    finite = np.abs(desired[np.isfinite(desired)])
    scale = float(finite.max()) if finite.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


def _seed(*parts):
    return zlib.crc32(repr(parts).encode())


def _layers(r, widths, dropout, tail=None):
    """A random network over `widths` mixing fused and separate activations (every kind over the tests)."""
    layers = []
    if r.random() < 0.3:                               # an activation before the first Dense
        layers.append(fnn.Tanh())
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        spec = ACTS[int(r.integers(len(ACTS)))]
        act = spec() if callable(spec) else spec
        if last:
            layers.append(fnn.Dense(a, b))
        elif r.random() < 0.5:
            layers.append(fnn.Dense(a, b, activation=act, use_bias=bool(r.random() < 0.8)))
        else:
            layers += [fnn.Dense(a, b), fnn.layers.get_activation(act)]
        if dropout and not last:
            layers.append(fnn.Dropout(float(r.choice([0.0, 0.3, 0.5]))))
    if tail is not None:
        layers.append(tail)
    return layers


def _problem(loss_name, loss_kw, target, dtype, dropout, n=None, key=()):
    """Two identical models (seeded alike), two losses, the batch and its prepared targets."""
    r = np.random.default_rng(_seed(loss_name, loss_kw, target, np.dtype(dtype).name, dropout, n, key))
    depth = int(r.integers(1, 5))
    widths = [int(w) for w in r.integers(1, 19, size=depth + 1)]
    widths[-1] = max(widths[-1], 2) if target in ("labels", "probs") else widths[-1]
    n = int(r.integers(1, 24)) if n is None else n
    tail = fnn.Sigmoid() if loss_name == "BCELoss" else None
    seed = int(r.integers(1 << 40))
    layers = _layers(r, widths, dropout, tail)
    models = [fnn.Sequential([_clone(layer) for layer in layers], dtype=dtype, seed=seed) for _ in range(2)]
    C = widths[-1]
    kw = {k: (r.random(C) + 0.5 if loss_name in ("CrossEntropyLoss", "NLLLoss") else r.random((n, C)) + 0.5)
          if v == "W" else v for k, v in loss_kw.items()}
    losses = [getattr(fnn.losses, loss_name)(**kw) for _ in range(2)]
    x = r.standard_normal((n, widths[0])).astype(dtype)
    if target == "labels":
        y = r.integers(0, C, n)
    elif target == "probs":
        y = r.random((n, C))
        y /= y.sum(axis=1, keepdims=True)
    elif target == "binary":
        y = (r.random((n, C)) < 0.5).astype(float)
    else:
        y = r.standard_normal((n, C))
    _, t = losses[0]._prepare(np.zeros((n, C), dtype), y)
    return models, losses, x, t


def _clone(layer):
    """A fresh layer with the same configuration (a layer object belongs to one model)."""
    cfg = layer._config()
    if isinstance(layer, fnn.Dense):
        act = layer.activation
        out = fnn.Dense(**{**cfg, "activation": None})
        out.activation = type(act)() if type(act) in (fnn.ReLU, fnn.Sigmoid, fnn.Tanh, fnn.SiLU, fnn.Identity,
                                                      fnn.Softmax) else _clone(act)
        return out
    return type(layer)(**cfg)


def _python_step(model, x, t, loss, opt):
    """The per-layer Python path: model._forward, loss._forward_backward, model._backward, optimizer.step."""
    model.train()
    out = model._forward(x)
    g = np.empty_like(out)
    lo = np.empty(loss._loss_shape(out), out.dtype) if loss.reduction == "none" else None
    value = loss._forward_backward(out, t, g, lo)
    model.zero_grad()
    model._backward(g)
    opt.step()
    return value, out.copy()


def _assert_same(model_a, model_b, tol, what=""):
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        _close(pb.data, pa.data, tol, f"{what} {pa.name}")
        assert pb.has_grad and pa.has_grad
        _close(pb.grad, pa.grad, tol, f"{what} grad {pa.name}")


# ---------------------------------------------------------------------------------------------- training step

@pytest.mark.parametrize("loss_name,loss_kw,target", LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("opt_name,opt_kw", OPTIMIZERS, ids=lambda v: str(v))
@pytest.mark.parametrize("dropout", [False, True], ids=["nodrop", "dropout"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_step_equals_python_path(loss_name, loss_kw, target, opt_name, opt_kw, dropout, dtype):
    (ma, mb), (la, lb), x, t = _problem(loss_name, loss_kw, target, dtype, dropout, key=(opt_name, opt_kw))
    if loss_kw.get("reduction") in ("sum", "none"):   # keep the steps of a summed loss as small as a mean's
        opt_kw = {**opt_kw, "lr": opt_kw["lr"] / x.size}
    oa = getattr(fnn.optim, opt_name)(ma.parameters(), **opt_kw)
    ob = getattr(fnn.optim, opt_name)(mb.parameters(), **opt_kw)
    engine = Engine(mb)
    tol = TOL_STEPS[dtype]
    for step in range(4):
        va, out = _python_step(ma, x, t, la, oa)
        vb = engine.train_step(x, t, lb, ob)
        assert isinstance(vb, float)
        _close(vb, va, tol, f"loss, step {step}")
        _close(engine.last_output, out, tol, f"output, step {step}")
        _assert_same(ma, mb, tol, f"step {step}")
        assert mb._step == ma._step == step + 1
    if loss_kw.get("reduction") == "none" and not engine._split:
        assert engine._plan.loss_out is not None


ALL_OPTIMIZERS = [
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "weight_decay": 1e-2, "maximize": True}),
    ("Adam", {"lr": 1e-2, "weight_decay": 1e-2, "amsgrad": True}),
    ("AdamW", {"lr": 1e-2, "betas": (0.8, 0.9)}),
    ("RMSprop", {"lr": 1e-2}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.9, "centered": True, "weight_decay": 1e-2}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("Adadelta", {"lr": 1.0, "weight_decay": 1e-2}),
]


@pytest.mark.parametrize("opt_name,opt_kw", ALL_OPTIMIZERS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_fused_update_of_every_optimizer(opt_name, opt_kw, dtype):
    (ma, mb), (la, lb), x, t = _problem("CrossEntropyLoss", {}, "labels", dtype, True, key=(opt_name, opt_kw))
    oa = getattr(fnn.optim, opt_name)(ma.parameters(), **opt_kw)
    ob = getattr(fnn.optim, opt_name)(mb.parameters(), **opt_kw)
    engine = Engine(mb)
    for step in range(5):
        va, _ = _python_step(ma, x, t, la, oa)
        _close(engine.train_step(x, t, lb, ob), va, TOL_STEPS[dtype])
        _assert_same(ma, mb, TOL_STEPS[dtype], f"step {step}")
    assert engine._fused
    sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
    for i in sa:
        for kind in sa[i]:
            _close(sb[i][kind], sa[i][kind], TOL_STEPS[dtype], f"{i} {kind}")


def test_fused_update_follows_param_groups():
    (ma, mb), (la, lb), x, t = _problem("MSELoss", {}, "regression", np.float64, False, n=10, key="groups")
    pa, pb = ma.parameters(), mb.parameters()
    # the last parameter is frozen at first (in no group), then added with its own learning rate
    oa = fnn.optim.Adam([{"params": pa[:1], "lr": 0.1}, {"params": pa[1:-1]}], lr=1e-2)
    ob = fnn.optim.Adam([{"params": pb[:1], "lr": 0.1}, {"params": pb[1:-1]}], lr=1e-2)
    engine = Engine(mb)
    for step in range(6):
        if step == 3:
            oa.add_param_group({"params": pa[-1:], "lr": 0.05})
            ob.add_param_group({"params": pb[-1:], "lr": 0.05})
        if step == 4:
            oa.param_groups[0]["lr"] = ob.param_groups[0]["lr"] = 0.01
        va, _ = _python_step(ma, x, t, la, oa)
        _close(engine.train_step(x, t, lb, ob), va, 1e-12)
        _assert_same(ma, mb, TOL[np.float64], f"step {step}")
    assert engine._fused


def _reference_step(model, x, t, loss):
    """One training step's loss, output and gradients from the NumPy twins (fastnn._reference)."""
    dt = model.dtype
    h, saved = x.astype(dt), []
    step = model._step + 1
    for s in model._stages:
        n, m = h.shape[0], s.out_features
        if isinstance(s, DenseStage):
            w, *rest = s.layer.params
            b = rest[0].data if rest else np.empty(0, dt)
            z = np.empty((n, m), dt)
            a = z if s.act.kind == "linear" else np.empty((n, m), dt)
            ref_dense.forward(h, w.data, b, z, a, _activations.CODES[s.act.kind], s.act.param, s.act.param2)
            saved.append((h, z, a, None))
        elif isinstance(s, ActStage):
            a = np.empty((n, m), dt)
            ref_act.forward(h.copy(), np.empty(0, dt), a, _activations.CODES[s.act.kind], s.act.param, s.act.param2)
            saved.append((h, None, a, None))
        elif s.layer.p > 0:
            a, mask = np.empty(n * m, dt), np.empty(n * m, np.uint8)
            ref_drop.forward(h.reshape(-1), a, mask, s.layer.p, model.seed, s.stream, step)
            a = a.reshape(n, m)
            saved.append((h, None, a, mask))
        else:
            a = h
            saved.append((h, None, a, None))
        h = a
    out = h
    g = np.empty_like(out)
    lo = np.empty(loss._loss_shape(out), dt) if loss.reduction == "none" else None
    value = _reference_loss(loss, out, t, g, lo)
    grads = {}
    for k in range(len(model._stages) - 1, -1, -1):
        s = model._stages[k]
        xin, z, a, mask = saved[k]
        dx = np.empty_like(xin)
        if isinstance(s, DenseStage):
            w, *rest = s.layer.params
            dw, db = np.empty_like(w.data), (np.empty_like(rest[0].data) if rest else np.empty(0, dt))
            ref_dense.backward(xin, w.data, z, a, g, dw, db, dx, _activations.CODES[s.act.kind], s.act.param,
                               param2=s.act.param2)
            grads[w.name] = dw
            if rest:
                grads[rest[0].name] = db
        elif isinstance(s, ActStage):
            ref_act.backward(g, xin, a, dx, _activations.CODES[s.act.kind], s.act.param, s.act.param2)
        elif mask is not None:
            ref_drop.backward(g.reshape(-1), mask, dx.reshape(-1), s.layer.p)
        else:
            dx[...] = g
        g = dx
    return value, out, grads


def _flat(a):
    return None if a is None else a.reshape(-1)


def _reference_loss(loss, out, t, g, lo):
    name, dt = type(loss).__name__, out.dtype
    flat = _flat
    if name in ("CrossEntropyLoss", "NLLLoss"):
        w = loss._converted("weight", dt)
        if name == "NLLLoss":
            return ref_loss.nll_loss(out, t, g, w, loss.ignore_index, loss.reduction, flat(lo))
        if t.dtype.kind == "i":
            return ref_loss.cross_entropy_loss(out, t, g, w, loss.ignore_index, loss.label_smoothing,
                                               loss.reduction, flat(lo))
        return ref_loss.cross_entropy_prob_loss(out, t, g, w, loss.label_smoothing, loss.reduction, flat(lo))
    gf = g.reshape(-1)
    if name == "MSELoss":
        return ref_loss.mse_loss(out.ravel(), t.ravel(), gf, loss.reduction, flat(lo))
    w = flat(loss._converted("weight", dt, out.shape))
    if name == "BCELoss":
        return ref_loss.bce_loss(out.ravel(), t.ravel(), gf, w, loss.reduction, flat(lo))
    pw = flat(loss._converted("pos_weight", dt, out.shape))
    return ref_loss.bce_with_logits_loss(out.ravel(), t.ravel(), gf, w, pw, loss.reduction, flat(lo))


@pytest.mark.parametrize("loss_name,loss_kw,target", LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("dropout", [False, True], ids=["nodrop", "dropout"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_step_equals_numpy_reference(loss_name, loss_kw, target, dropout, dtype):
    (model, _), (loss, _), x, t = _problem(loss_name, loss_kw, target, dtype, dropout, key="ref")
    for _ in range(2):   # the second step checks the dropout step counter too
        value, out, grads = _reference_step(model, x, t, loss)
        opt = fnn.optim.SGD(model.parameters(), lr=0.0)
        engine = getattr(model, "_test_engine", None) or Engine(model)
        model._test_engine = engine
        got = engine.train_step(x, t, loss, opt)
        tol = TOL[dtype]
        _close(got, value, tol)
        _close(engine.last_output, out, tol)
        for p in model.parameters():
            _close(p.grad, grads[p.name], tol, p.name)


@pytest.mark.parametrize("n", [1, 7, 33])
def test_step_batch_sizes_and_odd_widths(n):
    (ma, mb), (la, lb), x, t = _problem("CrossEntropyLoss", {}, "labels", np.float64, True, n=n, key="odd")
    oa, ob = fnn.optim.Adam(ma.parameters(), lr=1e-2), fnn.optim.Adam(mb.parameters(), lr=1e-2)
    engine = Engine(mb)
    for _ in range(3):
        va, _ = _python_step(ma, x, t, la, oa)
        _close(engine.train_step(x, t, lb, ob), va, 1e-12)
    _assert_same(ma, mb, TOL[np.float64])
    assert engine.last_output.shape == (n, mb.out_features)


def test_plan_is_reused_and_rebuilt_when_something_changes():
    (ma, mb), (la, lb), x, t = _problem("CrossEntropyLoss", {}, "labels", np.float32, True, n=16, key="rebuild")
    oa, ob = fnn.optim.Adam(ma.parameters(), lr=1e-2), fnn.optim.Adam(mb.parameters(), lr=1e-2)
    engine = Engine(mb)

    def both(x, t, ob=ob, lb=lb, oa=oa, la=la):
        va, _ = _python_step(ma, x, t, la, oa)
        vb = engine.train_step(x, t, lb, ob)
        _close(vb, va, TOL_STEPS[np.float32])
        _assert_same(ma, mb, TOL_STEPS[np.float32])
        return engine._plan

    plan = both(x, t)
    assert both(x, t) is plan                                  # same everything: reused
    last = engine.last_output
    plan2 = both(x[:5], t[:5])                                 # another batch size
    assert plan2 is not plan and plan2.n == 5 and engine.last_output.shape[0] == 5
    assert last.shape[0] == 16
    assert both(x, t) is not plan2                             # and back
    oa2, ob2 = fnn.optim.SGD(ma.parameters(), lr=0.1), fnn.optim.SGD(mb.parameters(), lr=0.1)
    plan3 = both(x, t, ob=ob2, oa=oa2)                          # another optimizer
    assert both(x, t, ob=ob2, oa=oa2) is plan3
    la.label_smoothing = lb.label_smoothing = 0.25            # a loss setting
    assert both(x, t, ob=ob2, oa=oa2) is not plan3
    plan4 = engine._plan
    la2, lb2 = fnn.losses.CrossEntropyLoss(), fnn.losses.CrossEntropyLoss()
    assert both(x, t, ob=ob2, oa=oa2, la=la2, lb=lb2) is not plan4   # another loss
    plan5 = engine._plan
    y = np.random.default_rng(0).random((16, mb.out_features))
    tp = la2._prepare(np.zeros((16, mb.out_features), np.float32), y / y.sum(1, keepdims=True))[1]
    assert both(x, tp, ob=ob2, oa=oa2, la=la2, lb=lb2) is not plan5   # probability targets


def test_plan_rebuilt_when_dropout_p_or_threads_change():
    fnn.set_num_threads(2)
    model = fnn.Sequential([fnn.Dense(5, 8, activation="relu"), fnn.Dropout(0.0), fnn.Dense(8, 3)],
                           dtype="float64", seed=4)
    twin = fnn.Sequential([fnn.Dense(5, 8, activation="relu"), fnn.Dropout(0.0), fnn.Dense(8, 3)],
                          dtype="float64", seed=4)
    x = np.random.default_rng(1).standard_normal((9, 5))
    t = np.random.default_rng(2).standard_normal((9, 3))
    loss, opt = fnn.losses.MSELoss(), fnn.optim.SGD(model.parameters(), lr=0.1)
    tloss, topt = fnn.losses.MSELoss(), fnn.optim.SGD(twin.parameters(), lr=0.1)
    engine = Engine(model)
    engine.train_step(x, t, loss, opt)
    _python_step(twin, x, t, tloss, topt)
    plan = engine._plan
    model.layers[1].p = twin.layers[1].p = 0.5                 # dropout switched on after build
    engine.train_step(x, t, loss, opt)
    _python_step(twin, x, t, tloss, topt)
    assert engine._plan is not plan
    _assert_same(twin, model, TOL[np.float64])
    plan = engine._plan
    fnn.set_num_threads(1)
    engine.train_step(x, t, loss, opt)
    _python_step(twin, x, t, tloss, topt)
    assert engine._plan is not plan and engine._plan.threads == 1
    _assert_same(twin, model, TOL[np.float64])


def test_one_and_two_threads_agree():
    r = np.random.default_rng(5)
    x = r.standard_normal((300, 96)).astype(np.float32)
    y = r.integers(0, 10, 300)
    results = []
    for threads in (1, 2):
        fnn.set_num_threads(threads)
        model = fnn.Sequential([fnn.Dense(96, 256, activation="relu"), fnn.Dropout(0.2),
                                fnn.Dense(256, 256, activation="gelu"), fnn.Dense(256, 10)], seed=3)
        loss, opt = fnn.losses.CrossEntropyLoss(), fnn.optim.Adam(model.parameters(), lr=1e-3)
        engine = Engine(model)
        values = [engine.train_step(x, y, loss, opt) for _ in range(3)]
        model.eval()
        results.append((values, [p.data.copy() for p in model.parameters()], engine.forward(x).copy()))
    (v1, p1, f1), (v2, p2, f2) = results
    np.testing.assert_allclose(v2, v1, rtol=1e-5)
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(f2, f1, rtol=1e-4, atol=1e-5)


def _dense_model(sizes, dtype="float32"):
    return fnn.Sequential([fnn.Dense(i, o) for i, o in zip(sizes[:-1], sizes[1:])], dtype=dtype, seed=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_choice_rule(threads):
    """Own kernels for small GEMMs (and, with threads, only those BLAS would not thread or of few rows)."""
    fnn.set_num_threads(threads)
    own = _blas.small_gemm_available()

    def choice(sizes, n, dtype="float32"):
        model = _dense_model(sizes, dtype)
        engine = Engine(model)
        x = np.zeros((n, sizes[0]), dtype)
        engine.train_step(x, np.zeros(n, np.int64), fnn.losses.CrossEntropyLoss(),
                          fnn.optim.SGD(model.parameters(), lr=0.0))
        return engine._plan.gemm_choice()

    assert choice([64, 64, 10], 32) == [(own, own, own)] * 2                      # deep-like: all small
    assert choice([2048, 2048, 10], 1024)[0] == (False, False, False)             # large: BLAS
    assert choice([784, 128, 10], 64)[0] == ((own,) * 3 if threads == 1 else (False, False, False))
    assert choice([784, 128, 10], 4)[0][0] == own                                 # a few rows
    # float64 stops earlier, except with the wide panels (AVX-512VL), which win to 2^24 multiply-adds in both types
    wide = own and _blas.wide_gemm_available() and threads == 1
    assert choice([784, 128, 10], 64, "float64")[0] == (wide,) * 3
    assert choice([784, 100, 10], 200)[0] == (wide,) * 3                          # 15.7e6: only with them


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_small_gemm_kernels(dtype):
    if not _blas.small_gemm_available():
        with pytest.raises(RuntimeError, match="AVX2 and FMA"):
            _blas.gemm_small(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)))
        return
    r = np.random.default_rng(7)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    for trial in range(300):
        M, N, K = (int(v) for v in r.integers(1, 41, 3))
        mode = trial % 3
        a = r.standard_normal((K, M) if mode == 1 else (M, K)).astype(dtype)
        b = r.standard_normal((N, K) if mode == 2 else (K, N)).astype(dtype)
        c = np.full((M, N), np.nan, dtype)
        _blas.gemm_small(a, b, c, trans_a=mode == 1, trans_b=mode == 2)
        expect = (a.T if mode == 1 else a).astype(np.float64) @ (b.T if mode == 2 else b).astype(np.float64)
        np.testing.assert_allclose(c, expect, **tol, err_msg=f"{M}x{N}x{K} mode {mode}")
    with pytest.raises(ValueError, match="shapes do not agree"):
        _blas.gemm_small(np.ones((2, 3), dtype), np.ones((2, 3), dtype), np.ones((2, 3), dtype))
    with pytest.raises(ValueError, match="cannot both be transposed"):
        _blas.gemm_small(np.ones((2, 2), dtype), np.ones((2, 2), dtype), np.ones((2, 2), dtype), True, True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_small_gemm_bits_do_not_depend_on_the_row_blocking(dtype):
    """Each element is one FMA chain over k in order, whichever block of rows (1-6) or one-row pass computes it:
    any M equals its rows computed one at a time, bit for bit (csrc/fnn_gemm.h, fnn_rows_next, fnn_?_row, and
    fnn_?_row_stream for one row of 64 or more columns: B's rows 4 at a time, then the K % 4 left)."""
    if not _blas.small_gemm_available():
        pytest.skip("no AVX2/FMA: the own GEMM kernels do not run on this CPU")
    r = np.random.default_rng(3)
    for M in (*range(2, 21), 32, 200):
        for N, K in ((10, 64), (37, 100), (300, 50), (64, 4), (65, 1), (100, 7)):   # one row of >= 64: streamed
            for trans_a in (False, True):
                a = r.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
                b = r.standard_normal((K, N)).astype(dtype)
                c = np.empty((M, N), dtype)
                _blas.gemm_small(a, b, c, trans_a=trans_a)
                rows = a.T if trans_a else a
                for i in range(M):
                    one = np.empty((1, N), dtype)
                    _blas.gemm_small(np.ascontiguousarray(rows[i:i + 1]), b, one)
                    np.testing.assert_array_equal(c[i], one[0], err_msg=f"M={M} N={N} row {i}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_small_gemm_bits_do_not_depend_on_the_column_panels(dtype):
    """Wide (AVX-512VL, 4 vectors), 2-vector and narrow (1 vector, masked, up to 12 rows) panels all run one FMA
    chain per element: C equals its columns computed one at a time, bit for bit, and the same with the wide
    panels off (a CPU without AVX-512VL gives the same numbers); NN, TN and NT alike."""
    if not _blas.small_gemm_available():
        pytest.skip("no AVX2/FMA: the own GEMM kernels do not run on this CPU")
    r = np.random.default_rng(4)
    lanes = 4 if dtype == np.float64 else 8
    widths = sorted({1, 2, 3, 5, 10, 37, 100, 128, 130} | {k * lanes + d for k in (1, 2, 4, 5, 8) for d in (-1, 0, 1)})
    for M in (2, 13, 20, 64):   # 13-19 rows left: the narrow panel's last two blocks
        for K in (1, 63, 64, 200):   # the wide panels start at K = 64
            for N in widths:
                for mode in (0, 1, 2):   # NN, TN (op(A) = A^T), NT (op(B) = B^T)
                    a = r.standard_normal((K, M) if mode == 1 else (M, K)).astype(dtype)
                    b = r.standard_normal((N, K) if mode == 2 else (K, N)).astype(dtype)
                    c, narrow = np.empty((M, N), dtype), np.empty((M, N), dtype)
                    _blas.gemm_small(a, b, c, trans_a=mode == 1, trans_b=mode == 2)
                    _blas.gemm_small(a, b, narrow, trans_a=mode == 1, trans_b=mode == 2, wide=False)
                    np.testing.assert_array_equal(c, narrow, err_msg=f"{M}x{K}x{N} mode {mode}: wide on/off")
                    bn = b.T if mode == 2 else b
                    for j in {0, N // 2, N - 1, lanes - 1, 4 * lanes} & set(range(N)):
                        col = np.empty((M, 1), dtype)
                        _blas.gemm_small(a, np.ascontiguousarray(bn[:, j:j + 1]), col, trans_a=mode == 1)
                        np.testing.assert_array_equal(c[:, j], col[:, 0], err_msg=f"{M}x{K}x{N} mode {mode} col {j}")
                    if mode == 1:   # TN: as NN on A^T copied (a narrow C runs as its transpose B^T A)
                        nn = np.empty((M, N), dtype)
                        _blas.gemm_small(np.ascontiguousarray(a.T), b, nn)
                        np.testing.assert_array_equal(c, nn, err_msg=f"{M}x{K}x{N} TN against NN")
                    want = (a.T if mode == 1 else a).astype(np.float64) @ bn.astype(np.float64)
                    tol = 1e-12 if dtype == np.float64 else 2e-5
                    np.testing.assert_allclose(c, want, rtol=tol, atol=tol * np.sqrt(K) * 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_narrow_tn_gemm_runs_as_its_transpose_with_the_same_bits(dtype):
    """C := A^T B with fewer than 16 columns (the output layer's weight gradient) runs as C^T = B^T A stored
    transposed: bit for bit the NN kernels' C on A^T copied, with beta = 0 and beta = 1 (C + A^T B, rounded
    as the kernels' own accumulating store), at every row count around the 4-vector minimum."""
    if not _blas.small_gemm_available():
        pytest.skip("no AVX2/FMA: the own GEMM kernels do not run on this CPU")
    r = np.random.default_rng(9)
    lanes = 4 if dtype == np.float64 else 8
    for M in (4 * lanes - 1, 4 * lanes, 100, 256, 410):   # 410 x 10 (and 256 x 10 doubles): C^T > 16 KiB, no swap
        for N in (1, 3, lanes, 10, 15, 16, 17):
            for K in (1, 7, 200):
                a = r.standard_normal((K, M)).astype(dtype)
                b = r.standard_normal((K, N)).astype(dtype)
                at = np.ascontiguousarray(a.T)
                for accumulate in (False, True):
                    c0 = r.standard_normal((M, N)).astype(dtype)
                    c, nn = c0.copy(), c0.copy()
                    _blas.gemm_small(a, b, c, trans_a=True, accumulate=accumulate)
                    _blas.gemm_small(at, b, nn, accumulate=accumulate)
                    np.testing.assert_array_equal(c, nn, err_msg=f"{M}x{K}x{N} accumulate={accumulate}")
                want = a.T.astype(np.float64) @ b.astype(np.float64) + (c0 if accumulate else 0)
                np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                           atol=(2e-5 if dtype == np.float32 else 1e-12) * np.sqrt(K) * 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_input_gradient_with_relu_backward_in_the_store_has_the_separate_passes_bits(dtype):
    """The plan's dX := dZ W^T with the previous ReLU's backward in the store (fnn_?gemm_small_gated): bit for
    bit the GEMM followed by _activations' ReLU backward (a <= 0 ? +0 : g, NaN a passes g), with +-0, NaN and
    negative activations in the gate, NN and NT, at widths around every panel's and partial vector's edge."""
    if not _blas.small_gemm_available():
        pytest.skip("no AVX2/FMA: the own GEMM kernels do not run on this CPU")
    r = np.random.default_rng(10)
    relu = _activations.CODES["relu"]
    for M in (1, 5, 13, 200):
        for N in (1, 2, 3, 5, 8, 10, 17, 33, 100, 130):
            for K in (1, 10, 64):
                for trans_b in (False, True):
                    a = r.standard_normal((M, K)).astype(dtype)
                    b = r.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
                    gate = np.maximum(r.standard_normal((M, N)), 0).astype(dtype)
                    gate.flat[::7] = -0.0
                    gate.flat[3::11] = np.nan
                    gate.flat[5::13] = -1.0
                    fused, plain = np.empty((M, N), dtype), np.empty((M, N), dtype)
                    _blas.gemm_small(a, b, fused, trans_b=trans_b, gate=gate)
                    _blas.gemm_small(a, b, plain, trans_b=trans_b)
                    _activations.backward(plain, gate, gate, plain, relu)
                    np.testing.assert_array_equal(fused.view(np.uint8), plain.view(np.uint8),
                                                  err_msg=f"{M}x{K}x{N} trans_b={trans_b}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_step_is_bitwise_the_python_path_with_blas_gemms(dtype):
    """Without the own GEMM kernels, at one thread, the compiled step runs the very same operations."""
    fnn.set_num_threads(1)
    _blas.set_small_gemm(False)
    try:
        (ma, mb), (la, lb), x, t = _problem("CrossEntropyLoss", {"label_smoothing": 0.1}, "labels", dtype, True,
                                            n=13, key="bitwise")
        _assert_adam_steps_bitwise(ma, mb, la, lb, x, t)
    finally:
        _blas.set_small_gemm(True)


def _assert_adam_steps_bitwise(ma, mb, la, lb, x, t):
    """Three Adam steps of the per-layer path (ma) and of the compiled engine (mb) give the same bits; the engine."""
    oa, ob = fnn.optim.Adam(ma.parameters(), lr=1e-2), fnn.optim.Adam(mb.parameters(), lr=1e-2)
    engine = Engine(mb)
    for _ in range(3):
        va, out = _python_step(ma, x, t, la, oa)
        assert engine.train_step(x, t, lb, ob) == va
        np.testing.assert_array_equal(engine.last_output, out)
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        np.testing.assert_array_equal(pb.data, pa.data)
        np.testing.assert_array_equal(pb.grad, pa.grad)
    return engine


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_fused_bias_relu_forward_is_bitwise_the_python_path(dtype):
    """With the own GEMM kernels, a Dense's bias + ReLU (or bias alone) is fused into the GEMM's store in the
    training plan and ReLU's backward reads the activation: the very bits of the per-layer path, with exact
    zeros, -0 and ties of the pre-activation at 0 in the batch."""
    if not _blas.small_gemm_available():
        pytest.skip("no AVX2/FMA: the own GEMM kernels do not run on this CPU")
    fnn.set_num_threads(1)
    r = np.random.default_rng(5)
    models = [fnn.Sequential([fnn.Dense(12, 16, activation="relu"), fnn.Dense(16, 16), fnn.ReLU(),
                              fnn.Dense(16, 4)], dtype=dtype, seed=3) for _ in range(2)]
    for p in models[1].parameters():
        p.data[...] = next(q for q in models[0].parameters() if q.name == p.name).data
    ma, mb = models
    b0 = next(p for p in mb.parameters() if p.name.endswith("bias"))
    for m in models:   # the first bias: zeros and -0, so that rows of x = 0 give pre-activations exactly +-0
        next(p for p in m.parameters() if p.name == b0.name).data[...] = np.where(np.arange(16) % 2, 0.0, -0.0)
    x = r.standard_normal((13, 12)).astype(dtype)
    x[[2, 7]] = 0.0
    t = r.integers(0, 4, 13)
    engine = _assert_adam_steps_bitwise(ma, mb, fnn.losses.CrossEntropyLoss(), fnn.losses.CrossEntropyLoss(), x, t)
    assert all(own[0] for own in engine._plan.gemm_choice()), "the fused path was not taken"


def test_no_allocation_after_warmup():
    r = np.random.default_rng(0)
    model = fnn.Sequential([fnn.Dense(20, 32, activation="relu"), fnn.Dropout(0.3), fnn.Dense(32, 5)], seed=0)
    loss, opt = fnn.losses.CrossEntropyLoss(), fnn.optim.Adam(model.parameters(), lr=1e-3)
    x, y = r.standard_normal((16, 20)).astype(np.float32), r.integers(0, 5, 16)
    engine = Engine(model)
    for _ in range(5):
        engine.train_step(x, y, loss, opt)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(200):
            engine.train_step(x, y, loss, opt)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start < 512
    assert peak - start < 16 * 1024      # transient Python objects only: no buffer (16*32*4 = 2 kB) is allocated


# ---------------------------------------------------------------------------------------------- fallbacks

class _ScaledMSE(fnn.losses.MSELoss):
    """A loss the plan has no kernel for (it overrides _forward_backward)."""

    def _forward_backward(self, x, t, grad_out, loss_out=None, grad_up=None):
        value = super()._forward_backward(x, t, grad_out, loss_out, grad_up)
        grad_out *= 3
        return 3 * value


class _PlainSGD(fnn.optim.Optimizer):
    """An optimizer without _fused_runs: p -= lr * grad, stepped from Python."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.has_grad:
                    p.data -= group["lr"] * p.grad


class _NoKind(fnn.optim.Optimizer):
    """A fastnn Optimizer with its own _prepare_run (plain SGD through the SGD kernel) but no kernel kind."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    def _prepare_run(self, group, run, key):
        param, grad = self._flat(run)
        e = np.empty(0, param.dtype)
        return (0, 0, param, grad, e, e, e, (group["lr"], 0.0, 0.0, 0.0), np.empty(0, np.float32))


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("opt", ["plain", "adam"])
def test_fallback_loss_and_optimizer(reduction, opt):
    (ma, mb), _, x, t = _problem("MSELoss", {}, "regression", np.float64, True, n=8, key="fallback")
    la, lb = _ScaledMSE(reduction), _ScaledMSE(reduction)
    if opt == "plain":   # _PlainSGD overrides step(): stepped from Python
        oa, ob = _PlainSGD(ma.parameters(), 0.05), _PlainSGD(mb.parameters(), 0.05)
    else:                # the plan's backward call runs the update
        oa, ob = fnn.optim.Adam(ma.parameters(), lr=1e-3), fnn.optim.Adam(mb.parameters(), lr=1e-3)
    engine = Engine(mb)
    for _ in range(3):
        va, out = _python_step(ma, x, t, la, oa)
        _close(engine.train_step(x, t, lb, ob), va, 1e-12)
        _close(engine.last_output, out, TOL[np.float64])
    assert engine._split and engine._fused == (opt == "adam")
    _assert_same(ma, mb, TOL[np.float64])


def test_fallback_python_path_for_unknown_stage():
    (ma, mb), (la, lb), x, t = _problem("MSELoss", {}, "regression", np.float64, False, n=6, key="stage")

    class Odd(DenseStage):   # a stage type the plan does not know (runs like a Dense stage)
        pass

    for m in (ma, mb):
        m._stages[-1].__class__ = Odd
    oa, ob = fnn.optim.SGD(ma.parameters(), lr=0.1), fnn.optim.SGD(mb.parameters(), lr=0.1)
    engine = Engine(mb)
    for _ in range(2):
        va, out = _python_step(ma, x, t, la, oa)
        _close(engine.train_step(x, t, lb, ob), va, 1e-12)
    assert engine._python and engine._plan is None
    _assert_same(ma, mb, TOL[np.float64])


def test_train_step_rejects_arrays_the_plan_cannot_take():
    model = fnn.Sequential([fnn.Dense(4, 3)], seed=0)
    engine = Engine(model)
    loss, opt = fnn.losses.CrossEntropyLoss(), fnn.optim.SGD(model.parameters(), lr=0.1)
    y = np.array([0, 1], np.int64)
    with pytest.raises(ValueError, match=r"x must be a C-contiguous float32 array of shape \(2, 4\)"):
        engine.train_step(np.zeros((2, 4)), y, loss, opt)                  # float64 into a float32 model
    with pytest.raises(ValueError, match="the targets do not fit the plan's loss"):
        engine.train_step(np.zeros((2, 4), np.float32), y.astype(np.int32), loss, opt)
    assert model._step == 0 and not any(p.has_grad for p in model.parameters())


# ---------------------------------------------------------------------------------------------- inference

@pytest.mark.parametrize("n", [1, 7, 300])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_forward_equals_model_in_eval_mode(n, dtype):
    r = np.random.default_rng(_seed("fwd", n, np.dtype(dtype).name))
    for trial in range(4):
        widths = [int(w) for w in r.integers(1, 40, size=int(r.integers(2, 5)))]
        model = fnn.Sequential(_layers(r, widths, dropout=True), dtype=dtype, seed=trial)
        model.eval()
        x = r.standard_normal((n, widths[0])).astype(dtype)
        engine = Engine(model)
        _close(engine.forward(x), model(x), TOL[dtype])
        _close(engine.forward(x[0]), model(x[0]), TOL[dtype])   # one sample, 1-D
        assert engine.forward(x[0]).shape == (model.out_features,)


def test_forward_returns_its_own_array_and_follows_weight_changes():
    model = fnn.Sequential([fnn.Dense(6, 4, activation="relu"), fnn.Dense(4, 2)], seed=0)
    engine = Engine(model)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    out = engine.forward(x)
    again = engine.forward(x)
    assert out.flags.owndata and again is not out and np.array_equal(out, again)   # never a shared buffer
    buf = np.empty((3, 2), np.float32)
    assert engine.forward(x, buf) is buf and np.array_equal(buf, out)              # or written to out=
    for p in model.parameters():
        p.data[...] = 0.5
    model.eval()
    np.testing.assert_allclose(engine.forward(x), model(x), rtol=1e-6)
    (plan, *_), = engine._infer_pool
    assert plan.capacity == 3
    big = np.random.default_rng(1).standard_normal((10, 6)).astype(np.float32)
    np.testing.assert_allclose(engine.forward(big), model(big), rtol=1e-6)   # grows
    (cap, *_), = engine._infer_pool
    np.testing.assert_allclose(engine.forward(x), model(x), rtol=1e-6)       # smaller: same plan
    assert engine._infer_pool[0][0] is cap and cap.capacity == 10


def test_forward_converts_and_validates():
    model = fnn.Sequential([fnn.Dense(5, 3, activation="tanh")], seed=0)
    model.eval()
    engine = Engine(model)
    x = np.random.default_rng(0).standard_normal((4, 5))
    expect = model(x)
    np.testing.assert_allclose(engine.forward(x), expect, rtol=1e-6)               # float64 -> float32
    np.testing.assert_allclose(engine.forward(np.asfortranarray(x)), expect, rtol=1e-6)
    np.testing.assert_allclose(engine.forward(x.tolist()), expect, rtol=1e-6)      # a list
    np.testing.assert_allclose(engine.forward(x[::-1][::-1].astype(np.float32)), expect, rtol=1e-6)
    with pytest.raises(ValueError, match=r"x must have 5 features \(columns\), got shape \(4, 6\)"):
        engine.forward(np.zeros((4, 6), np.float32))
    with pytest.raises(ValueError, match=r"x must have 5 features \(columns\), got shape \(4,\)"):
        engine.forward(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="x must be 2-D, got 3-D"):
        engine.forward(np.zeros((1, 4, 5), np.float32))
    with pytest.raises(ValueError, match="x must have at least one row"):
        engine.forward(np.zeros((0, 5), np.float32))
    with pytest.raises(TypeError, match="x must hold real numbers"):
        engine.forward(np.array([["a"] * 5]))


def test_forward_of_misaligned_input_and_of_a_stage_the_plan_does_not_know():
    model = fnn.Sequential([fnn.Dense(5, 4, activation="relu"), fnn.Dropout(0.5), fnn.Dense(4, 3)], seed=2)
    model.eval()
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    odd = raw[1:].view(np.float32).reshape(4, 5)          # C-contiguous, float32, not aligned
    odd[...] = x
    assert not odd.flags.aligned
    engine = Engine(model)
    _close(engine.forward(odd), model(x), 1e-6)

    class Odd(DenseStage):
        pass

    model._stages[-1].__class__ = Odd
    engine = Engine(model)
    _close(engine.forward(x), model(x), 1e-6)
    _close(engine.forward(x[1]), model(x[1]), 1e-6)
    assert engine._infer_pool == [] and model.training is False


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_forward_gives_a_row_the_same_bits_whatever_the_batch(dtype):
    """With the own small-GEMM kernels a row's output does not depend on the batch around it."""
    model = fnn.Sequential([fnn.Dense(70, 90, activation="tanh"), fnn.Dense(90, 37)], dtype=dtype, seed=5)
    engine = Engine(model)
    x = np.random.default_rng(3).standard_normal((13, 70)).astype(dtype)
    full = engine.forward(x).copy()
    rows = [engine.forward(x[i]).copy() for i in range(13)]
    part = engine.forward(x[2:9]).copy()
    if _blas.small_gemm_available():
        np.testing.assert_array_equal(np.stack(rows), full)
        np.testing.assert_array_equal(part, full[2:9])
    else:
        _close(np.stack(rows), full, TOL[dtype])
        _close(part, full[2:9], TOL[dtype])


def test_forward_of_its_own_output():
    """Feeding an output view back in (an autoencoder, say) must not read buffers the pass overwrites."""
    model = fnn.Sequential([fnn.Dense(6, 6, activation="tanh"), fnn.Dense(6, 6)], dtype="float64", seed=1)
    model.eval()
    engine = Engine(model)
    x = np.random.default_rng(0).standard_normal((5, 6))
    once = engine.forward(x)
    _close(engine.forward(once), model(model(x)), 1e-12)
    _close(engine.forward(engine.forward(x[0])), model(model(x[0])), 1e-12)


# ---------------------------------------------------------------------------------------------- batch loop

BATCH_OPTIMIZERS = ALL_OPTIMIZERS + [("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True})]


def _batch_problem(opt_name, opt_kw, dtype, target="labels", loss_kw=None):
    r = np.random.default_rng(_seed("batches", opt_name, opt_kw, np.dtype(dtype).name, target))
    models, opts = [], []
    for _ in range(2):
        m = fnn.Sequential([fnn.Dense(7, 9, "relu"), fnn.Dropout(0.25), fnn.Dense(9, 5, "gelu"), fnn.Dense(5, 4)],
                           dtype=dtype, seed=11)
        models.append(m)
        opts.append(getattr(fnn.optim, opt_name)(m.parameters(), **opt_kw))
    n = 53
    x = r.standard_normal((n, 7)).astype(dtype)
    if target == "labels":
        losses = [fnn.losses.CrossEntropyLoss(**(loss_kw or {})) for _ in range(2)]
        t = r.integers(0, 4, n)
    else:
        losses = [fnn.losses.BCEWithLogitsLoss(**(loss_kw or {})) for _ in range(2)]
        t = (r.random((n, 4)) < 0.5).astype(dtype)
    return models, opts, losses, x, t, r.permutation(n)


@pytest.mark.parametrize("opt_name,opt_kw", BATCH_OPTIMIZERS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shuffled", [True, False], ids=["order", "in_order"])
def test_train_batches_equals_train_step_per_batch(opt_name, opt_kw, dtype, shuffled):
    (ma, mb), (oa, ob), (la, lb), x, t, order = _batch_problem(opt_name, opt_kw, dtype)
    order = order if shuffled else None
    bs, steps = 6, 8
    ea, eb = Engine(ma), Engine(mb)
    losses, outs = [], []
    for b in range(steps):
        idx = order[b * bs:(b + 1) * bs] if shuffled else np.arange(b * bs, (b + 1) * bs)
        losses.append(ea.train_step(np.ascontiguousarray(x[idx]), t[idx], la, oa))
        outs.append(ea.last_output.copy())
    assert eb.supports_batches(t, lb, ob)
    got = np.full(steps, -1.0)
    out = np.empty((steps * bs, 4), dtype)
    assert eb.train_batches(x, t, order, bs, 0, 3, lb, ob, got, out) == 3
    assert eb.train_batches(x, t, order, bs, 3, 5, lb, ob, got[3:], out[3 * bs:]) == 5
    np.testing.assert_array_equal(got, losses)
    np.testing.assert_array_equal(out, np.concatenate(outs))
    np.testing.assert_array_equal(eb.last_output, ea.last_output)
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        np.testing.assert_array_equal(pb.data, pa.data)
        np.testing.assert_array_equal(pb.grad, pa.grad)
    sa, sb = oa.state_dict(), ob.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for i, st in sa["state"].items():
        assert st.keys() == sb["state"][i].keys()
        for kind, value in st.items():
            np.testing.assert_array_equal(sb["state"][i][kind], value)
            assert sb["state"][i][kind].dtype == value.dtype
    assert ma._step == mb._step == steps


def test_train_batches_param_groups_and_float_targets():
    """Two param groups (other lr and betas), a frozen parameter, probability-free BCE targets (float rows)."""
    (ma, mb), _, (la, lb), x, t, order = _batch_problem("Adam", {}, np.float32, target="binary")
    opts = []
    for m in (ma, mb):
        p = m.parameters()
        opts.append(fnn.optim.Adam([{"params": p[:2], "lr": 0.02, "betas": (0.8, 0.99)}, {"params": p[3:]}]))
    (oa, ob), bs = opts, 5
    ea, eb = Engine(ma), Engine(mb)
    for b in range(10):
        idx = order[b * bs:(b + 1) * bs]
        ea.train_step(np.ascontiguousarray(x[idx]), np.ascontiguousarray(t[idx]), la, oa)
    got = np.empty(10)
    assert eb.train_batches(x, t, order, bs, 0, 10, lb, ob, got) == 10
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        np.testing.assert_array_equal(pb.data, pa.data)
    for i, st in oa.state_dict()["state"].items():
        for kind, value in st.items():
            np.testing.assert_array_equal(ob.state_dict()["state"][i][kind], value)


def test_train_batches_stops_after_a_non_finite_loss():
    r = np.random.default_rng(0)
    x, t = r.standard_normal((96, 5)) * 10, r.standard_normal((96, 1)) * 100
    runs = []
    for _ in range(2):
        m = fnn.Sequential([fnn.Dense(5, 8, "relu"), fnn.Dense(8, 1)], dtype="float64", seed=0)
        runs.append((m, fnn.optim.SGD(m.parameters(), lr=2.0, momentum=0.9), fnn.losses.MSELoss()))
    (ma, oa, la), (mb, ob, lb) = runs
    ea, eb = Engine(ma), Engine(mb)
    expected = []
    for b in range(24):
        expected.append(ea.train_step(x[4 * b:4 * b + 4], t[4 * b:4 * b + 4], la, oa))
        if not np.isfinite(expected[-1]):
            break
    k = len(expected)
    assert 1 < k < 24   # diverges mid-way
    got = np.full(24, 7.0)
    assert eb.train_batches(x, t, None, 4, 0, 24, lb, ob, got) == k
    np.testing.assert_array_equal(got[:k], expected)
    assert (got[k:] == 7.0).all() and mb._step == k
    np.testing.assert_array_equal(mb._arena.data, ma._arena.data)


def test_plans_are_cached_per_batch_size():
    (_, m), (_, opt), (_, loss), x, t, _ = _batch_problem("Adam", {}, np.float32)
    engine = Engine(m)
    engine.train_step(x[:8], t[:8], loss, opt)
    full = engine._plan
    engine.train_step(x[:5], t[:5], loss, opt)
    last = engine._plan
    assert last is not full and last.n == 5
    for _ in range(2):   # epochs: full batches, then the last one, with no rebuild
        engine.train_batches(x, t, None, 8, 0, 6, loss, opt, np.empty(6))
        assert engine._plan is full
        engine.train_step(x[48:], t[48:], loss, opt)
        assert engine._plan is last and engine.last_output.shape == (5, 4)
    opt2 = fnn.optim.Adam(m.parameters())
    engine.train_step(x[:8], t[:8], loss, opt2)   # another optimizer: every cached plan is dropped
    assert engine._plan is not full and list(engine._plans) == [(8, _plan.LossKind.CROSS_ENTROPY, engine._threads)]


def test_train_batches_refuses_what_it_cannot_run():
    (_, m), (_, opt), (_, loss), x, t, order = _batch_problem("SGD", {"lr": 0.1}, np.float64)
    engine = Engine(m)
    sub = _PlainSGD(m.parameters(), lr=0.1)
    assert not engine.supports_batches(t, loss, sub)
    assert not engine.supports_batches(t, _ScaledMSE(), opt)
    assert not engine.supports_batches(t, loss, _NoKind(m.parameters()))   # stepped by the base class, but no kernel
    hooked = fnn.optim.SGD(m.parameters(), lr=0.1)
    hooked._prepare_run = hooked._prepare_run   # a hook replaced on the instance: each step must call it
    assert not engine.supports_batches(t, loss, hooked)

    class MySGD(fnn.optim.SGD):   # a subclass inherits the kernel kind
        pass

    assert engine.supports_batches(t, loss, MySGD(m.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="train_batches cannot step a _PlainSGD"):
        engine.train_batches(x, t, None, 4, 0, 2, loss, sub, np.empty(2))
    bad = order.copy()
    bad[5] = 53
    with pytest.raises(ValueError, match=r"order\[5\] = 53 is not a row of x"):
        engine.train_batches(x, t, bad, 4, 0, 2, loss, opt, np.empty(2))
    with pytest.raises(ValueError, match="batches up to 14 of 4 rows need 56 rows, x has 53"):
        engine.train_batches(x, t, None, 4, 0, 14, loss, opt, np.empty(14))
    with pytest.raises(ValueError, match="losses must be a writeable C-contiguous float64 array of at least 3"):
        engine.train_batches(x, t, None, 4, 0, 3, loss, opt, np.empty(2))


@pytest.mark.parametrize("opt_name,opt_kw", [("Adam", {}), ("Adagrad", {"lr_decay": 0.01}), ("RMSprop", {})])
def test_train_batches_counts_steps_in_float32_in_place(opt_name, opt_kw):
    """The batch loop's updates advance state[p]["step"] in place, as float32 counts (stuck at 2**24), like
    train_step per batch; counts that differ between parameters stay apart."""
    (ma, mb), (oa, ob), (la, lb), x, t, order = _batch_problem(opt_name, opt_kw, np.float32)
    for opt in (oa, ob):
        for p, start in zip(opt.param_groups[0]["params"], [2.0**24 - 3, 2.0**24 - 3, 7.0, 2.0**24, 0.0, 3e9]):
            opt.state[p]["step"] = np.float32(start)   # replaced by the next step's view
    sd = oa.state_dict()
    oa.load_state_dict(sd)
    ob.load_state_dict(sd)
    ea, eb = Engine(ma), Engine(mb)
    bs = 6
    for b in range(5):
        idx = order[b * bs:(b + 1) * bs]
        ea.train_step(np.ascontiguousarray(x[idx]), t[idx], la, oa)
    assert eb.train_batches(x, t, order, bs, 0, 5, lb, ob, np.empty(5)) == 5
    steps = [ob.state[p]["step"] for p in ob.param_groups[0]["params"]]
    assert [float(s) for s in steps] == [2.0**24, 2.0**24, 12.0, 2.0**24, 5.0, 3e9]
    assert all(s.base is ob._steps for s in steps)
    np.testing.assert_array_equal(ob._steps, oa._steps)
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        np.testing.assert_array_equal(pb.data, pa.data)
