"""The one place for argument checks and their messages.

Public functions call these before any kernel runs; kernels trust their inputs.
Every message names the argument, the rule, and the value received.
"""

from __future__ import annotations

import math
import numbers
import operator
import os

import numpy as np

from ._kernels._checks import labels_in_range

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_FLOAT32 = np.dtype(np.float32)
_INT64 = np.dtype(np.int64)
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_FALLBACK_MEMORY = 2**40   # 1 TiB when the OS does not say (no false refusal of anything that could fit)
_physical_memory: int | None = None


def physical_memory() -> int:
    """This machine's physical memory in bytes (os.sysconf; 1 TiB if the OS does not tell)."""
    global _physical_memory
    if _physical_memory is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):   # not POSIX, or the name is unknown
            total = 0
        _physical_memory = int(total) if total and total > 0 else _FALLBACK_MEMORY
    return _physical_memory


_LARGE = 64 << 20   # requests above this also look at what the process can allocate now (a few us)


def allocatable_memory() -> int | None:
    """What this process can still allocate now: the smaller of the memory the kernel reports as
    available (/proc/meminfo's MemAvailable) and the headroom under the process's address-space
    limit (RLIMIT_AS minus its current size); None where neither is known."""
    limits = []
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm", "rb") as f:
                size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limits.append(max(0, soft - size))
    except (ImportError, OSError, ValueError, IndexError, AttributeError):
        pass
    return min(limits) if limits else None


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB', 16 * 10**9 -> '14.9 GiB' (binary units, one decimal)."""
    value, unit = float(n), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def check_nbytes(name: str, shape, dtype, what: str | None = None, arrays: int = 1) -> int:
    """Refuse (ValueError), before allocating, arrays the machine could never hold; returns the bytes.

    shape: a tuple, or an element count. `arrays` arrays of that shape and dtype would be
    allocated (e.g. an input copy and its gradient). The bytes are computed with Python ints
    (no overflow) and compared with the machine's physical memory and, for large requests, with
    what the process can allocate now (allocatable_memory: free memory, RLIMIT_AS). name: the
    caller's argument the size comes from; what: what would be allocated (default: a copy of `name`).
    """
    if not isinstance(shape, tuple):
        shape = (operator.index(shape),)
    elif not all(type(s) is int for s in shape):   # NumPy ints would wrap around in the product
        shape = tuple(operator.index(s) for s in shape)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize * arrays
    limit = _physical_memory or physical_memory()
    where = f"this machine's {format_bytes(limit)} of memory"
    if nbytes <= limit and nbytes > _LARGE:
        now = allocatable_memory()
        if now is not None and nbytes > now:
            limit, where = now, f"the {format_bytes(now)} this process can allocate now (free memory, RLIMIT_AS)"
    if nbytes > limit:
        subject = f"{name} of shape {shape}" if what is None else f"{name}: {what} of shape {shape}"
        times = f"{arrays} arrays of " if arrays > 1 else ""
        raise ValueError(f"{subject} would need {format_bytes(nbytes)} ({times}{dtype}), more than {where}")
    return nbytes


def native_float_dtype(dtype) -> np.dtype | None:
    """float32/float64 in native byte order for a float32/float64 dtype of any byte order, else None."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        native = dtype.newbyteorder("=")
        if native in FLOAT_DTYPES:
            return native
    return None


def resolve_dtype(dtype) -> np.dtype:
    """'float32' / 'float64' / np.float32 / ... -> np.dtype; anything else -> TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def as_float_array(x, name: str, dtype: np.dtype, ndim=None, shape=None, finite: bool = False) -> np.ndarray:
    """Return `x` as an aligned, C-contiguous, native-byte-order array of `dtype`, after checking it.

    ndim: an int or a tuple of allowed ints. shape: a tuple whose None entries are free.
    Every valid layout is accepted: Fortran order, strided, negative strides, read-only,
    misaligned, broadcast, non-native byte order; it is copied (once) only when it is not
    already what the kernels need, and the input is never written to. A copy the machine's
    memory could never hold is refused first (check_nbytes, naming `name`). dtype=None checks
    without converting (for callers that copy `x` into a buffer of their own anyway; the
    size check then assumes the smallest such buffer, float32).
    """
    if (type(x) is np.ndarray and x.dtype is dtype and not finite and shape is None and x.ndim == ndim
            and x.flags.c_contiguous and x.flags.aligned):
        return x   # the common batch, already what the kernels take: nothing to check or convert
    arr = real_array(x, name, ndim, shape)
    if dtype is None:
        check_nbytes(name, arr.shape, _FLOAT32)
        out = arr
    else:
        out = _kernel_layout(arr, name, dtype)
    if finite and not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite, got NaN or inf in {_describe(arr)}")
    return out


