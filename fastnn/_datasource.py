"""Where a batch's rows come from: an array in memory, or a memory-mapped file read a chunk at a time.

fit, evaluate and predict take X either in memory (converted once to the model's dtype, C-contiguous,
by fastnn._validation) or memory-mapped (``np.load(path, mmap_mode="r")``, an ``np.memmap``, or a view
of one: any real dtype, C or Fortran order). A mapped X is never converted whole: ``MappedRows`` reads
the rows a step needs into bounded buffers of the model's dtype. ``Batches`` serves fit's epochs
from either, ``row_batches`` serves predict and evaluate.

Decisions:

* Memory. Pages of a mapping that the process has touched count in its resident set (RssFile) until
  they are unmapped or dropped, so gathering rows through the mapping would grow RSS to the file's
  size over an epoch. Rows that are contiguous in the file (C order, row slices, column ranges) are
  therefore read with ``os.preadv`` on the file itself, runs of consecutive rows coalesced into one
  read, never through the mapping: only the page cache (the kernel's, reclaimable) holds them. Any
  other layout (Fortran order, strided views), a mapping without a file name, or a platform without
  preadv reads through the mapping a window at a time and drops the touched pages right after
  (``madvise(MADV_DONTNEED)``, widened by the kernel's fault-around). Fortran order is read column by
  column: correct, but a shuffled epoch then reads each column once per chunk; store C order.
* Same bits. A row read in a chunk is converted element by element with the cast the whole-array
  conversion uses, so it gets the same bits. fit's compiled runs gather the rows of the next batches
  in permutation order (sorted by row for locality while reading, then put back in order) into one
  buffer and run them in order; the batches, the kernels and the dropout masks (keyed by the step
  counter, not by the row) are those of the same fit in memory, and the weights are identical.
* Finite inputs. fit scans a mapped float X (and validation X) once, chunk by chunk, before
  anything trains, and raises the in-memory message (same first row). Integer and bool files cannot
  hold NaN or inf, and no integer converts to a non-finite float32: no scan. predict and evaluate
  check each chunk as they read it; they change nothing on the model, so a NaN found late raises
  the same error with nothing else done.
* A copy-on-write mapping (mode "c") may differ from its file and is treated as an array in memory.
* Targets are small (n labels, or n x outputs): a mapped y is read into memory once (its pages
  dropped afterwards) and prepared like any y.
"""

from __future__ import annotations

import mmap
import os
import weakref

import numpy as np

from ._kernels._checks import all_finite

__all__ = ["Batches", "MappedRows", "is_mapped", "in_memory", "row_batches"]

_BLOCK_BYTES = 8 << 20    # one read's staging block, in the file's dtype
_CHUNK_BYTES = 32 << 20   # rows read at once (the next batches of fit, predict's rows), in the model's dtype
_WINDOW_BYTES = 16 << 20  # span of a mapping touched between two drops (reads through the mapping)
_FAULT_AROUND = 64 << 10  # the kernel maps up to this much around a faulting address (fault_around_bytes)
_DROP = getattr(mmap, "MADV_DONTNEED", None)


def _mapping(a):
    """The np.memmap whose shared mapping holds ndarray `a`'s data (a itself or a base of a view), or None.

    A copy-on-write mapping (mode "c") counts as memory: its pages may differ from the file, and
    dropping them would discard the caller's changes.
    """
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap) and getattr(a, "_mmap", None) is not None:
            return None if a.mode == "c" else a
        a = a.base
    return None


def is_mapped(a) -> bool:
    """Whether `a` is an ndarray whose data lives in a memory-mapped file (np.load(..., mmap_mode=...))."""
    return isinstance(a, np.ndarray) and _mapping(a) is not None


def _map_address(mm) -> int:
    return np.frombuffer(mm, np.uint8, count=1).ctypes.data


