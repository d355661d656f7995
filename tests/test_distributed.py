"""Data-parallel training over MPI (fastnn.distributed): mpiexec runs of tests/mpi_check.py against one process,
the fault test, the CLI, the dropout row offset and the plan's reduction arithmetic without MPI.

The mpiexec tests need mpi4py and an mpiexec (pip install '.[mpi]'); they skip, saying so, without them.
Every subprocess has a time limit.
"""

import copy
import ctypes
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastnn as fnn
from fastnn._kernels import _dropout, _plan
from fastnn.distributed import share

HERE = Path(__file__).parent
ROOT = HERE.parent


def _mpiexec():
    try:
        import mpi4py  # noqa: F401, PLC0415 - only to know whether the extra is installed
    except ImportError:
        return None
    return shutil.which("mpiexec")


MPIEXEC = _mpiexec()
# CI sets FASTNN_REQUIRE_MPI=1 after installing the extra: then a missing MPI fails instead of skipping
needs_mpi = pytest.mark.skipif(MPIEXEC is None and not os.environ.get("FASTNN_REQUIRE_MPI"),
                               reason="needs mpi4py and mpiexec: pip install '.[mpi]'")

# MPICH busy-polls while waiting; on a 2-core machine with 3 ranks (and other jobs) that starves the rank
# doing work. Yield in the wait loop (MPICH), allow oversubscription (Open MPI), one OpenMP thread per rank.
MPI_ENV = {"MPIR_CVAR_ENABLE_HEAVY_YIELD": "1", "MPIR_CVAR_POLLS_BEFORE_YIELD": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_mpi_yield_when_idle": "1",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def mpirun(n, args, timeout):
    """Run `args` (after python) under mpiexec -n n; (return code, stdout, stderr, seconds)."""
    assert MPIEXEC is not None, "FASTNN_REQUIRE_MPI=1, but mpi4py or mpiexec is missing: pip install '.[mpi]'"
    env = dict(os.environ, **MPI_ENV, COLUMNS="200")   # wide enough for the whole progress bar
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    t0 = time.monotonic()
    proc = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


# ------------------------------------------------------------------------------------------ without MPI

def test_import_fastnn_does_not_import_mpi4py():
    code = "import sys, fastnn, fastnn.distributed; assert 'mpi4py' not in sys.modules, sorted(sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env)


@pytest.mark.parametrize("n, size", [(16, 3), (1, 3), (7, 2), (0, 2), (100, 16)])
def test_share_splits_rows_in_order(n, size):
    parts = [share(n, size, r) for r in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    widths = [hi - lo for lo, hi in parts]
    assert max(widths) - min(widths) <= 1 and widths == sorted(widths, reverse=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, parts", [(40, [0, 13, 27, 40]), (70000, [0, 1, 30001, 70000])])
def test_dropout_offset_gives_the_whole_batch_masks(dtype, n, parts):
    """Pieces of a block, each with its offset, get exactly the masks and outputs of the whole block."""
    x = np.random.default_rng(0).standard_normal(n).astype(dtype)
    y, mask = np.empty_like(x), np.empty(n, np.uint8)
    _dropout.forward(x, y, mask, 0.3, 7, 2, 5)
    for lo, hi in zip(parts, parts[1:]):
        yp, mp = np.empty(hi - lo, dtype), np.empty(hi - lo, np.uint8)
        _dropout.forward(x[lo:hi], yp, mp, 0.3, 7, 2, 5, lo)
        np.testing.assert_array_equal(mp, mask[lo:hi])
        np.testing.assert_array_equal(yp, y[lo:hi])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finish_reduce_is_the_mean_over_the_global_denominator(dtype):
    """What the plan does after the allreduce: gradients / sum(D_r) for 'mean', the loss S / D; D = 0 -> NaN."""
    P = 5
    g = np.arange(1, P + 1, dtype=dtype)
    buf = np.concatenate([g, np.array([6.0, 4.0, 0.0], dtype)])
    assert _plan.finish_reduce(buf, P, True) == 1.5
    np.testing.assert_allclose(buf[:P], g / 4, rtol=1e-7)
    buf = np.concatenate([g, np.array([6.0, 4.0, 0.0], dtype)])
    assert _plan.finish_reduce(buf, P, False) == 6.0
    np.testing.assert_array_equal(buf[:P], g)
    buf = np.concatenate([np.zeros(P, dtype), np.array([0.0, 0.0, 0.0], dtype)])
    assert np.isnan(_plan.finish_reduce(buf, P, True))
    np.testing.assert_array_equal(buf[:P], 0)
    with pytest.raises(ValueError, match="P \\+ 3"):
        _plan.finish_reduce(np.zeros(P, dtype), P, True)


def test_gradient_arena_has_the_spare_reduction_slots():
    model = fnn.Sequential([fnn.Dense(3, 4), fnn.Dense(4, 2)], seed=0)
    arena = model._arena
    assert arena.grad.size == arena.size and arena.grad.base.size == arena.size + _plan.REDUCE_SLOTS
    assert arena.grad.ctypes.data == arena.grad.base.ctypes.data


def test_distributed_argument_is_checked():
    model = fnn.Sequential([fnn.Dense(3, 2)], seed=0)
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((4, 3)), np.zeros((4, 2))
    with pytest.raises(ValueError, match="distributed must be False, True .* or 'sharded'.*'yes'"):
        model.fit(x, y, distributed="yes")
    with pytest.raises(ValueError, match="distributed must be"):
        model.train_step(x, y, distributed=2)


# ------------------------------------------------------------------------------------------ under mpiexec

def _check(n, args, timeout=600):
    rc, out, err, _ = mpirun(n, args, timeout)
    assert rc == 0 and "ALL OK" in out, f"mpiexec -n {n} {' '.join(args)} failed (rc={rc}):\n{out}\n{err[-4000:]}"
    return out


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_fit_every_optimizer_and_loss_equals_one_process(n):
    """Every optimizer, every loss (class weights, ignore_index, label smoothing, 'sum'), dropout, shuffle, a
    partial last batch, validation and metrics; compiled runs and per batch: 1e-12 relative in float64."""
    out = _check(n, ["tests/mpi_check.py", "fit"])
    assert out.count("OK fit") == 8


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_sharded_train_step_callbacks_and_errors(n, tmp_path):
    """Uneven shards, float32 and float64, train_step (fewer rows than ranks), unseeded models, EarlyStopping +
    ReduceLROnPlateau + ModelCheckpoint agreeing across ranks (rank 0 writes), bad input or callbacks on one rank,
    divergence."""
    out = _check(n, ["tests/mpi_check.py", "more", str(tmp_path)])
    for name in ("sharded float64", "sharded float32", "sharded validation", "fit float32", "train_step replicated",
                 "train_step sharded", "unseeded", "callbacks", "bad input", "bad callbacks", "diverged"):
        assert f"OK {name}" in out
    assert out.count("Epoch 1: saving model") == 2   # the distributed fit's rank 0 and the reference, once each


@needs_mpi
@pytest.mark.parametrize("where", ["batch", "runs"])
def test_rank_raising_mid_epoch_aborts_every_rank(where):
    """Rank 1 raises mid-epoch (per batch, or between compiled runs while rank 0 waits in the allreduce of its
    nogil loop): the job ends with an error within seconds instead of hanging."""
    rc, out, err, seconds = mpirun(2, ["tests/mpi_check.py", "fault", where], timeout=120)
    assert rc != 0, (out, err)
    assert "injected failure on rank 1" in err and "aborting all ranks" in err, (rc, out, err)
    assert "UNREACHABLE" not in out
    assert seconds < 60


@needs_mpi
def test_cli_train_distributed_prints_one_progress_bar(tmp_path):
    r = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=r.standard_normal((300, 5)), y=r.integers(0, 3, 300))
    out_file = tmp_path / "m.fnn"
    rc, out, err, _ = mpirun(2, ["-m", "fastnn", "train", "--data", str(tmp_path / "d.npz"), "--hidden", "16",
                                 "--epochs", "2", "--batch-size", "32", "--distributed", "--save", str(out_file)],
                             timeout=300)
    assert rc == 0, err
    text = out + err
    assert text.count("Epoch 1/2 100%") == 1 and text.count("Epoch 2/2 100%") == 1, text
    assert out.count("data: ") == 1 and out.count("test accuracy") == 1 and out.count("model saved") == 1, out
    assert fnn.load_model(out_file).out_features == 3


class _OneRank:
    """A Context stand-in for one rank: the hook's 'allreduce' is a ctypes callback that leaves the buffer as it is
    (the sum over one rank) and counts its calls, so the plan's hook runs without MPI."""

    sharded = False

    def __init__(self):
        self.calls = []

        @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_ssize_t,
                          ctypes.c_ssize_t, ctypes.c_ssize_t)
        def allreduce(send, recv, count, dtype, op, comm):
            self.calls.append((send, count, dtype, op, comm))
            return 0

        self._fn = allreduce

    def hook(self, arena):
        buf = arena.grad.base
        return (ctypes.cast(self._fn, ctypes.c_void_p).value, -1, 11, 12, 13, buf, arena.size)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "nll"])
