"""Property-based fuzz suite over every public entry point of fastnn (issue 9).

Every test draws inputs (arrays of every dtype and layout, odd shapes, NaN/inf, bad labels, bad
hyper-parameters) and asserts ONE rule through ``fuzz_strategies.check_call``: the call succeeds with
the same bits as on C-contiguous aligned native copies of its array inputs, or raises ValueError /
TypeError naming the offending argument; no other exception, no crash, no changed input.

The suite is derandomized (profile "fastnn-fuzz": derandomize=True, deadline=None, database=None)
and bounded by each test's max_examples; run it with
``python -m pytest tests/test_fuzz.py -q --durations=10``.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from fuzz_strategies import (  # noqa: E402
    BAD_SCALARS,
    DTYPES,
    FUZZ,
    HUGE_ROWS,
    LAYOUTS,
    REAL_DTYPES,
    apply_layout,
    arrays,
    check_call,
    hyper_params,
)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn import losses as L  # noqa: E402
from fastnn import metrics as M  # noqa: E402
from fastnn import optim  # noqa: E402
from fastnn.datasets import (  # noqa: E402
    StandardScaler,
    from_one_hot,
    load_csv,
    load_npz,
    make_moons,
    make_spirals,
    one_hot,
    train_test_split,
)
from fastnn.optim import lr_scheduler as S  # noqa: E402

H = HUGE_ROWS
# shapes offered for an (n, 4) input: valid ones, a single sample, 0-d, 0 rows, 0 columns, wrong width,
# 3-D, and a huge broadcast
X_SHAPES = [(3, 4), (1, 4), (5, 4), (4,), (), (0, 4), (3, 0), (3, 3), (2, 4, 1), (H, 4)]
MODEL_DTYPES = ["float32", "float64"]


def fuzz(max_examples: int):
    """The suite's settings: the derandomized profile with a bound on the examples."""
    return settings(FUZZ, max_examples=max_examples)


def quiet(fn, *args, **kwargs):
    """fn(*args, **kwargs) with warnings silenced (deprecations and advice are not under test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def small_model(dtype="float32", act="relu", p=0.25, out=3, last=None, seed=0):
    return fnn.Sequential([fnn.Dense(4, 5, activation=act), fnn.Dropout(p), fnn.Dense(5, out, activation=last)],
                          dtype=dtype, seed=seed)


def data_of(params):
    return [p.data.copy() for p in params]


def grads_of(params):
    return [None if p.grad is None else p.grad.copy() for p in params]


def set_grads(model, dtype=None):
    """Deterministic gradients for every parameter of `model` (a forward and a backward pass)."""
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    out = model(x)
    model.backward(np.ones_like(out) * 0.5 - out * 0.1)


def plain(obj):
    """An optimizer / scheduler state dict as plain comparable data (no objects)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.ndarray, float, int, str, bool, type(None), np.generic)):
        return obj
    return type(obj).__name__


# ============================================================================================ Sequential
LAYER_LISTS = ["valid", "empty", "not_a_layer", "array", "generator", "mismatch", "no_dense", "repeated",
               "string", "huge_width", "huge_input"]


def _layers(kind):
    if kind == "valid":
        return [fnn.Dense(4, 5, "relu"), fnn.Dropout(0.5), fnn.Dense(5, 2)]
    if kind == "empty":
        return []
    if kind == "not_a_layer":
        return [fnn.Dense(4, 5), "relu", None]
    if kind == "array":
        return np.array([1.0, 2.0])
    if kind == "generator":
        return (layer for layer in [fnn.Dense(4, 3), fnn.Tanh()])
    if kind == "mismatch":
        return [fnn.Dense(4, 5), fnn.Dense(3, 2)]
    if kind == "no_dense":
        return [fnn.ReLU(), fnn.Dropout(0.1)]
    if kind == "huge_width":   # 2**40 * 2 parameters: refused or a MemoryError-free error, never an allocation
        return [fnn.Dense(4, 2**40), fnn.Dense(2**40, 2)]
    if kind == "huge_input":
        return [fnn.Dense(10**12, 10**6)]
    if kind == "repeated":
        d = fnn.Dense(4, 4)
        return [d, d]
    return "Dense"


@fuzz(180)
@given(kind=st.sampled_from(LAYER_LISTS),
       hp=hyper_params({"dtype": ["float32", "float64", np.float32, None], "seed": [0, 1, 2**64 - 1, 12345]}))
def test_sequential_constructor(kind, hp):
    kwargs, bad = hp

    def call(dtype, seed):
        model = fnn.Sequential(_layers(kind), dtype=dtype, seed=seed)
        return [str(model.dtype), model.in_features, model.out_features] + data_of(model.parameters())

    names = bad + (["layers", "layer"] if kind != "valid" else [])
    if kind.startswith("huge"):
        names += ["in_features", "out_features"]
    check_call(call, kwargs, names, compare=kwargs["seed"] is not None)


