"""Issue 12, Keras habits: each works with Keras 3's meaning, or fails at once saying what to write instead."""

import copy
import pickle

import numpy as np
import pytest

import fastnn as fnn
from fastnn import losses as L

EPS = 1e-7   # Keras's backend epsilon


def _digits():
    X, y = fnn.datasets.load_digits()
    return fnn.datasets.train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)


def _keras_net(**kw):
    return fnn.Sequential([fnn.Dense(16, activation="relu"), fnn.Dense(3, activation="softmax")], seed=3, **kw)


def _eager_net(**kw):
    return fnn.Sequential([fnn.Dense(5, 16, activation="relu"), fnn.Dense(16, 3, activation="softmax")], seed=3, **kw)


_R = np.random.default_rng(0)
X5 = _R.standard_normal((30, 5))
Y3 = _R.integers(0, 3, 30)


def _same_weights(a, b):
    assert [p.name for p in a.parameters()] == [p.name for p in b.parameters()]
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


# ------------------------------------------------------------------------------------------------ Dense(units), build

def test_input_first_builds_at_once_with_the_eager_weights():
    model = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(16, activation="relu"),
                            fnn.Dense(3, activation="softmax")], seed=3)
    assert model.built and model.in_features == 5 and len(model.layers) == 2   # Input is not a layer
    _same_weights(model, _eager_net())


@pytest.mark.parametrize("how", ["call", "predict", "fit", "train_step", "evaluate", "build", "input_shape",
                                 "input_dim"])
def test_an_unbuilt_model_builds_on_first_data_with_the_eager_weights(how):
    if how in ("input_shape", "input_dim"):
        width = {"input_shape": (5,)} if how == "input_shape" else {"input_dim": 5}
        first = fnn.Dense(16, activation="relu", **width)
        model = fnn.Sequential([first, fnn.Dense(3, activation="softmax")], seed=3)
        assert model.built
        _same_weights(model, _eager_net())
        return
    model = _keras_net()
    eager = _eager_net()
    assert not model.built and model.in_features is None and model.out_features == 3
    assert model.layers[1].in_features == 16   # later widths follow from the chain at once
    if how in ("fit", "train_step", "evaluate"):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        eager.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if how == "call":
        np.testing.assert_array_equal(model.eval()(X5), eager.eval()(X5))
    elif how == "predict":
        np.testing.assert_array_equal(model.predict(X5), eager.predict(X5))
    elif how == "build":
        model.build((None, 5))
    elif how == "evaluate":
        assert model.evaluate(X5, Y3) == eager.evaluate(X5, Y3)
    elif how == "train_step":
        assert model.train_step(X5, Y3) == eager.train_step(X5, Y3)
        assert model.optimizer.param_groups[0]["params"] == model.parameters()
    else:
        h1 = model.fit(X5, Y3, epochs=3, batch_size=8, verbose=0)
        h2 = eager.fit(X5, Y3, epochs=3, batch_size=8, verbose=0)
        assert h1.history == h2.history
    assert model.built and model.in_features == 5
    _same_weights(model, eager)


def test_before_build_weights_need_data_and_say_so():
    model = _keras_net()
    msg = "not built yet.*fnn.Input"
    for call in (model.parameters, model.named_parameters, model.count_params, lambda: model.save("x.fnn"),
                 lambda: fnn.optim.Adam(model.parameters())):
        with pytest.raises(ValueError, match=msg):
            call()
    other = _eager_net()
    with pytest.raises(ValueError, match="not built yet.*optimizer's name"):
        model.compile(optimizer=fnn.optim.SGD(other.parameters()), loss="mse")
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "0 (unbuilt)" in text and "not built yet" in text and "Total params: 0" in text
    model.zero_grad()   # nothing to clear: no error
    assert "Dense" in repr(model) and model.seed == 3


