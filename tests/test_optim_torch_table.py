"""Every optimizer x flag combination against torch.optim 2.13, after every step (docs/numerics.md section 1).

A small MLP's parameters (one arena) get the same random gradients in fastnn and torch, with a scale
that varies by step (so that second moments sometimes fall); parameters, and at the end the whole
state_dict, must agree: float64 to rtol 1e-10, float32 to rtol 1e-5 / atol 1e-6. The tables are
full products of each optimizer's flags, so a branch missed in a kernel shows up here.
"""

import itertools

import numpy as np
import pytest

import fastnn.optim as fo
from fastnn.parameter import parameters_from_arrays

torch = pytest.importorskip("torch")

DTYPES = [np.float32, np.float64]
SHAPES = [(7, 13), (13,), (13, 5), (5,)]  # a small MLP: W0, b0, W1, b1
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
STEPS = 25


def _table(name, fixed, **axes):
    keys = list(axes)
    return [(name, {**fixed, **dict(zip(keys, values))}) for values in itertools.product(*axes.values())]


CONFIGS = (
    [c for c in _table("SGD", dict(lr=0.05), momentum=[0.0, 0.9], dampening=[0.0, 0.1], nesterov=[False, True],
                       weight_decay=[0.0, 0.05], maximize=[False, True])
     if not c[1]["nesterov"] or (c[1]["momentum"] > 0 and c[1]["dampening"] == 0)]
    + _table("Adam", dict(lr=0.02), amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True],
             decoupled_weight_decay=[False, True])
    + _table("Adam", dict(lr=0.02, betas=(0.3, 0.5)), amsgrad=[False, True])  # lerp's other branch (1 - b1 >= 0.5)
    + _table("AdamW", dict(lr=0.02), amsgrad=[False, True], maximize=[False, True], weight_decay=[0.01, 0.1, 0.0])
    + _table("RMSprop", dict(lr=0.01), centered=[False, True], momentum=[0.0, 0.9], weight_decay=[0.0, 0.1],
             maximize=[False, True])
    + _table("RMSprop", dict(lr=0.01, alpha=0.3), centered=[False, True], momentum=[0.0, 0.5])
    + _table("Adagrad", dict(lr=0.1), lr_decay=[0.0, 0.1], initial_accumulator_value=[0.0, 0.1],
             weight_decay=[0.0, 0.1], maximize=[False, True])
    + _table("Adagrad", dict(lr=0.1), eps=[1e-3])
    + _table("Adadelta", {}, rho=[0.9, 0.5], weight_decay=[0.0, 0.1], maximize=[False, True], lr=[1.0, 0.3])
    + _table("Adadelta", dict(rho=1.0, eps=1e-4), maximize=[False])  # rho == 1: the averages never move
)
# one per optimizer (and one with momentum/centered state), for the feature tests below
SOME_CONFIGS = [
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.02, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.02, maximize=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.1, weight_decay=0.1)),
    ("Adadelta", dict(lr=0.5, weight_decay=0.1)),
]
STEP_COUNTED = {"Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta"}  # SGD keeps no step


def _init_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def _pair(dtype, seed=0):
    """The same initial values as fastnn Parameters (one arena) and as torch tensors."""
    arrays = [a.astype(dtype) for a in _init_arrays(seed)]
    return parameters_from_arrays(arrays, dtype=dtype), [torch.tensor(a, requires_grad=True) for a in arrays]


def _set_grads(rng, params, tensors, step, skip=None):
    """Random grads (scale varies by step so that v sometimes falls); skip(step, i) -> grad None."""
    scale = 10.0 ** rng.uniform(-1.5, 1.0)
    for i, (p, t) in enumerate(zip(params, tensors)):
        g = (rng.standard_normal(p.shape) * scale).astype(p.dtype)
        if skip is not None and skip(step, i):
            p.grad, t.grad = None, None
        else:
            p.grad, t.grad = g, torch.tensor(g)


def _assert_params_match(params, tensors, dtype, msg=""):
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.data, t.detach().numpy(), **TOL[dtype], err_msg=f"{p.name} {msg}")