def test_plan_hook_on_one_rank_equals_the_plain_step(loss):
    """The hook path (loss kernel run with 'sum', the reduced buffer scaled by 1 / D) on one rank gives the plain
    compiled loop's weights and losses to rounding, with one call per step over P + 3 elements."""
    r = np.random.default_rng(1)
    x = r.standard_normal((70, 5))
    t = r.integers(0, 3, 70) if loss != "mse" else r.standard_normal((70, 3))
    model = fnn.Sequential([fnn.Dense(5, 8, activation="relu"), fnn.Dropout(0.3), fnn.Dense(8, 3)], dtype="float64",
                           seed=0)
    model.compile(optimizer="adam", loss=loss)
    twin = copy.deepcopy(model)
    fake = _OneRank()
    losses = {}
    for m, dist in ((model, fake), (twin, None)):
        engine = m._engine()
        engine.distributed = dist
        losses[dist is None] = np.empty(7)
        m.training = True
        assert engine.train_batches(x, t, None, 10, 0, 7, m.loss, m.optimizer, losses[dist is None]) == 7
    assert len(fake.calls) == 7
    assert all(c[1:] == (model._arena.size + _plan.REDUCE_SLOTS, 11, 12, 13) for c in fake.calls)
    assert all(c[0] == 2 ** 64 - 1 for c in fake.calls)   # MPI_IN_PLACE as given: (void *) -1
    np.testing.assert_allclose(model._arena.data, twin._arena.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(losses[False], losses[True], rtol=1e-12)
