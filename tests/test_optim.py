"""Optimizers: fused kernels vs their NumPy twins, the fused-run protocol, arena layout, save/resume, convergence,
validation. The comparisons against torch.optim are in test_optim_torch_table.py."""

import copy
import itertools
import pickle

import numpy as np
import pytest

import fastnn.optim.optimizer as optimizer_module
from fastnn._kernels import _optim as kernels
from fastnn._reference import optim as reference
from fastnn.optim import SGD, Adadelta, Adagrad, Adam, AdamW, Optimizer, RMSprop
from fastnn.parameter import Arena, parameters_from_arrays

DTYPES = [np.float32, np.float64]
SIZES = [1, 7, 13, 33, max(kernels.THRESHOLD, kernels.SGD_THRESHOLD) + 7]  # the last one takes the prange path
SHAPES = [(7, 13), (13,), (13, 5), (5,)]  # a small MLP: W0, b0, W1, b1
KERNEL_TOL = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-14, atol=1e-15)}
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
    np.testing.assert_allclose(p_k, p_r, **KERNEL_TOL[dtype])
    np.testing.assert_allclose(b_k, b_r, **KERNEL_TOL[dtype])
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
                           maximize, float(t))
        results.append((param, m, v, vmax))
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, **KERNEL_TOL[dtype])


def _run_both(n, dtype, n_state, steps, call, seed=None, state_init=0.0):
    """Apply `call(impl, step, param, grad, *state)` for the kernels and the twins from the same start."""
    rng = np.random.default_rng(n if seed is None else seed)
    param0 = _randn(rng, n, dtype)
    grads = [_randn(rng, n, dtype) * scale for scale in (1.0, 0.1, 3.0, 0.01)][:steps]
    results = []
    for impl in (kernels, reference):
        param, state = param0.copy(), [np.full(n, state_init, dtype) for _ in range(n_state)]
        for t, grad in enumerate(grads, start=1):
            call(impl, t, param, grad, *state)
        results.append((param, *state))
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, **KERNEL_TOL[dtype])
    assert not np.array_equal(results[0][0], param0)


RMSPROP_FLAGS = list(itertools.product([False, True], [0.0, 0.9], [0.0, 0.1], [False, True], [0.99]))
RMSPROP_FLAGS += [(True, 0.5, 0.0, False, 0.3), (False, 0.0, 0.0, True, 0.3)]  # alpha < 0.5: lerp's other branch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("centered, momentum, weight_decay, maximize, alpha", RMSPROP_FLAGS)
def test_rmsprop_kernel_matches_reference(dtype, n, centered, momentum, weight_decay, maximize, alpha):
    def call(impl, t, param, grad, v, b, ga):
        e = np.empty(0, dtype)
        impl.rmsprop_step(param, grad, v, b if momentum else e, ga if centered else e, 0.01, alpha, 1e-8,
                          weight_decay, momentum, centered, maximize)

    _run_both(n, dtype, 3, 4, call)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("lr_decay, weight_decay, maximize, initial",
                         list(itertools.product([0.0, 0.1], [0.0, 0.1], [False, True], [0.0, 0.5])))
def test_adagrad_kernel_matches_reference(dtype, n, lr_decay, weight_decay, maximize, initial):
    def call(impl, t, param, grad, s):
        impl.adagrad_step(param, grad, s, 0.1, lr_decay, weight_decay, 1e-10, maximize, float(t))

    _run_both(n, dtype, 1, 4, call, state_init=initial)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("rho, weight_decay, maximize, lr",
                         list(itertools.product([0.9, 0.3], [0.0, 0.1], [False, True], [1.0, 0.5])))
def test_adadelta_kernel_matches_reference(dtype, n, rho, weight_decay, maximize, lr):
    def call(impl, t, param, grad, v, u):
        impl.adadelta_step(param, grad, v, u, lr, rho, 1e-6, weight_decay, maximize)

    _run_both(n, dtype, 2, 4, call)


