"""Strategies and the one shared checker of the property-based fuzz suite (tests/test_fuzz.py, issue 9).

The rule (``check_call``): a public call on fuzzed inputs either

(a) succeeds, and its result equals, bit for bit (same types, dtypes and shapes; NaN == NaN), the
    result of the same call on C-contiguous, aligned, native-byte-order, writeable copies of its array
    inputs; or
(b) raises ValueError or TypeError whose message names one of the offending arguments;

never another exception type (MemoryError, IndexError, ZeroDivisionError, OverflowError, KeyError, ...),
never a crash, and never a change to an input array (contents or writeability).

Inputs are NumPy arrays of every dtype (bool, ints incl. uint64, float16/32/64, longdouble, complex,
object, str, datetime) in every layout (C, Fortran, strided, negative strides, read-only, misaligned,
broadcast, non-native byte order), with 0-d / 0-row / 0-column / huge (broadcast) shapes and NaN/inf,
plus bad hyper-parameters (NaN, inf, negative, bools, strings, arrays, None, huge ints).

Huge inputs: every call runs under an address-space limit (``_memory_guard``: the current size plus
1.5 GiB), so an attempt to allocate for a (10**9, 4) input surfaces as a MemoryError (a failure of the
rule) instead of the OOM killer. When an input is too large to copy (more than ``_MAX_COPY`` bytes,
i.e. a huge broadcast), part (a)'s comparison with the copied inputs is impossible and skipped.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import tempfile
import traceback

import numpy as np
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "fastnn-fuzz-hypothesis"))   # no .hypothesis/ in the repo
settings.register_profile(
    "fastnn-fuzz",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    phases=[Phase.explicit, Phase.generate],   # bounded: no shrinking, no explain patch files
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FUZZ = settings.get_profile("fastnn-fuzz")

# -------------------------------------------------------------------------------------------- dtypes
DTYPES = [
    np.dtype(np.bool_), np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64),
    np.dtype(np.uint8), np.dtype(np.uint32), np.dtype(np.uint64),
    np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.longdouble),
    np.dtype(np.complex64), np.dtype(np.complex128),
    np.dtype(object), np.dtype("<U8"), np.dtype("datetime64[s]"),
]
REAL_DTYPES = [d for d in DTYPES if d.kind in "biuf"]
FLOAT_DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
LAYOUTS = ["C", "F", "strided", "negative", "readonly", "misaligned", "broadcast", "byteswapped"]
HUGE_ROWS = 10**9

# bad hyper-parameter values: NaN, inf, negative, bools, strings, arrays, None, huge ints, ...
BAD_SCALARS = [
    math.nan, math.inf, -math.inf, -1, -0.5, True, False, "1", "abc", None, 2**64, 2**64 - 1, 10**30, -(2**63) - 1,
    np.uint64(2**64 - 1), np.array([0.5, 0.5]), np.array(0.5), np.array([]), [0.5], (1, 2), 1e308, complex(1, 1),
    np.float64("nan"), np.int64(-3), object(),
]


def bad_value():
    return st.sampled_from(BAD_SCALARS)


@st.composite
def hyper_params(draw, spec: dict, max_bad: int = 1):
    """kwargs from spec {name: [valid values]}: all valid, or one (rarely two) replaced by a bad value.

    Returns (kwargs, corrupted_names).
    """
    kwargs = {name: draw(st.sampled_from(valid)) for name, valid in spec.items()}
    bad = []
    if spec and draw(st.booleans()):
        names = sorted(spec)
        for _ in range(draw(st.integers(1, max_bad))):
            name = draw(st.sampled_from(names))
            kwargs[name] = draw(bad_value())
            bad.append(name)
    return kwargs, bad


# -------------------------------------------------------------------------------------------- arrays
def _convert(values: np.ndarray, dtype: np.dtype, labels: bool) -> np.ndarray:
    """float64 `values` as an array of `dtype` (C order)."""
    return np.asarray(_convert_values(values, dtype, labels), order="C")   # (ascontiguousarray makes 0-d 1-d)


def _convert_values(values, dtype, labels):
    kind = dtype.kind
    with np.errstate(all="ignore"):
        if kind == "b":
            return values > 0
        if kind in "iu":
            info = np.iinfo(dtype)
            v = values if labels else np.round(values * 3)
            v = np.where(np.isfinite(v), v, info.max)
            return np.clip(v, info.min, min(info.max, 2**62)).astype(dtype)
        if kind == "f":
            return values.astype(dtype)
        if kind == "c":
            return (values + 0.5j).astype(dtype)
        if kind == "O":
            return np.array([int(v) if labels and np.isfinite(v) else float(v) for v in values.reshape(-1)],
                            dtype=object).reshape(values.shape)
        if kind == "U":   # numbers as text, and (where negative) text that is no number
            return np.where(values < 0, np.char.add("v", values.astype(dtype)), values.astype(dtype)).astype(dtype)
        if kind == "M":
            return np.where(np.isfinite(values), values, 0).astype(np.int64).astype(dtype)
    raise AssertionError(dtype)


def apply_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The values of the C array `a` in `layout` (a view or copy; same shape, same values, except
    'broadcast', which repeats a's first row)."""
    if layout == "C":
        return a
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        if a.ndim == 0:
            return a
        big = np.zeros(a.shape[:-1] + (a.shape[-1] * 2 + 1,), a.dtype)
        big[..., 1::2] = a
        return big[..., 1::2]
    if layout == "negative":
        if a.ndim == 0:
            return a
        rev = (slice(None, None, -1),) * a.ndim
        return np.ascontiguousarray(a[rev])[rev]
    if layout == "readonly":
        out = a.copy()
        out.setflags(write=False)
        return out
    if layout == "misaligned":
        if a.dtype.hasobject or a.dtype.itemsize == 1:
            return a
        buf = np.zeros(a.nbytes + 1, np.uint8)
        out = buf[1:].view(a.dtype).reshape(a.shape)
        out[...] = a
        return out
    if layout == "broadcast":
        if a.ndim == 0 or a.shape[0] == 0:
            return np.broadcast_to(a, a.shape)
        return np.broadcast_to(a[:1], a.shape)
    if layout == "byteswapped":
        if a.dtype.hasobject or a.dtype.itemsize == 1 or a.dtype.kind == "b":
            return a
        return a.astype(a.dtype.newbyteorder("S"))
    raise AssertionError(layout)