# ============================================================================================ layers
ACT_SPECS = {
    "Dense": (lambda **kw: fnn.Dense(5, **kw), {
        "out_features": [5], "activation": [None, "relu", "TANH", "softmax", "gelu", "elu", "leaky_relu", "silu",
                                            "sigmoid", "linear", "identity"],
        "use_bias": [True, False], "init": ["glorot_uniform", "torch"]}),
    "ReLU": (fnn.ReLU, {}), "Sigmoid": (fnn.Sigmoid, {}), "Tanh": (fnn.Tanh, {}), "SiLU": (fnn.SiLU, {}),
    "Identity": (fnn.Identity, {}),
    "LeakyReLU": (fnn.LeakyReLU, {"negative_slope": [0.01, 0.2, -0.5, 0.0, 3.0]}),
    "ELU": (fnn.ELU, {"alpha": [1.0, 0.5, 0.0, 2.0]}),
    "GELU": (fnn.GELU, {"approximate": ["none", "tanh"]}),
    "Softmax": (fnn.Softmax, {"dim": [-1, 1]}),
    "Dropout": (fnn.Dropout, {"p": [0.0, 0.25, 0.5, 0.99, 1.0]}),
}


@st.composite
def layer_case(draw):
    name = draw(st.sampled_from(sorted(ACT_SPECS)))
    make, spec = ACT_SPECS[name]
    kwargs, bad = draw(hyper_params(spec))
    return name, make, kwargs, bad


@fuzz(450)
@given(case=layer_case(), x=arrays(X_SHAPES), first=st.booleans(), training=st.booleans(),
       dtype=st.sampled_from(MODEL_DTYPES))
def test_activation_layers(case, x, first, training, dtype):
    """Dense (with every activation) and every activation layer and Dropout: constructor, then model(x)."""
    name, make, kwargs, bad = case

    def call(x, **kwargs):
        layer = make(**kwargs)
        if first and name != "Dense":
            layers = [layer, fnn.Dense(4, 5), fnn.Dense(5, 3)]
        else:
            layers = [fnn.Dense(4, 5), layer, fnn.Dense(5, 3)]
        model = fnn.Sequential(layers, dtype=dtype, seed=3).train(training)
        return model(x)

    check_call(call, {"x": x, **kwargs}, bad + ["x"])


@fuzz(450)
@given(x=arrays(X_SHAPES), training=st.booleans(), dtype=st.sampled_from(MODEL_DTYPES),
       act=st.sampled_from(["relu", "tanh", "gelu", "softmax", "sigmoid"]))
def test_forward(x, training, dtype, act):
    """model(x) in train and eval mode (twice: the second call reuses the buffers)."""

    def call(x):
        model = small_model(dtype, act).train(training)
        first = model(x)
        return first, model(x)

    check_call(call, {"x": x}, ["x"])


GRAD_SHAPES = [(3, 3), (3,), (), (0, 3), (3, 0), (3, 4), (H, 3), (2, 3, 1)]


@fuzz(360)
@given(grad=arrays(GRAD_SHAPES), training=st.booleans(), dtype=st.sampled_from(MODEL_DTYPES),
       hp=hyper_params({"set_to_none": [True, False]}), twice=st.booleans())
def test_backward_parameters_zero_grad(grad, training, dtype, hp, twice):
    """backward(grad) (accumulating when called twice), parameters(), zero_grad(set_to_none)."""
    kwargs, bad = hp

    def call(grad):
        model = small_model(dtype).train(training)
        model(np.linspace(-2, 2, 12).reshape(3, 4))
        model.backward(grad)
        if twice:
            model.backward(grad)
        return grads_of(model.parameters()), data_of(model.parameters())

    check_call(call, {"grad": grad}, ["grad"])

    def zero(set_to_none):
        model = small_model(dtype).train(training)
        model(np.linspace(-2, 2, 12).reshape(3, 4))
        model.backward(np.ones((3, 3)))
        model.zero_grad(set_to_none)
        return grads_of(model.parameters())

    check_call(zero, kwargs, bad or ["set_to_none"])


# ============================================================================================ compile / fit
LOSS_NAMES = ["mse", "bce_with_logits", "cross_entropy", "nll"]


def _loss_object(name):
    return {"mse": L.MSELoss, "bce": L.BCELoss, "bce_with_logits": L.BCEWithLogitsLoss,
            "cross_entropy": L.CrossEntropyLoss, "nll": L.NLLLoss}[name]()


@fuzz(240)
@given(optimizer=st.sampled_from(["adam", "SGD", "adamw", "rmsprop", "adagrad", "adadelta", "nadam", "object",
                                  "class", "foreign", 3, None, np.array(["adam"])]),
       loss=st.sampled_from(["mse", "bce", "bce_with_logits", "cross_entropy", "NLL", "object", "none_reduction",
                             "huber", None, 1.5, np.array([1.0])]),
       metrics=st.sampled_from([None, ["accuracy"], ["acc", "mae"], "mse", ["binary_accuracy", "binary_accuracy"],
                                ["f1"], [3], "accuracy", np.array(["mae"]), ("mse",)]),
       last=st.sampled_from([None, "sigmoid", "softmax"]))
def test_compile(optimizer, loss, metrics, last):
    def call(optimizer, loss, metrics):
        model = small_model(last=last)
        if isinstance(optimizer, str) and optimizer == "object":
            optimizer = optim.SGD(model.parameters(), lr=0.1)
        elif isinstance(optimizer, str) and optimizer == "class":
            optimizer = optim.Adam
        elif isinstance(optimizer, str) and optimizer == "foreign":
            optimizer = optim.Adam(small_model().parameters())
        if isinstance(loss, str) and loss == "object":
            loss = L.CrossEntropyLoss(weight=np.ones(3))
        elif isinstance(loss, str) and loss == "none_reduction":
            loss = L.MSELoss(reduction="none")
        quiet(model.compile, optimizer=optimizer, loss=loss, metrics=metrics)
        return model.metrics_names, type(model.optimizer).__name__, type(model.loss).__name__

    check_call(call, {"optimizer": optimizer, "loss": loss, "metrics": metrics},
               ["optimizer", "loss", "metrics", "metric"], compare=False)


