"""The thread count: explicit counts are obeyed, the adaptive default picks N or 1 per plan (fastnn._config).

No timings are asserted: the choice's decisions run on injected times (the calls' and the probes' times handed in),
and the engine's behaviour is checked with choices forced to a count or to a schedule, against runs at
an explicit count (the numbers a call produces are those of the count it ran at, bit for bit).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _config

N = _config._usable_cores()
needs_cores = pytest.mark.skipif(N < 2, reason="the adaptive default needs 2 usable cores (1 core: nothing to pick)")


@pytest.fixture(autouse=True)
def _no_omp_env(monkeypatch):
    """The default under test is the one without OMP_NUM_THREADS (a CI machine or an earlier test may set it:
    then set_num_threads(None) would give an explicit count); tests that need it set it themselves."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def _choice(n=2):
    return _config.ThreadChoice("test", n)


def _run_for(c, seconds, per_call=0.001):
    """Record real calls at the current count until `seconds` of them have run."""
    while c.spent < seconds:
        c.record(c.count, per_call)


# ------------------------------------------------------------------------------------- the decision rule

def test_starts_at_n_and_probes_after_its_first_call():
    c = _choice()
    assert c.count == 2 and c.other == 1
    assert not c.probe_due()
    c.record(2, 0.001)
    assert c.probe_due()


def test_the_other_count_wins_only_by_more_than_the_margin():
    c = _choice()
    c.record(2, 0.001)
    c.probed([0.00097, 0.00097], [0.001, 0.001], cost=0.004)   # 3% faster: not enough
    assert c.count == 2 and c.switches == 0 and c.backoff == 2
    assert c.due == pytest.approx(_config.BUDGET * 0.004)        # the budget dominates the backoff
    _run_for(c, _config.BUDGET * 0.004 - 0.01)
    assert not c.probe_due()
    _run_for(c, _config.BUDGET * 0.004 + 1e-9)
    assert c.probe_due()
    c.probed([0.0009, 0.0009], [0.001, 0.001], cost=0.004)     # 10% faster: switch
    assert c.count == 1 and c.other == 2 and c.switches == 1 and c.backoff == 1
    assert c.samples == [] and not c.probe_due()
    before = c.units[2]
    c.record(2, 5.0)                                            # a call at the old count: not the plan's time
    assert c.spent == 0.0 and c.units[2] == before + 1


def test_backoff_doubles_while_the_current_count_wins_up_to_its_cap():
    c = _choice()
    c.record(2, 0.01)
    for i in range(10):
        assert c.probe_due()
        c.probed([0.02], [0.01], cost=1e-6)   # negligible cost: the backoff sets the interval
        assert c.backoff == min(2 ** (i + 1), _config.BACKOFF_MAX)
        assert c.due == pytest.approx(_config.PROBE_BASE * c.backoff)
        _run_for(c, c.due - 0.015, per_call=0.01)
        assert not c.probe_due()
        _run_for(c, c.due + 1e-9, per_call=0.01)
    assert c.count == 2 and c.probes == 10


def test_a_slowdown_of_the_current_count_brings_the_probe_forward():
    c = _choice()
    c.record(2, 0.001)
    c.probed([0.02], [0.001], cost=0.00005)          # stays at 2: due after 0.1 s, the budget earlier
    assert c.earliest == pytest.approx(_config.BUDGET * 0.00005) and c.due == pytest.approx(0.1)
    assert c.earliest < c.due
    for _ in range(12):
        c.record(2, 0.001)
    assert c.ref == pytest.approx(0.001) and not c.probe_due()
    for _ in range(4):
        c.record(2, 0.004)                            # another process took a core: 4x slower
    assert c.due == c.earliest and c.probe_due()


def test_a_switch_that_loses_on_real_calls_goes_back_at_once():
    c = _choice()
    for _ in range(4):
        c.record(2, 0.001)
    c.probed([0.0005, 0.0005], [0.001, 0.001], cost=0.001)   # the probe caught a quiet moment: switch to 1
    assert c.count == 1 and c.check == (0.001, 1)
    c.record(1, 0.003)
    c.record(1, 0.003)
    assert c.count == 1
    c.record(1, 0.003)                                        # 3 real calls at 1: 3x the calls at 2 before
    assert c.count == 2 and c.switches == 2 and c.backoff == 2 and c.check is None
    assert c.due == pytest.approx(max(_config.BUDGET * 0.001, _config.PROBE_BASE * 2))
    c2 = _choice()
    for _ in range(4):
        c2.record(2, 0.001)
    c2.probed([0.0005], [0.001], cost=0.001)
    for _ in range(3):
        c2.record(1, 0.0006)                                  # confirmed on real calls: stays
    assert c2.count == 1 and c2.check is None and c2.switches == 1


