"""LR schedulers vs torch.optim.lr_scheduler (docs/numerics.md section 7): lr sequences, state_dict, validation."""

import itertools
import math
import pickle

import numpy as np
import pytest

import fastnn.optim.lr_scheduler as lrs
from fastnn.optim import SGD, Adadelta, Adagrad, Adam, AdamW, RMSprop
from fastnn.parameter import parameters_from_arrays

torch = pytest.importorskip("torch")
T = torch.optim.lr_scheduler

LRS = (0.1, 0.03)  # two param groups with different lrs
EPOCHS = 100
OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "Adagrad": Adagrad, "Adadelta": Adadelta}

EPOCH_CASES = [
    ("StepLR", dict(step_size=1)),
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("StepLR", dict(step_size=30)),
    ("MultiStepLR", dict(milestones=[3, 3, 10, 60])),  # a repeated milestone: gamma**2 at epoch 3
    ("MultiStepLR", dict(milestones=[50, 20, 0], gamma=0.3)),  # unsorted, with 0 (applied at construction)
    ("ExponentialLR", dict(gamma=0.93)),
    ("ExponentialLR", dict(gamma=1.0)),
    ("CosineAnnealingLR", dict(T_max=10)),  # 100 epochs = 5 periods: it rises again past T_max
    ("CosineAnnealingLR", dict(T_max=13, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=1, eta_min=0.01)),
    ("CosineAnnealingLR", dict(T_max=37, eta_min=0.2)),  # eta_min above the base lrs
    ("LinearLR", dict()),  # defaults: 1/3 -> 1 over 5 epochs
    ("LinearLR", dict(start_factor=0.1, end_factor=0.5, total_iters=20)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.0, total_iters=10)),  # linear decay to 0
    ("LinearLR", dict(start_factor=0.25, total_iters=1)),
    ("ConstantLR", dict()),  # defaults: 1/3 for 5 epochs
    ("ConstantLR", dict(factor=0.5, total_iters=40)),
    ("ConstantLR", dict(factor=1.0, total_iters=1)),
    ("ConstantLR", dict(factor=0.0, total_iters=200)),  # lr 0 throughout (undoing a factor 0 at 200 would fail)
    ("ConstantLR", dict(factor=0.1, total_iters=1)),
    ("PolynomialLR", dict()),  # defaults: linear decay to 0 over 5 epochs
    ("PolynomialLR", dict(total_iters=50, power=0.9)),
    ("PolynomialLR", dict(total_iters=20, power=2.0)),
    ("PolynomialLR", dict(total_iters=7, power=0.5)),
    ("PolynomialLR", dict(total_iters=1)),
    ("PolynomialLR", dict(total_iters=10, power=0.0)),  # constant lr
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in EPOCH_CASES]


def _optimizers(kind="SGD", lrs=LRS):
    """A fastnn and a torch optimizer of the same class, each with one param group per lr."""
    params = parameters_from_arrays([np.zeros(3), np.zeros(2)][:len(lrs)], dtype=np.float64)
    ours = OPTIMIZERS[kind]([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])
    tparams = [torch.nn.Parameter(torch.zeros(n, dtype=torch.float64)) for n in (3, 2)[:len(lrs)]]
    theirs = getattr(torch.optim, kind)([{"params": [p], "lr": lr} for p, lr in zip(tparams, lrs)], lr=lrs[0])
    return ours, theirs


def _assert_lrs(ours, theirs, rtol=1e-12):
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-300)


