"""Runtime configuration: default dtype, the one thread knob, and show_config().

fastnn runs on two thread pools: the OpenMP pool of its element-wise kernels and
the pthread pool of the OpenBLAS that SciPy bundles (used through cython_blas).
``set_num_threads(n)`` sets both (BLAS through threadpoolctl), so they never
oversubscribe the cores, and fastnn runs at exactly n. Without it (or after
``set_num_threads(None)``) the count is ``OMP_NUM_THREADS`` when that is set, else the
*adaptive default*: each compiled plan runs at the usable cores N or at 1 thread, whichever
its own timings say is faster now (``ThreadChoice`` below; docs/design.md, "Threads").
``thread_report()`` says which count each plan runs at.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
import time
import weakref

import numpy as np
import scipy
from threadpoolctl import ThreadpoolController

from . import _validation as V
from ._kernels import _runtime
from ._version import __version__

_DEFAULT_DTYPE = np.dtype(np.float32)
_controller: ThreadpoolController | None = None
_num_threads: int | None = None   # set_num_threads(n) or OMP_NUM_THREADS; in the adaptive default: the usable cores
_explicit = False                 # the count was given (set_num_threads(n), OMP_NUM_THREADS): obeyed, never adapted
_thread_key: object = None        # thread_key(), kept by _apply and the fork handler


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _blas_controller() -> ThreadpoolController:
    global _controller
    if _controller is None:
        import scipy.linalg  # noqa: F401 - loads SciPy's OpenBLAS so threadpoolctl sees it

        _controller = ThreadpoolController()
    return _controller


def get_default_dtype() -> np.dtype:
    return _DEFAULT_DTYPE


def set_default_dtype(dtype) -> None:
    """Set the dtype new models use when none is given ('float32' or 'float64')."""
    global _DEFAULT_DTYPE
    _DEFAULT_DTYPE = V.resolve_dtype(dtype)


_MAX_THREADS = 1024   # OpenMP takes a C int; far more threads than cores only thrashes (and may not start)


def set_num_threads(n: int | None) -> None:
    """Use `n` threads (an int in [1, 1024]) in both fastnn's OpenMP kernels and the BLAS they call.

    An explicit count is obeyed as it is, never adapted. None: back to the default (OMP_NUM_THREADS
    when set, else the adaptive default over the usable cores; see the module docstring).
    In a child made by fork() (see _after_fork_in_child) the OpenMP kernels stay on one thread.
    """
    if n is None:
        _init_threads()
        return
    _apply(V.check_int(n, "n", low=1, high=_MAX_THREADS), explicit=True)


def given_num_threads() -> int | None:
    """The explicit count (set_num_threads(n) or OMP_NUM_THREADS), or None under the adaptive default: what
    to hand back to set_num_threads to restore the setting as it was."""
    if _num_threads is None:
        _init_threads()
    return _num_threads if _explicit else None


def _apply(n: int, explicit: bool) -> None:
    global _num_threads, _explicit, _running, _thread_key
    with _cond:
        _num_threads, _explicit = n, explicit
        _runtime.set_omp_threads(omp_threads())
        _blas_controller().limit(limits=n, user_api="blas")
        _running = n
        _thread_key = ("adaptive", n) if adaptive() else omp_threads()


def omp_threads() -> int:
    """The OpenMP thread count fastnn's kernels use: get_num_threads(), or 1 in a forked child."""
    return 1 if _forked else get_num_threads()


# --------------------------------------------------------------------------------------------- fork
# GNU OpenMP's thread pool does not survive fork(): in the child, the forking thread's next parallel
# region with more than one thread waits forever for pool threads that were not copied. Python's
# fork start method (multiprocessing's default on Linux before 3.14), gunicorn --preload and joblib
# fork. So a forked child runs fastnn's OpenMP kernels on one thread (BLAS keeps its threads: OpenBLAS
# re-creates its pool after fork) and forgets the parent's other threads' uses of its models
# (_runtime.UseGuard). Plans are rebuilt for the new count. For parallel children use the spawn or
# forkserver start method, where fastnn starts fresh.
_forked = False


def _after_fork_in_child() -> None:
    global _forked, _cond, _inflight, _blas_inflight, _probing, _thread_key
    _forked = True
    _thread_key = 1
    _runtime.after_fork_in_child()
    _runtime.set_omp_threads(1)
    # the parent's other threads are gone
    _cond, _inflight, _blas_inflight, _probing = threading.Condition(threading.Lock()), 0, 0, False
    if _num_threads is not None and _running != _num_threads:       # an adaptive choice of 1: back to the count
        _set_running(_num_threads)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ----------------------------------------------------------------------------------- adaptive default