def test_adagrad_step_decays_the_lr_with_the_step_count():
    """clr = lr / (1 + (t-1)*lr_decay): step 1 undecayed (docs/numerics.md section 10, trap 7)."""
    for step, clr in [(1.0, 0.1), (3.0, 0.1 / 1.2)]:
        param, grad, s = np.zeros(1), np.ones(1), np.zeros(1)
        kernels.adagrad_step(param, grad, s, 0.1, 0.1, 0.0, 0.0, False, step)
        assert param[0] == -clr and s[0] == 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_reject_buffers_of_the_wrong_length(dtype):
    p, short, e = np.zeros(7, dtype), np.zeros(6, dtype), np.empty(0, dtype)
    with pytest.raises(ValueError, match=r"grad must have 7 elements like param, got 6"):
        kernels.sgd_step(p, short, e, 0.1, 0.0, 0.0, 0.0, False, False, True)
    with pytest.raises(ValueError, match=r"momentum_buffer must have 7 elements like param, got 0"):
        kernels.sgd_step(p, p.copy(), e, 0.1, 0.9, 0.0, 0.0, False, False, True)
    with pytest.raises(ValueError, match=r"exp_avg_sq must have 7 elements like param, got 6"):
        kernels.adam_step(p, p.copy(), p.copy(), short, short, 0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False,
                          1.0)
    with pytest.raises(ValueError, match=r"max_exp_avg_sq must have 7 elements like param, got 0"):
        kernels.adam_step(p, p.copy(), p.copy(), p.copy(), e, 0.1, 0.9, 0.999, 1e-8, 0.0, False,
                          True, False, 1.0)
    with pytest.raises(ValueError, match=r"square_avg must have 7 elements like param, got 6"):
        kernels.rmsprop_step(p, p.copy(), short, e, e, 0.1, 0.99, 1e-8, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match=r"momentum_buffer must have 7 elements like param, got 0"):
        kernels.rmsprop_step(p, p.copy(), p.copy(), e, p.copy(), 0.1, 0.99, 1e-8, 0.0, 0.9, True, False)
    with pytest.raises(ValueError, match=r"grad_avg must have 7 elements like param, got 0"):
        kernels.rmsprop_step(p, p.copy(), p.copy(), p.copy(), e, 0.1, 0.99, 1e-8, 0.0, 0.9, True, False)
    with pytest.raises(ValueError, match=r"sum must have 7 elements like param, got 6"):
        kernels.adagrad_step(p, p.copy(), short, 0.1, 0.0, 0.0, 1e-10, False, 1.0)
    with pytest.raises(ValueError, match=r"acc_delta must have 7 elements like param, got 0"):
        kernels.adadelta_step(p, p.copy(), p.copy(), e, 1.0, 0.9, 1e-6, 0.0, False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_run_rejects_bad_runs(dtype):
    p, e, steps, none = np.zeros(7, dtype), np.empty(0, dtype), np.zeros(2, np.float32), np.empty(0, np.float32)
    with pytest.raises(ValueError, match=r"kind must be one of \[0, 1, 2, 3, 4, 5, 6\], got 9"):
        kernels.apply_run(9, 0, p, p.copy(), e, e, e, (), steps)
    with pytest.raises(ValueError, match=r"hp must hold the 4 hyper-parameters \(lr, momentum, dampening, "
                                         r"weight_decay\) of kind 0, got 9 numbers"):
        kernels.apply_run(kernels.KIND_SGD, 0, p, p.copy(), e, e, e, [0.0] * 9, none)
    with pytest.raises(ValueError, match=r"square_avg must have 7 elements like param, got 0"):
        kernels.apply_run(kernels.KIND_ADADELTA, 0, p, p.copy(), e, p.copy(), e, (1.0, 0.9, 1e-6, 0.0), steps)
    with pytest.raises(ValueError, match=r"steps must hold the run's step counts \(one per parameter\), got none"):
        kernels.apply_run(kernels.KIND_ADAM, 0, p, p.copy(), p.copy(), p.copy(), e, (0.1, 0.9, 0.999, 1e-8, 0.0), none)
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(ValueError, match=r"Buffer dtype mismatch"):  # one dtype for all buffers
        kernels.apply_run(kernels.KIND_SGD, 0, p, p.astype(other), e, e, e, (0.1, 0.0, 0.0, 0.0), none)
    with pytest.raises(ValueError, match=r"Buffer dtype mismatch"):  # step counts are float32
        kernels.apply_run(kernels.KIND_ADAGRAD, 0, p, p.copy(), p.copy(), e, e, (0.1, 0.0, 0.0, 1e-10),
                          steps.astype(np.float64))
    assert not steps.any()  # nothing was counted by a refused run
    before = p.copy()
    kernels.apply_run(kernels.KIND_ADAGRAD, 0, p[:0], p[:0], e, e, e, (0.1, 0.0, 0.0, 1e-10), steps)  # empty run
    np.testing.assert_array_equal(p, before)
    assert steps.tolist() == [1.0, 1.0]  # ... its parameters' steps still count, as torch's do


@pytest.mark.parametrize("kind, hp", [
    (kernels.KIND_SGD, (0.05, 0.9, 0.1, 0.01)),
    (kernels.KIND_ADAM, (0.02, 0.9, 0.999, 1e-8, 0.1)),
    (kernels.KIND_ADAM, (1e-3, 0.3, 0.5, 1e-3, 0.0)),
    (kernels.KIND_ADAM, (0.1, 0.0, 0.0, 1e-8, 0.0)),
    (kernels.KIND_RMSPROP, (0.01, 0.99, 1e-8, 0.1, 0.9)),
    (kernels.KIND_ADAGRAD, (0.1, 0.1, 0.1, 1e-10)),
    (kernels.KIND_ADAGRAD, (0.1, 0.0, 0.0, 1e-10)),
    (kernels.KIND_ADADELTA, (1.0, 0.9, 1e-6, 0.1)),
    (kernels.KIND_SK_SGD, (0.05, 0.9)),
    (kernels.KIND_SK_ADAM, (1e-3, 0.9, 0.999, 1e-8)),
    (kernels.KIND_SK_ADAM, (0.01, 0.3, 0.5, 1e-3)),
], ids=str)
def test_step_scalars_count_in_float32_and_equal_pythons_arithmetic_bit_for_bit(kind, hp):
    """The kernel's per-step arithmetic (step_scalars) is the twin's Python arithmetic exactly (** is libm's pow):
    counts go t := float32(t + 1), so they stop at 2**24."""
    starts = [0, 1, 2, 9, 99, 12345, 2**24 - 3, 2**24, 2**40]
    steps, twin_steps = np.array(starts, np.float32), np.array(starts, np.float32)
    for _ in range(3):
        ours = kernels.next_scalars(kind, hp, steps[:1])
        n = 0 if kind in (kernels.KIND_SGD, kernels.KIND_SK_SGD) else 1
        if n:
            twin_steps[:1] = twin_steps[:1].astype(np.float64) + 1.0
        want = reference._scalars(kind, hp, float(twin_steps[0]))
        assert ours[:len(want)] == want and not any(ours[len(want):])
        for i in range(1, len(starts)):  # every other count, alone (sc depends on the first count only)
            got = kernels.next_scalars(kind, hp, steps[i:i + 1])
            if n:
                twin_steps[i] = np.float32(float(twin_steps[i]) + 1.0)
            assert got[:len(want)] == reference._scalars(kind, hp, float(twin_steps[i]))
    np.testing.assert_array_equal(steps, twin_steps)
    if kind not in (kernels.KIND_SGD, kernels.KIND_SK_SGD):
        assert steps[6:].tolist() == [2**24, 2**24, 2**40] and steps[0] == 3


def test_protocol_codes_match_the_reference_and_pxd():
    assert (kernels.KIND_SGD, kernels.KIND_ADAM, kernels.KIND_RMSPROP, kernels.KIND_ADAGRAD,
            kernels.KIND_ADADELTA, kernels.KIND_SK_SGD, kernels.KIND_SK_ADAM) == (
        reference.SGD, reference.ADAM, reference.RMSPROP, reference.ADAGRAD, reference.ADADELTA, reference.SK_SGD,
        reference.SK_ADAM) == (0, 1, 2, 3, 4, 5, 6)
    flags = [kernels.FLAG_MAXIMIZE, kernels.FLAG_WEIGHT_DECAY, kernels.FLAG_MOMENTUM, kernels.FLAG_NESTEROV,
             kernels.FLAG_FIRST_STEP, kernels.FLAG_AMSGRAD, kernels.FLAG_DECOUPLED, kernels.FLAG_CENTERED]
    assert flags == [reference.MAXIMIZE, reference.WEIGHT_DECAY, reference.MOMENTUM, reference.NESTEROV,
                     reference.FIRST_STEP, reference.AMSGRAD, reference.DECOUPLED, reference.CENTERED]
    assert flags == [1 << k for k in range(8)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_give_the_same_bits_on_one_and_two_threads(dtype):
    from fastnn._kernels import _runtime

    n = 2 * max(kernels.THRESHOLDS.values()) + 3
    rng = np.random.default_rng(0)
    param0, grad = _randn(rng, n, dtype), _randn(rng, n, dtype)
    saved = _runtime.get_omp_threads()
    results = []
    try:
        for threads in (1, 2):
            _runtime.set_omp_threads(threads)
            p, m, v, vmax, buf, s1, s2, s3 = param0.copy(), *(np.zeros(n, dtype) for _ in range(7))
            kernels.adam_step(p, grad, m, v, vmax, 0.01, 0.9, 0.999, 1e-8, 0.1, True, True, True, 2.0)
            kernels.sgd_step(p, grad, buf, 0.1, 0.9, 0.0, 0.01, True, False, True)
            kernels.rmsprop_step(p, grad, s1, s2, s3, 0.01, 0.99, 1e-8, 0.1, 0.9, True, True)
            kernels.adagrad_step(p, grad, s1, 0.1, 0.1, 0.1, 1e-10, False, 2.0)
            kernels.adadelta_step(p, grad, s2, s3, 1.0, 0.9, 1e-6, 0.1, True)
            results.append((p, m, v, vmax, buf, s1, s2, s3))
    finally:
        _runtime.set_omp_threads(saved)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# ---------------------------------------------------------------------------------------------------------------------
# the fused-run protocol (Optimizer._fused_runs -> _optim.apply_run / run_update_*)

OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "Adagrad": Adagrad, "Adadelta": Adadelta}
CONFIGS = [  # one or two per optimizer, with every state buffer in use somewhere
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("SGD", dict(lr=0.05)),
    ("Adam", dict(lr=0.02, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.02, maximize=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.1, weight_decay=0.1)),
    ("Adadelta", dict(lr=0.5, weight_decay=0.1, maximize=True)),
]
KINDS = {"SGD": kernels.KIND_SGD, "Adam": kernels.KIND_ADAM, "AdamW": kernels.KIND_ADAM,
         "RMSprop": kernels.KIND_RMSPROP, "Adagrad": kernels.KIND_ADAGRAD, "Adadelta": kernels.KIND_ADADELTA}


def _init_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def _grads(n_steps, seed=2):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) * 10.0 ** rng.uniform(-1, 1) for s in SHAPES] for _ in range(n_steps)]