# ---------------------------------------------------------------------------------------------------------------------
# epoch schedules: the lr sequence over 100 epochs


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
@pytest.mark.parametrize("name, kwargs", EPOCH_CASES, ids=CASE_IDS)
def test_lr_sequence_matches_torch(name, kwargs, kind):
    opt, topt = _optimizers(kind)
    sched = getattr(lrs, name)(opt, **kwargs)
    tsched = getattr(T, name)(topt, **kwargs)
    assert sched.last_epoch == tsched.last_epoch == 0
    assert [g["initial_lr"] for g in opt.param_groups] == list(LRS) == sched.base_lrs
    _assert_lrs(sched.get_last_lr(), tsched.get_last_lr())
    for _ in range(EPOCHS):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        _assert_lrs(sched.get_last_lr(), tsched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
    assert sched.last_epoch == tsched.last_epoch == EPOCHS


def test_sequences_are_bit_identical_to_torch():
    """Same expressions in the same order: not just close, equal."""
    for name, kwargs in EPOCH_CASES:
        opt, topt = _optimizers()
        sched, tsched = getattr(lrs, name)(opt, **kwargs), getattr(T, name)(topt, **kwargs)
        ours, theirs = [], []
        for _ in range(EPOCHS):
            topt.step()
            sched.step()
            tsched.step()
            ours += sched.get_last_lr()
            theirs += tsched.get_last_lr()
        assert ours == theirs, name


@pytest.mark.parametrize("T_max, eta_min", [(10, 0.0), (7, 0.005), (1, 0.0)])
def test_cosine_follows_the_periodic_closed_form(T_max, eta_min):
    """docs/numerics.md section 7: lr_e = eta_min + (base - eta_min)(1 + cos(pi e / T_max))/2, rising past T_max."""
    opt, _ = _optimizers()
    sched = lrs.CosineAnnealingLR(opt, T_max=T_max, eta_min=eta_min)
    for e in range(1, EPOCHS + 1):
        sched.step()
        want = [eta_min + (b - eta_min) * (1 + math.cos(math.pi * e / T_max)) / 2 for b in LRS]
        np.testing.assert_allclose(sched.get_last_lr(), want, rtol=1e-12, atol=1e-15)
    if T_max > 1:
        opt, _ = _optimizers()
        sched = lrs.CosineAnnealingLR(opt, T_max=T_max, eta_min=eta_min)
        seq = []
        for _ in range(2 * T_max):
            sched.step()
            seq.append(sched.get_last_lr()[0])
        assert seq[T_max - 1] == pytest.approx(eta_min, abs=1e-15)  # the minimum at e = T_max ...
        assert seq[T_max] > seq[T_max - 1] and seq[-1] == pytest.approx(LRS[0])  # ... then back up to base


def test_linear_lr_defaults_warm_up():
    opt, _ = _optimizers()
    sched = lrs.LinearLR(opt)
    seq = [sched.get_last_lr()[0]]
    for _ in range(7):
        sched.step()
        seq.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(seq, [0.1 * (1 / 3 + (2 / 3) * min(e, 5) / 5) for e in range(8)], rtol=1e-14)


def test_multistep_repeated_milestone_multiplies_twice():
    opt, _ = _optimizers()
    sched = lrs.MultiStepLR(opt, milestones=[2, 2], gamma=0.5)
    seq = []
    for _ in range(3):
        sched.step()
        seq.append(sched.get_last_lr()[0])
    assert seq == [0.1, 0.1 * 0.25, 0.1 * 0.25]


def test_scheduled_lr_drives_the_optimizer():
    """SGD steps with the scheduled lrs: parameters track torch's over 20 epochs."""
    rng = np.random.default_rng(0)
    opt, topt = _optimizers("SGD")
    sched, tsched = lrs.CosineAnnealingLR(opt, T_max=6, eta_min=0.01), T.CosineAnnealingLR(topt, T_max=6, eta_min=0.01)
    params = [p for g in opt.param_groups for p in g["params"]]
    tparams = [p for g in topt.param_groups for p in g["params"]]
    for _ in range(20):
        for p, tp in zip(params, tparams):
            g = rng.standard_normal(p.shape)
            p.grad = g
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy().reshape(p.shape), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, kwargs", EPOCH_CASES[::2], ids=CASE_IDS[::2])
def test_step_with_epoch_uses_the_closed_form(name, kwargs):
    """torch's deprecated step(epoch): a jump in closed form, with a warning."""
    opt, topt = _optimizers()
    sched, tsched = getattr(lrs, name)(opt, **kwargs), getattr(T, name)(topt, **kwargs)
    for epoch in (5, 17, 3, 40):
        with pytest.warns(UserWarning, match="epoch parameter"):
            sched.step(epoch)
        with pytest.warns(UserWarning):
            tsched.step(epoch)
        _assert_lrs(sched.get_last_lr(), tsched.get_last_lr())
        assert sched.last_epoch == epoch


# ---------------------------------------------------------------------------------------------------------------------
# ConstantLR, PolynomialLR: exact sequences, chaining, closed form, factor 0

GROUP_LRS = (0.1, 0.03, 1.7)  # three param groups with different lrs
NEW_CASES = [("ConstantLR", dict(factor=f, total_iters=t)) for f in (1 / 3, 0.5, 0.0, 1.0, 0.07) for t in (1, 4, 20)] \
    + [("PolynomialLR", dict(total_iters=t, power=p)) for t in (1, 3, 7, 20) for p in (1.0, 0.5, 2.0, 0.9, 0.0, 3.7)]


def _groups(lrs=GROUP_LRS):
    """fastnn and torch SGD with one param group per lr."""
    params = parameters_from_arrays([np.zeros(2) for _ in lrs], dtype=np.float64)
    ours = SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])
    tparams = [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)) for _ in lrs]
    theirs = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(tparams, lrs)], lr=lrs[0])
    return ours, theirs