def _targets(loss, n_shapes):
    """A strategy for the targets of `loss` for a model with 3 outputs and (mostly) 3 rows."""
    if loss in ("cross_entropy", "nll"):
        return st.one_of(arrays([(3,), (3, 1), (), (0,), (4,), (H,)], labels=3),
                         arrays([(3, 3), (3, 2)], dtypes=REAL_DTYPES + [np.dtype(object)]))
    if loss == "bce_with_logits":
        return arrays([(3, 3), (3, 1), (3,), (0, 3), (4, 3), (H, 3)], labels=2)
    return arrays([(3, 3), (3,), (), (3, 2), (0, 3), (4, 3), (H, 3)])


@st.composite
def train_data(draw):
    loss = draw(st.sampled_from(LOSS_NAMES))
    X = draw(arrays([(3, 4), (3, 4), (3, 4), (4,), (), (0, 4), (3, 0), (3, 5), (H, 4)]))
    y = draw(_targets(loss, 3))
    return loss, X, y


FIT_SPEC = {"epochs": [1, 2, 0], "batch_size": [2, 3, 32, None], "validation_split": [0.0, 0.34],
            "shuffle": [True, False], "verbose": [0], "initial_epoch": [0, 1]}


@fuzz(300)
@given(case=train_data(), hp=hyper_params(FIT_SPEC), dtype=st.sampled_from(MODEL_DTYPES),
       validation=st.sampled_from([None, "same", "bad_tuple", "triple", "array"]))
def test_fit(case, hp, dtype, validation):
    loss, X, y = case
    kwargs, bad = hp

    def call(X, y, **kwargs):
        model = small_model(dtype, p=0.2)
        model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
        vd = {None: None, "same": (X, y), "bad_tuple": [X], "triple": (X, y, y), "array": X}[validation]
        history = quiet(model.fit, X, y, validation_data=vd, **kwargs)
        return history.history, data_of(model.parameters())

    names = bad + ["X", "y"] + (["validation_data"] if validation else [])
    if "epochs" in bad or "initial_epoch" in bad or (kwargs["initial_epoch"] == 1 and kwargs["epochs"] == 0):
        names += ["epochs", "initial_epoch"]
    if "validation_split" in bad or kwargs["validation_split"]:
        names += ["validation_split"]
    check_call(call, {"X": X, "y": y, **kwargs}, names)


@fuzz(360)
@given(case=train_data(), method=st.sampled_from(["predict", "evaluate", "train_step"]),
       hp=hyper_params({"batch_size": [None, 1, 2, 1024]}), dtype=st.sampled_from(MODEL_DTYPES))
def test_predict_evaluate_train_step(case, method, hp, dtype):
    loss, X, y = case
    kwargs, bad = hp

    def call(X, y, batch_size):
        model = small_model(dtype, p=0.2)
        model.compile(optimizer="sgd", loss=loss, metrics=["accuracy", "mse"] if loss != "nll" else ["acc"])
        if method == "predict":
            out = model.predict(X, batch_size=batch_size)
        elif method == "evaluate":
            out = model.evaluate(X, y, batch_size=batch_size)
        else:
            out = model.train_step(X, y)
        return out, data_of(model.parameters())

    names = ["X"] + (bad if method != "train_step" else []) + (["y"] if method == "evaluate" else [])
    if method == "train_step":
        names = ["xb", "yb"]
    check_call(call, {"X": X, "y": y, **kwargs}, names)


# ============================================================================================ losses
ELEM_SHAPES = [(3, 2), (3, 2), (6,), (), (0, 2), (3, 0), (2, 3), (H, 2)]
CLASS_PRED_SHAPES = [(3, 4), (3, 4), (4,), (0, 4), (3, 0), (2, 4, 1), (H, 4)]
LOSS_SPECS = {
    "MSELoss": {"reduction": ["mean", "sum", "none"]},
    "BCELoss": {"reduction": ["mean", "sum", "none"]},
    "BCEWithLogitsLoss": {"reduction": ["mean", "sum", "none"]},
    "CrossEntropyLoss": {"reduction": ["mean", "sum", "none"], "ignore_index": [-100, 1, 0],
                         "label_smoothing": [0.0, 0.1, 1.0]},
    "NLLLoss": {"reduction": ["mean", "sum", "none"], "ignore_index": [-100, 2]},
}


@st.composite
def loss_case(draw):
    name = draw(st.sampled_from(sorted(LOSS_SPECS)))
    kwargs, bad = draw(hyper_params(LOSS_SPECS[name]))
    arrays_in = {}
    if name in ("MSELoss", "BCELoss", "BCEWithLogitsLoss"):
        probs = name == "BCELoss"
        arrays_in["y_pred"] = draw(arrays(ELEM_SHAPES, scale=0.3 if probs else 1.0)
                                   if not probs else arrays(ELEM_SHAPES, labels=2))
        arrays_in["y"] = draw(arrays(ELEM_SHAPES, labels=2 if name != "MSELoss" else None))
        if name != "MSELoss" and draw(st.booleans()):
            arrays_in["weight"] = draw(arrays([(2,), (3, 2), (3,), (), (0,)], dtypes=REAL_DTYPES))
        if name == "BCEWithLogitsLoss" and draw(st.booleans()):
            arrays_in["pos_weight"] = draw(arrays([(2,), (1, 2), (5,)], dtypes=REAL_DTYPES))
        grad_shapes = [(3, 2), (6,), (), (2, 3)]
    else:
        arrays_in["y_pred"] = draw(arrays(CLASS_PRED_SHAPES))
        if draw(st.integers(0, 3)) == 0:
            arrays_in["y"] = draw(arrays([(3, 4), (4,)], dtypes=REAL_DTYPES))
        else:
            arrays_in["y"] = draw(arrays([(3,), (), (0,), (4,), (3, 1), (H,)], labels=4))
        if draw(st.booleans()):
            arrays_in["weight"] = draw(arrays([(4,), (3,), (), (4, 1)], dtypes=REAL_DTYPES))
        grad_shapes = [(3,), (), (4,)]
    grad_output = draw(st.one_of(st.none(), st.sampled_from([2.0, 0.5, -1.0]), st.sampled_from(BAD_SCALARS),
                                 arrays(grad_shapes)))
    return name, kwargs, bad, arrays_in, grad_output