def _steps(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", CONFIGS, ids=str)
def test_fused_runs_create_the_state_and_step_like_the_reference(dtype, name, config):
    """_fused_runs() returns ready runs (missing state created; the steps are counted by the update); applying
    them with the NumPy twin of apply_run gives step()'s result. A hole (b0 without grad on some steps) splits
    the run."""
    ours, twin = (parameters_from_arrays(_init_arrays(), dtype=dtype) for _ in range(2))
    opt, opt_twin = OPTIMIZERS[name](ours, **config), OPTIMIZERS[name](twin, **config)
    for step, step_grads in enumerate(_grads(6)):
        for p, q, g in zip(ours, twin, step_grads):
            p.grad = q.grad = None if (p is ours[1] and step % 2) else g
        opt.step()
        counts = {p: float(st["step"]) for p, st in opt_twin.state.items() if "step" in st}
        runs = opt_twin._fused_runs()
        assert len(runs) >= (2 if step % 2 else 1)  # (Adam's and Adagrad's also split where step counts differ)
        assert sum(run[2].size for run in runs) == sum(p.size for p in twin if p.has_grad)
        stepped = [p for p in twin if p.has_grad]
        assert sum(run[8].size for run in runs) == (0 if name == "SGD" else len(stepped))
        for p in stepped:  # the state exists, with the counts of before the update
            if name != "SGD":
                assert float(opt_twin.state[p]["step"]) == counts.get(p, 0.0)
        for kind, flags, param, grad, s0, s1, s2, hp, steps in runs:
            assert kind == KINDS[name] and isinstance(flags, int) and len(hp) <= 8
            assert np.shares_memory(param, twin[0].arena.data) and np.shares_memory(grad, twin[0].arena.grad)
            assert all(s.dtype == dtype and s.ndim == 1 and s.size in (0, param.size) for s in (s0, s1, s2))
            assert steps.dtype == np.float32 and (steps.size == 0 or steps.base is opt_twin._steps)
            reference.apply_run(kind, flags, param, grad, s0, s1, s2, hp, steps)
        for p in stepped:  # counted by the update, in place
            if name != "SGD":
                assert float(opt_twin.state[p]["step"]) == counts.get(p, 0.0) + 1
        for p, q in zip(ours, twin):
            np.testing.assert_allclose(p.data, q.data, **KERNEL_TOL[dtype], err_msg=f"step {step + 1}")
    for p, q in zip(ours, twin):
        for key, value in opt.state[p].items():
            np.testing.assert_allclose(value, opt_twin.state[q][key], **KERNEL_TOL[dtype], err_msg=key)


def test_fused_runs_flags_and_hyper_parameters_follow_the_pxd():
    params = parameters_from_arrays(_init_arrays(), dtype=np.float64)
    for p in params:
        p.grad = np.ones(p.shape)
    (run,) = Adam(params, lr=0.1, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.5, amsgrad=True)._fused_runs()
    assert run[:2] == (kernels.KIND_ADAM, kernels.FLAG_WEIGHT_DECAY | kernels.FLAG_AMSGRAD)
    assert run[7] == (0.1, 0.8, 0.9, 1e-3, 0.5) and run[8].tolist() == [0.0] * 4  # counted by the update
    assert kernels.next_scalars(run[0], run[7], run[8].copy()) == pytest.approx(
        (0.2, 0.9, 0.1, 1e-3, 0.5, 0.95, 0.1 / 0.2, 0.1**0.5))
    (run,) = AdamW(params, lr=0.1, maximize=True)._fused_runs()
    assert run[1] == kernels.FLAG_MAXIMIZE | kernels.FLAG_WEIGHT_DECAY | kernels.FLAG_DECOUPLED
    assert run[6].size == 0  # no amsgrad: no max_exp_avg_sq
    sgd = SGD(params, lr=0.1, momentum=0.9, dampening=0.25, nesterov=False)
    (run,) = sgd._fused_runs()
    assert run[1] == kernels.FLAG_MOMENTUM | kernels.FLAG_FIRST_STEP and run[7] == (0.1, 0.9, 0.25, 0.0)
    assert run[8].size == 0 and kernels.next_scalars(run[0], run[7], run[8])[:4] == (0.1, 0.9, 0.75, 0.0)
    kernels.apply_run(*run)
    assert sgd._fused_runs()[0][1] == kernels.FLAG_MOMENTUM  # the buffer exists now
    (run,) = RMSprop(params, momentum=0.5, centered=True)._fused_runs()
    assert run[1] == kernels.FLAG_MOMENTUM | kernels.FLAG_CENTERED and run[7] == (0.01, 0.99, 1e-8, 0.0, 0.5)
    assert kernels.next_scalars(run[0], run[7], run[8].copy())[:6] == (0.01, 0.99, 1 - 0.99, 1e-8, 0.0, 0.5)
    assert all(s.size == 174 for s in run[4:7])
    adagrad = Adagrad(params, lr=0.1, lr_decay=0.5)
    (run,) = adagrad._fused_runs()
    assert run[7] == (0.1, 0.5, 0.0, 1e-10)
    assert [kernels.next_scalars(run[0], run[7], run[8])[0] for _ in range(3)] == [0.1, 0.1 / 1.5, 0.1 / 2.0]
    assert [float(adagrad.state[p]["step"]) for p in params] == [3.0] * 4  # steps 1, 2, 3, counted in place
    (run,) = Adadelta(params, weight_decay=0.1)._fused_runs()
    assert run[:2] == (kernels.KIND_ADADELTA, kernels.FLAG_WEIGHT_DECAY) and run[7] == (1.0, 0.9, 1e-6, 0.1)
    assert kernels.next_scalars(run[0], run[7], run[8].copy())[:5] == (1.0, 0.9, 1 - 0.9, 1e-6, 0.1)


# ---------------------------------------------------------------------------------------------------------------------
# save / resume


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", CONFIGS, ids=str)
def test_state_dict_round_trip_continues_like_uninterrupted(dtype, name, config):
    grads = _grads(20)
    params = parameters_from_arrays(_init_arrays(), dtype=dtype)
    opt = OPTIMIZERS[name](params, **config)
    _steps(opt, params, grads[:10])
    saved = opt.state_dict()
    saved_params = [p.data.copy() for p in params]
    _steps(opt, params, grads[10:])  # the uninterrupted run

    fresh = parameters_from_arrays(saved_params, dtype=dtype)
    resumed = OPTIMIZERS[name](fresh, lr=123.0)  # the loaded groups override these hyper-parameters
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == config["lr"]
    _steps(resumed, fresh, grads[10:])

    for p, q in zip(params, fresh):
        np.testing.assert_array_equal(p.data, q.data)
    final, final_resumed = opt.state_dict(), resumed.state_dict()
    assert final["param_groups"] == final_resumed["param_groups"]
    assert [list(st) for st in final["state"].values()] == [list(st) for st in final_resumed["state"].values()]
    for i, st in final["state"].items():
        for key, value in st.items():
            assert value.dtype == final_resumed["state"][i][key].dtype
            np.testing.assert_array_equal(value, final_resumed["state"][i][key])
    # state_dict() is a snapshot: the 10 later steps did not change it
    for i, st in saved["state"].items():
        for key, value in st.items():
            assert not np.array_equal(value, final["state"][i][key]), (i, key)
# ---------------------------------------------------------------------------------------------------------------------
# arena layout and fusion


def _count_calls(monkeypatch):
    """Record the length of every run that step() hands to the kernel."""
    calls = []

    def counting(kind, flags, param, *args):
        calls.append(param.size)
        kernels.apply_run(kind, flags, param, *args)

    monkeypatch.setattr(optimizer_module, "apply_run", counting)
    return calls


@pytest.mark.parametrize("make", [
    lambda ps: Adam(ps),
    lambda ps: AdamW(ps, amsgrad=True),
    lambda ps: SGD(ps, momentum=0.9),
    lambda ps: SGD(ps),
    lambda ps: RMSprop(ps, momentum=0.9, centered=True),
    lambda ps: Adagrad(ps, lr_decay=0.1),
    lambda ps: Adadelta(ps),
])
def test_one_kernel_call_per_contiguous_run(monkeypatch, make):
    calls = _count_calls(monkeypatch)
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


@pytest.mark.parametrize("make", [lambda ps: Adam(ps), lambda ps: Adagrad(ps, lr_decay=0.1)])
def test_runs_split_where_step_counts_differ(monkeypatch, make):
    calls = _count_calls(monkeypatch)
    params = parameters_from_arrays(_init_arrays(), dtype=np.float64)
    opt = make(params)
    params[0].grad = np.ones(SHAPES[0])
    opt.step()  # only W0: step 1
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()  # W0 at step 2, the rest at step 1
    opt.step()
    assert calls == [91, 91, 13 + 65 + 5, 91, 13 + 65 + 5]
    assert [float(opt.state[p]["step"]) for p in params] == [3, 2, 2, 2]


@pytest.mark.parametrize("make", [lambda ps: RMSprop(ps), lambda ps: Adadelta(ps), lambda ps: Adagrad(ps)])
def test_runs_ignore_step_counts_the_update_does_not_use(monkeypatch, make):
    """RMSprop and Adadelta never read the step; Adagrad only through lr_decay (here 0: clr = lr exactly)."""
    calls = _count_calls(monkeypatch)
    params = parameters_from_arrays(_init_arrays(), dtype=np.float64)
    opt = make(params)
    params[0].grad = np.ones(SHAPES[0])
    opt.step()
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    assert calls == [91, 174]
    assert [float(opt.state[p]["step"]) for p in params] == [2, 1, 1, 1]


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


def _step_views_of(opt, params):
    """The step counts of `params`, after checking each is a 0-d float32 view of its slot in opt's step buffer."""
    counts = []
    for p in params:
        step = opt.state[p]["step"]
        assert step.shape == () and step.dtype == np.float32 and step.base is opt._steps
        assert step.__array_interface__["data"][0] == opt._steps.ctypes.data + 4 * opt._slots[p]
        counts.append(float(step))
    return counts


COUNTING = [(name, config) for name, config in CONFIGS if name != "SGD"]


@pytest.mark.parametrize("name, config", COUNTING, ids=str)
def test_step_counts_live_in_one_buffer_and_survive_growth_copies_pickles_and_loads(name, config):
    params = parameters_from_arrays(_init_arrays(), dtype=np.float32)
    opt = OPTIMIZERS[name](params[:3], **config)
    grads = _grads(4)
    for step, step_grads in enumerate(grads):  # b0 skipped twice: the counts differ
        for p, g in zip(params, step_grads):
            p.grad = None if (p is params[1] and step < 2) else g
        opt.step()
    assert _step_views_of(opt, params[:3]) == [4.0, 2.0, 4.0]
    opt.add_param_group({"params": params[3:]})  # the buffer grows; the views follow, the counts stay
    opt.step()
    assert _step_views_of(opt, params) == [5.0, 3.0, 5.0, 1.0] and opt._steps.tolist() == [5.0, 3.0, 5.0, 1.0]
    for clone in (copy.deepcopy, lambda obj: pickle.loads(pickle.dumps(obj))):
        params2, opt2 = clone((params, opt))
        assert _step_views_of(opt2, params2) == _step_views_of(opt, params)
        assert not np.shares_memory(opt2._steps, opt._steps)
        for ps, o in ((params, opt), (params2, opt2)):
            for p, g in zip(ps, grads[0]):
                p.grad = g
            o.step()
        np.testing.assert_array_equal(params2[0].arena.data, params[0].arena.data)
        assert _step_views_of(opt2, params2) == _step_views_of(opt, params)
    saved = opt.state_dict()
    assert [float(st["step"]) for st in saved["state"].values()] == [7.0, 5.0, 7.0, 3.0]
    fresh = parameters_from_arrays([p.data for p in params], dtype=np.float32)
    loaded = OPTIMIZERS[name]([{"params": fresh[:3]}, {"params": fresh[3:]}], **config)
    loaded.load_state_dict(saved)
    assert _step_views_of(loaded, fresh) == [7.0, 5.0, 7.0, 3.0]
    assert [list(st) for st in loaded.state_dict()["state"].values()] == [list(st) for st in saved["state"].values()]
    for ps, o in ((params, opt), (fresh, loaded)):
        for p, g in zip(ps, grads[1]):
            p.grad = g
        o.step()
    np.testing.assert_array_equal(fresh[0].arena.data, params[0].arena.data)
    assert _step_views_of(loaded, fresh) == _step_views_of(opt, params) == [8.0, 6.0, 8.0, 4.0]


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
# convergence

QUAD_A = np.diag(np.linspace(1.0, 10.0, 10))  # f(x) = (x - c)^T A (x - c) / 2, condition number 10
QUAD_C = np.linspace(-1.0, 1.0, 10)
PROBLEMS = {
    "quadratic": (lambda x: QUAD_A @ (x - QUAD_C), np.zeros(10), QUAD_C, 1e-3),
    "rosenbrock": (lambda x: np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)]),
                   np.array([-1.5, 2.0]), np.ones(2), 1e-2),
}
CONVERGENCE = [  # name, config, steps, halve the lr every ... steps (through param_groups; None: constant)
    ("SGD", dict(lr=1e-3, momentum=0.9), 6000, 1000),
    ("Adam", dict(lr=2e-2), 6000, 1000),
    ("AdamW", dict(lr=2e-2, weight_decay=1e-4), 6000, 1000),
    ("RMSprop", dict(lr=1e-3, momentum=0.9), 6000, 1000),
    ("RMSprop", dict(lr=1e-2, centered=True), 6000, 1000),
    ("Adagrad", dict(lr=1.0), 12000, None),  # its own decay: lr / sqrt(sum of g^2)
    ("Adadelta", dict(), 8000, 1000),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name, config, steps, every", CONVERGENCE, ids=str)
def test_converges_and_float32_params_keep_float32_state(dtype, problem, name, config, steps, every):
    grad_fn, x0, optimum, tol = PROBLEMS[problem]
    (p,) = parameters_from_arrays([x0], dtype=dtype)
    opt = OPTIMIZERS[name]([p], **config)
    for k in range(steps):
        if every and k and k % every == 0:
            opt.param_groups[0]["lr"] *= 0.5
        p.grad = grad_fn(p.data.astype(np.float64))
        opt.step()
    assert np.linalg.norm(p.data - optimum) < tol
    assert p.data.dtype == dtype
    for key, value in opt.state[p].items():
        assert value.dtype == (np.float32 if key == "step" else dtype), key
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
    (RMSprop, dict(lr=-1.0), ValueError, r"lr must be a finite number in \[0, inf\), got -1\.0"),
    (RMSprop, dict(alpha=-0.5), ValueError, r"alpha must be a finite number in \[0, inf\), got -0\.5"),
    (RMSprop, dict(eps=-1e-8), ValueError, r"eps must be a finite number in \[0, inf\), got -1e-08"),
    (RMSprop, dict(momentum=-0.9), ValueError, r"momentum must be a finite number in \[0, inf\), got -0\.9"),
    (RMSprop, dict(weight_decay=-0.1), ValueError, r"weight_decay must be a finite number in \[0, inf\), got -0\.1"),
    (RMSprop, dict(centered=1), TypeError, r"centered must be a bool, got 1"),
    (RMSprop, dict(alpha="0.9"), TypeError, r"alpha must be a real number, got '0\.9'"),
    (Adagrad, dict(lr=-0.01), ValueError, r"lr must be a finite number in \[0, inf\), got -0\.01"),
    (Adagrad, dict(lr_decay=-0.1), ValueError, r"lr_decay must be a finite number in \[0, inf\), got -0\.1"),
    (Adagrad, dict(initial_accumulator_value=-1), ValueError,
     r"initial_accumulator_value must be a finite number in \[0, inf\), got -1\.0"),
    (Adagrad, dict(eps=-1e-10), ValueError, r"eps must be a finite number in \[0, inf\), got -1e-10"),
    (Adagrad, dict(weight_decay=-0.5), ValueError, r"weight_decay must be a finite number in \[0, inf\), got -0\.5"),
    (Adagrad, dict(maximize=0), TypeError, r"maximize must be a bool, got 0"),
    (Adadelta, dict(lr=-1.0), ValueError, r"lr must be a finite number in \[0, inf\), got -1\.0"),
    (Adadelta, dict(rho=1.5), ValueError, r"rho must be a finite number in \[0, 1\], got 1\.5"),
    (Adadelta, dict(rho=-0.1), ValueError, r"rho must be a finite number in \[0, 1\], got -0\.1"),
    (Adadelta, dict(eps=-1e-6), ValueError, r"eps must be a finite number in \[0, inf\), got -1e-06"),
    (Adadelta, dict(weight_decay=-0.1), ValueError, r"weight_decay must be a finite number in \[0, inf\), got -0\.1"),
    (Adadelta, dict(rho=float("inf")), ValueError, r"rho must be a finite number in \[0, 1\], got inf"),
]
# what torch.optim also accepts at the edges of its rules
EDGE_CONFIGS = [
    (SGD, dict(lr=0.0, momentum=0.0, weight_decay=0.0)),
    (Adam, dict(lr=0.0, betas=(0.0, 0.0), eps=0.0, weight_decay=0.0)),
    (AdamW, dict(betas=(0.0, 0.999999), weight_decay=0.0)),
    (RMSprop, dict(lr=0.0, alpha=0.0, eps=0.0, momentum=0.0, weight_decay=0.0)),
    (RMSprop, dict(alpha=1.5)),  # torch only asks alpha >= 0
    (Adagrad, dict(lr=0.0, lr_decay=0.0, initial_accumulator_value=0.0, eps=0.0, weight_decay=0.0)),
    (Adadelta, dict(lr=0.0, rho=0.0, eps=0.0, weight_decay=0.0)),
    (Adadelta, dict(rho=1.0)),
]