def test_pickle_and_copy_of_unbuilt_and_built_models():
    model = _keras_net()
    again = pickle.loads(pickle.dumps(model))
    assert not again.built
    again.build((None, 5))
    _same_weights(again, _eager_net())
    built = _eager_net()
    built.compile("adam", "sparse_categorical_crossentropy")
    built.fit(X5, Y3, epochs=2, verbose=0)
    for clone in (pickle.loads(pickle.dumps(built)), copy.deepcopy(built)):
        _same_weights(clone, built)
        np.testing.assert_array_equal(clone.predict(X5), built.predict(X5))


def test_two_positionals_keep_pytorch_order_and_widths_are_checked():
    d = fnn.Dense(64, 10)
    assert (d.in_features, d.out_features) == (64, 10)
    d = fnn.Dense(10, "softmax")   # Keras's positional activation
    assert (d.in_features, d.out_features, d.activation.kind) == (None, 10, "softmax")
    d = fnn.Dense(units=7)
    assert (d.in_features, d.out_features) == (None, 7)
    with pytest.raises(ValueError, match="expects in_features=32, but the input"):
        fnn.Sequential([fnn.Input(shape=(64,)), fnn.Dense(32, 10)])
    with pytest.raises(ValueError, match="expects in_features=32, but the previous layer gives 16"):
        fnn.Sequential([fnn.Dense(16), fnn.Dense(32, 10)])
    with pytest.raises(ValueError, match="only be the first"):
        fnn.Sequential([fnn.Dense(4, 3), fnn.Input(shape=(3,))])
    with pytest.raises(ValueError, match=r"flatten the samples .*shape=\(64,\)"):
        fnn.Input(shape=(8, 8))
    with pytest.raises(TypeError, match=r"write shape=\(64,\)"):
        fnn.Input(shape=64)
    with pytest.raises(TypeError, match="needs its output width"):
        fnn.Dense()
    with pytest.raises(TypeError, match="two activations"):
        fnn.Dense(10, "relu", activation="tanh")
    with pytest.raises(ValueError, match="give the width once"):
        fnn.Dense(64, 10, input_shape=(32,))
    model = _keras_net()
    model(X5)
    with pytest.raises(ValueError, match="5 features"):
        model(X5[:, :4])


def test_a_layer_of_an_unbuilt_model_cannot_join_another():
    first = fnn.Dense(4)
    fnn.Sequential([first])
    with pytest.raises(ValueError, match="only once"):
        fnn.Sequential([first])


# ------------------------------------------------------------------------------------------------ losses

def _keras_ce(p, onehot):
    q = p / p.sum(1, keepdims=True)
    return np.mean(-(onehot * np.log(np.clip(q, EPS, 1 - EPS))).sum(1))


def _keras_bce(p, t):
    p = np.clip(p, EPS, 1 - EPS)
    return np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))


def _fd(loss, x, t, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        a, b = x.copy(), x.copy()
        a[i] += h
        b[i] -= h
        g[i] = (float(loss(a, t)) - float(loss(b, t))) / (2 * h)
    return g


def test_keras_probability_losses_follow_keras_formulas_with_their_gradients():
    r = np.random.default_rng(1)
    z = r.standard_normal((6, 4))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    p[0] = [1.0, 0.0, 0.0, 0.0]   # clipped entries: Keras's value, no gradient through the clip
    y = r.integers(0, 4, 6)
    onehot = np.eye(4)[y]
    sparse = L.KerasSparseCrossEntropyLoss()
    assert float(sparse(p, y)) == pytest.approx(_keras_ce(p, onehot), rel=1e-12)
    assert float(sparse(p, y[:, None])) == pytest.approx(_keras_ce(p, onehot), rel=1e-12)   # (N, 1) labels
    cat = L.KerasCrossEntropyLoss()
    assert float(cat(p, onehot.astype(int))) == pytest.approx(_keras_ce(p, onehot), rel=1e-12)
    q = p[1:] + 0.05   # rows not summing to 1: Keras divides by the sum
    assert float(sparse(q, y[1:])) == pytest.approx(_keras_ce(q, onehot[1:]), rel=1e-12)
    for loss, t in ((sparse, y[1:]), (cat, onehot[1:])):
        loss(q, t)
        np.testing.assert_allclose(loss.backward(), _fd(loss, q, t), atol=1e-7)
    t = (r.random((5, 3)) < 0.5).astype(float)
    s = 1 / (1 + np.exp(-r.standard_normal((5, 3)) * 3))
    bce = L.KerasBCELoss()
    assert float(bce(s, t)) == pytest.approx(_keras_bce(s, t), rel=1e-12)
    bce(s, t)
    np.testing.assert_allclose(bce.backward(), _fd(bce, s, t), atol=1e-7)
    assert float(bce(np.ones((1, 1)), np.zeros((1, 1)))) == pytest.approx(-np.log(EPS), rel=1e-9)   # torch: 100
    assert np.all(bce.backward() == 0)


def test_l1_loss_matches_torch():
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(2)
    x, t = r.standard_normal((7, 3)), r.standard_normal((7, 3))
    x[0, 0] = t[0, 0]   # sign(0) = 0, as torch
    for reduction in ("mean", "sum", "none"):
        ours = L.L1Loss(reduction=reduction)
        value = ours(x, t)
        xt = torch.tensor(x, requires_grad=True)
        want = torch.nn.L1Loss(reduction=reduction)(xt, torch.tensor(t))
        np.testing.assert_allclose(np.asarray(value, dtype=float), want.detach().numpy(), rtol=1e-12)
        want.backward(torch.ones_like(want))
        grad = ours.backward() if reduction != "none" else ours.backward(np.ones(x.shape))
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12)