@fuzz(750)
@given(case=loss_case())
def test_losses(case):
    """Every loss in fnn.losses: constructor (hyper-parameters and weight arrays), call, backward."""
    name, kwargs, bad, arrays_in, grad_output = case
    ctor_arrays = {k: v for k, v in arrays_in.items() if k in ("weight", "pos_weight")}

    def call(y_pred, y, grad_output, **kw):
        loss = getattr(L, name)(**kw)
        value = loss(y_pred, y)
        g1 = loss.backward()
        g1 = g1.copy() if isinstance(g1, np.ndarray) else g1
        return value, g1, loss.backward(grad_output)

    names = bad + list(arrays_in) + ["grad_output"]
    check_call(call, {"y_pred": arrays_in["y_pred"], "y": arrays_in["y"], "grad_output": grad_output,
                      **ctor_arrays, **kwargs}, names)


# ============================================================================================ optimizers
OPT_SPECS = {
    "SGD": {"lr": [0.1, 1e-3, 0.0], "momentum": [0, 0.9], "dampening": [0, 0.1], "weight_decay": [0, 0.01],
            "nesterov": [False], "maximize": [False, True]},
    "Adam": {"lr": [1e-3, 0.1], "betas": [(0.9, 0.999), (0.0, 0.5)], "eps": [1e-8, 0.0], "weight_decay": [0, 0.1],
             "amsgrad": [False, True], "maximize": [False, True], "decoupled_weight_decay": [False, True]},
    "AdamW": {"lr": [1e-3], "betas": [(0.9, 0.999)], "eps": [1e-8], "weight_decay": [1e-2, 0.0],
              "amsgrad": [False, True], "maximize": [False]},
    "RMSprop": {"lr": [1e-2], "alpha": [0.99, 0.5], "eps": [1e-8], "weight_decay": [0, 0.1], "momentum": [0, 0.9],
                "centered": [False, True], "maximize": [False, True]},
    "Adagrad": {"lr": [1e-2], "lr_decay": [0, 0.1], "weight_decay": [0, 0.1],
                "initial_accumulator_value": [0, 0.5], "eps": [1e-10], "maximize": [False, True]},
    "Adadelta": {"lr": [1.0, 0.5], "rho": [0.9, 1.0, 0.0], "eps": [1e-6], "weight_decay": [0, 0.1],
                 "maximize": [False, True]},
}
BAD_BETAS = [(0.9,), (0.9, 1.0), (np.nan, 0.9), "ab", np.array([0.9, 0.99]), (0.9, 0.999, 0.1), None, (-0.1, 0.9)]


@st.composite
def optimizer_case(draw):
    name = draw(st.sampled_from(sorted(OPT_SPECS)))
    kwargs, bad = draw(hyper_params(OPT_SPECS[name]))
    if "betas" in bad and draw(st.booleans()):
        kwargs["betas"] = draw(st.sampled_from(BAD_BETAS))
    # a hyper-parameter changed between steps (to a bad value, or to a valid one), through param_groups
    later = draw(st.one_of(st.none(), st.tuples(st.sampled_from(sorted(OPT_SPECS[name])),
                                                st.sampled_from(BAD_SCALARS + [0.5, 0.0]))))
    # the loaded state dict: its arrays in another dtype / layout
    layout = draw(st.sampled_from(LAYOUTS))
    state_dtype = draw(st.sampled_from(DTYPES))
    return name, kwargs, bad, later, layout, state_dtype


def _restyle(state_dict, layout, dtype):
    """The state dict with each state array converted to `dtype` and put in `layout` (values kept)."""
    out = {"state": {}, "param_groups": [dict(g) for g in state_dict["param_groups"]]}
    for i, st_ in state_dict["state"].items():
        entry = {}
        for kind, value in st_.items():
            v = np.asarray(value)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v = v.astype(dtype) if dtype.kind != "M" else v.astype(np.int64).astype(dtype)
            entry[kind] = apply_layout(np.array(v, order="C"), layout if v.ndim else "C")
        out["state"][i] = entry
    return out


STATE_DICT_DAMAGE = ["none", "not_dict", "empty", "no_groups", "extra_group", "fewer_params", "unknown_index",
                     "bad_shape", "step_nan", "step_negative", "step_huge", "step_array", "entry_none", "group_lr",
                     "state_list", "param_index_str", "groups_not_list", "entry_array"]


