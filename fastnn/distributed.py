"""Data-parallel training over MPI (mpi4py): ``fit(..., distributed=True)`` under ``mpiexec -n N``.

Design (after Horovod's DistributedOptimizer / broadcast_parameters / metric averaging, but with the
allreduce inside fastnn's compiled epoch loop):

* Global batch. ``batch_size`` is the global batch: rank r takes its share of the rows of every global
  batch (``share``: the first ``n % N`` ranks one row more), computes loss and backward on them, and the
  plan calls ONE in-place ``MPI_Allreduce`` (SUM) over the gradient arena plus three spare elements
  (the local loss sum, the local 'mean' denominator, a stop flag) between backward and the optimizer
  update, from inside its nogil loop (fastnn._kernels._plan, ``TrainPlan.distribute``): the address of
  the MPI library's own ``MPI_Allreduce`` and the communicator/datatype/op handles are handed to the plan
  as integers. The gradients are scaled by 1 / (sum of the denominators) for reduction 'mean', so every
  rank holds the gradient one process computes on the whole global batch (to reduction-order rounding),
  also for a partial last batch, uneven shares, class weights and ignored rows; every rank then applies
  the same optimizer update. Dropout masks are keyed by the row's position in the global batch.
* Every rank starts from rank 0's weights, optimizer state, seed and counters (``broadcast_model``).
* Validation loss and metrics are reduced (sums of per-row values and counts), so callbacks decide the
  same on every rank; only rank 0 prints and writes files (ModelCheckpoint).
* Errors: arguments and data are checked on every rank, then agreed on (``agree``: one allgather), so
  bad input on one rank makes every rank raise. An exception on one rank during training (where the
  others may be waiting inside a collective) aborts the whole job (``MPI_Abort``) after printing its
  traceback: no rank hangs. A diverged loss is global, so every rank raises FloatingPointError itself.

mpi4py is imported on first use only (``import fastnn`` never imports it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
import traceback

import numpy as np

from ._kernels import _plan

__all__ = ["Context", "context", "rank", "size", "share", "is_distributed"]

_MPI = None
_CONTEXTS: dict = {}


def _mpi():
    """mpi4py.MPI, imported on first use."""
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI  # noqa: PLC0415 - optional dependency, imported on first use only
        except ImportError as exc:
            raise ImportError("distributed training needs mpi4py and an MPI library: pip install 'fastnn[mpi]' "
                              "(mpi4py + mpich), then run under mpiexec -n N") from exc
        _MPI = MPI
    return _MPI


def rank() -> int:
    """This process's rank in MPI.COMM_WORLD (imports mpi4py)."""
    return _mpi().COMM_WORLD.Get_rank()


def size() -> int:
    """The number of processes in MPI.COMM_WORLD (imports mpi4py)."""
    return _mpi().COMM_WORLD.Get_size()


def is_distributed() -> bool:
    """Whether this process was started by an MPI launcher with more than one rank (without importing mpi4py
    when no launcher's variables are set)."""
    keys = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
    if not any(k in os.environ for k in keys):
        return False
    return size() > 1


def context(sharded: bool = False) -> Context:
    """The Context over MPI.COMM_WORLD for this data layout (one per process and layout, so that compiled plans
    built for it stay valid from call to call)."""
    ctx = _CONTEXTS.get(bool(sharded))
    if ctx is None:
        ctx = _CONTEXTS[bool(sharded)] = Context(sharded=sharded)
    return ctx


