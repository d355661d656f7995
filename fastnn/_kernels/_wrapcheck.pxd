# The def wrappers' buffer checks, written once (inline into every module that cimports them).
#
# Kernels trust their inputs; a wrapper checks only that the buffers it is handed agree (shapes, lengths,
# and for the plans dtype and layout), so that a misuse raises instead of reading or writing out of
# bounds. Argument validation with user-facing messages lives in fastnn/_validation.py.
cimport numpy as cnp


cdef inline int _check(bint ok, str what) except -1:
    """Raise ValueError("kernel buffers disagree: <what>") unless ok."""
    if not ok:
        raise ValueError(f"kernel buffers disagree: {what}")
    return 0


cdef inline int _check_size(Py_ssize_t got, Py_ssize_t want, str name) except -1:
    """Raise ValueError unless buffer `name` has `want` entries."""
    if got != want:
        raise ValueError(f"{name} has {got} entries, expected {want}")
    return 0


cdef inline void* _ptr(object a):
    """Data pointer of a C-contiguous ndarray (None -> NULL)."""
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline bint _fits(object a, int typenum, int ndim, Py_ssize_t d0, Py_ssize_t d1) noexcept:
    """a is an aligned C-contiguous ndarray of this type and shape (d1 ignored for ndim 1)."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_NDIM(arr) != ndim:
        return False
    if not (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)):
        return False
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(arr)
    return dims[0] == d0 and (ndim == 1 or dims[1] == d1)


cdef inline Py_ssize_t _rows(object a, int typenum, int ndim, Py_ssize_t d1) noexcept:
    """The rows of a if it is an aligned C-contiguous ndarray of this type, ndim and (ndim 2) columns, else -1."""
    if not cnp.PyArray_Check(a):
        return -1
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_NDIM(arr) != ndim:
        return -1
    if not (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)):
        return -1
    if ndim == 2 and cnp.PyArray_DIMS(arr)[1] != d1:
        return -1
    return cnp.PyArray_DIMS(arr)[0]


cdef inline bint _state_fits(object a, int typenum, Py_ssize_t size) noexcept:
    """An optimizer state buffer: the run's length, or length 0 (unused)."""
    return _fits(a, typenum, 1, size, 0) or _fits(a, typenum, 1, 0, 0)