def test_staying_on_a_count_much_slower_than_the_other_probed_probes_again_at_once():
    c = _choice()
    c.record(2, 0.002)
    c.probed([0.001], [0.002], cost=0.001)    # to 1
    for _ in range(4):
        c.record(1, 0.001)                     # confirmed
    assert c.count == 1 and c.check is None
    _run_for(c, c.due + 1e-9)
    c.probed([0.0012], [0.001], cost=0.1)     # 1 stays; the next probe is far (budget: 300 x 0.1 s)
    assert c.count == 1 and c.due >= 30 and not c.probe_due()
    for _ in range(4):
        c.record(1, 0.0013)                    # slower, but under 1.5x the other count's 1.2 ms
    assert not c.probe_due()
    for _ in range(4):
        c.record(1, 0.004)                     # 3.3x the other count's probe: probe now
    assert c.probe_due() and c.count == 1


def test_real_calls_at_n_slower_than_one_thread_move_to_one_at_once():
    """A probe flatters N on a shared core; N's real calls are held against 1 thread's real (else probed) time."""
    c = _choice()
    c.record(2, 0.001)
    c.probed([0.0012], [0.001], cost=0.0012)   # N stays: 1 thread probed at 1.2 ms
    for _ in range(8):
        c.record(2, 0.00125)                    # within 5% of 1 thread's probe: stays
    assert c.count == 2
    for _ in range(3):
        c.record(2, 0.00135)
    assert c.count == 2
    c.record(2, 0.00135)                        # the 12 calls' mean since the probe is 7% over it: to 1
    mean = (8 * 0.00125 + 4 * 0.00135) / 12
    assert c.count == 1 and c.switches == 1 and c.backoff == 4 and c.check == (pytest.approx(mean), 2)
    for _ in range(3):
        c.record(1, 0.0011)                     # confirmed on real calls: stays, and 1's real time is kept
    assert c.count == 1 and c.check is None and c.one == pytest.approx(0.0011)
    _run_for(c, c.due + 1e-9, per_call=0.0011)
    assert c.one == pytest.approx(0.0011)
    c.probed([0.0008], [0.0011], cost=0.0016)   # N flattered by the probe: switch, checked against 1.1 ms
    assert c.count == 2 and c.check == (pytest.approx(0.0011), 4)
    for _ in range(3):
        c.record(2, 0.00112)                    # within the margin of the calls before: the check passes
    assert c.count == 2 and c.check is None
    for _ in range(5):
        c.record(2, 0.00112)                    # 8 calls, mean 1.12 ms: under 1.05 x 1.1, stays
    assert c.count == 2
    c.record(2, 0.00112)
    c.record(2, 0.00112)
    c.record(2, 0.00112)
    c.record(2, 0.0112)                          # a stall of 10x: the mean since the decision (2.0 ms) loses
    assert c.count == 1 and c.switches == 3


def test_a_median_that_hides_stalls_does_not_keep_n():
    """Mostly faster at N, but a stall now and then (a time slice lost to another process): the mean decides."""
    c = _choice()
    c.record(2, 0.0003)
    c.probed([0.00034], [0.00027], cost=0.00068)   # N stays
    for i in range(16):
        c.record(2, 0.03 if i == 9 else 0.00027)   # median 0.27 ms, mean 2.1 ms
    assert c.count == 1


def test_a_chunk_of_batches_at_n_is_held_against_one_thread_at_once():
    """fit's calls run many batches each: one chunk is evidence enough (8 units), no need to wait for 8 calls."""
    c = _choice()
    c.record(2, 0.001 * 32, units=32)
    c.probed([0.001], [0.0009], cost=0.001)   # N stays
    c.record(2, 0.0008 * 32, units=32)         # faster than 1 thread: stays
    assert c.count == 2
    c.record(2, 0.0016 * 32, units=32)         # a chunk with stalls: the mean since the probe is 1.2 ms, to 1
    assert c.count == 1 and c.switches == 1


def test_real_calls_at_n_faster_than_one_thread_stay():
    c = _choice()
    c.record(2, 0.001)
    c.probed([0.0019], [0.001], cost=0.0019)
    for _ in range(40):
        c.record(2, 0.00105)
    assert c.count == 2 and c.switches == 0


def test_one_thread_is_timed_in_cpu_time_and_n_threads_by_the_wall_clock():
    import time

    assert _config.clock(1) is time.thread_time
    assert _config.clock(2) is time.perf_counter and _config.clock(64) is time.perf_counter