def test_keras_loss_classes_take_y_true_first_and_from_logits():
    r = np.random.default_rng(3)
    z = r.standard_normal((8, 3))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = r.integers(0, 3, 8)
    onehot = np.eye(3)[y]
    ce = float(L.CrossEntropyLoss()(z, y))
    assert float(L.SparseCategoricalCrossentropy(from_logits=True)(y, z)) == ce
    assert float(L.CategoricalCrossentropy(from_logits=True)(onehot, z)) == pytest.approx(ce, rel=1e-12)
    assert float(L.SparseCategoricalCrossentropy()(y, p)) == pytest.approx(ce, rel=1e-9)   # same numbers
    assert float(L.CategoricalCrossentropy()(onehot, p)) == pytest.approx(ce, rel=1e-9)
    t = (r.random((8, 2)) < 0.5).astype(float)
    logits = r.standard_normal((8, 2))
    assert float(L.BinaryCrossentropy(from_logits=True)(t, logits)) == float(L.BCEWithLogitsLoss()(logits, t))
    sig = 1 / (1 + np.exp(-logits))
    assert float(L.BinaryCrossentropy()(t, sig)) == pytest.approx(float(L.BCELoss()(sig, t)), rel=1e-9)
    assert float(L.MeanSquaredError()(t, logits)) == float(L.MSELoss()(logits, t))
    assert float(L.MeanAbsoluteError()(t, logits)) == pytest.approx(np.mean(np.abs(logits - t)), rel=1e-12)
    loss = L.SparseCategoricalCrossentropy(from_logits=True)
    loss(y, z)
    ref = L.CrossEntropyLoss()
    ref(z, y)
    np.testing.assert_array_equal(loss.backward(), ref.backward())   # the delegate's gradient
    assert float(L.SparseCategoricalCrossentropy(reduction="sum")(y, p)) == pytest.approx(8 * ce, rel=1e-9)
    with pytest.raises(ValueError, match="from_logits=True"):
        L.SparseCategoricalCrossentropy()(y, z)   # logits given as probabilities
    with pytest.raises(ValueError, match="sum_over_batch_size"):
        L.MeanSquaredError(reduction="sum")
    with pytest.raises(ValueError, match="sample_weight"):
        L.MeanSquaredError()(t, logits, sample_weight=np.ones(8))


@pytest.mark.parametrize("name,cls", [("binary_crossentropy", "KerasBCELoss"),
                                      ("categorical_crossentropy", "KerasCrossEntropyLoss"),
                                      ("sparse_categorical_crossentropy", "KerasSparseCrossEntropyLoss"),
                                      ("mean_squared_error", "MSELoss"), ("mse", "MSELoss"),
                                      ("mean_absolute_error", "L1Loss"), ("mae", "L1Loss")])
