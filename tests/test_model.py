"""Sequential and layers: the layer contract, whole-network gradients, PyTorch parity, threads, bad input."""

import numpy as np
import pytest
from conftest import numerical_grad, numerical_grads, tols

import fastnn as fnn
from fastnn._config import config
from fastnn._reference import activations as ref_act

ACT_SPECS = [None, "relu", "sigmoid", "tanh", "leaky_relu", "gelu", "elu", "silu", "softmax", "softsign",
             fnn.GELU(approximate="tanh"), fnn.LeakyReLU(0.2), fnn.ELU(0.5), "softplus", fnn.Softplus(2.0, 5.0)]


def _fd_check(model, x, rng, h=1e-6, rtol=1e-6, atol=1e-8):
    """Central differences of L = sum(G * model(x)) w.r.t. every parameter and x (float64)."""
    G = rng.standard_normal((x.shape[0], model.out_features))

    def loss():
        return float((G * model(x)).sum())

    model.zero_grad()
    model(x)
    dx = np.empty_like(x)
    model._backward(G, input_grad_out=dx)
    for p, num in zip(model.parameters(), numerical_grads(model.parameters(), loss, h)):
        np.testing.assert_allclose(p.grad, num, rtol=rtol, atol=atol, err_msg=p.name)
    num = numerical_grad(lambda xx: float((G * model(xx)).sum()), x, h)
    np.testing.assert_allclose(dx, num, rtol=rtol, atol=atol, err_msg="input")


@pytest.mark.parametrize("act", ACT_SPECS, ids=repr)
def test_layer_contract_dense_with_activation(act, rng):
    model = fnn.Sequential([fnn.Dense(5, 4, activation=act)], dtype="float64", seed=3)
    x = rng.standard_normal((3, 5))
    # shapes, dtype, parameter views
    y = model(x)
    assert y.shape == (3, 4) and y.dtype == np.float64
    w, b = model.parameters()
    assert w.shape == (5, 4) and b.shape == (4,)
    assert np.shares_memory(w.data, model._arena.data) and np.shares_memory(b.data, model._arena.data)
    w.data[...] = 0.0
    b.data[...] = 0.5
    layer = model.layers[0]   # writing p.data in place sets the parameter
    expect = ref_act.f(np.full((3, 4), 0.5), layer.activation.kind, layer.activation.param,
                        layer.activation.param2)
    np.testing.assert_allclose(model(x), expect, rtol=1e-15)
    model2 = fnn.Sequential([fnn.Dense(5, 4, activation=act)], dtype="float64", seed=3)
    _fd_check(model2, x, rng)


@pytest.mark.parametrize("layers", [
    lambda: [fnn.Dense(4, 6), fnn.ReLU(), fnn.Dense(6, 3), fnn.Tanh()],
    lambda: [fnn.Dense(4, 6, activation="sigmoid"), fnn.Softmax()],            # activation after an activation
    lambda: [fnn.Tanh(), fnn.Dense(4, 3, use_bias=False)],                     # activation first, no bias
    lambda: [fnn.Dense(4, 6, activation="gelu"), fnn.Dropout(0.0), fnn.Dense(6, 2)],
    lambda: [fnn.Dense(4, 1), fnn.Sigmoid()],
], ids=["fused", "act-after-act", "act-first-nobias", "dropout0", "width1"])
def test_whole_network_finite_differences(layers, rng):
    model = fnn.Sequential(layers(), dtype="float64", seed=1)
    _fd_check(model, rng.standard_normal((3, 4)), rng)


def test_batch_of_one_and_single_sample(rng):
    model = fnn.Sequential([fnn.Dense(3, 2, "tanh")], dtype="float64", seed=0)
    x = rng.standard_normal(3)
    y1 = model(x)
    assert y1.shape == (2,)
    np.testing.assert_allclose(model(x[None, :])[0], y1, rtol=1e-15)
    model.zero_grad()
    model(x)
    model.backward(np.ones(2))
    g1 = model.parameters()[0].grad.copy()
    model.zero_grad()
    model(x[None, :])
    model.backward(np.ones((1, 2)))
    np.testing.assert_allclose(model.parameters()[0].grad, g1, rtol=1e-15)