def _drop_pages(mm, base: int, lo: int, hi: int) -> None:
    """Drop the mapping's pages holding addresses [lo, hi) (and the fault-around margin) from the process."""
    if _DROP is None or hi <= lo:
        return
    size = len(mm)
    start = max(0, (lo - base - _FAULT_AROUND) // mmap.PAGESIZE * mmap.PAGESIZE)
    end = min(size, hi - base + _FAULT_AROUND)
    if end > start:
        mm.madvise(_DROP, start, end - start)


def in_memory(a):
    """A mapped array read into memory (a copy, its pages dropped from the mapping); anything else as is."""
    m = _mapping(a) if isinstance(a, np.ndarray) else None
    if m is None:
        return a
    out = np.array(a, subok=False)
    mm = m._mmap
    _drop_pages(mm, _map_address(mm), _map_address(mm), _map_address(mm) + len(mm))
    return out


def _pread(fd: int, view: memoryview, pos: int) -> None:
    while len(view):
        got = os.preadv(fd, [view], pos)
        if got <= 0:
            raise OSError(f"the memory-mapped file ended early (reading {len(view)} bytes at offset {pos})")
        view = view[got:]
        pos += got


class MappedRows:
    """The rows of a 2-D memory-mapped array, read on demand into the model's dtype (see the module docstring).

    x.read(rows, out): rows (int64 indices in any order, or a (start, stop) pair) converted into out.
    len(x), x.shape, x[start:stop] (a MappedRows of those rows); x.scan() checks every row is finite.
    """

    def __init__(self, arr: np.ndarray, dtype, name: str, row0: int = 0):
        self.arr, self.dtype, self.name = arr, np.dtype(dtype), name
        self.row0 = row0   # the first row's index in the array the user passed (for messages)
        self.shape = arr.shape
        self.checked = arr.dtype.kind != "f"   # integers and bools are finite in float32 and float64
        m = _mapping(arr)
        self._mm = m._mmap
        self._base = _map_address(self._mm)
        self._addr = arr.__array_interface__["data"][0]
        isz = arr.dtype.itemsize
        s0, s1 = arr.strides
        self._rows_contiguous = s1 == isz or arr.shape[1] == 1
        self._row_bytes = arr.shape[1] * isz
        self._fd = None
        self._block = max(1, _BLOCK_BYTES // max(1, self._row_bytes))
        if self._rows_contiguous and s0 > 0 and m.filename and hasattr(os, "preadv"):
            start = m.offset - m.offset % mmap.ALLOCATIONGRANULARITY   # the file offset np.memmap mapped from
            self._pos = start + (self._addr - self._base)
            self._coalesce = s0 == self._row_bytes
            try:
                self._fd = os.open(m.filename, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                self._fd = None
            else:
                weakref.finalize(self, os.close, self._fd)
                if not self._same_as_mapping():
                    self._fd = None

    def _same_as_mapping(self) -> bool:
        """The file read at the computed offset holds what the mapping shows (first and last row)."""
        n = self.shape[0]
        rows = np.array([0, n - 1], np.int64)
        got = np.empty((2, self.shape[1]), self.arr.dtype)
        self._read_file(rows, got)
        want = np.array(self.arr[rows])
        self._drop_rows(rows)
        return got.tobytes() == want.tobytes()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("MappedRows supports contiguous row slices only")
        start = key.indices(len(self))[0]
        part = MappedRows(self.arr[key], self.dtype, self.name, self.row0 + start)
        part.checked = self.checked
        return part

    # ------------------------------------------------------------------ reading
    def read(self, rows, out: np.ndarray, check: bool = False) -> np.ndarray:
        """Rows into out[:count] in the model's dtype; rows: int64 indices (any order) or (start, stop).

        check: raise ValueError (the in-memory message, naming the first bad row) on NaN or inf.
        """
        staging = np.empty((min(self._block, self._count(rows)), self.shape[1]), self.arr.dtype)
        if isinstance(rows, tuple):
            start, stop = rows
            for s in range(start, stop, self._block):
                e = min(s + self._block, stop)
                self._read_sorted(np.arange(s, e, dtype=np.int64), staging[:e - s])
                dst = out[s - start:e - start]
                dst[...] = staging[:e - s]
                if check:
                    self._check(dst, s)
            return out
        idx = np.asarray(rows, dtype=np.int64)
        sort = np.argsort(idx, kind="stable")
        sidx = idx[sort]
        for b in range(0, len(idx), self._block):
            part = sidx[b:b + self._block]
            self._read_sorted(part, staging[:len(part)])
            out[sort[b:b + len(part)]] = staging[:len(part)]
        if check:
            self._check(out[:len(idx)], None, idx)
        return out

    @staticmethod
    def _count(rows) -> int:
        return max(1, rows[1] - rows[0]) if isinstance(rows, tuple) else max(1, len(rows))

    def _check(self, block, start, idx=None) -> None:
        if all_finite(block.reshape(-1)):
            return
        bad = int(np.argwhere(~np.isfinite(block))[0][0])
        row = start + bad if idx is None else int(idx[bad])
        raise ValueError(f"{self.name} must be finite, got NaN or inf (first in row {self.row0 + row})")

    def scan(self) -> None:
        """Check every row is finite (once; a chunk at a time), raising the in-memory message if not."""
        if self.checked:
            return
        rows = max(1, _CHUNK_BYTES // (self.shape[1] * self.dtype.itemsize))
        buf = np.empty((min(rows, len(self)), self.shape[1]), self.dtype)
        for s in range(0, len(self), rows):
            e = min(s + rows, len(self))
            self.read((s, e), buf[:e - s], check=True)
        self.checked = True

    def _read_sorted(self, sidx: np.ndarray, staging: np.ndarray) -> None:
        """Rows sidx (sorted) into staging, in the file's dtype."""
        if self._fd is not None:
            self._read_file(sidx, staging)
        elif self._rows_contiguous:
            span = abs(self.arr.strides[0]) + _FAULT_AROUND
            group = max(1, _WINDOW_BYTES // span)
            for g in range(0, len(sidx), group):
                part = sidx[g:g + group]
                staging[g:g + len(part)] = self.arr[part]
                self._drop_rows(part)
        else:   # Fortran order or strided: column by column, windows of rows
            s0 = abs(self.arr.strides[0]) or 1
            window = max(1, _WINDOW_BYTES // s0)
            ids = sidx // window
            cuts = [0] + (np.flatnonzero(np.diff(ids)) + 1).tolist() + [len(sidx)]
            for j in range(self.shape[1]):
                col = self.arr[:, j]
                for a, e in zip(cuts[:-1], cuts[1:]):
                    staging[a:e, j] = col[sidx[a:e]]
                    self._drop_rows(sidx[a:e], j)

    def _read_file(self, sidx: np.ndarray, staging: np.ndarray) -> None:
        """Rows sidx (sorted) into staging with preadv, consecutive rows in one read."""
        rb, s0, pos, fd = self._row_bytes, self.arr.strides[0], self._pos, self._fd
        view = memoryview(staging.reshape(-1).view(np.uint8))
        m = len(sidx)
        if self._coalesce and m > 1:
            breaks = (np.flatnonzero(np.diff(sidx) != 1) + 1).tolist()
            starts, ends = [0] + breaks, breaks + [m]
            firsts = sidx[starts].tolist()
            for a, e, r in zip(starts, ends, firsts):
                _pread(fd, view[a * rb:e * rb], pos + r * s0)
        else:
            for a, r in enumerate(sidx.tolist()):
                _pread(fd, view[a * rb:(a + 1) * rb], pos + r * s0)

    def _drop_rows(self, sidx: np.ndarray, col: int | None = None) -> None:
        """Drop the pages that reading rows sidx (sorted; all columns, or column col) touched."""
        s0, s1 = self.arr.strides
        cols = (0, self.shape[1] - 1) if col is None else (col, col)
        corners = [self._addr + int(r) * s0 + c * s1 for r in (sidx[0], sidx[-1]) for c in cols]
        _drop_pages(self._mm, self._base, min(corners), max(corners) + self.arr.dtype.itemsize)


def row_batches(x, batch_size: int):
    """(start, rows) for consecutive batches of x (views of an in-memory x; for a MappedRows, views of a
    buffer refilled a chunk of whole batches at a time, each checked finite unless x.checked).
    A yielded view is valid until the next one is requested."""
    n = len(x)
    if not isinstance(x, MappedRows):
        for s in range(0, n, batch_size):
            yield s, x[s:s + batch_size]
        return
    per = max(1, _CHUNK_BYTES // (batch_size * x.shape[1] * x.dtype.itemsize)) * batch_size
    buf = np.empty((min(n, per), x.shape[1]), x.dtype)
    for c in range(0, n, per):
        e = min(c + per, n)
        x.read((c, e), buf[:e - c], check=not x.checked)
        for s in range(c, e, batch_size):
            yield s, buf[s - c:min(s + batch_size, e) - c]


class Batches:
    """fit's batches of (x, t): views when in memory and unshuffled, else gathered into buffers.

    batches(b) -> (xb, tb), batch b of the epoch (for stepping one at a time).
    batches.run(first, count) -> (x, t, order, local, k): arrays for Engine.train_batches, whose batches
    local .. local+k-1 (k <= count) are the epoch's batches first .. first+k-1. In memory that is the
    whole x, t and the permutation; a mapped x gets the rows of the next batches read, in order, into a
    chunk buffer of at most max_run batches (reused while a run asks for batches it already holds).
    """

    dist = None   # fastnn.distributed.Context (fastnn._epochs.DistBatches, ShardBatches: x in memory)

    def __init__(self, x, t, batch_size, shuffle):
        self.x, self.t, self.n = x, t, len(x)
        self.size = self.local = min(batch_size, self.n)   # rows of a full (global) batch; this process's rows
        self.steps = -(-self.n // self.size)
        self.full = self.n // self.size   # batches full on every rank
        self.order = None
        self.shuffled = shuffle
        self.mapped = isinstance(x, MappedRows)
        self.max_run = None
        if shuffle or self.mapped:
            self._xbuf = np.empty((self.size,) + x.shape[1:], x.dtype)
            self._tbuf = np.empty((self.size,) + t.shape[1:], t.dtype)
        if self.mapped:
            self.max_run = max(1, _CHUNK_BYTES // (self.size * x.shape[1] * x.dtype.itemsize))
            self.max_run = min(self.max_run, max(1, self.n // self.size))
            rows = self.max_run * self.size
            self._run_x = np.empty((rows, x.shape[1]), x.dtype)
            self._run_t = np.empty((rows,) + t.shape[1:], t.dtype)
            self._held = (None, 0, 0)   # (order, first batch, batches) the run buffers hold

    def shuffle(self, seed: int, epoch: int) -> None:
        self.order = np.random.default_rng([seed, epoch]).permutation(self.n)

    def _rows(self, s: int, e: int):
        return (s, e) if self.order is None else self.order[s:e]

    def __call__(self, b: int):
        s = b * self.size
        e = min(s + self.size, self.n)
        if self.order is None and not self.mapped:
            return self.x[s:e], self.t[s:e]
        xb, tb = self._xbuf[:e - s], self._tbuf[:e - s]
        if self.mapped:
            self.x.read(self._rows(s, e), xb)
        else:
            np.take(self.x, self.order[s:e], axis=0, out=xb, mode="clip")   # mode != 'raise': no hidden buffering
        if self.order is None:
            tb[...] = self.t[s:e]
        else:
            np.take(self.t, self.order[s:e], axis=0, out=tb, mode="clip")
        return xb, tb

    def run(self, first: int, count: int):
        if not self.mapped:
            return self.x, self.t, self.order, first, count
        order, held_first, held = self._held
        if order is self.order and held_first <= first < held_first + held:
            local = first - held_first
            return self._run_x, self._run_t, None, local, min(count, held - local)
        k = min(count, self.max_run)
        s, e = first * self.size, (first + k) * self.size
        self.x.read(self._rows(s, e), self._run_x[:e - s])
        if self.order is None:
            self._run_t[:e - s] = self.t[s:e]
        else:
            np.take(self.t, self.order[s:e], axis=0, out=self._run_t[:e - s], mode="clip")
        self._held = (self.order, first, k)
        return self._run_x, self._run_t, None, 0, k