def test_compile_takes_keras_loss_names(name, cls):
    act = "sigmoid" if name == "binary_crossentropy" else "softmax"
    model = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(3, activation=act)], seed=0)
    model.compile(loss=name)
    assert type(model.loss) is getattr(L, cls)


def test_probability_losses_refuse_a_logits_head_and_loss_objects_unwrap():
    logits = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(3)], seed=0)
    with pytest.raises(ValueError, match=r"'softmax'.*SparseCategoricalCrossentropy\(from_logits=True\)"):
        logits.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"activation='sigmoid'.*BinaryCrossentropy\(from_logits=True\)"):
        logits.compile(loss="binary_crossentropy")
    logits.compile(loss=L.SparseCategoricalCrossentropy(from_logits=True))
    assert type(logits.loss) is L.CrossEntropyLoss
    logits.compile(loss=L.BinaryCrossentropy(from_logits=True))
    assert type(logits.loss) is L.BCEWithLogitsLoss


def test_fit_on_probabilities_trains_on_keras_numbers():
    model = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(8, activation="tanh"), fnn.Dense(3, activation="softmax")],
                           dtype="float64", seed=1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(X5, Y3, epochs=30, batch_size=10, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    p = model.predict(X5)
    loss, acc = model.evaluate(X5, Y3)
    assert loss == pytest.approx(_keras_ce(p, np.eye(3)[Y3]), rel=1e-12)
    assert acc == np.mean(p.argmax(1) == Y3)
    # one-hot rows with categorical_crossentropy: the same training, bit for bit
    a = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(3, activation="softmax")], dtype="float64", seed=2)
    b = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(3, activation="softmax")], dtype="float64", seed=2)
    a.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    b.compile("sgd", "categorical_crossentropy", ["accuracy"])
    ha = a.fit(X5, Y3, epochs=2, batch_size=10, shuffle=False, verbose=0)
    hb = b.fit(X5, np.eye(3, dtype=int)[Y3], epochs=2, batch_size=10, shuffle=False, verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-12)
    assert ha.history["accuracy"] == hb.history["accuracy"]
    with pytest.raises(ValueError, match="use 'sparse_categorical_crossentropy'"):
        b.fit(X5, Y3, verbose=0)
    with pytest.raises(ValueError, match="use 'categorical_crossentropy'"):
        a.fit(X5, np.eye(3)[Y3], verbose=0)


# ------------------------------------------------------------------------------------------------ metrics

def test_keras_metric_names():
    r = np.random.default_rng(4)
    model = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(3, activation="softmax")], dtype="float64", seed=0)
    model.compile("adam", "sparse_categorical_crossentropy",
                  ["accuracy", "sparse_categorical_accuracy", "categorical_accuracy"])
    ev = model.evaluate(X5, Y3, return_dict=True)
    hit = np.mean(model.predict(X5).argmax(1) == Y3)
    assert ev["accuracy"] == ev["sparse_categorical_accuracy"] == ev["categorical_accuracy"] == hit
    binary = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(1, activation="sigmoid")], dtype="float64", seed=0)
    t = r.integers(0, 2, 30)
    binary.compile("adam", "binary_crossentropy", ["accuracy", "binary_accuracy", "mae"])
    loss, acc, bacc, mae = binary.evaluate(X5, t)
    p = binary.predict(X5)[:, 0]
    assert acc == bacc == np.mean((p > 0.5) == t)
    assert mae == pytest.approx(np.mean(np.abs(p - t)), rel=1e-12)
    assert loss == pytest.approx(_keras_bce(p, t), rel=1e-12)
    assert fnn.metrics.direction("sparse_categorical_accuracy") == "max"


# ------------------------------------------------------------------------------------------------ optimizers

@pytest.mark.parametrize("cls", [fnn.optim.SGD, fnn.optim.Adam, fnn.optim.AdamW, fnn.optim.RMSprop,
                                 fnn.optim.Adagrad, fnn.optim.Adadelta])
