"""Optimizer and lr-scheduler safety (issue 9 items 8 and 10): hyper-parameters changed between steps,
malformed and out-of-range state dicts, flags missing from older state dicts (as torch), step(closure)."""

import math

import numpy as np
import pytest

import fastnn as fnn
from fastnn import optim as fo
from fastnn.optim import lr_scheduler as fls
from fastnn.parameter import parameters_from_arrays

# ------------------------------------------------------------------------------------------------ helpers


def _params(dtype=np.float64):
    rng = np.random.default_rng(0)
    return parameters_from_arrays([rng.standard_normal((3, 4)), rng.standard_normal(4)], dtype=dtype)


def _stepped(cls, **kw):
    params = _params()
    opt = cls(params, **kw)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    return params, opt


def _model(optimizer):
    model = fnn.Sequential([fnn.Dense(4, 8, activation="relu"), fnn.Dense(8, 2)], seed=0)
    model.compile(optimizer=optimizer(model.parameters()), loss="mse")
    x = np.random.default_rng(1).standard_normal((64, 4))
    y = np.random.default_rng(2).standard_normal((64, 2))
    model.train_step(x[:16], y[:16])
    return model, x, y


def _weights(model):
    return [p.data.copy() for p in model.parameters()]


def _steps(opt):
    return [float(st["step"]) for st in opt.state.values() if "step" in st]


# ------------------------------------------------------------------ item 8: hyper-parameters changed between steps

CHANGES = [
    (fo.SGD, {"lr": 0.1}, "lr", math.nan, ValueError, r"param_groups\[0\]: lr must be a finite number .* got nan"),
    (fo.SGD, {"lr": 0.1}, "lr", -1.0, ValueError, r"param_groups\[0\]: lr must be .* got -1\.0"),
    (fo.SGD, {"lr": 0.1}, "lr", "0.1", TypeError, r"param_groups\[0\]: lr must be a real number, got '0\.1'"),
    (fo.SGD, {"lr": 0.1}, "nesterov", True, ValueError, r"param_groups\[0\]: nesterov=True requires momentum > 0"),
    (fo.Adam, {}, "betas", (1.0, 0.9), ValueError, r"param_groups\[0\]: betas\[0\] must be a finite number in "
                                                   r"\[0, 1\), got 1\.0"),
    (fo.Adam, {}, "betas", (0.9, math.inf), ValueError, r"param_groups\[0\]: betas\[1\] must be"),
    (fo.Adam, {}, "eps", math.nan, ValueError, r"param_groups\[0\]: eps must be"),
    (fo.AdamW, {}, "weight_decay", -0.5, ValueError, r"param_groups\[0\]: weight_decay must be"),
    (fo.Adagrad, {}, "lr_decay", math.inf, ValueError, r"param_groups\[0\]: lr_decay must be"),
    (fo.RMSprop, {}, "alpha", math.nan, ValueError, r"param_groups\[0\]: alpha must be"),
    (fo.Adadelta, {}, "rho", 1.5, ValueError, r"param_groups\[0\]: rho must be"),
    (fo.Adam, {}, "amsgrad", 1, TypeError, r"param_groups\[0\]: amsgrad must be a bool, got 1"),
]