def _sequence(opt, scheds, steps=20):
    """The lrs after construction and after each of `steps` epochs (each scheduler stepped in order)."""
    seq = [[g["lr"] for g in opt.param_groups]]
    for _ in range(steps):
        opt.step()
        for s in scheds:
            s.step()
        seq.append([g["lr"] for g in opt.param_groups])
    return seq


@pytest.mark.parametrize("name, kwargs", NEW_CASES, ids=[f"{n}-{k}" for n, k in NEW_CASES])
def test_constant_and_polynomial_sequences_equal_torchs(name, kwargs):
    """20 epochs (past total_iters, except total_iters=20) with three param groups: the same floats as torch."""
    opt, topt = _groups()
    if name == "ConstantLR" and kwargs["factor"] == 0 and kwargs["total_iters"] <= 20:
        kwargs = {**kwargs, "total_iters": 21}  # torch divides by 0 at total_iters (see test_constant_lr_factor_0)
    sched, tsched = getattr(lrs, name)(opt, **kwargs), getattr(T, name)(topt, **kwargs)
    ours, theirs = _sequence(opt, [sched]), _sequence(topt, [tsched])
    assert ours == theirs
    assert sched.get_last_lr() == tsched.get_last_lr() == ours[-1]
    assert sched.last_epoch == tsched.last_epoch == 20


def test_constant_and_polynomial_reach_their_targets():
    opt, _ = _groups()
    seq = _sequence(opt, [lrs.ConstantLR(opt, factor=0.25, total_iters=3)], steps=6)
    assert [s[2] for s in seq] == [1.7 * 0.25] * 3 + [1.7 * 0.25 * (1.0 / 0.25)] * 4
    opt, _ = _groups()
    seq = _sequence(opt, [lrs.PolynomialLR(opt, total_iters=4, power=2.0)], steps=8)
    np.testing.assert_allclose([s[0] for s in seq], [0.1 * (1 - min(e, 4) / 4) ** 2 for e in range(9)], rtol=1e-14)
    assert [s[0] for s in seq[4:]] == [0.0] * 5  # 0 at total_iters and after


CHAINS = [
    [("ConstantLR", dict(factor=0.5, total_iters=3)), ("ExponentialLR", dict(gamma=0.9))],
    [("ExponentialLR", dict(gamma=0.9)), ("ConstantLR", dict(factor=0.5, total_iters=3))],
    [("PolynomialLR", dict(total_iters=12, power=0.5)), ("StepLR", dict(step_size=3, gamma=0.5))],
    [("ConstantLR", dict(factor=0.1, total_iters=2)), ("PolynomialLR", dict(total_iters=15, power=2.0))],
    [("LinearLR", dict(start_factor=0.2, total_iters=4)), ("PolynomialLR", dict(total_iters=10)),
     ("ConstantLR", dict(factor=0.3, total_iters=7))],
    [("PolynomialLR", dict(total_iters=8, power=1.5)), ("CosineAnnealingLR", dict(T_max=5))],
]


@pytest.mark.parametrize("chain", CHAINS, ids=["+".join(n for n, _ in c) for c in CHAINS])
def test_chained_with_other_schedules_equals_torch(chain):
    """Several schedulers on one optimizer, each stepped every epoch (torch's chainable form)."""
    opt, topt = _groups()
    ours = [getattr(lrs, name)(opt, **kw) for name, kw in chain]
    theirs = [getattr(T, name)(topt, **kw) for name, kw in chain]
    assert _sequence(opt, ours, 25) == _sequence(topt, theirs, 25)