def test_learning_rate_is_accepted_where_lr_is(cls):
    params = _eager_net().parameters()
    assert cls(params, learning_rate=0.05).defaults["lr"] == 0.05
    assert cls(_eager_net().parameters(), lr=0.05).defaults["lr"] == 0.05
    assert type(cls(_eager_net().parameters()).defaults["lr"]) is float
    with pytest.raises(TypeError, match="both lr=0.1 and learning_rate=0.2"):
        cls(_eager_net().parameters(), lr=0.1, learning_rate=0.2)


def test_compile_sgd_by_name_trains_digits():
    X_train, X_test, y_train, y_test = _digits()
    model = fnn.Sequential([fnn.Input(shape=(64,)), fnn.Dense(128, activation="relu"),
                            fnn.Dense(10, activation="softmax")], seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert model.optimizer.defaults["lr"] == 0.01   # Keras's default (torch's is 0.001: 19% in 10 epochs)
    model.fit(X_train, y_train, epochs=10, batch_size=32, validation_split=0.1, verbose=0)
    _, acc = model.evaluate(X_test, y_test)
    assert acc >= 0.8


# ------------------------------------------------------------------------------------------------ evaluate, fit

def test_evaluate_returns_what_keras_returns():
    model = _eager_net(dtype="float64")
    model.compile("adam", "sparse_categorical_crossentropy")
    loss = model.evaluate(X5, Y3)
    assert isinstance(loss, float)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    out = model.evaluate(X5, Y3)
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(v, float) for v in out)
    loss2, acc = model.evaluate(X5, Y3)
    assert loss2 == loss and acc == np.mean(model.predict(X5).argmax(1) == Y3)
    assert model.evaluate(X5, Y3, return_dict=True) == {"loss": loss, "accuracy": acc}
    assert model.metrics_names == ["loss", "accuracy"]
    with pytest.raises(TypeError, match="return_dict"):
        model.evaluate(X5, Y3, return_dict="yes")


def test_fit_with_initial_epoch_past_epochs_trains_nothing():
    model = _eager_net()
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    before = [p.data.copy() for p in model.parameters()]
    hist = model.fit(X5, Y3, epochs=1, initial_epoch=3, verbose=0)
    assert hist.epoch == [] and hist.history == {} and model.history is hist
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)


# ------------------------------------------------------------------------------------------------ summary, proba

def test_summary_and_count_params():
    model = fnn.Sequential([fnn.Input(shape=(64,)), fnn.Dense(128, activation="relu"), fnn.Dropout(0.2),
                            fnn.Dense(10), fnn.Softmax()], seed=0)
    assert model.count_params() == 64 * 128 + 128 + 128 * 10 + 10 == 9610
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    for want in ("Layer (type)", "Output Shape", "Param #", "(None, 128)", "8,320", "1,290", "Dropout",
                 "Total params: 9,610 (37.54 KB)", "Trainable params: 9,610"):
        assert want in text, want
    assert len(lines) == 13   # header 4 + 4 layers + rule + 3 totals + rule


def test_predict_proba_whatever_the_head():
    r = np.random.default_rng(5)
    soft = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(3, activation="softmax")], dtype="float64", seed=0)
    np.testing.assert_array_equal(soft.predict_proba(X5), soft.predict(X5))   # no compile needed
    logits = fnn.Sequential([fnn.Input(shape=(5,)), fnn.Dense(3)], dtype="float64", seed=0)
    with pytest.raises(ValueError, match="not compiled"):
        logits.predict_proba(X5)
    logits.compile("adam", "cross_entropy")
    z = logits.predict(X5)
    np.testing.assert_allclose(logits.predict_proba(X5), np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-12)
    logits.compile("adam", L.BinaryCrossentropy(from_logits=True))
    np.testing.assert_allclose(logits.predict_proba(X5), 1 / (1 + np.exp(-z)), rtol=1e-12)
    logits.compile("adam", "mse")
    with pytest.raises(ValueError, match="regression loss.*predict"):
        logits.predict_proba(X5)
    big = fnn.Sequential([fnn.Input(shape=(1,)), fnn.Dense(2)], dtype="float32", seed=0)
    big.compile("adam", "cross_entropy")
    p = big.predict_proba(r.standard_normal((4, 1)).astype(np.float32) * 1e4)   # no overflow
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(1), 1)


