# Design note: _checks - input checks that must cost nothing next to a batch-1 forward pass.
#
# all_finite(x): no NaN or inf in a C-contiguous float32/float64 buffer, read once. A float is
# NaN or inf exactly when its exponent bits are all ones, so the loop ORs one integer AND + ADD per
# element into a sign bit (GCC vectorises it at the SSE2 baseline; no early exit, which would block that). NumPy's equivalents make two
# reductions or a temporary bool array, whose fixed cost dominates a batch-1 row (bench/README.md).
# array_finite(a): all_finite for any ndarray that is C-contiguous float32/float64 (None for any other),
# read through the array's own pointer: no reshape, no memoryview (~0.7 us of a batch-1 predict).
# labels_in_range(y, c, ignore): every int64 class index in [0, c) or == ignore, by the same branch-free
# OR (one unsigned compare covers < 0 and >= c). NumPy's range check (bool masks, .all()) costs ~6 us
# on a batch of 32 labels, more than a deep 64-wide training step's own Python.
# runs_still_valid(...): the optimizer's run-cache hit check (fastnn/optim/optimizer.py, "Run cache"; its
# Python twin is optimizer._still_valid), with C-level dict lookups and the step counts compared as bits:
# 2.5 -> 0.5 us per step for a 9-layer model's 18 parameters.
# Serial: it is a read-only pass, memory-bound well before threads would pay.

from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint32_t, uint64_t

cimport numpy as cnp

from fastnn._kernels._types cimport real

cnp.import_array()

cdef extern from "Python.h":
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL   # borrowed; NULL: absent


cdef bint _all_finite(const real* x, Py_ssize_t n) noexcept nogil:
    # exponent bits all ones <=> (bits & exponent mask) + (lowest exponent bit) carries into the sign bit:
    # AND, ADD and OR only, which SSE2 has for 32- and 64-bit lanes (a 64-bit == compare needs SSE4.1, so
    # the float64 loop stayed scalar with it: 33 -> 5 us for 64 x 784)
    cdef Py_ssize_t i
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    cdef const uint32_t* u32
    cdef const uint64_t* u64
    if real is float:
        u32 = <const uint32_t*>x
        for i in range(n):
            bad32 |= (u32[i] & 0x7f800000u) + 0x00800000u
        return (bad32 >> 31) == 0
    else:
        u64 = <const uint64_t*>x
        for i in range(n):
            bad64 |= (u64[i] & 0x7ff0000000000000u) + 0x0010000000000000u
        return (bad64 >> 63) == 0


def all_finite(const real[::1] x):
    """True iff no element of x is NaN or +-inf."""
    if x.shape[0] == 0:
        return True
    cdef bint ok
    with nogil:
        ok = _all_finite(&x[0], x.shape[0])
    return ok


def array_finite(object a):
    """For a C-contiguous float32/float64 ndarray a: True iff no element is NaN or +-inf; None for any other a."""
    if not cnp.PyArray_Check(a):
        return None
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return None
    cdef int typenum = cnp.PyArray_TYPE(arr)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(arr)
    cdef bint ok = True
    if typenum == cnp.NPY_FLOAT32:
        if n:
            with nogil:
                ok = _all_finite(<const float*>cnp.PyArray_DATA(arr), n)
        return ok
    if typenum == cnp.NPY_FLOAT64:
        if n:
            with nogil:
                ok = _all_finite(<const double*>cnp.PyArray_DATA(arr), n)
        return ok
    return None


cdef bint _labels_in_range(const int64_t* y, Py_ssize_t n, int64_t c, bint has_ignore,
                           int64_t ignore) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t bad = 0
    if has_ignore:
        for i in range(n):
            bad |= (<uint64_t>y[i] >= <uint64_t>c) & (y[i] != ignore)
    else:
        for i in range(n):
            bad |= <uint64_t>y[i] >= <uint64_t>c
    return bad == 0


def labels_in_range(const int64_t[::1] y, int64_t n_classes, ignore_index=None):
    """True iff every y[i] is in [0, n_classes) or equals ignore_index (None: no exception)."""
    if y.shape[0] == 0:
        return True
    cdef bint has_ignore = ignore_index is not None
    cdef int64_t ignore = ignore_index if has_ignore else 0
    cdef bint ok
    with nogil:
        ok = _labels_in_range(&y[0], y.shape[0], n_classes, has_ignore, ignore)
    return ok


def runs_still_valid(object state, list params, list grads, list dicts, list sizes, list runs, object missing):
    """optimizer._still_valid, compiled: for every i, params[i].has_grad is grads[i], state.get(params[i],
    missing) is dicts[i] and has sizes[i] entries; and each run's step counts (run[8]) are all the same bits.
    state: a dict or a dict subclass (the optimizer's defaultdict), read without its __missing__."""
    cdef Py_ssize_t i, n = len(params), k, m
    cdef object p, now
    cdef PyObject* found
    cdef cnp.ndarray steps
    cdef const uint32_t* u
    if not isinstance(state, dict) or len(grads) != n or len(dicts) != n or len(sizes) != n:
        return False
    for i in range(n):
        p = params[i]
        if p.has_grad is not grads[i]:
            return False
        found = PyDict_GetItemWithError(state, p)
        now = <object>found if found != NULL else missing
        if now is not dicts[i] or len(now) != sizes[i]:
            return False
    for run in runs:
        obj = run[8]
        if not (isinstance(obj, cnp.ndarray) and cnp.PyArray_IS_C_CONTIGUOUS(obj) and cnp.PyArray_ITEMSIZE(obj) == 4):
            b = obj.tobytes()   # any other layout: the twin's comparison
            if b != b[:4] * len(obj):
                return False
            continue
        steps = obj
        m = cnp.PyArray_SIZE(steps)
        u = <const uint32_t*>cnp.PyArray_DATA(steps)
        for k in range(1, m):
            if u[k] != u[0]:
                return False
    return True