def _damage(sd, how):
    """A copy of the state dict `sd` (fastnn's layout) damaged in one way."""
    sd = {"state": {i: dict(e) for i, e in sd["state"].items()},
          "param_groups": [dict(g, params=list(g["params"])) for g in sd["param_groups"]]}
    first = next(iter(sd["state"]), None)
    if how == "not_dict":
        return "abc"
    if how == "empty":
        return {}
    if how == "no_groups":
        del sd["param_groups"]
    elif how == "extra_group":
        sd["param_groups"].append(dict(sd["param_groups"][0]))
    elif how == "fewer_params":
        sd["param_groups"][0]["params"].pop()
    elif how == "unknown_index" and first is not None:
        sd["state"][99] = sd["state"][first]
    elif how == "bad_shape" and first is not None:
        kind = next((k for k in sd["state"][first] if k != "step"), None)
        if kind is not None:
            sd["state"][first][kind] = np.zeros((2, 2))
    elif how.startswith("step_") and first is not None and "step" in sd["state"][first]:
        sd["state"][first]["step"] = {"step_nan": np.array(np.nan), "step_negative": np.array(-1.0),
                                      "step_huge": 2**64, "step_array": np.array([1.0, 2.0])}[how]
    elif how == "entry_none" and first is not None:
        sd["state"][first] = None
    elif how == "entry_array" and first is not None:
        sd["state"][first] = np.ones(3)
    elif how == "group_lr":
        sd["param_groups"][0]["lr"] = "abc"
    elif how == "state_list":
        sd["state"] = list(sd["state"].values())
    elif how == "param_index_str":
        sd["param_groups"][0]["params"][0] = "a"
    elif how == "groups_not_list":
        sd["param_groups"] = sd["param_groups"][0]
    return sd


@fuzz(600)
@given(case=optimizer_case(), dtype=st.sampled_from(MODEL_DTYPES), damage=st.sampled_from(STATE_DICT_DAMAGE))
def test_optimizers(case, dtype, damage):
    """Every optimizer: constructor hyper-parameters, step, a hyper-parameter changed between steps,
    state_dict, and load_state_dict of a state dict whose arrays have another dtype / layout, or that is
    damaged in its structure."""
    name, kwargs, bad, later, layout, state_dtype = case
    cls = getattr(optim, name)
    model = small_model(dtype)
    opt0 = cls(model.parameters())
    set_grads(model)
    opt0.step()
    opt0.step()
    saved = _restyle(opt0.state_dict(), layout, state_dtype)

    def call(saved, **kwargs):
        model = small_model(dtype)
        opt = cls(model.parameters(), **kwargs)
        set_grads(model)
        opt.step()
        if later is not None:
            opt.param_groups[0][later[0]] = later[1]
        opt.step()
        sd = plain(opt.state_dict())
        fresh = cls(small_model(dtype).parameters())
        fresh.load_state_dict(saved)
        return sd, data_of(model.parameters()), plain(fresh.state_dict())

    names = bad + ["state_dict"] + ([later[0]] if later else [])
    check_call(call, {"saved": saved, **kwargs}, names)

    def load(damaged):   # a state dict damaged in its structure
        fresh = cls(small_model(dtype).parameters())
        fresh.load_state_dict(damaged)
        return plain(fresh.state_dict())

    check_call(load, {"damaged": _damage(opt0.state_dict(), damage)}, ["state_dict"])


# ============================================================================================ lr schedulers
SCHED_SPECS = {
    "StepLR": {"step_size": [1, 2], "gamma": [0.1, 0.5, 1.0], "last_epoch": [-1]},
    "MultiStepLR": {"milestones": [[1, 2], [0], (2, 2), []], "gamma": [0.1, 0.5], "last_epoch": [-1]},
    "ExponentialLR": {"gamma": [0.9, 0.0, 1.5], "last_epoch": [-1]},
    "CosineAnnealingLR": {"T_max": [1, 3], "eta_min": [0.0, 0.01], "last_epoch": [-1]},
    "LinearLR": {"start_factor": [1 / 3, 1.0], "end_factor": [1.0, 0.5, 0.0], "total_iters": [1, 5],
                 "last_epoch": [-1]},
    "ConstantLR": {"factor": [1 / 3, 0.0, 1.0], "total_iters": [1, 5], "last_epoch": [-1]},
    "PolynomialLR": {"total_iters": [1, 5], "power": [1.0, 0.5, 0.0, 2.0], "last_epoch": [-1]},
    "ReduceLROnPlateau": {"mode": ["min", "max"], "factor": [0.1, 0.5], "patience": [0, 2],
                          "threshold": [1e-4, 0.0], "threshold_mode": ["rel", "abs"], "cooldown": [0, 1],
                          "min_lr": [0, 1e-3, [0.0]], "eps": [1e-8]},
}


@fuzz(600)
@given(name=st.sampled_from(sorted(SCHED_SPECS)), data=st.data(),
       metric=st.sampled_from([1.0, 0.5, 2.0, np.float32(0.1), np.nan, np.inf, "abc", None, np.array([1.0, 2.0]),
                               np.array(0.5), 2**64, True]),
       epoch=st.sampled_from([None, None, None, 3, -1, 2.5, 2**64, np.array([1, 2])]))
