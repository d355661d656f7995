"""The lecture's PyTorch (and TensorFlow-loop) habits: each works with PyTorch's meaning or fails at once, saying
what to write instead (issue 12). Silent ones first: loss.backward() and the argument order."""

import copy
import gc
import pickle

import numpy as np
import pytest

import fastnn as fnn
import fastnn.functional as F
from fastnn import layers as L
from fastnn._reference import activations as ref_act
from fastnn.losses import LossValue


def _model(seed=0, dtype="float64", dropout=0.0):
    layers = [fnn.Dense(6, 16), fnn.ReLU()] + ([fnn.Dropout(dropout)] if dropout else []) + [fnn.Dense(16, 3)]
    return fnn.Sequential(*layers, dtype=dtype, seed=seed)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((20, 6)), rng.integers(0, 3, 20)


# ---------------------------------------------------------------------------------------------- loss.backward()

def test_loss_backward_is_model_backward_of_the_loss_gradient(data):
    X, y = data
    a, b = _model(dropout=0.3), _model(dropout=0.3)
    loss_fn = fnn.losses.CrossEntropyLoss()
    opt_a, opt_b = fnn.optim.Adam(a.parameters(), lr=0.01), fnn.optim.Adam(b.parameters(), lr=0.01)
    values = []
    for step in range(30):
        xb, yb = X[step % 4 * 5:(step % 4 + 1) * 5], y[step % 4 * 5:(step % 4 + 1) * 5]
        loss = loss_fn(a(xb), yb)             # the lecture's loop
        loss.backward()
        opt_a.step()
        opt_a.zero_grad()
        ref = loss_fn(b(xb), yb)              # the explicit protocol, unchanged
        b.backward(loss_fn.backward())
        opt_b.step()
        opt_b.zero_grad()
        assert float(loss) == float(ref)
        values.append(float(loss))
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert np.mean(values[-4:]) < np.mean(values[:4])


def test_loss_value_behaves_as_a_float(data):
    X, y = data
    model, loss_fn = _model(), fnn.losses.MSELoss()
    target = np.zeros((20, 3))
    loss = loss_fn(model(X), target)
    value = float(np.mean((model(X) - target) ** 2))
    assert isinstance(loss, LossValue) and isinstance(loss, float)
    assert loss.item() == float(loss) == pytest.approx(value) and type(loss.item()) is float
    assert f"{loss:.4f}" == f"{value:.4f}" and f"{loss}" == repr(float(loss))
    assert loss > 0 and loss == float(loss) and loss < float(loss) + 1
    for result in (loss + 1, loss * 2, 1 - loss, loss / 2, -loss, abs(loss), loss ** 2):
        assert type(result) is float
    total = 0.0
    total += loss * 3
    assert type(total) is float
    for copied in (pickle.loads(pickle.dumps(loss)), copy.copy(loss), copy.deepcopy(loss)):
        assert type(copied) is float and copied == float(loss)
    assert type(loss.detach()) is float
    assert np.isclose(np.float64(loss), value)


def test_loss_backward_twice_raises_unless_retain_graph(data):
    X, y = data
    model, loss_fn = _model(), fnn.losses.CrossEntropyLoss()
    loss = loss_fn(model(X), y)
    loss.backward(retain_graph=True)
    once = [p.grad.copy() for p in model.parameters()]
    loss.backward()   # retain_graph=True allowed a second one: the gradients add up, as torch
    for p, g in zip(model.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-12)
    with pytest.raises(RuntimeError, match="already ran for this loss value"):
        loss.backward()


def test_loss_backward_after_another_forward_raises(data):
    X, y = data
    model, loss_fn = _model(), fnn.losses.CrossEntropyLoss()
    pred = model(X[:10])
    model(X[10:])
    loss = loss_fn(pred, y[:10])
    with pytest.raises(RuntimeError, match="another forward pass of the model ran"):
        loss.backward()
    assert all(p.grad is None for p in model.parameters())


def test_loss_backward_after_the_loss_was_called_again_raises(data):
    X, y = data
    model, loss_fn = _model(), fnn.losses.CrossEntropyLoss()
    pred = model(X)
    first = loss_fn(pred, y)
    loss_fn(pred, (y + 1) % 3)
    gc.collect()
    with pytest.raises(RuntimeError, match="loss function was called again"):
        first.backward()