# Why: on a machine whose cores other work also uses (another process, or NumPy's own OpenBLAS pool
# spinning between our calls), a GEMM that BLAS splits statically over N threads waits for the thread
# that lost its core: measured here, 2 threads ran 5-100x slower than 1 (bench/README.md, "Threads on a
# shared machine"). Quiet, N threads are up to 1.9x faster. So, unless a count was given, each compiled
# plan (engine.py: per batch size and target format for training, per row count for inference) runs at
# N = the usable cores or at 1, whichever its timings say is faster now:
#
# * it starts at N; after its first timed call, and from then on whenever a probe is due, the engine runs a
#   *probe*: the same call without side effects (a training step without the optimizer update, on the
#   batch at hand, before the real step overwrites the gradients and output; a forward whose result is
#   dropped), alternately at the other count and at the current one (2 each; 1 each when a call takes
#   over LONG_CALL seconds). The other count wins when its mean is under (1 - MARGIN) x the current one's.
#   A switch is checked on the real calls: when the median of the first 3 calls at the new count is over
#   (1 + MARGIN) x the median of the last (2 or more) real calls at the old one (a probe of 4 calls can
#   catch a moment when the other core is free), the choice goes back at once, with the backoff doubled.
# * at N, the real calls are also held against 1 thread: from the 8th unit after a decision, at every 4th
#   call (every call of 4 units or more: fit's chunks of batches), when their mean time per unit since the
#   decision is over (1 + MARGIN) x 1 thread's (its real calls' mean over its last period at 1, or, before
#   any, its last probe mean), the choice moves to 1 at once, with the backoff doubled and the check above.
#   A probe flatters N on a shared core: its N-thread calls follow 1-thread calls, and the scheduler favours
#   a worker that has just slept (medium forward with a busy process: 2.9-4.2 ms per probe call at 2
#   threads, 6.1 ms median on the real calls that followed, 3.8 ms at 1 thread). The mean, not a median:
#   N's calls there are mostly fast with a stall of a time slice now and then (tiny train_step: median
#   0.27 ms at 2 threads against 0.34 at 1, with calls of 16-32 ms).
# * the next probe is due when the plan's own calls have run PROBE_BASE x backoff seconds since (backoff
#   doubles, up to BACKOFF_MAX, each time the current count wins and resets at a switch), and never
#   before they have run BUDGET x the probe's time at the other count (the calls at a count that loses
#   take at most 1/BUDGET of the plan's time, however slow that count is now; while the current count
#   is the slow one, probes come as soon as the backoff allows); when the current count's last 4 calls
#   have a median over LOAD_CHANGE x the median after the decision, as soon as the budget allows, and
#   when it is over LOAD_CHANGE x the other count's mean in the last probe (the probe's "stay" was
#   wrong, or the load changed: staying costs more than a probe), at once. The clock is the plan's own
#   time, so a program that calls a plan now and then pays for no probes between.
# * the clock (clock(count)): wall time at N; at 1 thread, this thread's CPU time (all of a 1-thread call's work
#   runs on the calling thread). A 1-thread call timed right after N-thread calls shares a core with SciPy's
#   OpenBLAS worker, which spins ~0.1 s after each threaded GEMM before it sleeps: with one other busy process
#   on 2 cores, the wall clock read 1 thread up to 2x slower in every probe (each probe alternates the counts)
#   than it runs once the worker sleeps, and kept the plan at N (medium train_step: 17.3 ms probed at 1
#   thread against 11.1 at 2; 10.5 at 1 thread alone). CPU time leaves out the time the thread waits for a
#   core; when that wait is not the worker's but the machine's, N threads wait for cores too.
# * real work only ever runs at the chosen count, so each call's numbers are exactly those of that
#   count (the plans for N and 1 differ in rounding: the own-kernel rule depends on the count, and
#   SciPy's OpenBLAS rounds some GEMMs differently at 1 and 2 threads). Which count ran how many calls
#   is in thread_report(); for runs that must repeat bit for bit, set the count explicitly.
# * SciPy's OpenBLAS thread count is process-wide: it changes only when no compiled call of the
#   adaptive default is in progress in any thread (a call entering while others run at another count
#   runs at theirs, with the plan for that count), the last call out sets it back to N (so BLAS calls
#   outside these calls see the configured count), and a probe runs only when its call is alone (calls
#   of other threads wait for it to end). A call whose plan sends no GEMM to BLAS at its count (all to the
#   own kernels: TrainPlan.uses_blas, InferPlan.uses_blas(n)) leaves that count alone and runs at its own.
MARGIN = 0.05
PROBE_BASE = 0.05
BACKOFF_MAX = 64
BUDGET = 300.0   # a probe at a losing N also leaves OpenBLAS workers spinning ~0.1 s: a few times its own time
LOAD_CHANGE = 1.5
LONG_CALL = 0.02