@pytest.mark.parametrize("cls, kw, key, value, exc, match", CHANGES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_a_bad_hyper_parameter_set_between_steps_is_refused_by_step(cls, kw, key, value, exc, match):
    params, opt = _stepped(cls, **kw)
    before, steps = [p.data.copy() for p in params], _steps(opt)
    opt.param_groups[0][key] = value
    for _ in range(2):  # refused every time, not only the first
        with pytest.raises(exc, match=match):
            opt.step()
    assert all(np.array_equal(p.data, b) for p, b in zip(params, before))
    assert _steps(opt) == steps  # no bookkeeping either


@pytest.mark.parametrize("cls, key, value, match", [
    (fo.Adam, "betas", (1.0, 0.9), r"param_groups\[0\]: betas\[0\] must be a finite number in \[0, 1\), got 1\.0"),
    (fo.Adam, "lr", math.nan, r"param_groups\[0\]: lr must be a finite number in \[0, inf\), got nan"),
    (fo.Adagrad, "lr_decay", -1.0, r"param_groups\[0\]: lr_decay must be"),
    (fo.SGD, "lr", math.nan, r"param_groups\[0\]: lr must be"),
])
def test_the_compiled_training_paths_refuse_it_too_before_any_weight_changes(cls, key, value, match):
    model, x, y = _model(cls)
    before, steps = _weights(model), _steps(model.optimizer)
    model.optimizer.param_groups[0][key] = value
    with pytest.raises(ValueError, match=match):
        model.train_step(x[:16], y[:16])
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert all(np.array_equal(w, b) for w, b in zip(_weights(model), before))
    assert _steps(model.optimizer) == steps


def test_valid_changes_between_steps_take_effect_and_are_normalised():
    params, opt = _stepped(fo.Adam)
    opt.param_groups[0]["betas"] = [0.5, 0.6]
    opt.param_groups[0]["lr"] = np.float32(0.25)
    opt.step()
    assert opt.param_groups[0]["betas"] == (0.5, 0.6) and type(opt.param_groups[0]["lr"]) is float
    # the same bits as an optimizer given exactly these (normalised) values
    model_params, model_opt = _stepped(fo.Adam)
    model_opt.param_groups[0]["betas"], model_opt.param_groups[0]["lr"] = (0.5, 0.6), 0.25
    for p in model_params:
        p.grad = np.ones(p.shape)
    model_opt.step()
    assert all(np.array_equal(a.data, b.data) for a, b in zip(model_params, params))


def test_a_group_that_loses_a_hyper_parameter_or_is_replaced_is_checked():
    params, opt = _stepped(fo.SGD, lr=0.1)
    del opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match=r"param_groups\[0\] lacks the hyper-parameter 'lr'"):
        opt.step()
    opt.param_groups[0] = {**opt.defaults, "params": params, "momentum": math.nan}
    with pytest.raises(ValueError, match=r"param_groups\[0\]: momentum must be"):
        opt.step()
    opt.param_groups[0]["momentum"] = 0.5
    opt.step()
    assert "momentum_buffer" in opt.state[params[0]]


# ------------------------------------------------------------------ item 8: step(closure)


def test_step_closure_must_be_callable_and_is_called_once_as_in_torch():
    torch = pytest.importorskip("torch")
    params, opt = _stepped(fo.SGD, lr=0.1)
    before = [p.data.copy() for p in params]
    for bad in (5, "loss", 1.5):
        with pytest.raises(TypeError, match=r"closure must be a callable .* got " + repr(bad).replace(".", r"\.")):
            opt.step(bad)
    assert all(np.array_equal(p.data, b) for p, b in zip(params, before))
    calls = []

    def closure():
        calls.append(1)
        return 2.5

    assert opt.step(closure) == 2.5 and calls == [1]
    w = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([w], lr=0.1)
    tcalls = []

    def tclosure():
        tcalls.append(1)
        return 2.5

    assert topt.step(tclosure) == 2.5 and tcalls == [1]
    with pytest.raises(TypeError):
        topt.step(5)


# ------------------------------------------------------------------ item 8: malformed state dicts

MALFORMED = [
    (None, TypeError, r"state_dict must be a dict with 'state' and 'param_groups' .* got None"),
    ([1, 2], TypeError, r"state_dict must be a dict"),
    ({}, ValueError, r"state_dict lacks the key 'state'"),
    ({"state": {}}, ValueError, r"state_dict lacks the key 'param_groups'"),
    ({"state": {}, "param_groups": None}, TypeError, r"state_dict\['param_groups'\] must be a list of dicts"),
    ({"state": [], "param_groups": []}, TypeError, r"state_dict\['state'\] must be a dict"),
    ({"state": {}, "param_groups": [5]}, TypeError, r"state_dict\['param_groups'\]\[0\] must be a dict with a "
                                                    r"'params' entry, got 5"),
    ({"state": {}, "param_groups": [{"lr": 0.1}]}, TypeError, r"state_dict\['param_groups'\]\[0\] must be a dict"),
    ({"state": {}, "param_groups": [{"params": 3}]}, TypeError, r"state_dict\['param_groups'\]\[0\]\['params'\] "
                                                                r"must be a list"),
    ({"state": {}, "param_groups": [{"params": [[0], [1]]}]}, TypeError, r"unhashable"),
]