def test_gradients_accumulate_until_zero_grad(rng):
    model = fnn.Sequential([fnn.Dense(3, 4, "relu"), fnn.Dense(4, 2)], dtype="float64", seed=0)
    x, g = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    assert all(p.grad is None for p in model.parameters())
    model(x)
    model.backward(g)
    once = [p.grad.copy() for p in model.parameters()]
    model(x)
    model.backward(g)
    for p, g1 in zip(model.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g1, rtol=1e-14)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in model.parameters())


def test_seed_reproducibility_and_dropout(rng):
    def make(seed):
        return fnn.Sequential([fnn.Dense(8, 16, "relu"), fnn.Dropout(0.5), fnn.Dense(16, 4)], seed=seed)

    x = rng.standard_normal((10, 8))
    a, b, c = make(7), make(7), make(8)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert not np.array_equal(a.parameters()[0].data, c.parameters()[0].data)
    ya, yb = a(x), b(x)
    np.testing.assert_array_equal(ya, yb)                  # same seed, same masks
    assert not np.array_equal(a(x), ya)                    # a new step draws a new mask
    a.eval()
    np.testing.assert_array_equal(a(x), a(x))              # eval: dropout off, deterministic
    ref = fnn.Sequential([fnn.Dense(8, 16, "relu"), fnn.Dense(16, 4)], seed=7)
    np.testing.assert_allclose(a(x), ref(x), rtol=1e-6)    # eval == the network without dropout
    assert a.train() is a and a.training


def test_dropout_train_eval_semantics(rng):
    model = fnn.Sequential([fnn.Dense(50, 50, use_bias=False), fnn.Dropout(0.4)], dtype="float64", seed=2)
    model.parameters()[0].data[...] = np.eye(50)
    x = rng.uniform(1, 2, size=(40, 50))
    y = model(x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-14)
    assert 0.5 < kept.mean() < 0.7
    g = rng.standard_normal(y.shape)
    model.backward(g)
    np.testing.assert_allclose(model.parameters()[0].grad, x.T @ (g * kept / 0.6), rtol=1e-12)
    model.eval()
    np.testing.assert_array_equal(model(x), x)
    p1 = fnn.Sequential([fnn.Dense(50, 50, use_bias=False), fnn.Dropout(1.0)], dtype="float64", seed=2)
    assert np.all(p1(x) == 0)


def test_initialisers(rng):
    for init, bound in [("glorot_uniform", np.sqrt(6 / 300)), ("he_uniform", np.sqrt(6 / 200)),
                        ("lecun_uniform", np.sqrt(3 / 200)), ("torch", 1 / np.sqrt(200))]:
        m = fnn.Sequential([fnn.Dense(200, 100, init=init)], dtype="float64", seed=0)
        w, b = m.parameters()
        assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.95 * bound, init
        assert abs(w.data.std() - bound / np.sqrt(3)) < 0.03 * bound, init
        if init == "torch":
            assert np.abs(b.data).max() <= bound and b.data.std() > 0
        else:
            assert np.all(b.data == 0)
    for init, std in [("glorot_normal", np.sqrt(2 / 300)), ("he_normal", np.sqrt(2 / 200))]:
        w = fnn.Sequential([fnn.Dense(200, 100, init=init)], dtype="float64", seed=0).parameters()[0].data
        assert np.abs(w).max() <= 2 * std / 0.87962566103423978 + 1e-12
        assert abs(w.std() - std) < 0.03 * std, init


TORCH_ACT = {None: None, "relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "leaky_relu": "LeakyReLU",
             "gelu": "GELU", "elu": "ELU", "silu": "SiLU", "softmax": "Softmax",
             "softsign": "Softsign", "softplus": "Softplus"}


def _torch_twin(torch, model):
    mods = []
    for layer in model.layers:
        if isinstance(layer, fnn.Dense):
            lin = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.use_bias)
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(layer.params[0].data.T))
                if layer.use_bias:
                    lin.bias.copy_(torch.tensor(layer.params[1].data))
            mods.append(lin)
            act = layer.activation
        else:
            act = layer
        if isinstance(act, fnn.Activation) and act.kind != "linear":
            name = TORCH_ACT.get(act.kind)
            if act.kind == "softmax":
                mods.append(torch.nn.Softmax(dim=-1))
            elif act.kind == "gelu_tanh":
                mods.append(torch.nn.GELU(approximate="tanh"))
            elif act.kind == "leaky_relu":
                mods.append(torch.nn.LeakyReLU(act.param))
            elif act.kind == "elu":
                mods.append(torch.nn.ELU(act.param))
            elif act.kind == "softplus":
                mods.append(torch.nn.Softplus(act.beta, act.threshold))
            else:
                mods.append(getattr(torch.nn, name)())
    return torch.nn.Sequential(*mods)