def test_lr_schedulers(name, data, metric, epoch):
    """Every scheduler: constructor, step (with a metric / an explicit epoch), get_last_lr, a state_dict
    round trip, and load_state_dict of a damaged state dict."""
    kwargs, bad = data.draw(hyper_params(SCHED_SPECS[name]))
    damage = data.draw(st.sampled_from(["not_dict", "last_epoch_negative", "last_epoch_array", "last_epoch_str",
                                        "base_lrs_short", "base_lrs_str", "unknown_key", "step_count_nan"]))

    def call(**kwargs):
        opt = optim.SGD(small_model().parameters(), lr=0.1)
        sched = getattr(S, name)(opt, **kwargs)
        lrs = []
        for _ in range(3):
            opt.step()
            if name == "ReduceLROnPlateau":
                quiet(sched.step, metric, epoch)
            else:
                quiet(sched.step, epoch)
            lrs.append(sched.get_last_lr())
        sd = sched.state_dict()
        fresh = getattr(S, name)(optim.SGD(small_model().parameters(), lr=0.1), **kwargs)
        fresh.load_state_dict(sd)   # the round trip restores the schedule
        return lrs, [g["lr"] for g in opt.param_groups], plain(sd), plain(fresh.state_dict())

    names = bad + ["metrics", "epoch"]
    if name == "MultiStepLR":
        names += ["milestones"]
    if name == "ReduceLROnPlateau":
        names += ["min_lr"]
    check_call(call, kwargs, names, compare=False)

    valid = {k: v[0] for k, v in SCHED_SPECS[name].items()}

    def load(damage):
        opt = optim.SGD(small_model().parameters(), lr=0.1)
        sched = getattr(S, name)(opt, **valid)
        sd = sched.state_dict()
        if damage == "not_dict":
            sd = ["abc"]
        elif damage.startswith("last_epoch"):
            sd["last_epoch"] = {"last_epoch_negative": -5, "last_epoch_array": np.array([1, 2]),
                                "last_epoch_str": "3"}[damage]
        elif damage == "base_lrs_short":
            sd["base_lrs"] = []
        elif damage == "base_lrs_str":
            sd["base_lrs"] = ["abc"]
        elif damage == "unknown_key":
            sd["optimizer_x"] = object()
        else:
            sd["_step_count"] = float("nan")
        fresh = getattr(S, name)(optim.SGD(small_model().parameters(), lr=0.1), **valid)
        fresh.load_state_dict(sd)
        opt.step()
        fresh.step(1.0) if name == "ReduceLROnPlateau" else fresh.step()
        return fresh.get_last_lr()

    check_call(load, {"damage": damage}, ["state_dict"], compare=False)


# ============================================================================================ clipping
@st.composite
def grads_case(draw):
    shapes = [(4, 5), (5,), (5, 3), (3,)]
    grads = []
    for shape in shapes:
        if draw(st.integers(0, 4)) == 0:
            grads.append(None)
        else:
            grads.append(draw(arrays([shape, shape, shape, (5, 4), (), (H, 5)] if shape == (4, 5) else [shape])))
    return grads


@fuzz(450)
@given(grads=grads_case(), fn=st.sampled_from(["norm", "value"]),
       hp_norm=hyper_params({"max_norm": [1.0, 0.1, 0.0, float("inf")], "norm_type": [2.0, 1, float("inf"),
                                                                                      "inf", 0, -float("inf"), 3.5],
                             "error_if_nonfinite": [False], "foreach": [None, True, False]}),
       hp_value=hyper_params({"clip_value": [0.5, 0.0, float("inf")], "foreach": [None, False]}),
       params=st.sampled_from(["list", "generator", "single", "with_junk", "array", "empty"]),
       dtype=st.sampled_from(MODEL_DTYPES))
def test_clip_grad(grads, fn, hp_norm, hp_value, params, dtype):
    """clip_grad_norm_ / clip_grad_value_ on gradients set from fuzzed arrays (through Parameter.grad)."""
    kwargs, bad = hp_norm if fn == "norm" else hp_value

    def call(grads, **kwargs):
        model = small_model(dtype)
        ps = model.parameters()
        for p, g in zip(ps, grads):
            p.grad = g
        arg = {"list": ps, "generator": (p for p in ps), "single": ps[0], "with_junk": ps + [np.ones(3)],
               "array": np.ones(3), "empty": []}[params]
        if fn == "norm":
            total = quiet(fnn.clip_grad_norm_, arg, **kwargs)
        else:
            total = fnn.clip_grad_value_(arg, **kwargs)
        return total, grads_of(ps)

    names = bad + ["grad", "parameters"]
    check_call(call, {"grads": grads, **kwargs}, names)


# ============================================================================================ threads
@fuzz(40)
@given(n=st.sampled_from([1, 2, np.int64(1)] + BAD_SCALARS + [0, -5, 2**31, 2**63]))
def test_set_num_threads_and_default_dtype(n):
    def call(n):
        old = fnn.get_num_threads()
        try:
            fnn.set_num_threads(n)
            return fnn.get_num_threads()
        finally:
            fnn.set_num_threads(old)

    check_call(call, {"n": n}, ["n"], compare=False)

    def default_dtype(dtype):
        old = fnn.get_default_dtype()
        try:
            fnn.set_default_dtype(dtype)
            return str(fnn.get_default_dtype()), str(fnn.Sequential([fnn.Dense(2, 2)], seed=0).dtype)
        finally:
            fnn.set_default_dtype(old)

    dtype = {1: "float32", 2: "float64"}[n] if type(n) is int and n in (1, 2) else n   # valid and bad dtypes
    check_call(default_dtype, {"dtype": dtype}, ["dtype"], compare=False)


# ============================================================================================ datasets
@fuzz(100)
@given(labels=arrays([(5,), (5,), (), (0,), (5, 2), (H,)], labels=4),
       hp=hyper_params({"num_classes": [None, 4, 6], "dtype": ["float32", "float64", np.int64]}))