@pytest.mark.parametrize("cls, kwargs, exc, match", ERROR_CONFIGS, ids=str)
def test_bad_hyperparameters_raise(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(PARAMS, **kwargs)
    with pytest.raises(exc, match=match):  # also when the bad value comes in a param group
        cls([{"params": PARAMS, **kwargs}])


@pytest.mark.parametrize("cls, kwargs, exc, match", [
    c for c in ERROR_CONFIGS if c[2] is ValueError and all(np.isfinite(v) for v in c[1].values() if type(v) is float)
], ids=str)
def test_torch_rejects_the_same_values(cls, kwargs, exc, match):
    """Our ValueErrors follow torch's rules (torch's messages differ: 'Invalid learning rate: -1.0').

    fastnn also rejects NaN and inf, which some of torch's checks (SGD's lr < 0) let through."""
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError):
        getattr(torch.optim, cls.__name__)([torch.zeros(3, requires_grad=True)], **kwargs)


@pytest.mark.parametrize("cls, kwargs", EDGE_CONFIGS, ids=str)
def test_values_at_the_edges_of_torchs_rules_are_accepted(cls, kwargs):
    opt = cls(PARAMS, **kwargs)
    assert all(opt.param_groups[0][k] == v for k, v in kwargs.items())
    torch = pytest.importorskip("torch")
    getattr(torch.optim, cls.__name__)([torch.zeros(3, requires_grad=True)], **kwargs)


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