@pytest.mark.parametrize("name, kwargs", NEW_CASES[::2], ids=[f"{n}-{k}" for n, k in NEW_CASES[::2]])
def test_constant_and_polynomial_closed_form_equals_torch(name, kwargs):
    """step(epoch) is torch's closed form, float for float; it agrees with the recursion (exactly where
    torch's two forms agree exactly, to rounding elsewhere)."""
    opt, topt = _groups()
    steps = kwargs["total_iters"] - 1 if name == "ConstantLR" and kwargs["factor"] == 0 else 25  # (factor 0: below)
    rec = _sequence(opt, [getattr(lrs, name)(opt, **kwargs)], steps)
    trec = _sequence(topt, [getattr(T, name)(topt, **kwargs)], steps)
    assert rec == trec
    opt, topt = _groups()
    sched, tsched = getattr(lrs, name)(opt, **kwargs), getattr(T, name)(topt, **kwargs)
    for epoch in list(range(26)) + [3, 40, 0, 17, 1, 10**6]:
        with pytest.warns(UserWarning, match="epoch parameter"):
            sched.step(epoch)
        with pytest.warns(UserWarning):
            tsched.step(epoch)
        closed, tclosed = sched.get_last_lr(), tsched.get_last_lr()
        assert closed == tclosed and [g["lr"] for g in opt.param_groups] == closed
        assert sched.last_epoch == tsched.last_epoch == epoch
        if epoch < len(rec):
            assert (rec[epoch] == closed) == (trec[epoch] == tclosed)
            np.testing.assert_allclose(rec[epoch], closed, rtol=1e-13, atol=0)


def test_constant_lr_factor_0_cannot_be_undone():
    """torch divides by 0 at total_iters (ZeroDivisionError); fastnn raises ValueError naming the settings
    and the epoch, and changes nothing. step(epoch) uses the closed form, which has no division."""
    opt, topt = _groups()
    sched, tsched = lrs.ConstantLR(opt, factor=0.0, total_iters=3), T.ConstantLR(topt, factor=0.0, total_iters=3)
    assert _sequence(opt, [sched], 2) == _sequence(topt, [tsched], 2) == [[0.0] * 3] * 3
    topt.step()
    with pytest.raises(ZeroDivisionError):
        tsched.step()
    state = sched.state_dict()
    with pytest.raises(ValueError, match=r"ConstantLR\(factor=0.0, total_iters=3\) cannot schedule epoch 3: "
                                         r"a factor of 0 cannot be undone .*; check epoch and the settings"):
        sched.step()
    assert sched.state_dict() == state and [g["lr"] for g in opt.param_groups] == [0.0] * 3
    with pytest.warns(UserWarning, match="epoch parameter"):
        sched.step(3)
    assert sched.get_last_lr() == list(GROUP_LRS)
    # a subnormal factor: 1 / factor overflows to inf, refused like every non-finite lr
    opt, _ = _groups()
    sched = lrs.ConstantLR(opt, factor=5e-324, total_iters=1)
    with pytest.raises(ValueError, match=r"ConstantLR\(factor=5e-324, total_iters=1\) cannot schedule epoch 1: "
                                         r"the learning rate became (inf|nan)"):
        sched.step()
    assert sched.last_epoch == 0


@pytest.mark.parametrize("name, kwargs", [("ConstantLR", dict(factor=0.5, total_iters=4)),
                                          ("PolynomialLR", dict(total_iters=6, power=2.0))])
@pytest.mark.parametrize("last_epoch", [0, 2, 3, 5, 9])
def test_constant_and_polynomial_resume_with_last_epoch_as_torch(name, kwargs, last_epoch):
    """Construction with last_epoch >= 0 does torch's initial step from there (ConstantLR at last_epoch =
    total_iters - 1 undoes its factor at construction, as torch's does)."""
    opt, topt = _groups()
    for g, tg in zip(opt.param_groups, topt.param_groups):
        g["initial_lr"] = tg["initial_lr"] = g["lr"]
    sched = getattr(lrs, name)(opt, last_epoch=last_epoch, **kwargs)
    tsched = getattr(T, name)(topt, last_epoch=last_epoch, **kwargs)
    assert _sequence(opt, [sched], 12) == _sequence(topt, [tsched], 12)
    assert sched.last_epoch == tsched.last_epoch == last_epoch + 13