def _assert_state_dicts_match(ours, theirs, dtype):
    """Same parameter indices, state keys in the same order, same values; param groups equal to torch's."""
    assert list(ours["state"]) == sorted(theirs["state"])
    for i, t_state in theirs["state"].items():
        o_state = ours["state"][i]
        assert list(o_state) == list(t_state)
        for key, t_value in t_state.items():
            o_value = o_state[key]
            if key == "step":
                assert o_value.shape == () and o_value.dtype == np.float32 and float(o_value) == float(t_value)
            else:
                assert o_value.dtype == dtype and o_value.shape == tuple(t_value.shape)
                np.testing.assert_allclose(o_value, t_value.numpy(), **TOL[dtype], err_msg=f"state[{i}][{key}]")
    assert ours["param_groups"] == theirs["param_groups"]  # every key, including torch's foreach/fused/... flags


def _run_against_torch(name, config, dtype, steps=STEPS, skip=None, before_step=None, groups=None, seed=1):
    """Step fastnn and torch side by side from the same start and grads; compare after every step."""
    params, tensors = _pair(dtype)
    ours_in, theirs_in = params, tensors
    if groups is not None:  # groups: list of (indices, overrides)
        ours_in = [{"params": [params[i] for i in idx], **kw} for idx, kw in groups]
        theirs_in = [{"params": [tensors[i] for i in idx], **kw} for idx, kw in groups]
    ours, theirs = getattr(fo, name)(ours_in, **config), getattr(torch.optim, name)(theirs_in, **config)
    _assert_state_dicts_match(ours.state_dict(), theirs.state_dict(), dtype)  # Adagrad: state before step 1
    rng = np.random.default_rng(seed)
    for step in range(steps):
        if before_step is not None:
            before_step(step, ours, theirs)
        _set_grads(rng, params, tensors, step, skip)
        ours.step()
        theirs.step()
        _assert_params_match(params, tensors, dtype, f"after step {step + 1}")
    _assert_state_dicts_match(ours.state_dict(), theirs.state_dict(), dtype)
    return ours, theirs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", CONFIGS, ids=str)
def test_every_flag_combination_matches_torch_after_every_step(dtype, name, config):
    _run_against_torch(name, config, dtype)