def test_loss_on_plain_arrays_works_and_its_backward_says_what_to_do(data):
    X, y = data
    model, loss_fn = _model(), fnn.losses.CrossEntropyLoss()
    logits = np.random.default_rng(1).standard_normal((20, 3))
    loss = loss_fn(logits, y)                  # arrays in both places: fine
    assert loss.shape if False else float(loss) > 0
    with pytest.raises(RuntimeError, match=r"needs a prediction that came from a model.*model\.backward"):
        loss.backward()
    pred = model(X)
    for not_an_output in (pred[:, :], pred.copy(), pred.astype(np.float32)):
        with pytest.raises(RuntimeError, match="came from a model"):
            loss_fn(not_an_output, y).backward()
    assert all(p.grad is None for p in model.parameters())


def test_loss_value_holds_no_array_alive(data):
    X, y = data
    model, loss_fn = _model(), fnn.losses.CrossEntropyLoss()
    kept = []
    for _ in range(3):
        kept.append(loss_fn(model(X), y))
    gc.collect()
    assert [v._grad is None for v in kept] == [True, True, False]   # only the loss function's latest gradient
    assert kept[-1]._tag[0]() is None                               # the prediction arrays were freed
    kept[-1].backward(retain_graph=True)   # the model kept its pass: still fine
    del model
    gc.collect()
    with pytest.raises(RuntimeError, match="the model that produced the prediction no longer exists"):
        kept[-1].backward()


def test_loss_backward_with_a_temporary_loss_object(data):
    X, y = data
    model = _model()
    fnn.losses.CrossEntropyLoss()(model(X), y).backward()   # the loss object is gone before backward()
    assert model.parameters()[0].grad is not None


def test_loss_backward_in_eval_mode_and_for_one_sample(data):
    X, y = data
    a, b = _model(), _model()
    loss_fn = fnn.losses.CrossEntropyLoss()
    for m in (a, b):
        m.eval()
    loss_fn(a(X), y).backward()
    loss_fn(b(X), y)
    b.backward(loss_fn.backward())
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)
    a.zero_grad()
    a.train()
    loss = loss_fn(a(X[0]), y[0])              # one sample (C,) and a 0-d class index
    loss.backward()
    assert a.parameters()[0].grad.shape == (6, 16)


def test_reduction_none_returns_an_array(data):
    X, y = data
    model = _model()
    out = fnn.losses.CrossEntropyLoss(reduction="none")(model(X), y)
    assert isinstance(out, np.ndarray) and out.shape == (20,)


# ---------------------------------------------------------------------------------------------- argument order

@pytest.mark.parametrize("loss_fn, target", [
    (fnn.losses.MSELoss(), lambda y: np.zeros((len(y), 3))),
    (fnn.losses.CrossEntropyLoss(), lambda y: y),
    (fnn.losses.BCEWithLogitsLoss(), lambda y: np.zeros((len(y), 3))),
])
def test_keras_argument_order_raises_naming_both_orders(data, loss_fn, target):
    X, y = data
    model = _model()
    pred = model(X)
    with pytest.raises(ValueError, match=r"loss_fn\(y_pred, y_true\).*loss_fn\(y_true, y_pred\).*Keras-named"):
        loss_fn(target(y), pred)
    assert all(p.grad is None for p in model.parameters())
    loss_fn(pred, target(y)).backward()       # PyTorch's order: fine


def test_argument_order_check_only_fires_when_sure(data):
    X, y = data
    teacher, student = _model(seed=1), _model(seed=2)
    mse = fnn.losses.MSELoss()
    a, b = np.random.default_rng(0).standard_normal((2, 20, 3))
    assert float(mse(a, b)) == float(mse(b, a))      # arrays in both places
    soft = teacher(X)
    loss = mse(student(X), soft)                     # two model outputs (distillation): fine
    loss.backward()
    assert student.parameters()[0].grad is not None and teacher.parameters()[0].grad is None
    del soft
    gc.collect()
    mse(np.zeros((20, 3)), np.zeros((20, 3)))        # a freed output's id reused by a plain array: no false alarm


# ---------------------------------------------------------------------------------------------- the container