def test_new_optimizers_defaults_and_state():
    params = parameters_from_arrays(_init_arrays(), dtype=np.float32)
    assert RMSprop(params).defaults == dict(lr=1e-2, momentum=0.0, alpha=0.99, eps=1e-8, centered=False,
                                            weight_decay=0.0, maximize=False)
    assert Adagrad(params).defaults == dict(lr=1e-2, lr_decay=0.0, eps=1e-10, weight_decay=0.0,
                                            initial_accumulator_value=0.0, maximize=False)
    assert Adadelta(params).defaults == dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False)
    assert RMSprop(params).state_dict()["state"] == {} and Adadelta(params).state_dict()["state"] == {}
    # Adagrad creates its state in the constructor (docs/numerics.md section 1.4), from its accumulator value
    adagrad = Adagrad(params[:2], initial_accumulator_value=0.25)
    state = adagrad.state_dict()["state"]
    assert list(state) == [0, 1] and list(state[0]) == ["step", "sum"]
    assert state[0]["step"].dtype == np.float32 and float(state[0]["step"]) == 0
    assert state[1]["sum"].dtype == np.float32 and np.all(state[1]["sum"] == 0.25)
    adagrad.add_param_group({"params": params[2:], "initial_accumulator_value": 3.0})
    assert list(adagrad.state_dict()["state"]) == [0, 1]  # added groups get theirs at their first step
    for p in params:
        p.grad = np.zeros(p.shape)
    adagrad.step()
    assert np.all(adagrad.state[params[3]]["sum"] == 0.25) and float(adagrad.state[params[3]]["step"]) == 1
    rms = RMSprop(params, momentum=0.9, centered=True)
    rms.step()
    assert list(rms.state[params[0]]) == ["step", "square_avg", "momentum_buffer", "grad_avg"]
    ada = Adadelta(params)
    ada.step()
    assert list(ada.state[params[0]]) == ["step", "square_avg", "acc_delta"]