@pytest.mark.parametrize("bad, exc, match", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_optimizer_state_dicts_are_refused_naming_state_dict(bad, exc, match):
    params, opt = _stepped(fo.Adam)
    good = opt.state_dict()
    with pytest.raises(exc, match=match):
        opt.load_state_dict(bad)
    assert opt.state_dict()["param_groups"] == good["param_groups"]


def _with(sd, **changes):
    group = {**sd["param_groups"][0], **changes}
    return {"state": sd["state"], "param_groups": [group]}


def test_malformed_group_contents_and_state_entries_are_refused():
    params, opt = _stepped(fo.Adam)
    good = opt.state_dict()
    group = {k: v for k, v in good["param_groups"][0].items() if k != "lr"}
    cases = [
        ({"state": good["state"], "param_groups": [group]}, ValueError,
         r"state_dict\['param_groups'\]\[0\] lacks the hyper-parameter 'lr'"),
        (_with(good, betas=(1.0, 0.9)), ValueError, r"state_dict\['param_groups'\]\[0\]: betas\[0\] must be"),
        (_with(good, params=[0, 0]), ValueError, r"lists a parameter index twice"),
        ({"state": {0: 5}, "param_groups": good["param_groups"]}, TypeError,
         r"state_dict\['state'\]\[0\] must be a dict of state arrays, got 5"),
        ({"state": {0: {**good["state"][0], "exp_avg": np.array(["a"] * 12).reshape(3, 4)}},
          "param_groups": good["param_groups"]}, TypeError,
         r"state_dict\['state'\]\[0\]\['exp_avg'\] must be an array of real numbers"),
    ]
    for bad, exc, match in cases:
        with pytest.raises(exc, match=match):
            opt.load_state_dict(bad)
        assert opt.state_dict()["param_groups"] == good["param_groups"]


@pytest.mark.parametrize("step", [-1, -1.0, 1.5, math.nan, math.inf, 10 ** 30, 1e30, 2 ** 53 + 2, np.array(-3),
                                  np.array([1.0, 2.0]), "3", None, True])
def test_out_of_range_steps_in_a_loaded_state_are_refused(step):
    params, opt = _stepped(fo.Adam)
    sd = opt.state_dict()
    sd["state"][0]["step"] = step
    match = r"state_dict\['state'\]\[0\]" + (r" holds \['exp_avg', 'exp_avg_sq'\] but no 'step' count"
                                              if step is None else r"\['step'\] must be")
    with pytest.raises((ValueError, TypeError), match=match):
        opt.load_state_dict(sd)
    assert _steps(opt) == [1.0, 1.0]


def test_a_state_without_its_step_count_is_refused_but_sgds_has_none():
    params, opt = _stepped(fo.RMSprop)
    sd = opt.state_dict()
    del sd["state"][1]["step"]
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[1\] holds \['square_avg'\] but no 'step'"):
        opt.load_state_dict(sd)
    params, sgd = _stepped(fo.SGD, lr=0.1, momentum=0.9)
    sd = sgd.state_dict()
    assert all("step" not in st for st in sd["state"].values())
    sgd.load_state_dict(sd)
    sgd.step()


def test_valid_steps_load_in_every_numeric_form():
    torch = pytest.importorskip("torch")
    params, opt = _stepped(fo.Adam)
    for step in (0, 7, 7.0, np.int64(7), np.array(7.0, np.float32), np.array([7]), torch.tensor(7.0), 2 ** 24):
        sd = opt.state_dict()
        sd["state"][0]["step"] = step
        opt.load_state_dict(sd)
        assert float(opt.state[params[0]]["step"]) == float(np.asarray(step).item())
        assert opt.state[params[0]]["step"].dtype == np.float32 and opt.state[params[0]]["step"].shape == ()


def test_loaded_step_minus_one_no_longer_reaches_a_division_by_zero_in_train_step():
    model, x, y = _model(fo.Adam)
    sd = model.optimizer.state_dict()
    for st in sd["state"].values():
        st["step"] = -1
    with pytest.raises(ValueError, match=r"\['step'\] must be a whole number in \[0, 2\*\*53\], got -1"):
        model.optimizer.load_state_dict(sd)
    model.train_step(x[:16], y[:16])  # still the intact optimizer
    assert _steps(model.optimizer) == [2.0] * 4


# ------------------------------------------------------------------ item 10: flags missing from older state dicts

MISSING = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True), "nesterov"),
    ("SGD", dict(lr=0.1, maximize=True), "maximize"),
    ("Adam", dict(amsgrad=True), "amsgrad"),
    ("Adam", dict(maximize=True), "maximize"),
    ("Adam", dict(decoupled_weight_decay=True), "decoupled_weight_decay"),
    ("AdamW", dict(maximize=True), "maximize"),
    ("AdamW", dict(amsgrad=True), "decoupled_weight_decay"),
    ("RMSprop", dict(centered=True), "centered"),
    ("RMSprop", dict(momentum=0.5), "momentum"),
    ("RMSprop", dict(maximize=True), "maximize"),
    ("Adagrad", dict(maximize=True), "maximize"),
    ("Adadelta", dict(maximize=True), "maximize"),
    ("Adam", dict(amsgrad=True), "foreach"),
]


