"""Optimizers: fused kernels vs their NumPy twins, and SGD/Adam/AdamW vs torch.optim (NUMERICS 1)."""

import itertools

import numpy as np
import pytest

import fastnn.optim.adam as adam_module
import fastnn.optim.sgd as sgd_module
from fastnn._kernels import _optim as kernels
from fastnn._reference import optim as reference
from fastnn.optim import SGD, Adam, AdamW, Optimizer
from fastnn.parameter import Arena, parameters_from_arrays

DTYPES = [np.float32, np.float64]
SIZES = [1, 7, 13, 33, max(kernels.THRESHOLD, kernels.SGD_THRESHOLD) + 7]  # the last one takes the prange path
SHAPES = [(7, 13), (13,), (13, 5), (5,)]  # a small MLP: W0, b0, W1, b1
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}


# ---------------------------------------------------------------------------------------------------------------------
# kernels vs NumPy twins


def _randn(rng, n, dtype):
    return rng.standard_normal(n).astype(dtype)


SGD_FLAGS = [  # momentum, dampening, weight_decay, nesterov, maximize
    (0.0, 0.0, 0.0, False, False),
    (0.0, 0.0, 0.1, False, True),
    (0.9, 0.0, 0.0, False, False),
    (0.9, 0.1, 0.05, False, True),
    (0.9, 0.0, 0.05, True, False),
    (0.5, 0.0, 0.0, True, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("momentum, dampening, weight_decay, nesterov, maximize", SGD_FLAGS)
def test_sgd_kernel_matches_reference(dtype, n, momentum, dampening, weight_decay, nesterov, maximize):
    rng = np.random.default_rng(n)
    param0 = _randn(rng, n, dtype)
    grads = [_randn(rng, n, dtype) for _ in range(3)]
    results = []
    for impl in (kernels, reference):
        param = param0.copy()
        buf = np.full(n, np.nan, dtype) if momentum else np.empty(0, dtype)  # first step must overwrite it
        for step, grad in enumerate(grads):
            impl.sgd_step(param, grad, buf, 0.1, momentum, dampening, weight_decay, nesterov, maximize, step == 0)
        results.append((param, buf))
    (p_k, b_k), (p_r, b_r) = results
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(p_k, p_r, **tol)
    np.testing.assert_allclose(b_k, b_r, **tol)
    assert not np.array_equal(p_k, param0)


ADAM_FLAGS = list(itertools.product([0.0, 0.1], [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("weight_decay, decoupled, amsgrad, maximize", ADAM_FLAGS)
def test_adam_kernel_matches_reference(dtype, n, weight_decay, decoupled, amsgrad, maximize):
    rng = np.random.default_rng(n)
    param0 = _randn(rng, n, dtype)
    grads = [_randn(rng, n, dtype) * scale for scale in (1.0, 0.1, 3.0, 0.01)]  # v falls: amsgrad matters
    beta1, beta2 = 0.9, 0.99
    results = []
    for impl in (kernels, reference):
        param = param0.copy()
        m, v = np.zeros(n, dtype), np.zeros(n, dtype)
        vmax = np.zeros(n, dtype) if amsgrad else np.empty(0, dtype)
        for t, grad in enumerate(grads, start=1):
            impl.adam_step(param, grad, m, v, vmax, 0.01, beta1, beta2, 1e-8, weight_decay, decoupled, amsgrad,
                           maximize, 1 - beta1**t, 1 - beta2**t)
        results.append((param, m, v, vmax))
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_reject_buffers_of_the_wrong_length(dtype):
    p, short = np.zeros(7, dtype), np.zeros(6, dtype)
    with pytest.raises(ValueError, match=r"grad must have 7 elements like param, got 6"):
        kernels.sgd_step(p, short, np.empty(0, dtype), 0.1, 0.0, 0.0, 0.0, False, False, True)
    with pytest.raises(ValueError, match=r"momentum_buffer must have 7 elements like param, got 0"):
        kernels.sgd_step(p, p.copy(), np.empty(0, dtype), 0.1, 0.9, 0.0, 0.0, False, False, True)
    with pytest.raises(ValueError, match=r"exp_avg_sq must have 7 elements like param, got 6"):
        kernels.adam_step(p, p.copy(), p.copy(), short, short, 0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False,
                          0.1, 0.001)
    with pytest.raises(ValueError, match=r"max_exp_avg_sq must have 7 elements like param, got 0"):
        kernels.adam_step(p, p.copy(), p.copy(), p.copy(), np.empty(0, dtype), 0.1, 0.9, 0.999, 1e-8, 0.0, False,
                          True, False, 0.1, 0.001)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_give_the_same_bits_on_one_and_two_threads(dtype):
    from fastnn._kernels import _runtime

    n = 2 * max(kernels.THRESHOLD, kernels.SGD_THRESHOLD) + 3
    rng = np.random.default_rng(0)
    param0, grad = _randn(rng, n, dtype), _randn(rng, n, dtype)
    saved = _runtime.get_omp_threads()
    results = []
    try:
        for threads in (1, 2):
            _runtime.set_omp_threads(threads)
            p, m, v, vmax, buf = param0.copy(), *(np.zeros(n, dtype) for _ in range(4))
            kernels.adam_step(p, grad, m, v, vmax, 0.01, 0.9, 0.999, 1e-8, 0.1, True, True, True, 0.1, 0.001)
            kernels.sgd_step(p, grad, buf, 0.1, 0.9, 0.0, 0.01, True, False, True)
            results.append((p, m, v, vmax, buf))
    finally:
        _runtime.set_omp_threads(saved)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# ---------------------------------------------------------------------------------------------------------------------
# torch oracle

SGD_CONFIGS = [
    dict(lr=0.05, momentum=mu, dampening=damp, nesterov=nest, weight_decay=wd, maximize=mx)
    for mu, damp, nest, wd, mx in itertools.product([0.0, 0.9], [0.0, 0.1], [False, True], [0.0, 0.05],
                                                     [False, True])
    if not nest or (mu > 0 and damp == 0)
]
ADAM_CONFIGS = [
    ("Adam", dict(lr=0.02, amsgrad=ams, weight_decay=wd, maximize=mx, decoupled_weight_decay=dec))
    for ams, wd, mx, dec in itertools.product([False, True], [0.0, 0.1], [False, True], [False, True])
] + [
    ("AdamW", dict(lr=0.02, amsgrad=ams, maximize=mx, **extra))
    for ams, mx, extra in itertools.product([False, True], [False, True], [{}, dict(weight_decay=0.1)])
]
OURS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def _init_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def _pair(dtype, seed=0):
    """The same initial values as fastnn Parameters (one arena) and as torch tensors."""
    torch = pytest.importorskip("torch")
    arrays = [a.astype(dtype) for a in _init_arrays(seed)]
    return parameters_from_arrays(arrays, dtype=dtype), [torch.tensor(a, requires_grad=True) for a in arrays]


def _set_grads(rng, params, tensors, step, skip=None):
    """Random grads (scale varies by step so that v sometimes falls); skip(step, i) -> grad None."""
    import torch

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
    assert list(ours["state"]) == sorted(theirs["state"])
    for i, t_state in theirs["state"].items():
        o_state = ours["state"][i]
        assert list(o_state) == list(t_state)
        for key, t_value in t_state.items():
            o_value = o_state[key]
            if key == "step":
                assert o_value.shape == () and o_value.dtype == np.float32 and float(o_value) == float(t_value)
            else:
                assert o_value.dtype == dtype
                np.testing.assert_allclose(o_value, t_value.numpy(), **TOL[dtype], err_msg=f"state[{i}][{key}]")
    assert len(ours["param_groups"]) == len(theirs["param_groups"])
    for o_group, t_group in zip(ours["param_groups"], theirs["param_groups"]):
        assert set(o_group) <= set(t_group)  # torch also has foreach, fused, ... flags
        assert {k: t_group[k] for k in o_group} == o_group


def _run_against_torch(name, config, dtype, steps=20, skip=None, before_step=None, groups=None):
    """Step fastnn and torch side by side from the same start and grads; compare after every step."""
    torch = pytest.importorskip("torch")
    params, tensors = _pair(dtype)
    ours_in, theirs_in = params, tensors
    if groups is not None:  # groups: list of (indices, overrides)
        ours_in = [{"params": [params[i] for i in idx], **kw} for idx, kw in groups]
        theirs_in = [{"params": [tensors[i] for i in idx], **kw} for idx, kw in groups]
    ours, theirs = OURS[name](ours_in, **config), getattr(torch.optim, name)(theirs_in, **config)
    rng = np.random.default_rng(1)
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
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=str)
def test_sgd_matches_torch(dtype, config):
    _run_against_torch("SGD", config, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", ADAM_CONFIGS, ids=str)
def test_adam_matches_torch(dtype, name, config):
    _run_against_torch(name, config, dtype)


SOME_CONFIGS = [
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.02, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.02, maximize=True)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_params_without_grad_are_skipped_like_torch(dtype, name, config):
    # b0 has no grad for the first 5 steps (so its step count lags); b1 misses every third step.
    def skip(step, i):
        return (i == 1 and step < 5) or (i == 3 and step % 3 == 0)

    def before_step(step, ours, theirs):
        b0 = ours.param_groups[0]["params"][1]
        assert (b0 in ours.state) == (step > 5)

    ours, _ = _run_against_torch(name, config, dtype, skip=skip, before_step=before_step)
    if name != "SGD":
        steps = [float(ours.state[p]["step"]) for p in ours.param_groups[0]["params"]]
        assert steps == [20, 15, 20, 13]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_two_param_groups_like_torch(dtype, name, config):
    groups = [([0, 1], {}), ([2, 3], dict(lr=0.001, weight_decay=0.2))]
    ours, _ = _run_against_torch(name, config, dtype, groups=groups)
    assert [g["lr"] for g in ours.param_groups] == [config["lr"], 0.001]


CHANGES = {
    "SGD": [dict(lr=0.01), dict(momentum=0.5, weight_decay=0.1), dict(nesterov=False, dampening=0.3)],
    "Adam": [dict(lr=0.001), dict(betas=(0.8, 0.99), eps=1e-3), dict(weight_decay=0.2, maximize=True)],
    "AdamW": [dict(lr=0.05, weight_decay=0.3), dict(betas=(0.5, 0.9)), dict(maximize=False)],
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


def _grads(n_steps, seed=2):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) * 10.0 ** rng.uniform(-1, 1) for s in SHAPES] for _ in range(n_steps)]


def _steps(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_state_dict_round_trip_continues_like_uninterrupted(dtype, name, config):
    grads = _grads(20)
    params = parameters_from_arrays(_init_arrays(), dtype=dtype)
    opt = OURS[name](params, **config)
    _steps(opt, params, grads[:10])
    saved = opt.state_dict()
    saved_params = [p.data.copy() for p in params]
    _steps(opt, params, grads[10:])  # the uninterrupted run

    fresh = parameters_from_arrays(saved_params, dtype=dtype)
    resumed = OURS[name](fresh, lr=123.0)  # the loaded groups override these hyper-parameters
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == config["lr"]
    _steps(resumed, fresh, grads[10:])

    for p, q in zip(params, fresh):
        np.testing.assert_array_equal(p.data, q.data)
    final, final_resumed = opt.state_dict(), resumed.state_dict()
    for i, st in final["state"].items():
        for key, value in st.items():
            np.testing.assert_array_equal(value, final_resumed["state"][i][key])
    # state_dict() is a snapshot: the 10 later steps did not change it
    for i, st in saved["state"].items():
        for key, value in st.items():
            assert not np.array_equal(value, final["state"][i][key]), (i, key)


@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_torch_state_dict_loads_and_continues_like_torch(name, config):
    torch = pytest.importorskip("torch")
    params, tensors = _pair(np.float64)
    theirs = getattr(torch.optim, name)(tensors, **config)
    rng = np.random.default_rng(3)
    for step in range(5):
        _set_grads(rng, params, tensors, step)
        theirs.step()
    for p, t in zip(params, tensors):
        p.data[...] = t.detach().numpy()
    ours = OURS[name](params)
    ours.load_state_dict(theirs.state_dict())
    for step in range(5, 15):
        _set_grads(rng, params, tensors, step)
        ours.step()
        theirs.step()
        _assert_params_match(params, tensors, np.float64, f"after step {step + 1}")


@pytest.mark.parametrize("name, config", SOME_CONFIGS, ids=str)
def test_add_param_group_after_steps_like_torch(name, config):
    """A later group grows the state buffers; existing state survives and keeps stepping like torch."""
    torch = pytest.importorskip("torch")
    params, tensors = _pair(np.float64)
    extra, extra_t = _pair(np.float64, seed=5)
    ours, theirs = OURS[name](params, **config), getattr(torch.optim, name)(tensors, **config)
    rng = np.random.default_rng(4)
    for step in range(12):
        if step == 6:
            ours.add_param_group({"params": extra, "lr": 0.003})
            theirs.add_param_group({"params": extra_t, "lr": 0.003})
        _set_grads(rng, params + extra, tensors + extra_t, step, skip=lambda s, i: s < 6 and i >= 4)
        ours.step()
        theirs.step()
        _assert_params_match(params + extra, tensors + extra_t, np.float64, f"after step {step + 1}")
    _assert_state_dicts_match(ours.state_dict(), theirs.state_dict(), np.float64)


# ---------------------------------------------------------------------------------------------------------------------
# arena layout and fusion


def _count_calls(monkeypatch, module, name):
    calls = []
    kernel = getattr(module, name)

    def counting(param, *args):
        calls.append(param.size)
        kernel(param, *args)

    monkeypatch.setattr(module, name, counting)
    return calls


@pytest.mark.parametrize("make, module, kernel", [
    (lambda ps: Adam(ps), adam_module, "adam_step"),
    (lambda ps: SGD(ps, momentum=0.9), sgd_module, "sgd_step"),
    (lambda ps: SGD(ps), sgd_module, "sgd_step"),
])
def test_one_kernel_call_per_contiguous_run(monkeypatch, make, module, kernel):
    calls = _count_calls(monkeypatch, module, kernel)
    sizes = [int(np.prod(s)) for s in SHAPES]
    params = parameters_from_arrays(_init_arrays(), dtype=np.float32)
    opt = make(params)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    opt.step()
    assert calls == [sum(sizes)] * 2  # the whole model, one call per step
    calls.clear()
    params[1].grad = None  # a hole splits the run
    opt.step()
    assert calls == [sizes[0], sum(sizes[2:])]

    calls.clear()  # parameters listed out of arena order: runs follow the listing
    reordered = [params[2], params[3], params[0], params[1]]
    opt = make(reordered)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    assert calls == [sum(sizes[2:]), sum(sizes[:2])]

    calls.clear()  # two arenas (e.g. two models) in one group: one run each
    other = parameters_from_arrays(_init_arrays(1), dtype=np.float32)
    opt = make(params + other)
    for p in other:
        p.grad = np.ones(p.shape)
    opt.step()
    assert calls == [sum(sizes)] * 2


def test_adam_runs_split_where_step_counts_differ(monkeypatch):
    calls = _count_calls(monkeypatch, adam_module, "adam_step")
    params = parameters_from_arrays(_init_arrays(), dtype=np.float64)
    opt = Adam(params)
    params[0].grad = np.ones(SHAPES[0])
    opt.step()  # only W0: step 1
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()  # W0 at step 2, the rest at step 1
    opt.step()
    assert calls == [91, 91, 13 + 65 + 5, 91, 13 + 65 + 5]
    assert [float(opt.state[p]["step"]) for p in params] == [3, 2, 2, 2]


@pytest.mark.parametrize("dtype", DTYPES)
def test_state_tensors_are_views_of_one_flat_buffer_per_kind(dtype):
    params = parameters_from_arrays(_init_arrays(), dtype=dtype)
    opt = Adam(params, amsgrad=True)
    assert len(opt.state) == 0 and opt.state_dict()["state"] == {}  # state is created lazily
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    for kind in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        views = [opt.state[p][kind] for p in params]
        assert all(v.shape == p.shape and v.dtype == dtype for v, p in zip(views, params))
        base = views[0].base
        assert all(v.base is base for v in views) and base.ndim == 1 and base.size == sum(p.size for p in params)
        addresses = [v.__array_interface__["data"][0] for v in views]
        assert addresses == [addresses[0] + p.offset * base.itemsize for p in params]  # parallel to the arena
    steps = [opt.state[p]["step"] for p in params]
    assert all(s.shape == () and s.dtype == np.float32 and s == 1 for s in steps)


def test_mixed_dtypes_step_each_arena_like_its_own_optimizer():
    p32 = parameters_from_arrays(_init_arrays(0), dtype=np.float32)
    p64 = parameters_from_arrays(_init_arrays(1), dtype=np.float64)
    q32 = parameters_from_arrays(_init_arrays(0), dtype=np.float32)
    q64 = parameters_from_arrays(_init_arrays(1), dtype=np.float64)
    mixed, alone32, alone64 = Adam(p32 + p64, lr=0.1), Adam(q32, lr=0.1), Adam(q64, lr=0.1)
    for step_grads in _grads(5):
        for ps in (p32, p64, q32, q64):
            for p, g in zip(ps, step_grads):
                p.grad = g
        for opt in (mixed, alone32, alone64):
            opt.step()
    for p, q in zip(p32 + p64, q32 + q64):
        np.testing.assert_array_equal(p.data, q.data)
        np.testing.assert_array_equal(mixed.state[p]["exp_avg"], alone32.state.get(q, alone64.state.get(q))["exp_avg"])


def test_amsgrad_switched_on_later_starts_its_max_buffer_at_zero():
    # torch raises KeyError here; fastnn creates the missing max_exp_avg_sq lazily, like any state.
    params = parameters_from_arrays(_init_arrays(), dtype=np.float64)
    opt = Adam(params, lr=0.01)
    _steps(opt, params, _grads(3))
    assert all("max_exp_avg_sq" not in opt.state[p] for p in params)
    opt.param_groups[0]["amsgrad"] = True
    _steps(opt, params, _grads(1, seed=7))
    for p in params:  # max(0, v) = v on its first amsgrad step
        np.testing.assert_array_equal(opt.state[p]["max_exp_avg_sq"], opt.state[p]["exp_avg_sq"])
        assert float(opt.state[p]["step"]) == 4


def test_state_created_lazily_and_sgd_without_momentum_keeps_none():
    params = parameters_from_arrays(_init_arrays(), dtype=np.float64)
    sgd = SGD(params, lr=0.1)
    for p in params:
        p.grad = np.ones(p.shape)
    sgd.step()
    assert sgd.state_dict()["state"] == {}
    sgd = SGD(params, lr=0.1, momentum=0.9)
    grads = [p.grad.copy() for p in params]
    sgd.step()
    for p, g in zip(params, grads):  # first buffer = the gradient itself, not dampened
        np.testing.assert_array_equal(sgd.state[p]["momentum_buffer"], g)
    assert list(sgd.state_dict()["state"][0]) == ["momentum_buffer"]


# ---------------------------------------------------------------------------------------------------------------------
# small API surface


def test_zero_grad_semantics():
    params = parameters_from_arrays(_init_arrays(), dtype=np.float32)
    opt = SGD(params, lr=0.1)
    for p in params[:3]:
        p.grad = np.ones(p.shape)
    opt.zero_grad(set_to_none=False)  # existing grads become zeros, a None grad stays None
    assert [p.grad is None for p in params] == [False, False, False, True]
    assert all(not p.grad.any() for p in params[:3])
    before = [p.data.copy() for p in params]
    opt.step()  # zero grads, no decay: nothing moves
    assert all(np.array_equal(p.data, b) for p, b in zip(params, before))
    opt.zero_grad()  # default: set_to_none=True
    assert all(p.grad is None for p in params)
    opt.step()  # no grads at all: a no-op
    assert all(np.array_equal(p.data, b) for p, b in zip(params, before))


def test_zero_grad_still_decays_and_step_returns_closure_value():
    params = parameters_from_arrays([np.ones(3)], dtype=np.float64)
    opt = SGD(params, lr=0.1, weight_decay=0.5)
    params[0].grad = np.zeros(3)
    assert opt.step(lambda: 4.5) == 4.5
    np.testing.assert_allclose(params[0].data, 1 - 0.1 * 0.5)


def test_defaults_and_param_group_contents():
    params = parameters_from_arrays(_init_arrays(), dtype=np.float32)
    assert SGD(params).defaults == dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                                        maximize=False)
    adam = Adam(params)
    assert adam.defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                                 maximize=False, decoupled_weight_decay=False)
    adamw = AdamW(params)
    assert adamw.param_groups[0]["weight_decay"] == 1e-2 and adamw.param_groups[0]["decoupled_weight_decay"]
    assert adam.param_groups[0]["params"] == params and isinstance(adam, Optimizer)
    assert "Parameter Group 0" in repr(adam) and "betas: (0.9, 0.999)" in repr(adam)
    groups = SGD([{"params": params[0]}, {"params": params[1:], "momentum": 0.9}], lr=0.1).param_groups
    assert [g["params"] for g in groups] == [[params[0]], params[1:]]
    assert [(g["lr"], g["momentum"]) for g in groups] == [(0.1, 0.0), (0.1, 0.9)]
    assert SGD(iter(params)).param_groups[0]["params"] == params  # any iterable


PARAMS = parameters_from_arrays(_init_arrays(), dtype=np.float32)
ERROR_CONFIGS = [
    (SGD, dict(lr=-0.1), ValueError, r"lr must be a finite number in \[0, inf\), got -0\.1"),
    (SGD, dict(lr=float("nan")), ValueError, r"lr must be a finite number .* got nan"),
    (SGD, dict(lr="fast"), TypeError, r"lr must be a real number, got 'fast'"),
    (SGD, dict(momentum=-0.5), ValueError, r"momentum must be a finite number in \[0, inf\), got -0\.5"),
    (SGD, dict(weight_decay=-1), ValueError, r"weight_decay must be a finite number in \[0, inf\), got -1\.0"),
    (SGD, dict(dampening=None), TypeError, r"dampening must be a real number, got None"),
    (SGD, dict(nesterov=True), ValueError,
     r"nesterov=True requires momentum > 0 and dampening == 0, got momentum=0\.0 and dampening=0\.0"),
    (SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, r"got momentum=0\.9 and dampening=0\.1"),
    (SGD, dict(nesterov=1, momentum=0.9), TypeError, r"nesterov must be a bool, got 1"),
    (SGD, dict(maximize="no"), TypeError, r"maximize must be a bool, got 'no'"),
    (Adam, dict(lr=-1e-3), ValueError, r"lr must be a finite number in \[0, inf\), got -0\.001"),
    (Adam, dict(eps=-1e-8), ValueError, r"eps must be a finite number in \[0, inf\), got -1e-08"),
    (Adam, dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be a finite number in \[0, 1\), got 1\.0"),
    (Adam, dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be a finite number in \[0, 1\), got -0\.1"),
    (Adam, dict(betas=0.9), TypeError, r"betas must be a pair \(beta1, beta2\), got 0\.9"),
    (Adam, dict(betas=(0.9, 0.99, 0.999)), TypeError, r"betas must be a pair"),
    (Adam, dict(weight_decay=-0.1), ValueError, r"weight_decay must be a finite number in \[0, inf\), got -0\.1"),
    (Adam, dict(amsgrad="yes"), TypeError, r"amsgrad must be a bool, got 'yes'"),
    (Adam, dict(decoupled_weight_decay=0), TypeError, r"decoupled_weight_decay must be a bool, got 0"),
    (AdamW, dict(weight_decay=-0.01), ValueError, r"weight_decay must be .* got -0\.01"),
    (AdamW, dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be .* got 1\.0"),
    (AdamW, dict(maximize=None), TypeError, r"maximize must be a bool, got None"),
]


@pytest.mark.parametrize("cls, kwargs, exc, match", ERROR_CONFIGS, ids=str)
def test_bad_hyperparameters_raise(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(PARAMS, **kwargs)
    with pytest.raises(exc, match=match):  # also when the bad value comes in a param group
        cls([{"params": PARAMS, **kwargs}])


BAD_PARAMS = [
    ([], ValueError, r"params must not be empty: the optimizer got an empty parameter list"),
    (PARAMS[0], TypeError, r"got a single Parameter \(wrap it in a list\)"),
    (None, TypeError, r"params must be an iterable of Parameters, got NoneType"),
    (np.zeros(3), TypeError, r"params must be an iterable of Parameters, got ndarray"),
    ([np.zeros(3)], TypeError, r"an optimizer can only optimize fastnn Parameters, got ndarray"),
    ([PARAMS[0], PARAMS[0]], ValueError, r"some parameters appear more than once"),
    ([{"params": PARAMS[:2]}, {"params": PARAMS[1:]}], ValueError, r"some parameters appear more than once"),
    ([{"lr": 0.1}], ValueError, r"param_group must have a 'params' entry, got keys \['lr'\]"),
    ([{"params": 3}], TypeError, r"param_group\['params'\] must be an iterable of Parameters, got int"),
    (Arena([(3,)], np.float16).params, TypeError, r"parameter param0 must be float32 or float64, got float16"),
]


@pytest.mark.parametrize("params, exc, match", BAD_PARAMS, ids=str)
def test_bad_params_raise(params, exc, match):
    with pytest.raises(exc, match=match):
        Adam(params)


def test_add_param_group_errors():
    opt = SGD(PARAMS[:2])
    with pytest.raises(TypeError, match=r"param_group must be a dict, got list"):
        opt.add_param_group(PARAMS[2:])
    with pytest.raises(ValueError, match=r"some parameters appear more than once"):
        opt.add_param_group({"params": PARAMS[1:]})
    with pytest.raises(ValueError, match=r"momentum must be a finite number in \[0, inf\), got -1\.0"):
        opt.add_param_group({"params": PARAMS[2:], "momentum": -1.0})
    assert len(opt.param_groups) == 1


def test_load_state_dict_errors_leave_the_optimizer_unchanged():
    params = parameters_from_arrays(_init_arrays(), dtype=np.float64)
    opt = Adam(params)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    good = opt.state_dict()
    two_groups = Adam([{"params": params[:2]}, {"params": params[2:]}]).state_dict()
    wrong_size = Adam(params[:3]).state_dict()
    bad_shape = opt.state_dict()
    bad_shape["state"][1]["exp_avg"] = np.zeros(4)
    bad_index = opt.state_dict()
    bad_index["state"][9] = bad_index["state"].pop(3)
    bad_lr = opt.state_dict()
    bad_lr["param_groups"][0]["lr"] = -1.0
    cases = [
        (two_groups, r"state_dict has 2 param groups, this optimizer has 1"),
        (wrong_size, r"param group 0 of state_dict has 3 parameters, this optimizer's has 4"),
        (bad_shape, r"state_dict\['state'\]\[1\]\['exp_avg'\] must have the shape \(13,\) of parameter param1, "
                    r"got \(4,\)"),
        (bad_index, r"state_dict\['state'\] has an entry for parameter 9, which is in no param group"),
        (bad_lr, r"lr must be a finite number in \[0, inf\), got -1\.0"),
    ]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(bad)
        after = opt.state_dict()
        assert after["param_groups"] == good["param_groups"]
        assert all(np.array_equal(after["state"][i][k], v) for i, st in good["state"].items() for k, v in st.items())
