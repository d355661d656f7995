"""Timing machinery: thread pools pinned and reported, the machine's peaks, alternating timing.

Pools. A process running fastnn, NumPy, SciPy and PyTorch has up to five thread pools:
fastnn's OpenMP (libgomp, made passive by fastnn), SciPy's OpenBLAS (fastnn's GEMMs), NumPy's
OpenBLAS, and PyTorch's intra-op pool (OpenMP) and MKL. ``Pools.pin(n)`` sets every one of
them to n threads - ``fastnn.set_num_threads(n)``, threadpoolctl limits on every BLAS and
OpenMP library loaded, and ``torch.set_num_threads(n)`` - and ``Pools.report()`` says what
each one is set to.

Alternation. ``alternate`` times several implementations (each at its own thread count) in
one process, round-robin: each round runs a short block of consecutive calls of every
implementation, starting the round at a rotating position, with the pools re-pinned and a
short sleep (so the previous implementation's pools go idle) before every block. Drift of the
machine (other processes, clock changes) then hits every implementation alike, and the
median over the rounds cancels it.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    """Versions of Python and of every library the benchmark may use (None when not installed)."""
    import scipy

    import fastnn

    out = {"python": sys.version.split()[0], "fastnn": fastnn.__version__, "numpy": np.__version__,
           "scipy": scipy.__version__}
    for mod, key in (("torch", "torch"), ("sklearn", "scikit-learn"), ("jax", "jax"), ("optax", "optax"),
                     ("onnxruntime", "onnxruntime"), ("threadpoolctl", "threadpoolctl")):
        m = sys.modules.get(mod)
        out[key] = getattr(m, "__version__", None) if m else None
    return out


def gemm_kernels() -> str:
    """Which of fastnn's own GEMM kernels run here (csrc/fnn_gemm.h): the SIMD level a table was measured at."""
    from fastnn._kernels import _blas

    if not _blas.small_gemm_available():
        return "BLAS only (no AVX2/FMA)"
    return "AVX2+FMA, AVX-512VL wide panels" if _blas.wide_gemm_available() else "AVX2+FMA (no AVX-512VL)"


