# Design note: _runtime - what the compiled kernels were built with, and the OpenMP pool.
#
# The queries go through csrc/fnn_omp.h so this module compiles with or without
# OpenMP (FASTNN_NO_OPENMP=1). fastnn._config wraps these with the BLAS side
# (threadpoolctl) so one knob governs both pools.

from fastnn._kernels._csrc cimport fnn_omp_enabled, fnn_omp_get_max_threads, fnn_omp_set_num_threads, fnn_omp_version


def openmp_enabled():
    """True if the kernels were compiled with OpenMP."""
    return bool(fnn_omp_enabled())


def openmp_version():
    """The _OPENMP date macro the kernels saw (e.g. 201511), 0 without OpenMP."""
    return fnn_omp_version()


def get_omp_threads():
    """omp_get_max_threads(): threads a prange may use (1 without OpenMP)."""
    return fnn_omp_get_max_threads()


def set_omp_threads(int n):
    """omp_set_num_threads(n) for subsequent parallel regions."""
    fnn_omp_set_num_threads(n)


def sync_omp_threads(int n):
    """Make this thread's OpenMP thread count n (omp_set_num_threads is per thread: a Python thread
    that never called it uses the library's default, not fastnn's setting)."""
    if fnn_omp_get_max_threads() != n:
        fnn_omp_set_num_threads(n)


# ------------------------------------------------------------------------------------------ use guard
#
# Who is using a parameter arena: one training thread, or any number of inference calls. The
# methods run with the GIL held and call no Python code, so each is atomic without a lock (the
# extension is built with freethreading_compatible=False). A fork (os.register_at_fork, see
# fastnn._config) bumps the generation: uses recorded before it belonged to threads that do not
# exist in the child, except the forking thread's own training, which goes on there.

from cpython.pythread cimport PyThread_get_thread_ident

cdef unsigned long _generation = 0


def after_fork_in_child():
    """Forget every use recorded by the parent's other threads (called in a forked child)."""
    global _generation
    _generation += 1


cdef class UseGuard:
    """Training is exclusive to one thread (re-entrant in it); inference may run in any number of
    threads at once, but not while another thread trains."""

    cdef unsigned long owner          # thread ident of the training thread, 0 if none
    cdef Py_ssize_t depth             # nested training entries of the owner
    cdef Py_ssize_t readers           # inference calls in progress in threads other than the owner
    cdef unsigned long generation
    cdef readonly str what            # "model", "optimizer", ... for the messages

    def __init__(self, str what="model"):
        self.what = what
        self.generation = _generation

    cdef inline void _refresh(self) noexcept:
        if self.generation != _generation:   # a fork happened: only the forking thread survives
            self.generation = _generation
            self.readers = 0
            if self.owner != PyThread_get_thread_ident():
                self.owner, self.depth = 0, 0

    def enter_train(self, str action):
        """Start training in this thread (RuntimeError if another thread trains or runs inference)."""
        cdef unsigned long me = PyThread_get_thread_ident()
        self._refresh()
        if self.owner == me:
            self.depth += 1
            return
        if self.owner != 0:
            raise RuntimeError(
                f"{action}: this {self.what} is being trained in another thread; training one {self.what} from "
                f"two threads at once would corrupt it. Train it from one thread (or train a copy.deepcopy of it)")
        if self.readers > 0:
            raise RuntimeError(
                f"{action}: this {self.what} is running inference in another thread; training it now would change "
                f"the weights under that call. Wait for the inference to finish (or train a copy.deepcopy of it)")
        self.owner, self.depth = me, 1

    def exit_train(self):
        self._refresh()
        if self.owner == PyThread_get_thread_ident() and self.depth > 0:
            self.depth -= 1
            if self.depth == 0:
                self.owner = 0

    def enter_infer(self, str action):
        """Start an inference call; returns whether it was counted (pass it to exit_infer)."""
        cdef unsigned long me = PyThread_get_thread_ident()
        self._refresh()
        if self.owner == me:
            return False   # inference inside this thread's own training (validation, callbacks)
        if self.owner != 0:
            raise RuntimeError(
                f"{action}: this {self.what} is being trained in another thread, so its weights are changing; "
                f"run inference after training (or on a copy.deepcopy of it taken before)")
        self.readers += 1
        return True

    def exit_infer(self, bint counted):
        self._refresh()
        if counted and self.readers > 0:
            self.readers -= 1

    @property
    def training_thread(self):
        """Ident of the thread training now, or None."""
        self._refresh()
        return self.owner if self.owner else None

    def __reduce__(self):
        return (UseGuard, (self.what,))   # a copy starts unused
