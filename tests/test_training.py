"""End to end: network + loss + optimizer against PyTorch, and the lecture's loop on real data."""

import zlib

import numpy as np
import pytest
from conftest import numerical_grads
from test_model import _torch_twin

import fastnn as fnn

LOSSES = [
    ("CrossEntropyLoss", {}, "labels"),
    ("CrossEntropyLoss", {"label_smoothing": 0.1, "reduction": "sum"}, "labels"),
    ("CrossEntropyLoss", {}, "probs"),
    ("MSELoss", {}, "regression"),
    ("MSELoss", {"reduction": "sum"}, "regression"),
    ("BCEWithLogitsLoss", {}, "binary"),
    ("BCELoss", {"reduction": "mean"}, "binary"),
]
OPTIMIZERS = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.1, "maximize": False}),
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-2}),
    ("AdamW", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
]


def _targets(kind, r, n, c):
    if kind == "labels":
        return r.integers(0, c, n)
    if kind == "probs":
        p = r.random((n, c))
        return p / p.sum(axis=1, keepdims=True)
    if kind == "binary":
        return (r.random((n, c)) < 0.5).astype(float)
    return r.standard_normal((n, c))


@pytest.mark.parametrize("loss_name,loss_kw,target", LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("opt_name,opt_kw", OPTIMIZERS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_training_matches_torch(loss_name, loss_kw, target, opt_name, opt_kw, dtype):
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    try:
        r = np.random.default_rng(zlib.crc32(f"{loss_name}{loss_kw}{opt_name}{opt_kw}".encode()))
        depth = 1 + int(r.integers(0, 4))
        widths = [int(w) for w in r.integers(2, 24, size=depth + 1)]
        acts = ["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu", "silu"]
        layers = [fnn.Dense(widths[i], widths[i + 1], activation=acts[int(r.integers(len(acts)))] if i < depth - 1
                            else None) for i in range(depth)]
        if loss_name == "BCELoss":   # BCELoss takes probabilities
            layers.append(fnn.Sigmoid())
        model = fnn.Sequential(layers, dtype=dtype, seed=int(r.integers(1 << 30)))
        tmodel = _torch_twin(torch, model)
        loss_fn = getattr(fnn.losses, loss_name)(**loss_kw)
        tloss = getattr(torch.nn, loss_name)(**loss_kw)
        n = int(r.integers(1, 40))
        if loss_kw.get("reduction") == "sum":   # keep the steps of a summed loss as small as a mean's
            opt_kw = {**opt_kw, "lr": opt_kw["lr"] / n}
        opt = getattr(fnn.optim, opt_name)(model.parameters(), **opt_kw)
        topt = getattr(torch.optim, opt_name)(tmodel.parameters(), **opt_kw)
        x = r.standard_normal((n, widths[0]))
        t = _targets(target, r, n, widths[-1])
        xt = torch.tensor(x, dtype=torch.get_default_dtype())
        tt = torch.tensor(t) if target == "labels" else torch.tensor(t, dtype=torch.get_default_dtype())
        rtol = 1e-9 if dtype == np.float64 else 2e-4
        atol = 1e-11 if dtype == np.float64 else 2e-5
        for _ in range(20):
            loss = loss_fn(model(x), t)
            model.backward(loss_fn.backward())
            opt.step()
            opt.zero_grad()
            tl = tloss(tmodel(xt), tt)
            tl.backward()
            topt.step()
            topt.zero_grad()
            assert loss == pytest.approx(tl.item(), rel=rtol, abs=atol)
        for p, tp in zip(model.parameters(), tmodel.parameters()):
            expect = tp.detach().numpy()
            np.testing.assert_allclose(p.data, expect.T if p.data.ndim == 2 else expect, rtol=rtol * 10,
                                       atol=atol * 10, err_msg=p.name)
    finally:
        torch.set_default_dtype(torch.float32)


def test_nll_on_log_softmax_outputs_matches_torch():
    """NLLLoss after an explicit log-softmax equals CrossEntropyLoss on the logits, as in torch."""
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(0)
    z = r.standard_normal((9, 4))
    y = r.integers(0, 4, 9)
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    nll, ce = fnn.losses.NLLLoss(), fnn.losses.CrossEntropyLoss()
    assert nll(logp, y) == pytest.approx(ce(z, y), rel=1e-13)
    tnll = torch.nn.NLLLoss()(torch.tensor(logp), torch.tensor(y))
    assert nll(logp, y) == pytest.approx(float(tnll), rel=1e-13)


def test_vendored_digits_equal_scikit_learn():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = fnn.datasets.load_digits(dtype="float64", scale=False)
    Xs, ys = datasets.load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, Xs)
    np.testing.assert_array_equal(y, ys)


def test_lecture_loop_learns_digits():
    """The five-step loop trains a 2-layer MLP on scikit-learn's digits to >= 95% held-out accuracy."""
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_digits(return_X_y=True)
    X = X / 16.0
    order = np.random.default_rng(42).permutation(len(X))
    test, train = order[:360], order[360:]
    model = fnn.Sequential([fnn.Dense(64, 128, activation="relu"), fnn.Dense(128, 10)], seed=0)
    loss_fn = fnn.losses.CrossEntropyLoss()
    opt = fnn.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    first = last = None
    for _epoch in range(30):
        model.train()
        perm = rng.permutation(train)
        total = 0.0
        for s in range(0, len(perm), 32):
            idx = perm[s:s + 32]
            loss = loss_fn(model(X[idx]), y[idx])
            model.backward(loss_fn.backward())
            opt.step()
            opt.zero_grad()
            total += loss * len(idx)
        first = total / len(train) if first is None else first
        last = total / len(train)
    model.eval()
    acc = (model(X[test]).argmax(axis=1) == y[test]).mean()
    assert last < 0.1 * first
    assert acc >= 0.95, acc


ALL_LOSSES = [
    ("MSELoss", {}, "regression"), ("BCELoss", {}, "binary"), ("BCEWithLogitsLoss", {"pos_weight": "c"}, "binary"),
    ("CrossEntropyLoss", {"label_smoothing": 0.2, "weight": "c"}, "labels"), ("CrossEntropyLoss", {}, "probs"),
    ("NLLLoss", {"weight": "c"}, "labels"),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss_name,loss_kw,target", ALL_LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_every_loss_and_reduction_backpropagates_like_torch(loss_name, loss_kw, target, reduction, dtype):
    """One forward/backward of a random 3-layer network: loss value and every parameter gradient."""
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    try:
        r = np.random.default_rng(zlib.crc32(f"{loss_name}{loss_kw}{reduction}".encode()))
        c = 5
        layers = [fnn.Dense(6, 9, "tanh"), fnn.Dense(9, 7), fnn.GELU(), fnn.Dense(7, c)]
        if loss_name == "BCELoss":
            layers.append(fnn.Sigmoid())
        model = fnn.Sequential(layers, dtype=dtype, seed=3)
        tmodel = _torch_twin(torch, model)
        kw = {k: (r.random(c) + 0.5 if v == "c" else v) for k, v in loss_kw.items()}
        tkw = {k: (torch.tensor(v, dtype=torch.get_default_dtype()) if isinstance(v, np.ndarray) else v)
               for k, v in kw.items()}
        loss_fn = getattr(fnn.losses, loss_name)(reduction=reduction, **kw)
        tloss_fn = getattr(torch.nn, loss_name)(reduction=reduction, **tkw)
        n = 11
        x = r.standard_normal((n, 6))
        t = _targets(target, r, n, c)
        loss = loss_fn(model(x), t)
        xt = torch.tensor(x, dtype=torch.get_default_dtype())
        tt = torch.tensor(t) if target == "labels" else torch.tensor(t, dtype=torch.get_default_dtype())
        tloss = tloss_fn(tmodel(xt), tt)
        if reduction == "none":
            up = r.standard_normal(np.shape(loss))
            model.backward(loss_fn.backward(up))
            tloss.backward(torch.tensor(up, dtype=torch.get_default_dtype()))
            tl = tloss.detach().numpy()
        else:
            model.backward(loss_fn.backward())
            tloss.backward()
            tl = tloss.item()
        rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (1e-4, 1e-5)
        np.testing.assert_allclose(loss, tl, rtol=rtol, atol=atol)
        for p, tp in zip(model.parameters(), tmodel.parameters()):
            tg = tp.grad.numpy()
            np.testing.assert_allclose(p.grad, tg.T if p.data.ndim == 2 else tg, rtol=rtol, atol=atol, err_msg=p.name)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("trial", range(6))
def test_random_network_with_loss_finite_differences(trial):
    """Central differences of a loss through a random network (float64) vs backward()."""
    r = np.random.default_rng(100 + trial)
    depth = 1 + trial % 4
    widths = [int(w) for w in r.integers(1, 6, size=depth + 1)]
    acts = ["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu", "silu", "softmax", None]
    layers = [fnn.Dense(widths[i], widths[i + 1], activation=acts[int(r.integers(len(acts)))]) for i in range(depth)]
    if trial % 2:
        layers.insert(1, fnn.Dropout(0.3))   # a fixed mask: the step counter is held below
    losses = [fnn.losses.MSELoss(), fnn.losses.CrossEntropyLoss(label_smoothing=0.1),
              fnn.losses.BCEWithLogitsLoss(), fnn.losses.CrossEntropyLoss(reduction="sum")]
    loss_fn = losses[trial % len(losses)]
    model = fnn.Sequential(layers, dtype="float64", seed=trial)
    n = 4
    x = r.standard_normal((n, widths[0]))
    if isinstance(loss_fn, fnn.losses.CrossEntropyLoss):
        t = r.integers(0, widths[-1], n)
    elif isinstance(loss_fn, fnn.losses.BCEWithLogitsLoss):
        t = (r.random((n, widths[-1])) < 0.5).astype(float)
    else:
        t = r.standard_normal((n, widths[-1]))

    def loss_at():
        model._step = 0   # same dropout mask for every evaluation
        return loss_fn(model(x), t)

    loss_at()
    model.backward(loss_fn.backward())
    for p, num in zip(model.parameters(), numerical_grads(model.parameters(), loss_at)):
        np.testing.assert_allclose(p.grad, num, rtol=1e-5, atol=1e-8, err_msg=p.name)