def test_sequential_varargs_list_and_container_protocol():
    layers = [fnn.Dense(4, 8), fnn.ReLU(), fnn.Dense(8, 2)]
    a = fnn.Sequential(*layers, seed=0)
    b = fnn.Sequential([fnn.Dense(4, 8), fnn.ReLU(), fnn.Dense(8, 2)], seed=0)
    np.testing.assert_array_equal(a(np.ones((1, 4))), b(np.ones((1, 4))))
    assert len(a) == 3 and list(a) == layers and a.layers == layers
    assert a[0] is layers[0] and a[-1] is layers[2] and a[-3] is layers[0] and a[np.int64(1)] is layers[1]
    for bad in (3, -4):
        with pytest.raises(IndexError, match=f"index {bad} is out of range for a model of 3 layers"):
            a[bad]
    with pytest.raises(TypeError, match=r"cannot be sliced.*model\[i\].*load_state_dict"):
        a[:2]
    with pytest.raises(TypeError, match="index must be an integer"):
        a["0"]


# ---------------------------------------------------------------------------------------------- state_dict

def test_state_dict_round_trip_and_copies(data):
    X, _ = data
    a, b = _model(seed=1), _model(seed=2)
    sd = a.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert sd["0.weight"].shape == (6, 16) and sd["2.bias"].shape == (3,)
    sd["0.bias"] += 1   # a copy: the model does not change
    assert not np.array_equal(sd["0.bias"], a.parameters()[1].data)
    result = b.load_state_dict(a.state_dict())
    assert result == ([], []) and result.missing_keys == [] and result.unexpected_keys == []
    a.eval()
    b.eval()
    np.testing.assert_array_equal(a(X), b(X))
    for c in (copy.deepcopy(b), pickle.loads(pickle.dumps(b))):   # after a forward (tagged output): still fine
        np.testing.assert_array_equal(c(X), a(X))
        c.train()
        fnn.losses.MSELoss()(c(X), np.zeros((20, 3))).backward()


def test_load_state_dict_checks_keys_shapes_and_dtypes():
    m = _model()
    sd = m.state_dict()
    with pytest.raises(RuntimeError, match=r"missing key\(s\): '2.bias'"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "2.bias"})
    with pytest.raises(RuntimeError, match=r"unexpected key\(s\): 'extra'"):
        m.load_state_dict({**sd, "extra": np.zeros(2)})
    before = m.state_dict()
    missing, unexpected = m.load_state_dict({"0.bias": np.ones(16), "extra": 1}, strict=False)
    assert missing == ["0.weight", "2.weight", "2.bias"] and unexpected == ["extra"]
    np.testing.assert_array_equal(m.parameters()[1].data, np.ones(16))
    np.testing.assert_array_equal(m.parameters()[0].data, before["0.weight"])
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight.*\(6, 16\).*\(16, 6\).*PyTorch's nn.Linear"):
        m.load_state_dict({**sd, "0.weight": sd["0.weight"].T})
    with pytest.raises(RuntimeError, match=r"size mismatch for 2.bias"):
        m.load_state_dict({**sd, "2.bias": np.zeros(4)})
    with pytest.raises(TypeError, match="real numbers"):
        m.load_state_dict({**sd, "2.bias": np.array(["a"] * 3)})
    with pytest.raises(TypeError, match="dict of name -> array"):
        m.load_state_dict([1, 2])
    m32 = _model(dtype="float32")
    m32.load_state_dict(sd)   # float64 values converted to the model's dtype
    assert m32.parameters()[0].data.dtype == np.float32


def test_state_dict_names_and_layout_match_torch():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
    m = _model()
    tsd = tm.state_dict()
    assert list(tsd) == list(m.state_dict())
    m.load_state_dict({k: (v.T if k.endswith("weight") else v) for k, v in tsd.items()})
    x = np.random.default_rng(0).standard_normal((4, 6))
    np.testing.assert_allclose(m(x), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------- from_torch(optimizer=)

def _torch_optimizers():
    return [(name, cls) for name, cls in fnn.optim.OPTIMIZERS.items()]


_TORCH_KW = {"sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": True}, "adam": {"lr": 0.01, "amsgrad": True},
             "adamw": {"lr": 0.01}, "rmsprop": {"lr": 0.01, "momentum": 0.5, "centered": True},
             "adagrad": {"lr": 0.1}, "adadelta": {"lr": 1.0}}