def real_array(x, name: str, ndim=None, shape=None) -> np.ndarray:
    """`x` as an ndarray of real numbers (bool, int, uint, float) of the allowed ndim and shape, not converted.

    An ndarray is returned as it is (a memory-mapped one stays mapped: nothing is read); anything
    else goes through np.asarray. ndim and shape as for as_float_array.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - ragged lists and the like
            raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got {_describe(arr)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got {arr.ndim}-D {_describe(arr)}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = str(tuple("*" if s is None else s for s in shape)).replace("'", "")
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return arr


def _kernel_layout(arr: np.ndarray, name: str, dtype) -> np.ndarray:
    """`arr` itself if it is already an aligned, C-contiguous, native `dtype` array, else a checked copy."""
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.aligned:   # == is False for '>f4'
        return arr
    check_nbytes(name, arr.shape, dtype)
    return np.array(arr, dtype=dtype, order="C", copy=True)   # a fresh array: aligned, native order


def as_labels(y, name: str, n: int, n_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """Integer class indices of shape (n,), each in [0, n_classes) or == ignore_index -> int64 array."""
    if (type(y) is np.ndarray and y.dtype is _INT64 and y.ndim == 1 and y.shape[0] == n and y.flags.c_contiguous
            and y.flags.aligned and (ignore_index is None or _INT64_MIN <= ignore_index <= _INT64_MAX)
            and labels_in_range(y, n_classes, ignore_index)):
        return y   # the common batch: int64 as the kernels take it, every label valid (else: the checks below)
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.ndim == 1 and arr.shape[0] == n and arr.size \
                and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            raise TypeError(
                f"{name} must be integer class indices, got floating dtype {arr.dtype}; use y.astype(int)"
            )
        raise TypeError(f"{name} must be integer class indices, got {_describe(arr)}")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the input's {n} rows, got {arr.shape}")
    check_nbytes(name, arr.shape, _INT64)   # the int64 copy (and the range check's masks) must fit
    check_labels_range(arr, name, n_classes, ignore_index)   # in the labels' own dtype: no wrap-around
    return _kernel_layout(arr, name, _INT64)


def check_labels_range(arr: np.ndarray, name: str, n_classes: int, ignore_index: int | None = None,
                       extra: str = "") -> None:
    """Every integer label in [0, n_classes) or == ignore_index, compared in the labels' own dtype.

    (A uint64 2**64 - 1 is refused, not wrapped to -1 by a cast to int64.)
    """
    if not arr.size:
        return
    if arr.dtype == _INT64 and arr.ndim == 1 and arr.flags.c_contiguous and (
            ignore_index is None or _INT64_MIN <= ignore_index <= _INT64_MAX):
        if labels_in_range(arr, n_classes, ignore_index):   # compiled: NumPy's masks cost ~6 us on a batch
            return
    valid = (arr >= 0) & (arr < n_classes)
    if ignore_index is not None:
        info = np.iinfo(arr.dtype)
        if info.min <= ignore_index <= info.max:
            valid |= arr == ignore_index
    if not valid.all():
        bad = arr[~valid].flat[0]
        raise ValueError(
            f"{name} must be class indices in [0, {n_classes - 1}]"
            + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
            + f"{extra}, got {bad}"
        )


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An int (not bool) with low <= value <= high."""
    if type(value) is int and (low is None or value >= low) and (high is None or value <= high):
        return value   # the common case without the ABC check (isinstance(v, numbers.Integral): ~0.3 us)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = operator.index(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def check_float(value, name: str, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in the given interval (closed unless *_open)."""
    if type(value) is float or type(value) is int:   # the common case without the ABC check and np.isfinite
        v = float(value)
        if (math.isfinite(v) and (low is None or (v > low if low_open else v >= low))
                and (high is None or (v < high if high_open else v <= high))):
            return v
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    bad = not np.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{lo}, {hi}{right}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return value



def check_betas(betas, name: str = "betas") -> tuple:
    """Adam's (beta1, beta2): a pair of numbers in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{name} must be a pair (beta1, beta2), got {betas!r}")
    return tuple(check_float(b, f"{name}[{i}]", low=0, high=1, high_open=True) for i, b in enumerate(betas))

def check_choice(value, name: str, choices) -> str:
    """`value` is one of `choices`; its type is checked first (an array, a list, a float where a
    str is expected -> TypeError naming `name`, never NumPy's "truth value is ambiguous")."""
    if all(isinstance(c, str) for c in choices):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, one of {', '.join(repr(c) for c in choices)}; "
                            f"got {type(value).__name__} {value!r}")
    elif not (value is None or isinstance(value, (str, numbers.Number))) or isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
                        f"got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def check_path(path, name: str = "path") -> str:
    """A str, bytes or os.PathLike file name -> os.fspath(path); anything else -> TypeError naming `name`."""
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"{name} must be a file path (str, bytes or os.PathLike), got {type(path).__name__} "
                        f"{path!r}") from None


def check_bool(value, name: str) -> bool:
    """A bool (Python or NumPy); ints and other truthy objects are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_same_shape(arr: np.ndarray, name: str, ref: np.ndarray, ref_name: str) -> None:
    """`arr` must have exactly `ref`'s shape (no broadcasting); the message names both shapes."""
    if arr.shape != ref.shape:
        raise ValueError(
            f"{name} must have the same shape as {ref_name}: {ref_name} has shape {ref.shape}, "
            f"{name} has shape {arr.shape} (no broadcasting)"
        )


def check_broadcastable(arr: np.ndarray, name: str, shape: tuple, ref_name: str) -> None:
    """`arr` must broadcast to `shape` (the shape of `ref_name`) without changing it."""
    try:
        ok = np.broadcast_shapes(arr.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {arr.shape} must broadcast to {ref_name}'s shape {tuple(shape)}")


def check_in_range(arr: np.ndarray, name: str, low: float, high: float, hint: str = "") -> None:
    """Every entry of `arr` in [low, high] (NaN fails); the message gives the range found."""
    if arr.size and not (arr.min() >= low and arr.max() <= high):
        raise ValueError(
            f"{name} must hold values in [{low:g}, {high:g}]{hint}, got values in [{arr.min()}, {arr.max()}]"
        )