def test_a_model_instead_of_its_parameters_says_what_to_write():
    import fastnn as fnn
    model = fnn.Sequential(fnn.Dense(3, 2), seed=0)
    with pytest.raises(TypeError, match=r"got the Sequential itself; write Adam\(model.parameters\(\), lr=...\)"):
        Adam(model)


# ---------------------------------------------------------------------------------------------------------------------
# the run cache (optimizer.py, "Run cache")


def _uncached(cls):
    """A subclass of cls that regroups every call (it overrides a run hook, so it is not cached)."""

    class Uncached(cls):
        def _runs(self, group):
            return super()._runs(group)

    return Uncached


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", CONFIGS, ids=str)
def test_run_cache_steps_bit_for_bit_like_regrouping_every_call(dtype, name, config):
    """Reused runs give the bits of regrouping every step, through every event that changes the grouping or the
    tuples: a hole (b0 without grad), an lr change, one count edited in place (the run splits), one parameter's
    state reset, state.clear(), load_state_dict, pickling, add_param_group."""
    ours, twin = (parameters_from_arrays(_init_arrays(), dtype=dtype) for _ in range(2))
    opt = OPTIMIZERS[name](ours[:-1], **config)
    ref = _uncached(OPTIMIZERS[name])(twin[:-1], **config)
    assert optimizer_module._cacheable(type(opt)) and not optimizer_module._cacheable(type(ref))
    grads = iter(_grads(40))

    def step(hole=False):
        for p, q, g in zip(ours, twin, next(grads)):
            p.grad = q.grad = None if (hole and p is ours[1]) else g
        opt.step()
        ref.step()
        for p, q in zip(ours, twin):
            assert p.data.tobytes() == q.data.tobytes()

    step(), step(), step()
    runs = opt._fused_runs()
    assert opt._fused_runs() is runs   # reused while nothing changed
    if "step" in opt.state[ours[1]]:   # one count (inside the one run) edited in place: the run must split
        for o, ps in ((opt, ours), (ref, twin)):
            o.state[ps[1]]["step"][()] = 1
        step(), step()
    step(hole=True), step(hole=True), step()
    for o in (opt, ref):
        o.param_groups[0]["lr"] *= 0.5
    step(), step()
    for o, ps in ((opt, ours), (ref, twin)):   # one parameter's state reset, as for a re-initialised layer
        o.state[ps[0]] = {}
    step(), step()
    for o in (opt, ref):
        o.state.clear()
    step(), step()
    saved = copy.deepcopy(opt.state_dict())
    step()
    opt.load_state_dict(saved)
    ref.load_state_dict(saved)
    step(), step()
    opt = pickle.loads(pickle.dumps(opt))
    ours_by_name = {p.name: p for g in opt.param_groups for p in g["params"]}
    ours[:-1] = [ours_by_name[p.name] for p in ours[:-1]]
    for p, q in zip(ours, twin):   # the unpickled optimizer has its own parameters
        p.data[...] = q.data
    step(), step()
    opt.add_param_group({"params": [ours[-1]]})
    ref.add_param_group({"params": [twin[-1]]})
    step(), step()


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_run_cache_check_agrees_with_its_twin(dtype):
    """_checks.runs_still_valid (what _fused_runs calls) against optimizer._still_valid, through each change
    the cache must notice, with the optimizer's defaultdict state and a plain dict."""
    from fastnn._kernels._checks import runs_still_valid

    ps = parameters_from_arrays(_init_arrays(), dtype=dtype)
    opt = Adam(ps, lr=1e-3)
    for g in _grads(3):
        for p, a in zip(ps, g):
            p.grad = a
        opt.step()
    opt._fused_runs()
    cache = opt._run_cache
    assert cache is not None

    def both(state=opt.state):
        a = optimizer_module._still_valid(state, *cache[1:])
        b = runs_still_valid(state, *cache[1:], optimizer_module._NO_STATE)
        assert a == b
        return b

    assert both() and both(dict(opt.state))
    ps[1].has_grad = False
    assert not both()
    ps[1].has_grad = True
    saved = opt.state[ps[0]]
    opt.state[ps[0]] = dict(saved)        # another dict object
    assert not both()
    opt.state[ps[0]] = saved
    saved["extra"] = 1                     # one entry more
    assert not both()
    del saved["extra"]
    assert both()
    steps = cache[-1][0][8]
    old = steps[-1].copy()
    steps[-1] = old + 1                    # one count edited in place: the run splits
    assert not both()
    steps[-1] = old
    assert both()
    del opt.state[ps[2]]                   # state gone: the default, not dicts[2]
    assert not both()
    assert not runs_still_valid([], *cache[1:], optimizer_module._NO_STATE)   # not a dict: no hit