@pytest.mark.parametrize("name", [n for n, c in fnn.optim.OPTIMIZERS.items() if c.torch_counterpart])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_from_torch_converts_the_optimizer_state_and_training_continues_identically(name, dtype):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 6)).astype(dtype), rng.integers(0, 3, 32)
    tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(tdtype)
    cls = fnn.optim.OPTIMIZERS[name]
    topt = getattr(torch.optim, cls.__name__)(tm.parameters(), **_TORCH_KW[name])
    tloss = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def torch_step():
        topt.zero_grad()
        tloss(tm(xt), yt).backward()
        topt.step()

    for _ in range(5):
        torch_step()
    model, opt = fnn.io.from_torch(tm, optimizer=topt)
    assert type(opt) is cls and model.dtype == np.dtype(dtype)
    assert opt.state_dict()["param_groups"][0]["lr"] == _TORCH_KW[name]["lr"]
    w_state = [v for k, v in opt.state[model.parameters()[0]].items() if k != "step"]
    assert w_state and all(v.shape == (6, 8) for v in w_state)   # the weight's state is in fastnn's layout
    loss_fn = fnn.losses.CrossEntropyLoss()
    for _ in range(5):
        torch_step()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    rtol = 1e-12 if dtype == "float64" else 2e-5
    for layer, lin in zip([model[0], model[2]], [tm[0], tm[2]]):
        np.testing.assert_allclose(layer.weight.data, lin.weight.detach().numpy().T, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(layer.bias.data, lin.bias.detach().numpy(), rtol=rtol, atol=rtol)


def test_from_torch_optimizer_param_groups_and_a_subset_of_the_parameters():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    topt = torch.optim.Adam([{"params": tm[0].parameters(), "lr": 0.1}, {"params": tm[2].parameters()}], lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(topt, 1)
    tm(torch.ones(2, 3, dtype=torch.float64)).sum().backward()
    topt.step()
    sched.step()
    model, opt = fnn.io.from_torch(tm, optimizer=topt)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    np.testing.assert_array_equal(opt.state[model[0].weight]["exp_avg"], topt.state[tm[0].weight]["exp_avg"].numpy().T)
    assert float(opt.state[model[2].bias]["step"]) == 1.0
    only_last = torch.optim.SGD(tm[2].parameters(), lr=0.1, momentum=0.9)   # the first layer frozen
    tm(torch.ones(2, 3, dtype=torch.float64)).sum().backward()
    only_last.step()
    model, opt = fnn.io.from_torch(tm, optimizer=only_last)
    assert opt.param_groups[0]["params"] == [model[2].weight, model[2].bias]
    np.testing.assert_array_equal(opt.state[model[2].weight]["momentum_buffer"],
                                  only_last.state[tm[2].weight]["momentum_buffer"].numpy().T)


def test_from_torch_optimizer_errors():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(3, 2))
    other = torch.nn.Parameter(torch.zeros(4))
    with pytest.raises(ValueError, match="LBFGS has no fastnn counterpart"):
        fnn.io.from_torch(tm, optimizer=torch.optim.LBFGS(tm.parameters()))
    with pytest.raises(ValueError, match="not a weight or bias of the module's nn.Linear"):
        fnn.io.from_torch(tm, optimizer=torch.optim.SGD([*tm.parameters(), other], lr=0.1))
    with pytest.raises(TypeError, match="torch.optim optimizer"):
        fnn.io.from_torch(tm, optimizer=fnn.optim.SGD(_model().parameters()))
    assert isinstance(fnn.io.from_torch(tm), fnn.Sequential)   # without optimizer: the model alone, as before


# ---------------------------------------------------------------------------------------------- functional

_NAMES = [name for name, cls in L.ACTIVATIONS.items() if cls is not L.Identity]


def test_functional_names_come_from_the_registry():
    assert sorted(F.__all__) == sorted(["derivative", *_NAMES])
    for name in _NAMES:
        assert callable(getattr(F, name))


@pytest.mark.parametrize("name", _NAMES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_functional_matches_the_numpy_twins(name, dtype):
    x = np.random.default_rng(0).uniform(-4, 4, (3, 5, 7)).astype(dtype)
    act = L.ACTIVATIONS[name]()
    out = getattr(F, name)(x)
    assert out.shape == x.shape and out.dtype == dtype
    z = x.astype(np.float64).reshape(-1, 7) if not act.elementwise else x.astype(np.float64).reshape(1, -1)
    want = ref_act.f(z, act.kind, act.param, act.param2).reshape(x.shape)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
    if act.elementwise:
        a = ref_act.f(z, act.kind, act.param, act.param2)
        d_want = ref_act.df_times(np.ones_like(z), z, a, act.kind, act.param, act.param2).reshape(x.shape)
        for spec in (name, getattr(F, name), L.ACTIVATIONS[name]()):
            np.testing.assert_allclose(F.derivative(spec, x), d_want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", _NAMES)
def test_functional_matches_torch(name):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).uniform(-4, 4, (4, 6))
    tx = torch.from_numpy(x).requires_grad_(True)
    tf = getattr(torch.nn.functional, name)
    ty = tf(tx, dim=-1) if name == "softmax" else tf(tx)
    np.testing.assert_allclose(getattr(F, name)(x), ty.detach().numpy(), rtol=1e-12, atol=1e-15)
    if name != "softmax":
        ty.sum().backward()
        np.testing.assert_allclose(F.derivative(name, x), tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_functional_keywords_shapes_and_errors():
    x = np.linspace(-2, 2, 5)
    np.testing.assert_allclose(F.leaky_relu(x, negative_slope=0.2), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_array_equal(F.derivative("leaky_relu", x, negative_slope=0.2), np.where(x > 0, 1, 0.2))
    np.testing.assert_array_equal(F.derivative(fnn.LeakyReLU(0.2), x), np.where(x > 0, 1, 0.2))
    np.testing.assert_array_equal(F.derivative("relu", np.array([-1.0, 0.0, 1.0])), [0, 0, 1])   # relu'(0) = 0
    assert F.sigmoid(0.0).shape == () and F.sigmoid(0.0) == 0.5 and F.tanh([0.0, 1.0]).dtype == np.float64
    assert F.tanh(np.float32(0.5)).dtype == np.float32 and F.relu(np.zeros((0, 3))).shape == (0, 3)
    np.testing.assert_allclose(F.softmax(np.zeros((2, 4)), dim=1), np.full((2, 4), 0.25))
    with pytest.raises(ValueError, match="Jacobian"):
        F.derivative("softmax", x)
    with pytest.raises(ValueError, match="dim must be -1"):
        F.softmax(np.zeros((2, 3, 4)), dim=1)
    with pytest.raises(ValueError, match="one of 'linear'"):
        F.derivative("swish", x)
    with pytest.raises(TypeError, match="pass the settings to the Activation layer"):
        F.derivative(fnn.LeakyReLU(), x, negative_slope=0.3)


# ---------------------------------------------------------------------------------------------- the TensorFlow loop

def test_trainable_variables_are_the_parameters():
    m = _model()
    assert m.trainable_variables == m.parameters() == m.trainable_weights


def test_apply_gradients_is_setting_grads_and_stepping(data):
    X, y = data
    a, b = _model(), _model()
    opt_a, opt_b = fnn.optim.Adam(a.parameters(), lr=0.01), fnn.optim.Adam(b.parameters(), lr=0.01)
    loss_fn = fnn.losses.CrossEntropyLoss()
    for _ in range(3):
        loss_fn(a(X), y).backward()
        opt_a.step()
        opt_a.zero_grad()
        with fnn.GradientTape() as tape:
            logits = b(X, training=True)
            loss_value = loss_fn(logits, y)
        grads = tape.gradient(loss_value, b.trainable_variables)
        opt_b.apply_gradients(zip(grads, b.trainable_variables))
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_apply_gradients_errors_change_nothing():
    m = _model()
    opt = fnn.optim.SGD(m.parameters(), lr=0.1)
    w, bias = m.parameters()[:2]
    before = w.data.copy()
    with pytest.raises(ValueError, match=r"gradient of 0.weight must have the variable's shape \(6, 16\)"):
        opt.apply_gradients([(np.ones((16, 6)), w)])
    stranger = _model().parameters()[0]
    with pytest.raises(ValueError, match="is not optimized by this optimizer"):
        opt.apply_gradients([(np.ones((6, 16)), stranger)])
    with pytest.raises(TypeError, match="must be a fastnn Parameter"):
        opt.apply_gradients([(np.ones(3), np.ones(3))])
    with pytest.raises(ValueError, match="appears twice"):
        opt.apply_gradients([(np.ones((6, 16)), w), (np.ones((6, 16)), w)])
    with pytest.raises(TypeError, match=r"\(gradient, variable\) pair"):
        opt.apply_gradients([w])
    np.testing.assert_array_equal(w.data, before)
    assert w.grad is None
    bias.grad = np.ones(16)   # a parameter not listed keeps its grad and is not updated
    b_before = bias.data.copy()
    opt.apply_gradients([(np.ones((6, 16)), w), (None, m.parameters()[2])])
    np.testing.assert_allclose(w.data, before - 0.1)
    np.testing.assert_array_equal(bias.data, b_before)
    np.testing.assert_array_equal(bias.grad, np.ones(16))


def test_gradient_tape_returns_fresh_gradients_and_leaves_grads_alone(data):
    X, y = data
    m = _model()
    loss_fn = fnn.losses.CrossEntropyLoss()
    loss_fn(m(X), y).backward()
    ref = [p.grad.copy() for p in m.parameters()]
    loss_fn(m(X), y).backward()   # accumulated
    acc = [p.grad.copy() for p in m.parameters()]
    with fnn.GradientTape() as tape:
        loss_value = loss_fn(m(X, training=True), y)
    grads = tape.gradient(loss_value, m.trainable_variables)
    for g, r, a, p in zip(grads, ref, acc, m.parameters()):
        np.testing.assert_array_equal(g, r)
        np.testing.assert_array_equal(p.grad, a)   # untouched
        assert not np.shares_memory(g, p.grad)
    with pytest.raises(RuntimeError, match="one set of gradients"):
        tape.gradient(loss_value, m.trainable_variables)
    m.zero_grad()
    with fnn.GradientTape(persistent=True) as tape:
        loss_value = loss_fn(m(X), y)
    one = tape.gradient(loss_value, m.parameters()[0])
    np.testing.assert_array_equal(one, ref[0])
    assert tape.gradient(loss_value, [_model().parameters()[0]]) == [None]   # another model's variable
    assert all(p.grad is None for p in m.parameters())
    with pytest.raises(TypeError, match="target must be the value a fastnn loss returned"):
        tape.gradient(1.0, m.parameters())


def test_training_keyword_sets_the_mode_for_one_call(data):
    X, _ = data
    m = _model(dropout=0.5)
    m.eval()
    clean = m(X)
    assert not np.array_equal(m(X, training=True), clean)   # dropout on for this call
    assert m.training is False
    np.testing.assert_array_equal(m(X, training=False), clean)
    m.train()
    np.testing.assert_array_equal(m(X, training=False), clean)
    assert m.training is True
    with pytest.raises(TypeError, match="training"):
        m(X, training="yes")


# ---------------------------------------------------------------------------------------------- nn and no_grad

def test_nn_namespace_runs_the_lecture_model(data):
    X, y = data
    from fastnn import nn
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3, bias=True))
    assert model[0].init == "torch" and isinstance(model[0], fnn.Dense)
    assert nn.CrossEntropyLoss is fnn.losses.CrossEntropyLoss and nn.ReLU is fnn.ReLU
    assert nn.functional is F and not nn.Linear(2, 2, bias=False).use_bias
    loss_fn = nn.CrossEntropyLoss()
    opt = fnn.optim.SGD(model.parameters(), lr=0.1)
    first = None
    for _ in range(20):
        loss = loss_fn(model(X), y)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < first


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_grad_gives_the_same_numbers_and_keeps_nothing_for_backward(data, dtype):
    X, y = data
    X = X.astype(dtype)
    m = _model(dtype=dtype)
    m.eval()
    expected = m(X)
    loss_fn = fnn.losses.CrossEntropyLoss()
    with fnn.no_grad():
        assert not fnn.is_grad_enabled()
        out, one = m(X), m(X[0])
        out_list = m(X.tolist())   # the converting path too
    assert fnn.is_grad_enabled() and m.training is False
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(one, expected[0])
    np.testing.assert_array_equal(out_list, expected)
    assert not np.shares_memory(out, X)
    with pytest.raises(RuntimeError, match="no_grad"):   # as PyTorch: nothing recorded, so no backward
        m.backward(np.ones_like(out))
    with pytest.raises(RuntimeError, match="no_grad"):
        loss_fn(out, y).backward()
    # the single-pass rule: a pass under no_grad also ends the previous pass (in eval and in training mode)
    for training in (False, True):
        m.train(training)
        kept = m(X)
        loss = loss_fn(kept, y)
        with fnn.no_grad():
            m(X)
        with pytest.raises(RuntimeError):
            loss.backward()
        loss = loss_fn(m(X), y)
        loss.backward()   # outside no_grad the pass is kept again
        m.zero_grad()


def test_no_grad_blocks_nest_restore_on_errors_and_decorate(data):
    X, _ = data
    m = _model()
    m.eval()
    ng = fnn.no_grad()
    with ng:
        with fnn.enable_grad():
            assert fnn.is_grad_enabled()
            out = m(X)
        assert not fnn.is_grad_enabled()
        with ng:   # one instance entered twice
            assert not fnn.is_grad_enabled()
        assert not fnn.is_grad_enabled()
    assert fnn.is_grad_enabled()
    m.backward(np.ones_like(out))   # the enable_grad pass was kept
    with pytest.raises(ZeroDivisionError), fnn.no_grad():
        raise ZeroDivisionError
    assert fnn.is_grad_enabled()

    @fnn.no_grad()
    def predict(x):
        """Doc."""
        assert not fnn.is_grad_enabled()
        return m(x)

    np.testing.assert_array_equal(predict(X), out)
    assert predict.__name__ == "predict" and predict.__doc__ == "Doc." and fnn.is_grad_enabled()


def test_no_grad_is_per_thread(data):
    """A thread inside no_grad() leaves the others' passes recorded: real threads, interleaved by barriers."""
    import threading

    X, y = data
    inside, other_saw, errors = threading.Barrier(2), [], []
    released = threading.Event()

    def in_no_grad():
        try:
            with fnn.no_grad():
                inside.wait(timeout=30)
                released.wait(timeout=30)
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=in_no_grad)
    t.start()
    try:
        inside.wait(timeout=30)
        other_saw.append(fnn.is_grad_enabled())
        m = _model()
        m.eval()
        fnn.losses.CrossEntropyLoss()(m(X), y).backward()   # recorded: this thread is not inside no_grad
    finally:
        released.set()
        t.join(timeout=30)
    assert other_saw == [True] and not errors and not t.is_alive()


# ---------------------------------------------------------------------------------------------- with Keras's losses

@pytest.mark.parametrize("make, sparse", [
    (lambda: fnn.losses.SparseCategoricalCrossentropy(from_logits=True), True),
    (lambda: fnn.losses.CategoricalCrossentropy(from_logits=True), False),
    (lambda: fnn.losses.MeanSquaredError(), False),
])
def test_tensorflow_loop_with_keras_ordered_losses(data, make, sparse):
    X, y = data
    a, b = _model(), _model()
    keras_loss = make()
    torch_loss = keras_loss.loss   # the PyTorch-style loss it delegates to
    t = y if sparse else np.eye(3)[y]
    opt_a, opt_b = fnn.optim.SGD(a.trainable_variables, lr=0.1), fnn.optim.SGD(b.parameters(), lr=0.1)
    for _ in range(5):
        with fnn.GradientTape() as tape:
            logits = a(X, training=True)
            loss_value = keras_loss(t, logits)
        grads = tape.gradient(loss_value, a.trainable_variables)
        opt_a.apply_gradients(zip(grads, a.trainable_variables))
        torch_loss(b(X), t).backward()
        opt_b.step()
        opt_b.zero_grad()
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match=r"takes the targets first \(Keras's order.*PyTorch's order"):
        keras_loss(a(X), t)
    keras_loss(t, np.zeros((20, 3)))   # arrays in both places: no check


@pytest.mark.parametrize("name", [n for n, c in fnn.layers.ACTIVATIONS.items() if c.elementwise])
def test_an_activation_layer_is_a_function_on_arrays(name):
    """torch's nn.Sigmoid()(x): the layer object applied to an array, its derivative beside it."""
    act = fnn.layers.ACTIVATIONS[name]()
    x = np.linspace(-3, 3, 13).reshape(13, 1)
    np.testing.assert_array_equal(act(x), fnn.functional.__dict__.get(name, lambda v: v)(x))
    np.testing.assert_array_equal(act.derivative(x), fnn.functional.derivative(name, x))
    assert act(x).shape == x.shape and act(x) is not x


def test_output_registry_stays_bounded(data):
    """Tags of freed outputs are pruned lazily: a long loop keeps the registry small; a live output keeps its tag."""
    from fastnn import losses
    X, y = data
    model, loss_fn = _model(), fnn.losses.CrossEntropyLoss()
    model.eval()
    for _ in range(2000):
        model(X[:4])
    assert len(losses._OUTPUTS) < 4 * losses._PRUNE_MIN
    out = model(X)
    for _ in range(500):
        _model()(X[:2])   # other models' outputs, freed at once
    loss = loss_fn(out, y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