def test_an_optimizer_made_without_parameters_is_bound_by_compile():
    # Keras: compile(optimizer=keras.optimizers.Adam(learning_rate=0.01)); the class's other defaults are torch's
    for model in (_keras_net(), _eager_net()):   # unbuilt (bound at build) and built
        opt = fnn.optim.Adam(learning_rate=0.01)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
        model.fit(X5, Y3, epochs=1, verbose=0)
        assert model.optimizer is opt and opt.param_groups[0]["params"] == model.parameters()
        assert opt.defaults["lr"] == 0.01 and opt.defaults["eps"] == 1e-8
        with pytest.raises(ValueError, match="other parameter"):
            _eager_net().compile(optimizer=opt, loss="mse")   # already bound to the first model
    eager, keras_way = _eager_net(), _eager_net()
    eager.compile(fnn.optim.SGD(eager.parameters(), lr=0.1), "sparse_categorical_crossentropy")
    keras_way.compile(fnn.optim.SGD(learning_rate=0.1), "sparse_categorical_crossentropy")
    assert eager.fit(X5, Y3, epochs=2, verbose=0).history == keras_way.fit(X5, Y3, epochs=2, verbose=0).history
    with pytest.raises(RuntimeError, match=r"no parameters to update: pass it to model.compile"):
        fnn.optim.SGD(learning_rate=0.1).step()
    with pytest.raises(TypeError, match=r"write Adam\(learning_rate=0.01\)"):
        fnn.optim.Adam(0.01)   # Keras's positional learning rate


def test_sequential_then_add_as_keras():
    model = fnn.Sequential(seed=3)
    model.add(fnn.Input(shape=(5,)))
    model.add(fnn.Dense(16, activation="relu"))
    model.add(fnn.Dense(3, activation="softmax"))
    assert not model.built and len(model.layers) == 2
    assert model.count_params() == 5 * 16 + 16 + 16 * 3 + 3   # the width is known: built when needed
    _same_weights(model, _eager_net())
    with pytest.raises(ValueError, match="already has its weights"):
        model.add(fnn.Dense(2))
    later = fnn.Sequential(seed=3)   # no Input: built by the first data, as Keras
    later.add(fnn.Dense(16, activation="relu"))
    later.add(fnn.Dense(3, activation="softmax"))
    later.compile("sgd", "sparse_categorical_crossentropy")
    eager = _eager_net()
    eager.compile("sgd", "sparse_categorical_crossentropy")
    assert later.fit(X5, Y3, epochs=2, verbose=0).history == eager.fit(X5, Y3, epochs=2, verbose=0).history
    _same_weights(later, eager)
    empty = fnn.Sequential()
    with pytest.raises(ValueError, match="no Dense layer yet"):
        empty.compile("adam", "mse")
    with pytest.raises(ValueError, match="no Dense layer yet"):
        empty.predict(X5)
    with pytest.raises(ValueError, match="only be the first"):
        later2 = fnn.Sequential()
        later2.add(fnn.Dense(3))
        later2.add(fnn.Input(shape=(3,)))
    with pytest.raises(TypeError, match="add\\(\\) takes a fastnn layer"):
        fnn.Sequential().add("relu")


@pytest.mark.parametrize("export", ["save_model", "to_torch", "to_onnx"])
def test_exporting_an_unbuilt_model_says_it_is_not_built(export, tmp_path):
    model = fnn.Sequential([fnn.Dense(4, activation="relu"), fnn.Dense(2)])
    args = {"save_model": (tmp_path / "m.fnn",), "to_torch": (), "to_onnx": (tmp_path / "m.onnx",)}[export]
    with pytest.raises(ValueError, match=rf"fnn\.io\.{export}\(\): the model is not built yet.*fnn\.Input"):
        getattr(fnn.io, export)(model, *args)
    assert list(tmp_path.iterdir()) == []