def test_calls_at_another_count_are_counted_but_not_timed():
    c = _choice()
    c.record(1, 0.5, units=3)
    assert c.units == {2: 0, 1: 3} and c.samples == [] and c.spent == 0.0
    c.record(2, 0.004, units=4)
    assert c.samples == [0.001] and c.units[2] == 4 and c.spent == 0.004


def test_long_calls_probe_once_per_count():
    c = _choice()
    c.record(2, 0.001)
    assert c.probe_rounds() == 2
    c.record(2, 1.0)
    c.record(2, 1.0)
    assert c.probe_rounds() == 1


# ------------------------------------------------------------------------------------- modes

def test_set_num_threads_none_returns_to_the_default():
    fnn.set_num_threads(1)
    assert fnn.thread_report()["mode"] == "explicit" and not _config.adaptive()
    fnn.set_num_threads(None)
    expect = ("explicit" if os.environ.get("OMP_NUM_THREADS") else "adaptive" if N > 1 else "one core")
    assert fnn.thread_report()["mode"] == expect
    with pytest.raises(ValueError, match="n"):
        fnn.set_num_threads(0)


def _run(code, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=env)


def test_omp_num_threads_is_an_explicit_count():
    res = _run("""
        import fastnn as fnn
        r = fnn.thread_report()
        fnn.set_num_threads(None)   # the default again: still OMP_NUM_THREADS
        print(r["mode"], r["num_threads"], fnn.thread_report()["mode"])
    """, {"OMP_NUM_THREADS": "2"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["explicit", "2", "explicit"]


def _problem(sizes=(784, 128, 10), n=64, batches=4, seed=0):
    layers = [fnn.Dense(i, o, activation="relu" if k < len(sizes) - 2 else None)
              for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    model = fnn.Sequential(layers, seed=seed)
    model.compile(optimizer=fnn.optim.Adam(model.parameters(), lr=1e-3), loss="cross_entropy")
    r = np.random.default_rng(seed)
    return model, r.standard_normal((n * batches, sizes[0])).astype(np.float32), r.integers(0, sizes[-1], n * batches)


def _scipy_blas_threads():
    return {c.get_num_threads() for c in _config._fastnn_blas()}


class _PreferOne(_config.ThreadChoice):
    """A choice whose every probe says 1 thread is twice as fast, probing at every call."""

    def probe_due(self):
        return True

    def probed(self, other, current, cost):
        fake = {1: [1.0], self.n: [2.0]}
        super().probed(fake[self.other], fake[self.count], cost=0.0)


@needs_cores
def test_an_explicit_count_is_never_overridden(monkeypatch):
    monkeypatch.setattr(_config, "ThreadChoice", _PreferOne)
    fnn.set_num_threads(N)
    model, x, y = _problem()
    for _ in range(5):
        model.train_step(x[:64], y[:64])
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    model.predict(x)
    engine = model._engine()
    assert not engine._adaptive and engine._choices == {} and engine._infer_choices == {}
    assert engine._plan.threads == N and _scipy_blas_threads() == {N}
    assert fnn.thread_report() == {"mode": "explicit", "num_threads": N, "omp_threads": N, "plans": []}
    fnn.set_num_threads(None)   # the default follows the (fake) probes: 1 thread
    if _config.adaptive():
        for _ in range(5):
            model.train_step(x[:64], y[:64])
        assert engine._adaptive and engine._plan.threads == 1
        assert [c.count for c in engine._choices.values()] == [1]
        assert _scipy_blas_threads() == {N}   # between calls SciPy's BLAS is back at the configured count


# ------------------------------------------------------------------------------------- same numbers

def _forced(count=None, schedule=None, probe=False):
    """A ThreadChoice class that runs at `count` (or switches after the units in `schedule`), never deciding
    by time; probe=True: a probe at every call (whose outcome is ignored)."""

    class Forced(_config.ThreadChoice):
        log = []

        def __init__(self, what, n):
            super().__init__(what, n)
            self.count = n if count is None else count
            self.sched = list(schedule or [])

        def probe_due(self):
            return probe

        def probed(self, other, current, cost):
            Forced.log.append((self.what, len(other), len(current)))

        def record(self, count_, seconds, units=1):
            Forced.log.append((self.what, count_, units))
            super().record(count_, seconds, units)
            if self.sched and sum(self.units.values()) >= self.sched[0]:
                self.sched.pop(0)
                self.count = self.other

    return Forced


def _train(model, x, y, steps=6):
    losses = [model.train_step(x[:64], y[:64]) for _ in range(steps)]
    hist = model.fit(x, y, batch_size=64, epochs=2, shuffle=True, verbose=0).history["loss"]
    grads = [p.grad.copy() for p in model.parameters()]
    return losses, hist, model._arena.data.copy(), grads, model.predict(x), model.predict(x[:20])


def _same(a, b):
    for u, v in zip(a, b):
        if isinstance(u, list) and u and isinstance(u[0], np.ndarray):
            for p, q in zip(u, v):
                np.testing.assert_array_equal(p, q)
        elif isinstance(u, np.ndarray):
            np.testing.assert_array_equal(u, v)
        else:
            assert u == v


@needs_cores
@pytest.mark.parametrize("count", [1, N])
def test_the_adaptive_default_gives_the_numbers_of_the_count_it_chose(monkeypatch, count):
    fnn.set_num_threads(count)
    want = _train(*_problem())
    fnn.set_num_threads(None)
    if not _config.adaptive():
        pytest.skip("OMP_NUM_THREADS is set: the default is an explicit count")
    monkeypatch.setattr(_config, "ThreadChoice", _forced(count))
    model = _problem()
    _same(_train(*model), want)
    assert model[0]._engine()._plan.threads == count


@needs_cores
def test_probes_leave_no_trace(monkeypatch):
    """A probe at every call (steps without the update, forwards dropped): the run is the explicit-N run."""
    fnn.set_num_threads(N)
    want = _train(*_problem())
    fnn.set_num_threads(None)
    if not _config.adaptive():
        pytest.skip("OMP_NUM_THREADS is set")
    forced = _forced(N, probe=True)
    monkeypatch.setattr(_config, "ThreadChoice", forced)
    _same(_train(*_problem()), want)
    assert any(len(e) == 3 and e[1] == 2 and e[2] == 2 for e in forced.log)   # probes ran (2 rounds each)


def _replay(counts, steps=6):
    """The training of _train, each train_step at the explicit count it ran at in the adaptive run."""
    model, x, y = _problem()
    losses = []
    for k in counts[:steps]:
        fnn.set_num_threads(k)
        losses.append(model.train_step(x[:64], y[:64]))
    return losses, model


@needs_cores
def test_each_step_runs_with_the_numbers_of_its_count_across_switches(monkeypatch):
    fnn.set_num_threads(None)
    if not _config.adaptive():
        pytest.skip("OMP_NUM_THREADS is set")
    forced = _forced(N, schedule=[2, 4, 5])
    monkeypatch.setattr(_config, "ThreadChoice", forced)
    model, x, y = _problem()
    losses = [model.train_step(x[:64], y[:64]) for _ in range(8)]
    counts = [e[1] for e in forced.log if e[0].startswith("train")]
    assert counts == [N, N, 1, 1, N, 1, 1, 1]
    monkeypatch.undo()
    want, replayed = _replay(counts, steps=8)
    assert losses == want
    np.testing.assert_array_equal(model._arena.data, replayed._arena.data)
    _, at_n = _replay([N] * 8, steps=8)   # the counts' rounding differs here: the replay is a real check
    assert not np.array_equal(at_n._arena.data, replayed._arena.data)


@needs_cores
def test_calls_whose_plan_calls_no_blas_leave_scipys_blas_count_alone(monkeypatch):
    """At 1 thread the tiny model's GEMMs all go to the own kernels (where AVX2/FMA exist): its train_step, fit
    and predict then neither set SciPy's OpenBLAS to 1 thread nor back; with the own kernels off (every GEMM to
    BLAS) each call sets it to 1 and the last one out back to N. Either way each call has the bits of an
    explicit 1 thread."""
    from fastnn._kernels import _blas

    fnn.set_num_threads(1)
    want = _train(*_problem())
    fnn.set_num_threads(None)
    if not _config.adaptive():
        pytest.skip("OMP_NUM_THREADS is set")
    monkeypatch.setattr(_config, "ThreadChoice", _forced(1))
    sets = []
    real = _config._set_running
    monkeypatch.setattr(_config, "_set_running", lambda n: (sets.append(n), real(n)))
    model = _problem()
    _same(_train(*model), want)   # the first forward of a row count sets the count: no pooled plan answers yet
    m, x, y = model
    engine = m._engine()
    own = _blas.small_gemm_available()
    assert engine._plan.threads == 1 and engine._plan.uses_blas == (not own)
    sets.clear()
    m.train_step(x[:64], y[:64])
    m.fit(x, y, batch_size=64, epochs=1, verbose=0)
    m.predict(x[:64])   # the pooled plan (built for 256 rows) answers uses_blas(64)
    m.predict(x[:20])
    sets_at_256 = len(sets)
    m.predict(x)   # 256 rows: 25.7e6 multiply-adds, beyond the own kernels' rule: BLAS, so the count is set
    assert len(sets) == sets_at_256 + 2
    del sets[sets_at_256:]
    assert (sets == []) == own, sets
    assert _scipy_blas_threads() == {N} and _config._inflight == 0 and _config._blas_inflight == 0
    sets.clear()
    _blas.set_small_gemm(False)   # plans built from now on: BLAS only
    try:
        model = _problem(seed=1)
        model[0].train_step(model[1][:64], model[2][:64])
        model[0].predict(model[1])
        model[0].predict(model[1])   # the pooled plan answers uses_blas(n)
        assert model[0]._engine()._plan.uses_blas
        assert sets and sets[0] == 1 and sets[-1] == N and set(sets) == {1, N}
    finally:
        _blas.set_small_gemm(True)
    assert _scipy_blas_threads() == {N} and _config._inflight == 0 and _config._blas_inflight == 0


# ------------------------------------------------------------------------------------- threads, processes

@needs_cores
def test_two_python_threads_on_two_models_get_the_numbers_of_the_counts_they_ran_at(monkeypatch):
    """Choices that switch every few calls, two threads training and predicting at once: the shared BLAS
    count never changes under a running call, so each model's steps replay bit for bit at the counts
    recorded for them; afterwards no call is counted as in progress."""
    fnn.set_num_threads(None)
    if not _config.adaptive():
        pytest.skip("OMP_NUM_THREADS is set")
    results, errors, barrier = {}, [], threading.Barrier(2)

    class Logged(_forced(N, schedule=list(range(3, 200, 3)), probe=True)):
        pass

    monkeypatch.setattr(_config, "ThreadChoice", Logged)

    def work(i):
        try:
            model, x, y = _problem(seed=i)
            barrier.wait()
            counts, losses, preds = [], [], []
            for _ in range(12):
                losses.append(model.train_step(x[:64], y[:64]))
                counts.append(model._engine()._plan.threads)
                preds.append(model.predict(x))
            results[i] = (counts, losses, model._arena.data.copy(), preds)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert _config._inflight == 0 and _config._blas_inflight == 0 and not _config._probing
    monkeypatch.undo()
    for i in range(2):
        counts, losses, weights, preds = results[i]
        model, x, y = _problem(seed=i)
        for k, loss in zip(counts, losses):
            fnn.set_num_threads(k)
            assert model.train_step(x[:64], y[:64]) == loss
        np.testing.assert_array_equal(model._arena.data, weights)
        # each prediction is the bits of 1 or of N threads on the weights after its step
        assert all(p.shape == (256, 10) and np.all(np.isfinite(p)) for p in preds)


def _child(_):
    return (_config._forked, _config.omp_threads(), fnn.thread_report()["mode"], _config.adaptive(),
            _problem()[0].predict(np.ones((40, 784), np.float32)).shape)


@needs_cores
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_children_use_the_threads_config_says(method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method")
    fnn.set_num_threads(None)
    model, x, y = _problem()
    model.train_step(x[:64], y[:64])   # the parent's pools are up (and its choice made) before the fork
    with mp.get_context(method).Pool(1) as pool:
        forked, omp, mode, adaptive, shape = pool.map_async(_child, [0]).get(120)[0]
    assert shape == (40, 10)
    if method == "fork":   # OpenMP on one thread, no adaptive switching
        assert (forked, omp, mode, adaptive) == (True, 1, "forked", False)
    else:                  # a fresh process: the default again
        default = "explicit" if os.environ.get("OMP_NUM_THREADS") else "adaptive"
        assert (forked, mode) == (False, default)


@needs_cores
def test_plans_with_nothing_threaded_run_at_n_without_choosing(monkeypatch):
    """64-wide layers at batch 32 (all GEMMs own single-threaded kernels, no pass over its parallel threshold):
    no ThreadChoice, no probes; the numbers are the explicit-N run's."""
    fnn.set_num_threads(N)
    want = _train(*_problem((64, 64, 64, 10), n=32), steps=4)
    fnn.set_num_threads(None)
    if not _config.adaptive():
        pytest.skip("OMP_NUM_THREADS is set")
    made = []
    monkeypatch.setattr(_config, "ThreadChoice", lambda *a, **k: made.append(a))
    model, x, y = _problem((64, 64, 64, 10), n=32)
    got = _train(model, x, y, steps=4)
    _same(got, want)
    engine = model._engine()
    assert [a for a in made if a[0].startswith("train")] == []   # (predict of all 128 rows does choose)
    assert set(engine._choices.values()) == {False} and engine._plan.threads == N