def test_one_hot(labels, hp):
    kwargs, bad = hp
    check_call(lambda labels, **kw: one_hot(labels, **kw), {"labels": labels, **kwargs},
               bad + ["labels", "num_classes"])


@fuzz(60)
@given(Y=arrays([(4, 3), (4, 3), (3,), (), (0, 3), (4, 0), (2, 3, 1), (H, 3)]))
def test_from_one_hot(Y):
    check_call(lambda Y: from_one_hot(Y), {"Y": Y}, ["Y"])


@fuzz(300)
@given(fn=st.sampled_from(["moons", "spirals"]), data=st.data())
def test_make_moons_spirals(fn, data):
    spec = {"n_samples": [1, 7, 100] + ([(3, 4), [0, 2]] if fn == "moons" else []), "noise": [None, 0.0, 0.1],
            "random_state": [0, 42, 2**32 - 1], "shuffle": [True, False], "dtype": ["float32", "float64"]}
    if fn == "spirals":
        spec["n_classes"] = [1, 3, 7]
    kwargs, bad = data.draw(hyper_params(spec))
    make = make_moons if fn == "moons" else make_spirals
    names = bad + (["n_classes", "n_samples"] if fn == "spirals" else [])
    check_call(lambda **kw: make(**kw), kwargs, names, compare=False)


@st.composite
def split_case(draw):
    n = draw(st.sampled_from([8, 8, 1, 0, 3]))
    count = draw(st.integers(1, 3))
    arrs = [draw(arrays([(n, 2), (n,), (n, 3, 1), (n + 1,), (), (H, 2) if n == 8 else (n, 2)])) for _ in range(count)]
    kwargs, bad = draw(hyper_params({"test_size": [None, 0.25, 2, 0.5], "train_size": [None, 0.5, 4],
                                     "shuffle": [True, False], "random_state": [0, 7]}))
    stratify = draw(st.one_of(st.none(), arrays([(n,), (n + 1,), (n, 2)], labels=2)))
    return arrs, kwargs, bad, stratify


@fuzz(360)
@given(case=split_case())
def test_train_test_split(case):
    arrs, kwargs, bad, stratify = case

    def call(arrays, stratify, **kw):
        return train_test_split(*arrays, stratify=stratify, **kw)

    names = bad + ["array", "arrays", "stratify", "test_size", "train_size", "n_samples"]
    check_call(call, {"arrays": arrs, "stratify": stratify, **kwargs}, names)


@fuzz(300)
@given(X=arrays([(5, 3), (5, 3), (1, 3), (0, 3), (5, 0), (3,), (), (H, 3)]),
       X2=arrays([(4, 3), (4, 2), (3,), (H, 3)]),
       method=st.sampled_from(["fit_transform", "transform", "inverse_transform"]),
       hp=hyper_params({"with_mean": [True, False], "with_std": [True, False]}))
def test_standard_scaler(X, X2, method, hp):
    kwargs, bad = hp

    def call(X, X2, **kw):
        scaler = StandardScaler(**kw)
        if method == "fit_transform":
            out = scaler.fit_transform(X)
        else:
            out = getattr(scaler.fit(X), method)(X2)
        return out, scaler.mean_, scaler.var_, scaler.scale_

    check_call(call, {"X": X, "X2": X2, **kwargs}, bad + ["X"])


FILE_SHAPES = [(4, 3), (4, 3), (1, 2), (0, 3), (4, 0), (4,), ()]


@fuzz(240)
@given(X=arrays(FILE_SHAPES), y=arrays([(4,), (4,), (1,), (0,), (3,), (4, 2)], labels=3),
       hp=hyper_params({"target": ["target"], "delimiter": [",", ";", "\t"], "dtype": ["float32", "float64"]}),
       junk=st.sampled_from([None, None, "", "nan", "1_000", " 2 ", "x,y", '"']))
def test_load_csv(X, y, hp, junk):
    """load_csv on a CSV file written from fuzzed arrays (every dtype's text form, junk cells)."""
    kwargs, bad = hp

    def call(X, y, target, delimiter, dtype):
        d = delimiter if isinstance(delimiter, str) and len(delimiter) == 1 else ","
        Xs = np.asarray(X)
        Xs = Xs if Xs.ndim == 2 else Xs.reshape(-1, 1)
        ys = np.asarray(y)
        labels = [str(v) for v in (ys.reshape(len(ys), -1)[:, 0].tolist() if ys.ndim and ys.size else [])]
        rows = [[str(v) for v in row] for row in Xs.tolist()]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "data.csv")
            with open(path, "w") as f:
                f.write(d.join([f"f{j}" for j in range(Xs.shape[1])] + ["target"]) + "\n")
                for i in range(max(len(rows), len(labels))):
                    row = rows[i] if i < len(rows) else []
                    if junk is not None and i == 0 and row:
                        row = [junk] + row[1:]
                    f.write(d.join(row + [labels[i] if i < len(labels) else ""]) + "\n")
            return load_csv(path, target, delimiter=delimiter, dtype=dtype)

    check_call(call, {"X": X, "y": y, **kwargs}, bad + ["data.csv"])


@fuzz(240)
@given(X=arrays(FILE_SHAPES + [(4, 2, 2)]), y=arrays([(4,), (4,), (1,), (0,), (3,), ()], labels=3),
       hp=hyper_params({"x_key": [None, "X", "x"], "y_key": ["y", "labels"], "dtype": ["float32", "float64"]}),
       key_x=st.sampled_from(["X", "x", "features"]))