def share(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rows lo .. hi-1 of n rows that rank `rank` of `size` takes: the first n % size ranks take one more."""
    q, r = divmod(n, size)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (rank < r)


def _allreduce_address(MPI) -> int:
    """The address of MPI_Allreduce in the MPI library mpi4py loaded."""
    try:   # dlsym on mpi4py's extension module searches the libraries it depends on (libmpi)
        return ctypes.cast(ctypes.CDLL(MPI.__file__).MPI_Allreduce, ctypes.c_void_p).value
    except (OSError, AttributeError):
        pass
    with open("/proc/self/maps") as maps:   # mpi4py loaded libmpi itself (its MPI ABI mode): find it
        paths = sorted({line.split()[-1] for line in maps if "/libmpi" in line and ".so" in line})
    for path in paths:
        try:
            return ctypes.cast(ctypes.CDLL(path).MPI_Allreduce, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    raise RuntimeError("fastnn.distributed: cannot find MPI_Allreduce in the MPI library mpi4py loaded")


class Context:
    """One distributed fit's communicator and data layout.

    Context(comm=None, sharded=False): comm an mpi4py communicator (default COMM_WORLD); sharded: each
    rank passes only its own rows (see docs/distributed.md).
    """

    def __init__(self, comm=None, sharded=False):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.sharded = bool(sharded)
        self._fn = _allreduce_address(MPI)

    def share(self, n: int, rank: int | None = None) -> tuple[int, int]:
        return share(n, self.size, self.rank if rank is None else rank)

    # ------------------------------------------------------------------ the plan's hook
    @staticmethod
    def buffer(arena) -> np.ndarray:
        """The gradient arena with its REDUCE_SLOTS spare elements (fastnn.parameter.Arena)."""
        buf = arena.grad.base
        if (not isinstance(buf, np.ndarray) or buf.size != arena.size + _plan.REDUCE_SLOTS
                or buf.ctypes.data != arena.grad.ctypes.data):
            raise RuntimeError("fastnn.distributed: the gradient arena has no spare reduction slots")
        return buf

    def hook(self, arena) -> tuple:
        """What TrainPlan.distribute takes: (MPI_Allreduce, MPI_IN_PLACE, datatype, op, comm, buffer, P)."""
        MPI = self.MPI
        dtype = MPI.DOUBLE if arena.dtype == np.float64 else MPI.FLOAT
        return (self._fn, int(MPI.IN_PLACE), MPI._handleof(dtype), MPI._handleof(MPI.SUM),
                MPI._handleof(self.comm), self.buffer(arena), arena.size)

    # ------------------------------------------------------------------ collectives from Python
    def allreduce(self, a: np.ndarray) -> np.ndarray:
        """In-place sum over the ranks of a C-contiguous float/int array; returns it."""
        self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM)
        return a

    def idle_step(self, arena, mean: bool) -> float:
        """A step in which this rank has no rows: contributes zeros to the step's allreduce, then finishes it
        exactly as the plan does (fastnn._kernels._plan.finish_reduce). Returns the global loss."""
        buf = self.buffer(arena)
        buf.fill(0)
        self.allreduce(buf)
        return _plan.finish_reduce(buf, arena.size, mean)

    def broadcast_model(self, model) -> None:
        """Rank 0's weights, seed, dropout counter, epoch and optimizer state on every rank."""
        comm = self.comm
        comm.Bcast(model._arena.data, root=0)
        ex = model._execution()
        opt = model.optimizer
        state = comm.bcast((ex.seed, ex.step, model.epoch, opt.state_dict() if opt is not None else None), root=0)
        ex.seed, ex.step, model.epoch = state[0], state[1], state[2]
        if self.rank != 0 and opt is not None:
            opt.load_state_dict(state[3])

    def agree(self, error: BaseException | None) -> None:
        """Error collective: every rank calls it; if any rank had an error, every rank raises (the failing rank its
        own exception, the others a RuntimeError naming it)."""
        errors = self.comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        bad = [(r, e) for r, e in enumerate(errors) if e is not None]
        if bad:
            r, e = bad[0]
            raise RuntimeError(f"distributed fit: rank {r} of {self.size} failed: {e}")

    @contextlib.contextmanager
    def abort_on_error(self):
        """Run a collective section: an exception on this rank (other than FloatingPointError, which a diverged
        global loss raises on every rank) prints its traceback and aborts every rank (MPI_Abort), since the
        other ranks may be waiting for this one inside a collective."""
        try:
            yield
        except FloatingPointError:
            raise
        except BaseException:
            if self.size > 1:
                sys.stderr.write(f"fastnn.distributed: rank {self.rank} of {self.size} failed; aborting all ranks\n")
                traceback.print_exc()
                sys.stderr.flush()
                sys.stdout.flush()
                # mpiexec forwards each rank's output through a pipe; MPI_Abort makes it kill every rank
                # at once, which can drop what is still in that pipe: give it a moment to forward the reason
                time.sleep(0.5)
                self.comm.Abort(1)
            raise