_cond = threading.Condition(threading.Lock())
_inflight = 0        # compiled calls of the adaptive default in progress, in all threads
_blas_inflight = 0   # ... of them, calls whose plans call BLAS (SciPy's OpenBLAS is set to their count)
_probing = False     # a probe is running (its thread alone switches the count)
_running: int | None = None   # the thread count SciPy's OpenBLAS is set to
_scipy_blas: list | None = None
_choices: weakref.WeakSet = weakref.WeakSet()


def adaptive() -> bool:
    """Whether the adaptive default is on: no count given, not a forked child, more than one core."""
    return get_num_threads() > 1 and not _explicit and not _forked


def thread_key():
    """What a plan built now depends on of the threads: the OpenMP count, or ('adaptive', N). Read every
    step (engine's _stale), so it is kept up to date by _apply and the fork handler, not computed."""
    if _num_threads is None:
        _init_threads()
    return _thread_key


def _fastnn_blas() -> list:
    """threadpoolctl's controllers of the BLAS fastnn calls (SciPy's; every BLAS if none is SciPy's)."""
    libs = [c for c in _blas_controller().lib_controllers if c.user_api == "blas"]
    return [c for c in libs if "scipy" in (c.filepath or "") and "numpy" not in (c.filepath or "")] or libs


def _blas_setters() -> list:
    """A set-thread-count function per BLAS fastnn calls: OpenBLAS's C function itself where it is found
    (0.25 us a call, against 0.75 us through threadpoolctl), else the controller's method."""
    global _scipy_blas
    if _scipy_blas is None:
        setters = []
        for c in _fastnn_blas():
            fn = None
            if c.internal_api == "openblas":
                lib = ctypes.CDLL(c.filepath)
                for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                             "openblas_set_num_threads64_", "openblas_set_num_threads"):
                    fn = getattr(lib, name, None)
                    if fn is not None:
                        fn.argtypes, fn.restype = [ctypes.c_int], None
                        break
            setters.append(fn or c.set_num_threads)
        _scipy_blas = setters
    return _scipy_blas


def _set_running(n: int) -> None:
    global _running
    for setter in _blas_setters():
        setter(n)
    _running = n


def enter_threads(want: int, blas: bool = True) -> int:
    """Start a compiled call of the adaptive default that wants `want` threads; returns the count it runs
    at (`want`, unless calls at another count that call BLAS are in progress). blas=False: the call's plan
    sends no GEMM to BLAS at `want` (all to the own kernels), so SciPy's OpenBLAS count does not matter to
    it: it runs at `want` and leaves that count alone (setting it and back cost ~1 us a call, the tiny
    forward at 1 thread 5% with the clock). Pair with exit_threads(blas)."""
    global _inflight, _blas_inflight
    with _cond:
        while _probing:
            _cond.wait()
        _inflight += 1
        if not blas:
            return want
        if _blas_inflight == 0 and _running != want:
            _set_running(want)
        _blas_inflight += 1
        return _running


def exit_threads(blas: bool = True) -> None:
    """End a compiled call (enter_threads, the same `blas`); the last BLAS call out (or a probe's call, which
    set the count itself) puts SciPy's OpenBLAS back to the configured count, so that BLAS calls outside the
    adaptive default's calls (the per-layer path, a loss without a plan kernel, forward of a few rows) run
    at get_num_threads() as they do under an explicit count."""
    global _inflight, _blas_inflight
    with _cond:
        _inflight -= 1
        if blas:
            _blas_inflight -= 1
        if _blas_inflight == 0 and _running != _num_threads:
            _set_running(_num_threads)


def begin_probe() -> bool:
    """Inside enter/exit_threads: whether this call is alone and may probe (then end_probe() after)."""
    global _probing
    with _cond:
        if _inflight != 1 or _probing:
            return False
        _probing = True
        return True


def probe_threads(n: int) -> None:
    """During a probe: run at n threads (SciPy's OpenBLAS and this thread's OpenMP count)."""
    if _running != n:
        _set_running(n)
    _runtime.sync_omp_threads(n)