@st.composite
def arrays(draw, shapes, dtypes=DTYPES, layouts=LAYOUTS, labels: int | None = None, special: bool = True,
           scale: float = 1.0):
    """An ndarray of a shape drawn from `shapes` (a list of tuples; a first entry of HUGE_ROWS makes a
    huge broadcast), a dtype from `dtypes`, a layout from `layouts`.

    labels=C: integer-valued entries mostly in [0, C), sometimes negative, >= C or huge.
    special: sometimes NaN / inf entries.
    """
    normal = [tuple(s) for s in shapes if not (len(s) and s[0] >= HUGE_ROWS)]
    huge_shapes = [tuple(s) for s in shapes if len(s) and s[0] >= HUGE_ROWS]
    if huge_shapes and (not normal or draw(st.integers(0, 19)) == 0):   # huge inputs are rare (they are slow)
        shape = draw(st.sampled_from(huge_shapes))
    else:
        shape = draw(st.sampled_from(normal))
    dtype = draw(st.sampled_from(dtypes))
    huge = len(shape) > 0 and shape[0] >= HUGE_ROWS
    small = (1,) + shape[1:] if huge else shape
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if labels is None:
        values = rng.standard_normal(small) * scale
    else:
        values = rng.integers(0, max(labels, 1), size=small).astype(np.float64)
        if draw(st.integers(0, 3)) == 0 and values.size:
            bad = draw(st.sampled_from([-1.0, float(labels), float(labels + 7), -100.0, 2.0**63, 2.0**64 - 1, 0.5]))
            values.reshape(-1)[rng.integers(values.size)] = bad
    if special and values.size and draw(st.integers(0, 4)) == 0:
        values.reshape(-1)[rng.integers(values.size)] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    if labels is not None and dtype == np.uint64 and values.size and draw(st.booleans()):
        arr = values.astype(np.uint64)
        arr.reshape(-1)[0] = np.uint64(2**64 - 1)   # a huge uint64 label
    else:
        arr = _convert(values, dtype, labels is not None)
    if huge:
        return np.broadcast_to(arr, shape)
    return apply_layout(arr, draw(st.sampled_from(layouts)))