@pytest.mark.parametrize("trial", range(12))
def test_random_networks_match_torch(trial, dtype):
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    try:
        r = np.random.default_rng(trial)
        depth = 1 + trial % 4
        widths = [int(w) for w in r.integers(1, 40, size=depth + 1)]
        acts = ["relu", "sigmoid", "tanh", "leaky_relu", "gelu", "elu", "silu", None]
        layers = []
        for i in range(depth):
            act = acts[r.integers(len(acts))] if i < depth - 1 else None
            if r.random() < 0.3 and act is not None:
                layers += [fnn.Dense(widths[i], widths[i + 1], use_bias=bool(r.random() < 0.8)),
                           fnn.layers.get_activation(act)]
            else:
                layers.append(fnn.Dense(widths[i], widths[i + 1], activation=act, init="torch"))
        model = fnn.Sequential(layers, dtype=dtype, seed=trial)
        tmodel = _torch_twin(torch, model)
        n = int(r.integers(1, 70))
        x = r.standard_normal((n, widths[0]))
        g = r.standard_normal((n, widths[-1]))
        y = model(x)
        xt = torch.tensor(x, dtype=tmodel[0].weight.dtype)
        yt = tmodel(xt)
        yt.backward(torch.tensor(g, dtype=yt.dtype))
        model.backward(g)
        rtol, atol = tols(dtype)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol * 10)
        tparams = [p for p in tmodel.parameters()]
        for p, tp in zip(model.parameters(), tparams):
            tg = tp.grad.numpy().T if p.data.ndim == 2 else tp.grad.numpy()
            np.testing.assert_allclose(p.grad, tg, rtol=rtol * 5, atol=atol * 10 * n, err_msg=p.name)
    finally:
        torch.set_default_dtype(torch.float32)


def test_thread_invariance(rng):
    # 1100 x 256 = 281,600 elements: every element-wise pass crosses its parallel threshold
    x = rng.standard_normal((1100, 300)).astype(np.float32)
    g = rng.standard_normal((1100, 10)).astype(np.float32)

    def run(threads):
        fnn.set_num_threads(threads)
        model = fnn.Sequential([fnn.Dense(300, 256, "relu"), fnn.Dropout(0.3), fnn.Dense(256, 128, "gelu"),
                                fnn.Dense(128, 10, "softmax")], seed=5)
        y = model(x)
        model.backward(g)
        return y, [p.grad.copy() for p in model.parameters()], model._stages[1].mask.copy()

    y1, g1, m1 = run(1)
    y2, g2, m2 = run(2)
    np.testing.assert_array_equal(m1, m2)           # dropout masks do not depend on threads
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_set_num_threads_and_show_config(capsys):
    import os

    fnn.set_num_threads(1)
    assert fnn.get_num_threads() == 1
    c = config()
    assert c["omp_threads"] == 1
    assert all(b["num_threads"] == 1 for b in c["blas"])
    fnn.set_num_threads(2)
    assert config()["omp_threads"] == (2 if c["openmp"] else 1)
    fnn.show_config()
    out = capsys.readouterr().out
    assert "fastnn" in out and "OpenMP" in out and "BLAS" in out and "float32" in out
    expect_openmp = os.environ.get("FASTNN_NO_OPENMP", "") in ("", "0")
    assert c["openmp"] is expect_openmp
    assert ("OpenMP:         on" in out) is expect_openmp


def test_non_contiguous_and_read_only_inputs(rng):
    model = fnn.Sequential([fnn.Dense(3, 2, "tanh")], dtype="float64", seed=0)
    x = np.asfortranarray(rng.standard_normal((4, 3)))
    x.setflags(write=False)
    y = model(x)
    np.testing.assert_allclose(y, model(np.ascontiguousarray(x)))
    big = rng.standard_normal((8, 6))
    np.testing.assert_allclose(model(big[::2, ::2]), model(np.ascontiguousarray(big[::2, ::2])))
    assert model(x.astype(np.int64)).dtype == np.float64
    g = np.ones((4, 2))[:, ::-1]
    g.setflags(write=False)
    model(x)
    model.backward(g)
    assert np.all(g == 1)   # never written