def machine() -> dict:
    return {"cpu": cpu_name(), "usable_cores": usable_cores(), "platform": platform.platform(),
            "gemm_kernels": gemm_kernels(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


class Pools:
    """Every thread pool in the process, pinned to one thread count at a time."""

    def __init__(self):
        self.current = None
        self._controller = None
        self._first_limiter = None   # remembers every library's thread count before the first pin
        self._torch_threads = None
        self._fastnn_threads = None
        self._executors: dict[int, ThreadPoolExecutor] = {}

    def refresh(self) -> None:
        """Rescan the loaded libraries (call after importing torch or scikit-learn)."""
        from threadpoolctl import ThreadpoolController

        self._controller = ThreadpoolController()
        self.current = None

    def pin(self, n: int) -> None:
        """Set fastnn's pools, every BLAS/OpenMP library threadpoolctl sees, and torch's intra-op pool to n."""
        if n == self.current:
            return
        import fastnn

        if self._controller is None:
            self.refresh()
        torch = sys.modules.get("torch")
        if self._fastnn_threads is None:
            self._fastnn_threads = fastnn.get_num_threads()
            self._torch_threads = torch.get_num_threads() if torch is not None else None
        fastnn.set_num_threads(n)
        limiter = self._controller.limit(limits=n)   # NumPy's and SciPy's OpenBLAS, torch's MKL, every OpenMP runtime
        if self._first_limiter is None:
            self._first_limiter = limiter
        if torch is not None:
            torch.set_num_threads(n)
        self.current = n

    def restore(self) -> None:
        """Put every pool back to its thread count before the first pin."""
        if self._first_limiter is not None:
            self._first_limiter.restore_original_limits()
        if self._fastnn_threads is not None:
            import fastnn

            fastnn.set_num_threads(self._fastnn_threads)
        torch = sys.modules.get("torch")
        if torch is not None and self._torch_threads is not None:
            torch.set_num_threads(self._torch_threads)
        self.current = self._first_limiter = self._fastnn_threads = self._torch_threads = None

    def executor(self, n: int) -> ThreadPoolExecutor:
        """A Python thread pool of n workers (for the n-thread memory copy)."""
        if n not in self._executors:
            self._executors[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fastnn-bench-copy")
        return self._executors[n]

    def close(self) -> None:
        """Restore the pools and shut the copy threads down."""
        self.restore()
        for ex in self._executors.values():
            ex.shutdown()
        self._executors.clear()

    def report(self) -> dict:
        """What every pool is set to now: fastnn's knob and OpenMP pool, torch's pool, each library."""
        from threadpoolctl import ThreadpoolController

        import fastnn
        from fastnn._kernels import _runtime

        policy = os.environ.get("OMP_WAIT_POLICY") or os.environ.get("GOMP_SPINCOUNT")
        out = {
            "threads": self.current,
            "fastnn_num_threads": fastnn.get_num_threads(),
            "fastnn_omp_threads": _runtime.get_omp_threads(),
            "fastnn_omp_wait_policy": f"user ({policy})" if policy else "passive (set by fastnn)",
            "libraries": [],
        }
        torch = sys.modules.get("torch")
        if torch is not None:
            out["torch_num_threads"] = torch.get_num_threads()
        for info in ThreadpoolController().info():
            out["libraries"].append({
                "user_api": info.get("user_api"), "internal_api": info.get("internal_api"),
                "prefix": info.get("prefix"), "version": info.get("version"),
                "num_threads": info.get("num_threads"), "owner": _owner(info.get("filepath") or ""),
                "filepath": info.get("filepath"),
            })
        return out


def _owner(path: str) -> str:
    """The Python package a shared library ships with (from its path), else 'system'."""
    marker = "site-packages/"
    if marker not in path:
        return "system"
    top = path.split(marker, 1)[1].split("/", 1)[0].removesuffix(".libs")
    return {"scikit_learn": "sklearn"}.get(top, top)


def describe_pools(rep: dict) -> str:
    """One line: each pool and its thread count."""
    parts = [f"fastnn {rep['fastnn_num_threads']} (OpenMP {rep['fastnn_omp_threads']}, "
             f"{rep['fastnn_omp_wait_policy']})"]
    if "torch_num_threads" in rep:
        parts.append(f"torch intra-op {rep['torch_num_threads']}")
    for lib in rep["libraries"]:
        parts.append(f"{lib['prefix']}[{lib['owner']}] {lib['num_threads']}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------ peaks

def gemm_peak(dtype, n=2048, repeats=3) -> float:
    """Best FLOP/s of an n x n x n GEMM (SciPy's BLAS, the one fastnn calls) at the pinned thread count."""
    from scipy.linalg import blas

    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    c = np.zeros((n, n), dtype, order="F")
    gemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)   # warm-up
    best = min(_timed(lambda: gemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)) for _ in range(repeats))
    return 2.0 * n**3 / best


def copy_bandwidth(mib=64, threads=1, executor=None, repeats=5) -> float:
    """Best bytes/s of np.copyto of a `mib` MiB array (read + write counted), split over `threads`."""
    from .optim import copy_step

    copy = copy_step(2 * mib << 20, threads, executor)
    copy()
    return 2 * (mib << 20) / min(_timed(copy) for _ in range(repeats))


def inplace_bandwidth(mib=64, threads=1, executor=None, repeats=5) -> float:
    """Best bytes/s of an in-place pass (a *= 1) over a `mib` MiB array (read + write counted)."""
    from .optim import inplace_step

    touch = inplace_step(2 * mib << 20, threads, executor)
    touch()
    return 2 * (mib << 20) / min(_timed(touch) for _ in range(repeats))


def measure_peaks(pools: Pools, threads, gemm_n=2048, copy_mib=64, repeats=3) -> dict:
    """{n: {"sgemm_flops", "dgemm_flops", "copy_bytes_per_s", "inplace_bytes_per_s", ...}} per thread count n."""
    out = {}
    for n in threads:
        pools.pin(n)
        out[n] = {
            "sgemm_flops": gemm_peak(np.float32, gemm_n, repeats),
            "dgemm_flops": gemm_peak(np.float64, gemm_n, repeats),
            "copy_bytes_per_s": copy_bandwidth(copy_mib, n, pools.executor(n), repeats + 2),
            "inplace_bytes_per_s": inplace_bandwidth(copy_mib, n, pools.executor(n), repeats + 2),
            "gemm_n": gemm_n, "copy_mib": copy_mib, "repeats": repeats,
        }
    return out


def gemm_peak_for(peaks: dict, n: int, dtype) -> float:
    return peaks[n]["sgemm_flops" if np.dtype(dtype) == np.float32 else "dgemm_flops"]


# ------------------------------------------------------------------------------------------ timing

class BusyProcess:
    """Context manager: one other Python process running ``while True: pass`` for its duration (--contended).

    ``pid`` names it; on exit it is killed and reaped, and ``stopped`` says it has exited.
    """

    CODE = "while True: pass"

    def __init__(self):
        self._proc = None
        self.pid = None

    def __enter__(self):
        import subprocess

        self._proc = subprocess.Popen([sys.executable, "-c", self.CODE], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self._proc.pid
        return self

    def __exit__(self, *exc):
        self._proc.kill()
        self._proc.wait()
        return False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stopped(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    @property
    def returncode(self):
        return None if self._proc is None else self._proc.returncode


class OtherLoad:
    """Context manager: how many cores other processes kept busy while it ran (Linux; else None).

    Busy time of the whole machine (/proc/stat) minus this process's own CPU time, over the wall time.
    On a shared machine this says which measurements other work disturbed.
    """

    def __enter__(self):
        self._start = _cpu_sample()
        return self

    def __exit__(self, *exc):
        self._end = _cpu_sample()
        return False

    @property
    def cores(self):
        (w0, b0, o0), (w1, b1, o1) = self._start, self._end
        if b0 is None or b1 is None or w1 <= w0:
            return None
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (w1 - w0))


def _cpu_sample():
    """(wall s, machine busy CPU s or None, own CPU s)."""
    import resource

    wall = time.perf_counter()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    busy = None
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    return wall, busy, ru.ru_utime + ru.ru_stime


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(fns: dict, pools: Pools, *, rounds=40, min_rounds=3, budget=15.0, block_time=0.005,
              max_block=20, gap=0.001, warmup=2) -> dict:
    """Time the callables of ``fns`` ({key: (fn, threads)}) alternately; returns {key: array of seconds per call}.

    Each fn is called `warmup` times first (buffers, state, caches). Each round then runs, for every
    key in a rotated order, a block of consecutive calls (as many as fit in `block_time`, at least
    1, at most `max_block`), each timed on its own. Rounds stop after `rounds`, or once `budget`
    seconds have passed and `min_rounds` are done. Garbage collection is off while timing.
    """
    keys = list(fns)
    est = {}
    for key in keys:
        fn, threads = fns[key]
        pools.pin(threads)
        for _ in range(max(1, warmup) - 1):
            fn()
        est[key] = _timed(fn)
    blocks = {k: int(min(max_block, max(1, block_time // max(est[k], 1e-9)))) for k in keys}
    times = {k: [] for k in keys}
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for r in range(rounds):
            for j in range(len(keys)):
                key = keys[(r + j) % len(keys)]
                fn, threads = fns[key]
                pools.pin(threads)
                if gap:
                    time.sleep(gap)
                out = times[key]
                for _ in range(blocks[key]):
                    t0 = time.perf_counter()
                    fn()
                    out.append(time.perf_counter() - t0)
            if r + 1 >= min_rounds and time.perf_counter() - start > budget:
                break
    finally:
        if gc_was_on:
            gc.enable()
    return {k: np.asarray(v) for k, v in times.items()}


def summary(samples) -> dict:
    """median, min, quartiles (seconds) and the sample count."""
    s = np.asarray(samples)
    q1, med, q3 = np.percentile(s, [25, 50, 75])
    return {"median_s": float(med), "min_s": float(s.min()), "q1_s": float(q1), "q3_s": float(q3),
            "samples": int(s.size)}