# -------------------------------------------------------------------------------------------- the checker
_MAX_COPY = 1 << 28   # bytes: larger inputs (huge broadcasts) are not copied for part (a)


class RuleViolation(AssertionError):
    pass


def _record(exc: RuleViolation, inputs: dict) -> None:
    """Diagnostic mode (FASTNN_FUZZ_REPORT=<file>): append the violation as one JSON line to the file, so that
    one run lists every failing property instead of stopping each test at its first one."""
    with open(os.environ["FASTNN_FUZZ_REPORT"], "a") as f:
        f.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
                            "message": str(exc), "inputs": {k: _short(v) for k, v in inputs.items()}}) + "\n")


def _short(v) -> str:
    if isinstance(v, np.ndarray):
        return f"ndarray{v.shape} {v.dtype} strides={v.strides} writeable={v.flags.writeable} " + \
            np.array2string(_distinct(v).reshape(-1)[:6], threshold=6)
    return repr(v)[:200]


class _TooLarge(Exception):
    pass


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


class _memory_guard:
    """RLIMIT_AS = current size + 1.5 GiB while the call runs: huge allocations fail (MemoryError)."""

    def __enter__(self):
        self.old = resource.getrlimit(resource.RLIMIT_AS)
        limit = _vm_bytes() + (3 << 29)
        hard = self.old[1]
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_AS, self.old)
        return False


def _walk(obj, path="inputs"):
    """(path, ndarray) for every array in nested dicts / lists / tuples."""
    if isinstance(obj, np.ndarray):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")


def _distinct(a: np.ndarray) -> np.ndarray:
    """a without its broadcast (stride 0) repetitions: the memory a can see."""
    return a[tuple(slice(0, 1) if s == 0 and n > 1 else slice(None) for s, n in zip(a.strides, a.shape)) + (...,)]