@pytest.mark.parametrize("name, config, missing", MISSING, ids=str)
def test_a_flag_missing_from_a_loaded_group_gets_torchs_default_not_the_current_value(name, config, missing):
    torch = pytest.importorskip("torch")
    params = _params()
    ours = getattr(fo, name)(params, **config)
    tensors = [torch.zeros(p.shape, dtype=torch.float64, requires_grad=True) for p in params]
    theirs = getattr(torch.optim, name)(tensors, **config)
    saved = theirs.state_dict()  # a fresh torch optimizer with the same settings: same groups as ours
    del saved["param_groups"][0][missing]
    ours.load_state_dict(saved)
    theirs.load_state_dict(saved)
    mine, torchs = ours.param_groups[0], theirs.param_groups[0]
    for key, value in mine.items():
        if key != "params":
            assert torchs[key] == value, (key, value, torchs[key])
    assert set(torchs) - set(mine) <= set(type(ours)._torch_flags)  # torch's implementation flags only
    if missing not in type(ours)._torch_flags:
        assert mine[missing] == torchs[missing]
    ours.step()  # and it steps


def test_a_loaded_group_replaces_the_current_one_as_in_torch():
    torch = pytest.importorskip("torch")
    params = _params()
    ours = fo.SGD(params, lr=0.1)
    tensors = [torch.zeros(p.shape, dtype=torch.float64, requires_grad=True) for p in params]
    theirs = torch.optim.SGD(tensors, lr=0.1)
    saved = theirs.state_dict()
    for opt in (ours, theirs):
        opt.param_groups[0]["initial_lr"] = 0.1  # e.g. set by a scheduler built before the load
        opt.load_state_dict(saved)
    assert "initial_lr" not in ours.param_groups[0] and "initial_lr" not in theirs.param_groups[0]
    saved["param_groups"][0]["initial_lr"] = 0.3  # an extra key is kept
    for opt in (ours, theirs):
        opt.load_state_dict(saved)
    assert ours.param_groups[0]["initial_lr"] == theirs.param_groups[0]["initial_lr"] == 0.3


# ------------------------------------------------------------------ item 8: lr schedulers' load_state_dict

SCHED_BAD = [
    (None, TypeError, r"state_dict must be a dict"),
    ({"last_epoch": "3"}, TypeError, r"state_dict\['last_epoch'\] must be an int"),
    ({"last_epoch": -5}, ValueError, r"state_dict\['last_epoch'\] must be in \[-1, inf\]"),
    ({"gamma": math.nan}, ValueError, r"state_dict\['gamma'\] must be a finite number"),
    ({"step_size": 0}, ValueError, r"state_dict\['step_size'\] must be in \[1, inf\]"),
    ({"base_lrs": [0.1, 0.2]}, ValueError, r"state_dict\['base_lrs'\] must hold one lr per param group"),
    ({"base_lrs": [math.nan]}, ValueError, r"state_dict\['base_lrs'\]\[0\] must be a finite number"),
    ({"step": 3}, ValueError, r"state_dict has an entry 'step' that .* StepLR"),
    ({1: 2}, TypeError, r"state_dict's keys must be attribute names"),
]


@pytest.mark.parametrize("bad, exc, match", SCHED_BAD, ids=range(len(SCHED_BAD)))
def test_malformed_scheduler_state_dicts_are_refused_and_change_nothing(bad, exc, match):
    opt = fo.SGD(_params(), lr=0.1)
    sched = fls.StepLR(opt, step_size=2)
    good = sched.state_dict()
    full = bad if not isinstance(bad, dict) else {**good, **bad}
    with pytest.raises(exc, match=match):
        sched.load_state_dict(full)
    assert sched.state_dict() == good
    sched.step()


def test_scheduler_state_dicts_of_every_class_still_load_and_plateau_checks_its_fields():
    opt = fo.SGD(_params(), lr=0.1)
    for sched in (fls.StepLR(opt, 2), fls.MultiStepLR(opt, [1, 3]), fls.ExponentialLR(opt, 0.9),
                  fls.CosineAnnealingLR(opt, 4), fls.LinearLR(opt), fls.ConstantLR(opt), fls.PolynomialLR(opt),
                  fls.ReduceLROnPlateau(opt)):
        sd = sched.state_dict()
        sched.load_state_dict(sd)
        assert sched.state_dict() == sd
    plateau = fls.ReduceLROnPlateau(opt)
    good = plateau.state_dict()
    for key, value, exc in [("factor", 1.5, ValueError), ("patience", -1, ValueError), ("mode", "avg", ValueError),
                            ("min_lrs", [math.nan], ValueError), ("cooldown", 0.5, TypeError),
                            ("best", "x", TypeError)]:
        with pytest.raises(exc, match=rf"state_dict\['{key}'\]"):
            plateau.load_state_dict({**good, key: value})
        assert plateau.state_dict() == good