def test_constant_and_polynomial_drive_fit():
    """Passed to fit (wrapped in LRSchedulerCallback): the lr logged for each epoch is torch's."""
    import fastnn as fnn

    X = np.random.default_rng(0).standard_normal((6, 3))
    Y = np.random.default_rng(1).standard_normal((6, 2))
    cases = [("ConstantLR", dict(factor=0.5, total_iters=2)), ("PolynomialLR", dict(total_iters=4, power=2.0))]
    for (name, kwargs), wrap in itertools.product(cases, [False, True]):
        model = fnn.Sequential([fnn.Dense(3, 4, "tanh"), fnn.Dense(4, 2)], dtype="float64", seed=0)
        model.compile(optimizer=SGD(model.parameters(), lr=0.1), loss="mse")
        topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        tsched = getattr(T, name)(topt, **kwargs)
        want = []
        for _ in range(6):
            want.append(topt.param_groups[0]["lr"])
            topt.step()
            tsched.step()
        sched = getattr(lrs, name)(model.optimizer, **kwargs)
        hist = model.fit(X, Y, epochs=6, verbose=0, callbacks=[fnn.callbacks.LRSchedulerCallback(sched) if wrap
                                                               else sched])
        assert hist.history["lr"] == want
        assert model.optimizer.param_groups[0]["lr"] == topt.param_groups[0]["lr"] and sched.last_epoch == 6


# ---------------------------------------------------------------------------------------------------------------------
# ReduceLROnPlateau

PLATEAU_CASES = [
    dict(),
    dict(mode="min", patience=0),
    dict(mode="min", patience=2, factor=0.5, threshold=0.1),
    dict(mode="min", patience=1, threshold_mode="abs", threshold=0.05, factor=0.5),
    dict(mode="max", patience=2, factor=0.5),
    dict(mode="max", patience=1, threshold_mode="abs", threshold=0.2, cooldown=2),
    dict(mode="min", patience=1, cooldown=3, factor=0.3),
    dict(mode="min", patience=0, factor=0.5, min_lr=0.01),
    dict(mode="min", patience=0, factor=0.5, min_lr=[0.02, 0.001]),
    dict(mode="max", patience=0, factor=0.9, eps=0.005),  # eps blocks reductions smaller than it
]


def _metric_script():
    """Plateaus, improvements inside and outside the thresholds, negative values, a NaN."""
    return [1.0, 0.9, 0.9, 0.95, 0.899, 0.8999, 0.5, 0.5, 0.5, 0.5, 0.6, 0.4, -0.1, -0.1, -0.10001, -0.2,
            -0.2, float("nan"), -0.3, 2.0] + [0.3] * 10 + [0.3 - 0.01 * k for k in range(20)] + [1.0] * 30