@pytest.mark.parametrize("build,exc,match", [
    (lambda: fnn.Dense(0, 3), ValueError, r"in_features must be in \[1, inf\], got 0"),
    (lambda: fnn.Dense(3, -1), ValueError, r"out_features must be in \[1, inf\], got -1"),
    (lambda: fnn.Dense(2.5, 3), TypeError, r"in_features must be an int, got 2.5"),
    (lambda: fnn.Dense(3, 3, activation="relux"), ValueError, r"activation must be .*got 'relux'"),
    (lambda: fnn.Dense(3, 3, init="nope"), ValueError, r"init must be one of .*got 'nope'"),
    (lambda: fnn.Dropout(1.5), ValueError, r"p must be a finite number in \[0, 1\], got 1.5"),
    (lambda: fnn.Dropout(-0.1), ValueError, r"p must be a finite number in \[0, 1\], got -0.1"),
    (lambda: fnn.Dropout(float("nan")), ValueError, r"p must be a finite number in \[0, 1\], got nan"),
    (lambda: fnn.GELU(approximate="fast"), ValueError, r"approximate must be one of 'none', 'tanh'; got 'fast'"),
    (lambda: fnn.Sequential([]), TypeError, r"layers must be a non-empty list.*empty list"),
    (lambda: fnn.Sequential([fnn.ReLU()]), ValueError, r"at least one Dense"),
    (lambda: fnn.Sequential([fnn.Dense(3, 4), "relu"]), TypeError, r"got an element of type str"),
    (lambda: fnn.Sequential([fnn.Dense(3, 4), fnn.Dense(5, 2)]), ValueError,
     r"expects in_features=5, but the previous layer gives 4"),
    (lambda: fnn.Sequential([fnn.Dense(3, 4)], dtype="float16"), TypeError, r"dtype must be 'float32' or 'float64'"),
    (lambda: fnn.Sequential([fnn.Dense(3, 4)], seed=-1), ValueError, r"seed must be in \[0, .*\], got -1"),
])
def test_bad_construction(build, exc, match):
    with pytest.raises(exc, match=match):
        build()


def test_bad_calls(rng):
    model = fnn.Sequential([fnn.Dense(3, 2)], seed=0)
    with pytest.raises(ValueError, match=r"x must have 3 features \(columns\), got shape \(4, 5\)"):
        model(rng.standard_normal((4, 5)))
    with pytest.raises(ValueError, match=r"x must be 2-D, got 3-D"):
        model(rng.standard_normal((4, 3, 1)))
    with pytest.raises(TypeError, match=r"x must hold real numbers, got array of shape \(2, 3\) and dtype <U1"):
        model(np.array([["a"] * 3] * 2))
    with pytest.raises(ValueError, match=r"x must have at least one row"):
        model(np.empty((0, 3)))
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward pass first"):
        fnn.Sequential([fnn.Dense(3, 2)], seed=0).backward(np.ones((1, 2)))
    model(rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match=r"grad must have shape \(4, 2\), got \(4, 3\)"):
        model.backward(np.ones((4, 3)))
    layer = fnn.Dense(3, 3)
    fnn.Sequential([layer], seed=0)
    with pytest.raises(ValueError, match="used only once"):
        fnn.Sequential([layer], seed=0)


def test_weight_and_bias_gradients_accumulate_independently(rng):
    """Clearing only some gradients (an optimizer over a subset) must not reset the others."""
    model = fnn.Sequential([fnn.Dense(3, 2)], dtype="float64", seed=0)
    w, b = model.parameters()
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    model(x)
    model.backward(g)
    gw, gb = w.grad.copy(), b.grad.copy()
    w.grad = None                      # e.g. an optimizer that only holds the weights
    model(x)
    model.backward(g)
    np.testing.assert_allclose(w.grad, gw, rtol=1e-15)
    np.testing.assert_allclose(b.grad, 2 * gb, rtol=1e-15)
    b.grad = None
    model(x)
    model.backward(g)
    np.testing.assert_allclose(w.grad, 2 * gw, rtol=1e-15)
    np.testing.assert_allclose(b.grad, gb, rtol=1e-15)


def test_fastnn_info_command(capsys):
    from fastnn.__main__ import main

    assert main(["info", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fastnn {fnn.__version__}") and "threads:        1" in out and "compiler flags" in out
    assert main(["info", "--threads", "0"]) == 2
    assert "n must be in [1, 1024], got 0" in capsys.readouterr().err