def _copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous, aligned, native-byte-order, writeable copy of a."""
    dt = a.dtype.newbyteorder("=") if a.dtype.byteorder not in "|=" else a.dtype
    return np.array(a, dtype=dt, order="C", copy=True)


def _canonical(obj):
    """obj with every array replaced by _copy(array); None if some array is too large to copy."""
    if isinstance(obj, np.ndarray):
        if obj.nbytes > _MAX_COPY:
            raise _TooLarge
        return _copy(obj)
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(v) for v in obj)
    return obj


def _same_scalar(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or float.hex(a) == float.hex(b)
    try:
        if a != a and b != b:
            return True
    except Exception:  # noqa: BLE001
        pass
    return a == b


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    if a.dtype.kind in "mM":   # NaT != NaT: compare the int64 counts
        return bool(np.array_equal(a.view(np.int64), b.view(np.int64)))
    if a.dtype.hasobject:
        return all(_same_scalar(x, y) for x, y in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist()))
    return bool(np.array_equal(a, b))


def assert_same(got, want, path="result") -> None:
    """got and want are the same bits: same types, array dtypes and shapes, values (NaN == NaN)."""
    if type(got) is not type(want):
        raise RuleViolation(f"{path}: type {type(got).__name__} != {type(want).__name__} (copied inputs)")
    if isinstance(got, np.ndarray):
        if not _same_array(got, want):
            raise RuleViolation(f"{path}: {got.dtype}{got.shape} != {want.dtype}{want.shape} on copied inputs:\n"
                                f"{got!r}\nvs\n{want!r}")
    elif isinstance(got, dict):
        if list(got) != list(want):
            raise RuleViolation(f"{path}: keys {list(got)} != {list(want)}")
        for k in got:
            assert_same(got[k], want[k], f"{path}[{k!r}]")
    elif isinstance(got, (list, tuple)):
        if len(got) != len(want):
            raise RuleViolation(f"{path}: length {len(got)} != {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(got, np.generic):
        if got.dtype != want.dtype or not _same_array(np.asarray(got), np.asarray(want)):
            raise RuleViolation(f"{path}: {got!r} != {want!r} (copied inputs)")
    elif isinstance(got, (float, int, str, bool, bytes, type(None))):
        if not _same_scalar(got, want):
            raise RuleViolation(f"{path}: {got!r} != {want!r} (copied inputs)")
    else:
        raise RuleViolation(f"{path}: the test's call returned a {type(got).__name__}; extract arrays from it")


def _names_in(message: str, names) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(str(n))}(?![A-Za-z0-9_])", message) for n in names)


def _run(call, inputs):
    with _memory_guard():
        return call(**inputs)


def check_call(call, inputs: dict, names, compare: bool = True):
    """THE rule of the fuzz suite, for ``call(**inputs)`` (see _check); raises RuleViolation when broken.

    With the environment variable FASTNN_FUZZ_REPORT=<file> (a diagnostic mode for listing every failing
    property in one run), violations are appended to the file instead of raised.
    """
    try:
        return _check(call, inputs, names, compare)
    except RuleViolation as exc:
        if not os.environ.get("FASTNN_FUZZ_REPORT"):
            raise
        _record(exc, inputs)
        return "violation", exc


def _check(call, inputs: dict, names, compare: bool):
    """THE rule of the fuzz suite, for ``call(**inputs)``.

    call: builds everything it needs from `inputs` (fresh models, optimizers, ...) and returns plain
    data (arrays, floats, dicts / lists / tuples of them). names: the argument names an error may
    name (the fuzzed, possibly offending arguments). compare=False for calls whose result is not a
    function of the inputs alone (none of the array inputs then need copying).

    Returns ("ok", result) or ("error", exception).
    """
    names = [names] if isinstance(names, str) else list(names)
    snaps = [(path, a, a.flags.writeable, _distinct(a).copy()) for path, a in _walk(inputs)]

    def unchanged():
        for path, a, writeable, before in snaps:
            if a.flags.writeable != writeable:
                raise RuleViolation(f"the call changed the writeability of input {path}")
            if not _same_array(_distinct(a), before):
                raise RuleViolation(f"the call changed input {path} in place")

    try:
        result = _run(call, inputs)
    except (ValueError, TypeError) as exc:
        unchanged()
        if not _names_in(str(exc), names):
            raise RuleViolation(f"{type(exc).__name__} does not name any of {names}: {exc}") from exc
        return "error", exc
    except Exception as exc:  # noqa: BLE001 - the rule forbids every other type
        raise RuleViolation(f"the call raised {type(exc).__name__} (only ValueError/TypeError naming "
                            f"{names} are allowed): {exc}\n{traceback.format_exc(limit=-6)}") from exc
    unchanged()
    if compare and snaps:
        try:
            canon = _canonical(inputs)
        except _TooLarge:   # a huge (broadcast) input cannot be copied: nothing to compare with
            return "ok", result
        try:
            want = _run(call, canon)
        except Exception as exc:  # noqa: BLE001
            raise RuleViolation(f"the call succeeded, but on C-contiguous aligned native copies of its inputs "
                                f"it raised {type(exc).__name__}: {exc}") from exc
        assert_same(result, want)
    return "ok", result