def _run_plateau(kwargs, metrics):
    opt, topt = _optimizers()
    sched, tsched = lrs.ReduceLROnPlateau(opt, **kwargs), T.ReduceLROnPlateau(topt, **kwargs)
    for m in metrics:
        opt.step()
        topt.step()
        sched.step(m)
        tsched.step(m)
        _assert_lrs(sched.get_last_lr(), tsched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
        for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
            a, b = getattr(sched, key), getattr(tsched, key)
            assert a == b or (math.isnan(a) and math.isnan(b)), key
    return sched


@pytest.mark.parametrize("kwargs", PLATEAU_CASES, ids=[str(k) for k in PLATEAU_CASES])
def test_plateau_matches_torch_on_a_script(kwargs):
    script = _metric_script()
    if kwargs.get("mode") == "max":
        script = [-m for m in script]
    sched = _run_plateau(kwargs, script)
    assert sched.get_last_lr() != list(LRS) or kwargs.get("eps")  # the script does trigger reductions


def test_plateau_matches_torch_on_random_sequences():
    rng = np.random.default_rng(7)
    for _ in range(40):
        kwargs = dict(mode=rng.choice(["min", "max"]), factor=float(rng.uniform(0.1, 0.9)),
                      patience=int(rng.integers(0, 5)), threshold=float(rng.choice([0, 1e-4, 0.05])),
                      threshold_mode=rng.choice(["rel", "abs"]), cooldown=int(rng.integers(0, 4)),
                      min_lr=float(rng.choice([0, 1e-3])))
        walk = np.cumsum(rng.normal(0, 1, EPOCHS)) * rng.choice([1, 0.01]) + rng.choice([-5, 0, 5])
        _run_plateau(kwargs, [float(m) for m in np.round(walk, 1)])  # rounding makes ties


def test_plateau_does_not_touch_the_optimizer_at_construction():
    opt, _ = _optimizers()
    sched = lrs.ReduceLROnPlateau(opt)
    assert all("initial_lr" not in g for g in opt.param_groups)
    assert sched.get_last_lr() == list(LRS) and sched.last_epoch == 0


def test_plateau_accepts_numpy_scalars_and_refuses_non_scalars():
    opt, _ = _optimizers()
    sched = lrs.ReduceLROnPlateau(opt, patience=0)
    sched.step(np.float32(1.0))
    sched.step(np.array(2.0))
    assert sched.num_bad_epochs == 0 and sched.get_last_lr() == [0.1 * 0.1, 0.03 * 0.1]
    with pytest.raises(TypeError, match=r"metrics must be a real number \(a scalar\), got 'loss'"):
        sched.step("loss")
    with pytest.raises(TypeError, match="metrics must be a real number"):
        sched.step([1.0, 2.0])


def test_plateau_min_lr_list_and_added_group():
    opt, _ = _optimizers()
    sched = lrs.ReduceLROnPlateau(opt, patience=0, min_lr=[0.0, 0.0])
    opt.add_param_group({"params": parameters_from_arrays([np.zeros(2)]), "lr": 0.5})
    sched.step(1.0)
    with pytest.raises(RuntimeError, match=r"param groups in the optimizer \(3\) differs .* initialized \(2\)"):
        sched.step(2.0)
    opt, _ = _optimizers()
    sched = lrs.ReduceLROnPlateau(opt, patience=0, min_lr=0.05)  # a scalar min_lr extends to new groups
    opt.add_param_group({"params": parameters_from_arrays([np.zeros(2)]), "lr": 0.5})
    sched.step(1.0)
    sched.step(2.0)
    assert sched.get_last_lr() == [0.05, 0.03, 0.05]


# ---------------------------------------------------------------------------------------------------------------------
# kinds, state_dict


def test_kind_attribute_and_aliases():
    opt, _ = _optimizers()
    assert lrs.LRScheduler.needs_metric is False and lrs.ReduceLROnPlateau.needs_metric is True
    for name, kwargs in EPOCH_CASES[::3]:
        sched = getattr(lrs, name)(opt, **kwargs)
        assert isinstance(sched, lrs.LRScheduler) and not sched.needs_metric
    plateau = lrs.ReduceLROnPlateau(opt)
    assert isinstance(plateau, lrs.LRScheduler) and plateau.needs_metric
    assert issubclass(lrs._LRScheduler, lrs.LRScheduler) and lrs._LRScheduler.__name__ == "_LRScheduler"


@pytest.mark.parametrize("name, kwargs", EPOCH_CASES + [("ReduceLROnPlateau", dict(patience=1, cooldown=1))],
                         ids=CASE_IDS + ["ReduceLROnPlateau"])
def test_state_dict_round_trip_continues_the_sequence(name, kwargs):
    metrics = _metric_script()
    plateau = name == "ReduceLROnPlateau"

    def advance(sched, epochs, start=0):
        out = []
        for e in range(start, start + epochs):
            sched.optimizer.step()
            sched.step(metrics[e]) if plateau else sched.step()
            out.append(sched.get_last_lr())
        return out

    opt, topt = _optimizers()
    ref = getattr(lrs, name)(opt, **kwargs)
    full = advance(ref, 60)

    opt, topt = _optimizers()
    sched, tsched = getattr(lrs, name)(opt, **kwargs), getattr(T, name)(topt, **kwargs)
    advance(sched, 23)
    advance(tsched, 23)
    state, opt_state = sched.state_dict(), opt.state_dict()
    assert "optimizer" not in state and set(state) == set(tsched.state_dict())
    assert pickle.loads(pickle.dumps(state)) == state
    advance(sched, 5, 23)  # later steps do not change the saved snapshot
    assert state["last_epoch"] == 23

    # fresh objects; as torch recommends, build the scheduler before loading the optimizer state
    for source in (state, tsched.state_dict()):  # fastnn's own state, and torch's
        opt2, _ = _optimizers()
        sched2 = getattr(lrs, name)(opt2, **kwargs)
        opt2.load_state_dict(opt_state)
        sched2.load_state_dict(source)
        assert sched2.last_epoch == 23
        assert advance(sched2, 37, 23) == full[23:]


@pytest.mark.parametrize("name, key, value, exc, match", [
    ("ConstantLR", "factor", 1.5, ValueError, r"must be a finite number in \[0, 1\], got 1.5"),
    ("ConstantLR", "factor", "0.5", TypeError, r"must be a real number, got '0.5'"),
    ("ConstantLR", "total_iters", 0, ValueError, r"must be in \[1, inf\], got 0"),
    ("PolynomialLR", "power", -2.0, ValueError, r"must be a finite number in \[0, inf\), got -2.0"),
    ("PolynomialLR", "power", math.nan, ValueError, r"must be a finite number in \[0, inf\), got nan"),
    ("PolynomialLR", "total_iters", 1.5, TypeError, r"must be an int, got 1.5"),
])
def test_constant_and_polynomial_refuse_bad_state_dict_entries(name, key, value, exc, match):
    opt, _ = _optimizers()
    sched = getattr(lrs, name)(opt)
    good = sched.state_dict()
    with pytest.raises(exc, match=rf"state_dict\['{key}'\] {match}"):
        sched.load_state_dict({**good, key: value})
    assert sched.state_dict() == good


def test_resuming_with_last_epoch_needs_initial_lr():
    opt, topt = _optimizers()
    with pytest.raises(ValueError, match=r"last_epoch=4 resumes a schedule, but param_groups\[0\] has no 'initial_lr'"):
        lrs.StepLR(opt, step_size=2, last_epoch=4)
    for g, tg in zip(opt.param_groups, topt.param_groups):
        g["initial_lr"] = tg["initial_lr"] = g["lr"]
    sched, tsched = lrs.CosineAnnealingLR(opt, T_max=9, last_epoch=4), T.CosineAnnealingLR(topt, T_max=9, last_epoch=4)
    for _ in range(30):
        topt.step()
        sched.step()
        tsched.step()
        _assert_lrs(sched.get_last_lr(), tsched.get_last_lr())
    assert sched.last_epoch == tsched.last_epoch


def test_get_lr_outside_step_warns():
    opt, _ = _optimizers()
    sched = lrs.StepLR(opt, step_size=3)
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        sched.get_lr()


def test_param_group_added_after_the_scheduler():
    """As torch: chainable forms that read only group['lr'] carry the new group along; forms that pair
    groups with base_lrs fail (torch: zip(strict=True))."""
    opt, topt = _optimizers()
    sched, tsched = lrs.StepLR(opt, step_size=2), T.StepLR(topt, step_size=2)
    opt.add_param_group({"params": parameters_from_arrays([np.zeros(2)]), "lr": 0.5})
    topt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.5})
    for _ in range(3):
        topt.step()
        sched.step()
        tsched.step()
    assert sched.get_last_lr() == tsched.get_last_lr() and len(sched.get_last_lr()) == 3
    opt, _ = _optimizers()
    sched = lrs.CosineAnnealingLR(opt, T_max=1)
    opt.add_param_group({"params": parameters_from_arrays([np.zeros(2)]), "lr": 0.5})
    sched.step()
    with pytest.raises(ValueError, match="optimizer has 3 param groups, but the scheduler was built for 2"):
        sched.step()