def test_the_tables_cover_every_flag():
    """Each boolean flag is on and off, each numeric knob zero and non-zero, for its optimizer."""
    for name, keys in {"SGD": ["nesterov", "maximize", "momentum", "dampening", "weight_decay"],
                       "Adam": ["amsgrad", "maximize", "decoupled_weight_decay", "weight_decay"],
                       "AdamW": ["amsgrad", "maximize", "weight_decay"],
                       "RMSprop": ["centered", "maximize", "momentum", "weight_decay"],
                       "Adagrad": ["maximize", "lr_decay", "initial_accumulator_value", "weight_decay"],
                       "Adadelta": ["maximize", "weight_decay"]}.items():
        for key in keys:
            values = {bool(c[key]) for n, c in CONFIGS if n == name and key in c}
            assert values == {False, True}, (name, key)
    assert {c.get("rho") for n, c in CONFIGS if n == "Adadelta"} == {0.9, 0.5, 1.0}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_params_without_grad_are_skipped_like_torch(dtype, name, config):
    # b0 has no grad for the first 5 steps (so its step count lags); b1 misses every third step.
    def skip(step, i):
        return (i == 1 and step < 5) or (i == 3 and step % 3 == 0)

    snapshots = {}

    def before_step(step, ours, theirs):
        b0, b1 = ours.param_groups[0]["params"][1], ours.param_groups[0]["params"][3]
        if name != "Adagrad":  # Adagrad's state exists from the constructor on
            assert (b0 in ours.state) == (step > 5)
        if step % 3 == 0:  # b1 is skipped on this step
            snapshots.clear()
            snapshots.update({k: np.array(v) for k, v in ours.state.get(b1, {}).items()})
        if step % 3 == 1 and step > 1:  # ... which left its state (and step count) as it was
            assert list(ours.state[b1]) == list(snapshots)
            for key, value in ours.state[b1].items():
                np.testing.assert_array_equal(value, snapshots[key], err_msg=key)

    ours, _ = _run_against_torch(name, config, dtype, skip=skip, before_step=before_step)
    if name in STEP_COUNTED:
        steps = [float(ours.state[p]["step"]) for p in ours.param_groups[0]["params"]]
        assert steps == [25, 20, 25, 16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_two_param_groups_no_decay_on_biases_like_torch(dtype, name, config):
    groups = [([0, 2], dict(weight_decay=0.2)), ([1, 3], dict(lr=0.001, weight_decay=0.0))]
    ours, _ = _run_against_torch(name, config, dtype, groups=groups)
    assert [(g["lr"], g["weight_decay"]) for g in ours.param_groups] == [(config.get("lr", 1.0), 0.2), (0.001, 0.0)]


CHANGES = {  # applied to group 0 before steps 6, 11 and 16
    "SGD": [dict(lr=0.01), dict(momentum=0.5, weight_decay=0.1), dict(nesterov=False, dampening=0.3)],
    "Adam": [dict(lr=0.001), dict(betas=(0.8, 0.99), eps=1e-3), dict(weight_decay=0.2, maximize=True)],
    "AdamW": [dict(lr=0.05, weight_decay=0.3), dict(betas=(0.5, 0.9)), dict(maximize=False)],
    "RMSprop": [dict(lr=0.001), dict(alpha=0.9, eps=1e-4), dict(weight_decay=0.0, maximize=True)],
    "Adagrad": [dict(lr=0.05), dict(lr_decay=0.5, eps=1e-3), dict(weight_decay=0.0, maximize=True)],
    "Adadelta": [dict(lr=2.0), dict(rho=0.5, eps=1e-3), dict(weight_decay=0.0, maximize=True)],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_hyperparameters_changed_through_param_groups(dtype, name, config):
    def before_step(step, ours, theirs):
        if step in (5, 10, 15):
            change = CHANGES[name][step // 5 - 1]
            for opt in (ours, theirs):
                opt.param_groups[0].update(change)

    _run_against_torch(name, config, dtype, before_step=before_step)


@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_add_param_group_after_steps_like_torch(name, config):
    """A later group grows the state buffers; existing state survives and keeps stepping like torch."""
    params, tensors = _pair(np.float64)
    extra, extra_t = _pair(np.float64, seed=5)
    ours, theirs = getattr(fo, name)(params, **config), getattr(torch.optim, name)(tensors, **config)
    rng = np.random.default_rng(4)
    for step in range(12):
        if step == 6:
            ours.add_param_group({"params": extra, "lr": 0.003})
            theirs.add_param_group({"params": extra_t, "lr": 0.003})
            _assert_state_dicts_match(ours.state_dict(), theirs.state_dict(), np.float64)
        _set_grads(rng, params + extra, tensors + extra_t, step, skip=lambda s, i: s < 8 and i >= 4)
        ours.step()
        theirs.step()
        _assert_params_match(params + extra, tensors + extra_t, np.float64, f"after step {step + 1}")
    _assert_state_dicts_match(ours.state_dict(), theirs.state_dict(), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_torch_state_dict_loads_and_continues_like_torch(dtype, name, config):
    params, tensors = _pair(dtype)
    theirs = getattr(torch.optim, name)(tensors, **config)
    rng = np.random.default_rng(3)
    for step in range(5):
        _set_grads(rng, params, tensors, step)
        theirs.step()
    for p, t in zip(params, tensors):
        p.data[...] = t.detach().numpy()
    ours = getattr(fo, name)(params)
    ours.load_state_dict(theirs.state_dict())
    _assert_state_dicts_match(ours.state_dict(), theirs.state_dict(), dtype)
    for step in range(5, 15):
        _set_grads(rng, params, tensors, step)
        ours.step()
        theirs.step()
        _assert_params_match(params, tensors, dtype, f"after step {step + 1}")


@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_our_state_dict_loads_into_torch_and_continues_like_ours(name, config):
    """fastnn -> torch: the arrays as tensors, the groups as they are."""
    params, tensors = _pair(np.float64)
    ours = getattr(fo, name)(params, **config)
    rng = np.random.default_rng(6)
    for step in range(5):
        _set_grads(rng, params, tensors, step)
        ours.step()
    for p, t in zip(params, tensors):
        t.data[...] = torch.tensor(p.data)
    saved = ours.state_dict()
    saved["state"] = {i: {k: torch.tensor(v) for k, v in st.items()} for i, st in saved["state"].items()}
    theirs = getattr(torch.optim, name)(tensors)
    theirs.load_state_dict(saved)
    for step in range(5, 15):
        _set_grads(rng, params, tensors, step)
        ours.step()
        theirs.step()
        _assert_params_match(params, tensors, np.float64, f"after step {step + 1}")
    _assert_state_dicts_match(ours.state_dict(), theirs.state_dict(), np.float64)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta"])
def test_defaults_are_torchs(name):
    params, tensors = _pair(np.float32)
    ours, theirs = getattr(fo, name)(params), getattr(torch.optim, name)(tensors)
    assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]