def end_probe(n: int) -> None:
    """End the probe, back at n threads (the count the call runs at); wakes calls waiting for it."""
    global _probing
    with _cond:
        probe_threads(n)
        _probing = False
        _cond.notify_all()


def clock(count: int):
    """The clock that times a call of the adaptive default at `count` threads (see the section comment)."""
    return time.thread_time if count == 1 else time.perf_counter


class ThreadChoice:
    """One plan's choice between N threads and 1 (see the section comment). ``count`` is the choice;
    ``record`` takes the real calls' times, ``probe_due``/``probed`` run the probes (on times handed in:
    the decisions are a pure function of them)."""

    def __init__(self, what: str, n: int):
        self.what, self.n, self.count = what, n, n
        self.samples: list[float] = []    # seconds per unit of the last 8 real calls since the last decision
        self.seen = 0                     # real calls recorded since the last decision
        self.done = 0                     # ... and their units
        self.ref: float | None = None     # median of the first 4 of them
        self.spent = 0.0                  # seconds of real calls at the current count since the last probe
        self.due = 0.0                    # the next probe is due when spent reaches this
        self.earliest = 0.0               # ... and never before (the probe budget)
        self.backoff = 1
        self.probes = self.switches = 0
        self.units = {n: 0, 1: 0}         # units (steps, batches, forward calls) run at each count
        self.last = None                  # (other count, its mean, current count, its mean) of the last probe
        self.check = None                 # after a switch: (the real calls' time before it, backoff before)
        self.probe_means: dict = {}       # count -> its mean (seconds per unit) in the last probe
        self.one: float | None = None     # 1 thread's real time per unit: the mean since the last decision
        with _cond:
            _choices.add(self)

    def _restart(self) -> None:
        """A decision (a probe, a switch): the real calls' statistics start again."""
        self.samples, self.ref, self.seen, self.done, self.spent = [], None, 0, 0, 0.0

    @property
    def other(self) -> int:
        return 1 if self.count != 1 else self.n

    def record(self, count: int, seconds: float, units: int = 1) -> None:
        """A real call of `units` steps ran at `count` threads in `seconds`. Runs after every call, so it
        takes no lock (list appends are atomic under the GIL; a lost update of two threads' calls at once
        only skips a sample) and looks at the statistics every 4th sample (every sample of 4 units or more)."""
        self.units[count] = self.units.get(count, 0) + units
        if count != self.count or units <= 0:
            return
        self.spent += seconds
        self.done += units
        s = self.samples
        s.append(seconds / units)
        if len(s) > 8:
            del s[0]
        self.seen += 1
        if self.check is not None and self.seen >= 3:
            before, backoff = self.check
            self.check = None
            if count == 1:
                self.one = sum(s[:3]) / 3
            if _median(s[:3]) > (1.0 + MARGIN) * before:   # the switch lost on real calls: back at once
                with _cond:
                    self.count = self.other
                    self.switches += 1
                    self.backoff = min(2 * backoff, BACKOFF_MAX)
                    self._restart()
                    self.due = max(self.earliest, PROBE_BASE * self.backoff)
                return
        if self.seen % 4 and units < 4:   # every 4th call, or every call of 4 units or more (fit's chunks)
            return
        recent = _median(s[-4:])
        mean = self.spent / self.done   # since the decision: what the calls cost, stalls included
        if count == 1:
            self.one = mean
        elif self.done >= 8:
            one = self.one if self.one is not None else self.probe_means.get(1)
            if one is not None and mean > (1.0 + MARGIN) * one:   # N's real calls lose to 1 thread: to 1 now
                with _cond:
                    self.check = (mean, self.backoff)
                    self.count = 1
                    self.switches += 1
                    self.backoff = min(2 * self.backoff, BACKOFF_MAX)
                    self._restart()
                    self.due = max(self.earliest, PROBE_BASE * self.backoff)
                return
        if self.ref is None:
            self.ref = _median(s)
        elif recent > LOAD_CHANGE * self.ref:
            self.due = min(self.due, self.earliest)
        other = self.probe_means.get(self.other)
        if other is not None and recent > LOAD_CHANGE * other:
            self.due = 0.0

    def probe_due(self) -> bool:
        return self.spent >= self.due and len(self.samples) >= 1

    def probe_rounds(self) -> int:
        return 1 if self.samples and _median(self.samples) > LONG_CALL else 2

    def probed(self, other: list, current: list, cost: float) -> None:
        """A probe's times (seconds per unit at the other count and at the current one); `cost`: the seconds
        it spent at the other count."""
        with _cond:
            o, c = sum(other) / len(other), sum(current) / len(current)
            self.last = (self.other, o, self.count, c)
            self.probe_means = {self.other: o, self.count: c}
            self.probes += 1
            if o < (1.0 - MARGIN) * c:
                self.check = (_median(self.samples), self.backoff) if len(self.samples) >= 2 else None
                self.count = self.other
                self.switches += 1
                self.backoff = 1
            else:
                self.backoff = min(2 * self.backoff, BACKOFF_MAX)
            self._restart()
            self.earliest = BUDGET * cost
            self.due = max(self.earliest, PROBE_BASE * self.backoff)

    def report(self) -> dict:
        with _cond:
            med = _median(self.samples) if self.samples else None
            return {"what": self.what, "threads": self.count, "units": dict(self.units), "probes": self.probes,
                    "switches": self.switches, "ms": None if med is None else med * 1e3,
                    "last_probe_ms": None if self.last is None else {self.last[0]: self.last[1] * 1e3,
                                                                     self.last[2]: self.last[3] * 1e3}}