def test_custom_subclass_uses_the_base_machinery():
    class Halving(lrs.LRScheduler):
        def get_lr(self):
            return [b * 0.5 ** self.last_epoch for b in self.base_lrs]

    opt, _ = _optimizers()
    sched = Halving(opt)
    sched.step()
    sched.step()
    assert sched.get_last_lr() == [0.1 / 4, 0.03 / 4] and sched.last_epoch == 2


# ---------------------------------------------------------------------------------------------------------------------
# bad arguments

BAD = [
    (lrs.StepLR, dict(step_size=0), ValueError, r"step_size must be in \[1, inf\], got 0"),
    (lrs.StepLR, dict(step_size=2.5), TypeError, r"step_size must be an int, got 2.5"),
    (lrs.StepLR, dict(step_size=2, gamma=-0.1), ValueError, r"gamma must be a finite number in \[0, inf\), got -0.1"),
    (lrs.StepLR, dict(step_size=2, last_epoch=-2), ValueError, r"last_epoch must be in \[-1, inf\], got -2"),
    (lrs.MultiStepLR, dict(milestones=5), TypeError, r"milestones must be an iterable of ints, got int"),
    (lrs.MultiStepLR, dict(milestones=[3, -1]), ValueError, r"each of milestones must be in \[0, inf\], got -1"),
    (lrs.MultiStepLR, dict(milestones=[3, 4.5]), TypeError, r"each of milestones must be an int, got 4.5"),
    (lrs.ExponentialLR, dict(gamma=float("nan")), ValueError, r"gamma must be a finite number .* got nan"),
    (lrs.ExponentialLR, dict(gamma="0.9"), TypeError, r"gamma must be a real number, got '0.9'"),
    (lrs.CosineAnnealingLR, dict(T_max=0), ValueError, r"T_max must be in \[1, inf\], got 0"),
    (lrs.CosineAnnealingLR, dict(T_max=5, eta_min=-1e-3), ValueError, r"eta_min must be .* got -0.001"),
    (lrs.LinearLR, dict(start_factor=0), ValueError, r"start_factor must be a finite number in \(0, 1\], got 0.0"),
    (lrs.LinearLR, dict(start_factor=1.5), ValueError, r"start_factor must be .* got 1.5"),
    (lrs.LinearLR, dict(end_factor=1.2), ValueError, r"end_factor must be a finite number in \[0, 1\], got 1.2"),
    (lrs.LinearLR, dict(total_iters=0), ValueError, r"total_iters must be in \[1, inf\], got 0"),
    (lrs.ConstantLR, dict(factor=1.5), ValueError, r"factor must be a finite number in \[0, 1\], got 1.5"),
    (lrs.ConstantLR, dict(factor=-0.1), ValueError, r"factor must be a finite number in \[0, 1\], got -0.1"),
    (lrs.ConstantLR, dict(factor=float("nan")), ValueError, r"factor must be a finite number in \[0, 1\], got nan"),
    (lrs.ConstantLR, dict(factor="0.5"), TypeError, r"factor must be a real number, got '0.5'"),
    (lrs.ConstantLR, dict(total_iters=0), ValueError, r"total_iters must be in \[1, inf\], got 0"),
    (lrs.ConstantLR, dict(total_iters=2.0), TypeError, r"total_iters must be an int, got 2.0"),
    (lrs.ConstantLR, dict(last_epoch=-3), ValueError, r"last_epoch must be in \[-1, inf\], got -3"),
    (lrs.PolynomialLR, dict(total_iters=0), ValueError, r"total_iters must be in \[1, inf\], got 0"),
    (lrs.PolynomialLR, dict(total_iters=-5), ValueError, r"total_iters must be in \[1, inf\], got -5"),
    (lrs.PolynomialLR, dict(total_iters=True), TypeError, r"total_iters must be an int, got True"),
    (lrs.PolynomialLR, dict(power=-1), ValueError, r"power must be a finite number in \[0, inf\), got -1.0"),
    (lrs.PolynomialLR, dict(power=float("inf")), ValueError, r"power must be a finite number in \[0, inf\), got inf"),
    (lrs.PolynomialLR, dict(power=None), TypeError, r"power must be a real number, got None"),
    (lrs.ReduceLROnPlateau, dict(factor=1.0), ValueError, r"factor must be a finite number in \[0, 1\), got 1.0"),
    (lrs.ReduceLROnPlateau, dict(mode="mean"), ValueError, r"mode must be one of 'min', 'max'; got 'mean'"),
    (lrs.ReduceLROnPlateau, dict(threshold_mode="pct"), ValueError,
     r"threshold_mode must be one of 'rel', 'abs'; got 'pct'"),
    (lrs.ReduceLROnPlateau, dict(patience=-1), ValueError, r"patience must be in \[0, inf\], got -1"),
    (lrs.ReduceLROnPlateau, dict(cooldown=1.5), TypeError, r"cooldown must be an int, got 1.5"),
    (lrs.ReduceLROnPlateau, dict(threshold=-0.1), ValueError, r"threshold must be .* got -0.1"),
    (lrs.ReduceLROnPlateau, dict(min_lr=[0.1]), ValueError, r"expected 2 min_lrs, got 1"),
    (lrs.ReduceLROnPlateau, dict(min_lr=[0.1, -1]), ValueError, r"min_lr\[1\] must be .* got -1.0"),
    (lrs.ReduceLROnPlateau, dict(min_lr=-0.5), ValueError, r"min_lr must be .* got -0.5"),
    (lrs.ReduceLROnPlateau, dict(eps=-1e-8), ValueError, r"eps must be .* got -1e-08"),
]


@pytest.mark.parametrize("cls, kwargs, exc, match", BAD, ids=[f"{c.__name__}-{k}" for c, k, _, _ in BAD])
def test_bad_arguments(cls, kwargs, exc, match):
    opt, _ = _optimizers()
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(exc, match=match):
        cls(opt, **kwargs)
    assert [dict(g) for g in opt.param_groups] == before  # nothing written before the check failed


@pytest.mark.parametrize("cls, kwargs", [(lrs.StepLR, dict(step_size=1)), (lrs.ReduceLROnPlateau, {})])
def test_not_an_optimizer(cls, kwargs):
    with pytest.raises(TypeError, match=r"optimizer must be an Optimizer .* got list"):
        cls([1, 2], **kwargs)