def test_load_npz(X, y, hp, key_x):
    """load_npz on an .npz file written (np.savez) from fuzzed arrays of every dtype and layout."""
    kwargs, bad = hp

    def call(X, y, **kw):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "data.npz")
            np.savez(path, **{key_x: X, "y": y})
            return load_npz(path, **kw)

    check_call(call, {"X": X, "y": y, **kwargs}, bad + ["data.npz"])


# ============================================================================================ save / load
@fuzz(180)
@given(path=st.sampled_from(["model.fnn", "model.fnn", "", None, 3, b"model.fnn", 2.5,
                             np.array(["model.fnn"])]),
       hp=hyper_params({"include_optimizer": [True, False]}),
       optimizer=st.sampled_from(["adam", "sgd", "rmsprop", "adagrad", "adadelta", "adamw", None]),
       corrupt=st.one_of(st.none(), st.binary(max_size=64), st.sampled_from(["truncate", "flip"])),
       dtype=st.sampled_from(MODEL_DTYPES), method=st.sampled_from(["save_model", "model.save"]))
def test_save_load_model(path, hp, optimizer, corrupt, dtype, method):
    """save_model / model.save then load_model (also of a damaged file): weights and optimizer state back."""
    kwargs, bad = hp

    def call(include_optimizer):
        model = small_model(dtype)
        if optimizer is not None:
            model.compile(optimizer=optimizer, loss="cross_entropy", metrics=["acc"])
            model.fit(np.linspace(-1, 1, 24).reshape(6, 4), np.array([0, 1, 2, 0, 1, 2]), epochs=1, verbose=0)
        cwd = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            try:
                if method == "save_model":
                    fnn.io.save_model(model, path, include_optimizer=include_optimizer)
                else:
                    model.save(path, include_optimizer=include_optimizer)
                if corrupt is not None:
                    data = open(path, "rb").read()
                    data = (data[: len(data) // 2] if corrupt == "truncate" else
                            data[:200] + bytes([data[200] ^ 0xFF]) + data[201:] if corrupt == "flip" else corrupt)
                    with open(path, "wb") as f:
                        f.write(data)
                loaded = fnn.load_model(path)
            finally:
                os.chdir(cwd)
        opt_state = plain(loaded.optimizer.state_dict()) if getattr(loaded, "optimizer", None) else None
        return data_of(loaded.parameters()), opt_state, str(loaded.dtype)

    names = bad + ["path", str(path)]
    check_call(call, kwargs, names, compare=False)


# ============================================================================================ metrics
@fuzz(450)
@given(name=st.sampled_from(["accuracy", "acc", "binary_accuracy", "mae", "MSE", "mean_squared_error", "f1", "",
                             3, None, np.array(["acc"])]),
       loss=st.sampled_from([None, "mse", "bce", "bce_with_logits", "cross_entropy", "nll"]),
       y_pred=arrays([(3, 2), (3, 2), (3, 1), (3,), (), (0, 2), (3, 0), (H, 2)]),
       y=st.one_of(arrays([(3,), (3, 2), (3, 1), (), (4,)], labels=2), arrays([(3, 2), (3,)])),
       threshold=st.sampled_from([0.5, 0.0] + BAD_SCALARS))
def test_metrics(name, loss, y_pred, y, threshold):
    """fnn.metrics: canonical_name, direction, get, update_state / update_batches / result / reset_state,
    BinaryAccuracy(threshold)."""

    def call(name, y_pred, y, threshold):
        canonical = M.canonical_name(name)
        direction = M.direction(name)
        metric = M.get(name, None if loss is None else _loss_object(loss))
        metric.update_state(y_pred, y)
        first = metric.result()
        metric.update_batches(y_pred, y, 1)
        second = metric.result()
        metric.reset_state()
        binary = M.BinaryAccuracy(threshold=threshold)
        binary.update_state(y_pred, y)
        return canonical, direction, first, second, metric.result(), binary.result()

    check_call(call, {"name": name, "y_pred": y_pred, "y": y, "threshold": threshold},
               ["name", "metrics", "y_pred", "y", "threshold"])


# ============================================================================================ the checker itself
def test_checker_flags_each_kind_of_violation(monkeypatch):
    """check_call accepts the two allowed outcomes and flags every forbidden one (outside diagnostic mode)."""
    from fuzz_strategies import RuleViolation

    monkeypatch.delenv("FASTNN_FUZZ_REPORT", raising=False)
    x = apply_layout(np.arange(6.0).reshape(2, 3), "F")
    assert check_call(lambda x: x * 2, {"x": x}, ["x"])[0] == "ok"

    def named(x):
        raise ValueError("x must be finite")

    assert check_call(named, {"x": x}, ["x"])[0] == "error"

    def unnamed(x):
        raise ValueError("bad value")

    def other_type(x):
        raise IndexError("x index")

    def writes(x):
        x[0, 0] = 99.0

    def freezes(x):
        x.setflags(write=False)

    def layout_dependent(x):
        return np.float64(x.flags.c_contiguous)

    def huge(x):
        return np.ones((HUGE_ROWS, 4))

    for bad in (unnamed, other_type, writes, freezes, layout_dependent, huge):
        with pytest.raises(RuleViolation):
            check_call(bad, {"x": apply_layout(np.arange(6.0).reshape(2, 3), "F")}, ["x"])
