"""Parameters as views into flat arenas.

All parameters of a model live in one contiguous 1-D buffer (the *parameter arena*)
and all their gradients in another of the same size (the *gradient arena*); each
Parameter's ``.data`` and ``.grad`` are reshaped views at the same offset. Fused
kernels (optimizer steps, clipping) can then run over a whole run of neighbouring
parameters in one call.

Gradients follow PyTorch: ``.grad`` is ``None`` until a backward pass produces it,
later backward passes accumulate into it, and ``zero_grad()`` (set_to_none=True)
makes it ``None`` again. Internally the view always exists; ``has_grad`` says
whether it holds a gradient, so kernels write the first gradient with beta=0
(no zeroing pass) and accumulate the next ones with beta=1.

Alignment: both arenas start on a 64-byte (cache-line) boundary (``aligned_zeros``), so a
weight at an offset that is a multiple of 16 floats has every row of 16 floats in one line
(fastnn's small-GEMM kernels on tiny's 784x128 weight: 141 us aligned vs 186 us 32 bytes off).
Parameters are packed without padding, so that neighbours stay contiguous for the fused
optimizer and clipping runs: a weight that follows an odd-sized bias starts off a line (10-40%
slower forward GEMM on the own kernels, measured 64x100x256), but the standard shapes put every
weight at a multiple of 16 elements anyway, and padding would split one optimizer run per gap.
"""

from __future__ import annotations

from math import prod

import numpy as np

from ._kernels._runtime import UseGuard
from ._validation import as_float_array, check_bool

ALIGNMENT = 64  # bytes: one cache line, and two AVX2 vectors
REDUCE_SLOTS = 3  # spare gradient-arena elements (fastnn._kernels._plan.REDUCE_SLOTS)


def aligned_zeros(size: int, dtype, align: int = ALIGNMENT) -> np.ndarray:
    """A 1-D zeroed array of `size` elements whose first element lies on an `align`-byte boundary.

    An ordinary writeable, C-contiguous ndarray over a slightly larger zeroed block. It is built
    through a memoryview, so that it is the ``.base`` of every view taken from it (NumPy stops
    collapsing view chains at a non-array base): views of one buffer share it as their base, and
    its size is `size`, exactly as if it came from ``np.zeros(size, dtype)``.
    """
    dtype = np.dtype(dtype)
    raw = np.zeros(size * dtype.itemsize + align, np.uint8)
    start = -raw.ctypes.data % align
    return np.frombuffer(memoryview(raw)[start:start + size * dtype.itemsize], dtype)


class Arena:
    """Two flat buffers (parameters, gradients) of one dtype, carved into Parameters.

    ``guard`` (a UseGuard) records who is using the buffers: training (forward/backward in
    training mode, train_step, fit, an optimizer step) is exclusive to one thread; inference may
    run in any number of threads, but not while another thread trains.

    Copies and pickles (copy.deepcopy, pickle) rebuild the arena from its two flat buffers, so
    the Parameters of the copy are views into the copy's buffers, exactly as in the original,
    and every object that refers to a Parameter (an optimizer's groups and state) refers to the
    copy's Parameter in a copy made together with it.
    """

    __slots__ = ("dtype", "data", "grad", "params", "guard", "__weakref__")

    def __init__(self, shapes, dtype, names=None):
        self.guard = UseGuard("model")
        self.dtype = np.dtype(dtype)
        sizes = [prod(s) for s in shapes]
        total = sum(sizes)
        self.data = aligned_zeros(total, self.dtype)
        # REDUCE_SLOTS spare elements after the last gradient: distributed training reduces the step's
        # loss sum, denominator and stop flag together with the gradients, in one allreduce (fastnn.distributed)
        self.grad = aligned_zeros(total + REDUCE_SLOTS, self.dtype)[:total]
        names = names or [f"param{i}" for i in range(len(shapes))]
        self.params = []
        offset = 0
        for shape, size, name in zip(shapes, sizes, names):
            self.params.append(Parameter(self, offset, tuple(shape), name))
            offset += size

    @property
    def size(self) -> int:
        return self.data.size

    def __reduce__(self):
        return (_rebuild_arena, (self.dtype, [p.shape for p in self.params], [p.name for p in self.params],
                                 self.data, self.grad, [p.has_grad for p in self.params]))


def _rebuild_arena(dtype, shapes, names, data, grad, has_grad) -> Arena:
    arena = Arena(shapes, dtype, names)
    arena.data[...] = data
    arena.grad[...] = grad
    for p, flag in zip(arena.params, has_grad):
        p.has_grad = bool(flag)
    return arena


class Parameter:
    """A trainable array: ``.data`` and ``.grad`` are views into its arena."""

    __slots__ = ("arena", "offset", "shape", "name", "data", "_grad", "has_grad", "__weakref__")

    def __init__(self, arena: Arena, offset: int, shape: tuple, name: str):
        self.arena = arena
        self.offset = offset
        self.shape = shape
        self.name = name
        n = prod(shape)
        self.data = arena.data[offset:offset + n].reshape(shape)
        self._grad = arena.grad[offset:offset + n].reshape(shape)
        self.has_grad = False

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        return self.arena.dtype

    @property
    def grad(self):
        """The accumulated gradient (a view into the gradient arena), or None."""
        return self._grad if self.has_grad else None

    @grad.setter
    def grad(self, value):
        if value is None:
            self.has_grad = False
            return
        value = as_float_array(value, "grad", None)
        if value.shape != self.shape:
            raise ValueError(f"grad for {self.name} must have shape {self.shape}, got {value.shape}")
        self._grad[...] = value
        self.has_grad = True

    def zero_grad(self, set_to_none: bool = True) -> None:
        if check_bool(set_to_none, "set_to_none"):
            self.has_grad = False
        else:
            self._grad.fill(0)
            self.has_grad = True

    def __reduce__(self):
        return (_parameter_of, (self.arena, self.arena.params.index(self)))

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.shape}, dtype={self.dtype})"


def _parameter_of(arena: Arena, index: int) -> Parameter:
    return arena.params[index]


def parameters_from_arrays(arrays, names=None, dtype=None) -> list[Parameter]:
    """Parameters in one fresh arena holding copies of `arrays` (handy for tests and tools)."""
    arrays = [np.asarray(a) for a in arrays]
    dtype = np.dtype(dtype) if dtype is not None else np.result_type(*arrays)
    arena = Arena([a.shape for a in arrays], dtype, names)
    for p, a in zip(arena.params, arrays):
        p.data[...] = a
    return arena.params