def _median(v: list) -> float:
    s = sorted(v)
    h = len(s) // 2
    return s[h] if len(s) % 2 else 0.5 * (s[h - 1] + s[h])


def thread_report() -> dict:
    """How fastnn picks its thread counts now: the mode ('explicit': set_num_threads(n) or OMP_NUM_THREADS;
    'adaptive': the default; 'forked': a forked child, OpenMP on one thread), the count, and in the adaptive
    mode each live plan's choice: the count it runs at, the units (steps, batches, forward calls) run at each
    count, probes, switches, its recent ms per unit and the last probe's means."""
    n = get_num_threads()
    mode = "forked" if _forked else "explicit" if _explicit else "adaptive" if n > 1 else "one core"
    with _cond:
        choices = list(_choices)
    return {"mode": mode, "num_threads": get_num_threads(), "omp_threads": omp_threads(),
            "plans": [c.report() for c in choices] if mode == "adaptive" else []}


def get_num_threads() -> int:
    """The thread count set by set_num_threads (default: OMP_NUM_THREADS, else the usable cores, which the
    adaptive default runs at or drops to 1 from: see thread_report())."""
    if _num_threads is None:
        _init_threads()
    return _num_threads


def _init_threads() -> None:
    """The default: OMP_NUM_THREADS (a user's explicit count) when it is set and parses, else adaptive."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    try:
        n, explicit = (int(env.split(",")[0]), True) if env else (_usable_cores(), False)
    except ValueError:
        n, explicit = _usable_cores(), False
    _apply(min(max(1, n), _MAX_THREADS), explicit)


def config() -> dict:
    """Everything show_config() prints, as a dict."""
    try:
        from . import _build_info as B

        flags, debug = f"{B.COMPILER_FLAGS} (link: {B.LINK_FLAGS or 'none'})", B.DEBUG_CYTHON
    except (ImportError, AttributeError):
        flags, debug = "unknown (no _build_info)", None

    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer", "filepath")}
        for info in _blas_controller().info()
        if info.get("user_api") == "blas"
    ]
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "openmp": _runtime.openmp_enabled(),
        "openmp_version": _runtime.openmp_version(),
        "num_threads": get_num_threads(),
        "thread_mode": thread_report()["mode"],
        "omp_threads": _runtime.get_omp_threads(),
        "blas": blas,
        "default_dtype": str(_DEFAULT_DTYPE),
        "compiler_flags": flags,
        "debug_cython": debug,
    }


def show_config(file=None) -> None:
    """Print version, OpenMP and thread count, the BLAS libraries and their threads, dtype, flags."""
    c = config()
    out = file or sys.stdout
    lines = [
        f"fastnn {c['version']} (Python {c['python']}, NumPy {c['numpy']}, SciPy {c['scipy']})",
        f"platform:       {c['platform']}",
        f"OpenMP:         {'on' if c['openmp'] else 'off'}"
        + (f" (_OPENMP {c['openmp_version']}, max threads {c['omp_threads']})" if c["openmp"] else ""),
        f"threads:        {c['num_threads']} ({c['thread_mode']}: fnn.set_num_threads, fnn.thread_report)",
        f"default dtype:  {c['default_dtype']}",
        f"compiler flags: {c['compiler_flags']}" + (" [debug build]" if c["debug_cython"] else ""),
        "BLAS:",
    ]
    for b in c["blas"]:
        lines.append(
            f"  {b['internal_api']} {b['version']} threads={b['num_threads']} "
            f"({b['threading_layer']}) {b['filepath']}"
        )
    print("\n".join(lines), file=out)
