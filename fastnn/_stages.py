"""Stages: what a model runs, shared by the per-layer path and the compiled plans.

The planner (``plan_stages``) turns a layer list into *stages*, the units the kernels run: a Dense
followed by an activation layer becomes one DenseStage (GEMM, then one fused bias + activation
pass); any other activation is an ActStage; Dropout is a DropoutStage. Each stage runs itself on
the per-layer path (``forward``/``backward`` on buffers it allocates per batch size) and describes
itself to the compiled plans (``spec``: a named record that fastnn._kernels._plan reads by
attribute). "Plan" means only the compiled executor (fastnn._kernels._plan).

``Execution`` is the one seam between a model and the engine: a model's stages, parameter arena,
dtype, widths, seed and dropout step counter, and the per-layer path over them. The engine reads
nothing else of a model (``model._execution()``).

Memory. Activation buffers (z, a), gradient buffers and dropout masks are allocated once per batch
size and reused; the forward input is copied (and converted to the model dtype) into a buffer of
its own, so later changes to the caller's array cannot corrupt the backward pass. Gradients
accumulate across backward passes until zero_grad(), as in PyTorch: the first backward writes a
parameter's gradient with beta = 0 (no zeroing pass), later ones add with beta = 1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validation as V
from ._kernels import _activations, _dense, _dropout
from .layers import Activation, Dense, Dropout, Identity

__all__ = ["ActSpec", "DenseSpec", "DropoutSpec", "Execution", "LossSpec", "plan_stages"]

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}
_EMPTY2 = {dt: a.reshape(0, 0) for dt, a in _EMPTY.items()}


# ---------------------------------------------------------------------------------------------- records
# What a compiled plan is built from (fastnn._kernels._plan reads the fields by name; `kind` says which).

class DenseSpec(NamedTuple):
    """GEMM + fused bias/activation: w (k, m), b (m,) or None; dw, db the gradients (training plans)."""
    act: int
    param: float
    param2: float
    k: int
    m: int
    w: np.ndarray
    b: np.ndarray | None
    dw: np.ndarray | None = None
    db: np.ndarray | None = None
    kind = "dense"


class ActSpec(NamedTuple):
    """An element-wise activation over m features."""
    act: int
    param: float
    param2: float
    m: int
    kind = "act"


class DropoutSpec(NamedTuple):
    """Dropout with probability p; masks from (seed, stream, step)."""
    p: float
    stream: int
    m: int
    kind = "dropout"


class LossSpec(NamedTuple):
    """The plan's fused loss + gradient: a LossKind, its reduction and settings (weights converted).

    SKLEARN_MLP only: out_activation (a _losses.SK_OUT_ACTIVATIONS code), alpha (the L2 term the plan adds
    at the Dense stages) and weighted (targets carry the sample weight in an extra last column)."""
    kind: int
    reduction: str
    classes: int
    weight: np.ndarray | None = None
    pos_weight: np.ndarray | None = None
    ignore_index: int = -100
    label_smoothing: float = 0.0
    out_activation: int = 0
    alpha: float = 0.0
    weighted: bool = False


# ---------------------------------------------------------------------------------------------- stages

class Stage:
    """One fused unit of execution with its buffers for the current batch size."""

    out_features: int
    out: np.ndarray    # forward output (n, out_features)
    gout: np.ndarray   # gradient w.r.t. out, filled by the next stage (or the model's backward)

    def allocate(self, n: int, dtype) -> None:
        self.gout = np.empty((n, self.out_features), dtype)

    def spec(self, with_grads: bool, training: bool):
        """This stage's plan record; None if the stage does nothing in this mode (an idle dropout)."""
        raise NotImplementedError


class DenseStage(Stage):
    def __init__(self, layer: Dense, act: Activation):
        self.layer, self.act = layer, act
        self.code = _activations.CODES[act.kind]
        self.out_features = layer.out_features

    def spec(self, with_grads, training):
        layer = self.layer
        w, *rest = layer.params
        b = rest[0] if rest else None
        grads = (w._grad, b._grad if b is not None else None) if with_grads else (None, None)
        return DenseSpec(self.code, float(self.act.param), float(self.act.param2), layer.in_features,
                         layer.out_features, w.data, b.data if b is not None else None, *grads)

    def allocate(self, n, dtype):
        super().allocate(n, dtype)
        self.z = np.empty((n, self.out_features), dtype)
        linear = isinstance(self.act, Identity)
        self.out = self.z if linear else np.empty_like(self.z)

    def forward(self, x, training, ex):
        self.x = x
        w = self.layer.params[0].data
        b = self.layer.params[1].data if self.layer.use_bias else _EMPTY[x.dtype]
        _dense.forward(x, w, b, self.z, self.out, self.code, self.act.param, self.act.param2)
        return self.out

    def backward(self, dx_out):
        w, *rest = self.layer.params
        db = rest[0]._grad if rest else _EMPTY[self.z.dtype]
        dx = dx_out if dx_out is not None else _EMPTY2[self.z.dtype]
        # a gradient that is None is written (beta = 0), an existing one is added to
        _dense.backward(self.x, w.data, self.z, self.out, self.gout, w._grad, db, dx,
                        self.code, self.act.param, w.has_grad, rest[0].has_grad if rest else False, self.act.param2)
        for p in self.layer.params:
            p.has_grad = True


class ActStage(Stage):
    def __init__(self, act: Activation, width: int):
        self.act = act
        self.code = _activations.CODES[act.kind]
        self.out_features = width

    def spec(self, with_grads, training):
        return ActSpec(self.code, float(self.act.param), float(self.act.param2), self.out_features)

    def allocate(self, n, dtype):
        super().allocate(n, dtype)
        self.out = np.empty((n, self.out_features), dtype)

    def forward(self, x, training, ex):
        self.x = x
        _activations.forward(x, _EMPTY[x.dtype], self.out, self.code, self.act.param, self.act.param2)
        return self.out

    def backward(self, dx_out):
        if dx_out is not None:
            _activations.backward(self.gout, self.x, self.out, dx_out, self.code, self.act.param, self.act.param2)


class DropoutStage(Stage):
    def __init__(self, layer: Dropout, width: int, stream: int):
        self.layer, self.stream = layer, stream
        self.out_features = width
        self.active = False

    def spec(self, with_grads, training):
        if not (training and self.layer.p > 0.0):
            return None
        return DropoutSpec(float(self.layer.p), self.stream, self.out_features)

    def allocate(self, n, dtype):
        super().allocate(n, dtype)
        self.out = np.empty((n, self.out_features), dtype)
        self.mask = np.empty(n * self.out_features, np.uint8)

    def forward(self, x, training, ex):
        self.active = training and self.layer.p > 0.0
        if not self.active:
            return x
        _dropout.forward(x.reshape(-1), self.out.reshape(-1), self.mask, self.layer.p, ex.seed, self.stream, ex.step)
        return self.out

    def backward(self, dx_out):
        if dx_out is None:
            return
        if self.active:
            _dropout.backward(self.gout.reshape(-1), self.mask, dx_out.reshape(-1), self.layer.p)
        else:
            dx_out[...] = self.gout


#: the stage classes the compiled plans know; any other stage runs on the per-layer path only
PLANNED = (DenseStage, ActStage, DropoutStage)


def plan_stages(layers) -> list[Stage]:
    """The stages of a layer list (fusing Dense -> activation layer); checks that the widths chain."""
    stages, width = [], None
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Dense):
            if width is not None and layer.in_features != width:
                raise ValueError(
                    f"layer {i} ({layer!r}) expects in_features={layer.in_features}, "
                    f"but the previous layer gives {width} features"
                )
            act = layer.activation
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(act, Identity) and isinstance(nxt, Activation):
                act, i = nxt, i + 1   # fuse Dense -> activation layer
            stages.append(DenseStage(layer, act))
            width = layer.out_features
        elif isinstance(layer, Activation):
            stages.append(ActStage(layer, width))
        elif isinstance(layer, Dropout):
            stages.append(DropoutStage(layer, width, stream=i))
        else:
            raise TypeError(f"layer {i} has unsupported type {type(layer).__name__}")
        i += 1
    first_width = next(layer for layer in layers if isinstance(layer, Dense)).in_features
    for stage in stages:   # activation/dropout layers before the first Dense
        if stage.out_features is None:
            stage.out_features = first_width
        else:
            break
    return stages


# ---------------------------------------------------------------------------------------------- the seam

class Execution:
    """A model as the engine sees it: stages, parameter arena, dtype, widths, seed, dropout step counter.

    ``step`` counts training-mode forward passes (it keys the dropout masks); the per-layer path
    (``forward``) and the compiled plans both advance it. ``forward``/``backward`` run the stages on
    buffers of their own (one batch size at a time): they are the per-layer path, used by a model's
    explicit loop and by the engine for stages the plans do not know.
    """

    __slots__ = ("stages", "arena", "dtype", "in_features", "out_features", "seed", "step", "_x", "_n")

    def __init__(self, stages, arena, dtype, in_features: int, seed: int, step: int = 0):
        self.stages, self.arena, self.dtype = stages, arena, dtype
        self.in_features, self.out_features = in_features, stages[-1].out_features
        self.seed, self.step = seed, step
        self._x = None
        self._n = None

    def specs(self, with_grads: bool, training: bool) -> list | None:
        """The plan records of every stage (idle dropouts left out); None if a stage is of a kind no plan runs."""
        specs = []
        for s in self.stages:
            if type(s) not in PLANNED:
                return None
            spec = s.spec(with_grads, training)
            if spec is not None:
                specs.append(spec)
        return specs

    def _allocate(self, n: int) -> None:
        if self._n == n:
            return
        width = self.in_features + 3 * sum(stage.out_features for stage in self.stages)   # x, then gout/z/out
        V.check_nbytes("x", (n, width), self.dtype, what="the input copy and every layer's buffers")
        self._x = np.empty((n, self.in_features), self.dtype)
        for stage in self.stages:
            stage.allocate(n, self.dtype)
        self._n = n

    def forward(self, x, training: bool):
        """Run the stages on a validated (n, in_features) x (any layout, any real dtype); returns the
        output buffer. The stages keep what backward needs; a training-mode pass advances ``step``."""
        self._allocate(x.shape[0])
        np.copyto(self._x, x)
        if training:
            self.step += 1
        h = self._x
        for stage in self.stages:
            h = stage.forward(h, training, self)
        return h

    def backward(self, g, input_grad_out=None) -> None:
        """Backward through every stage from g (n, out) of the last forward; d loss / d x to input_grad_out."""
        stages = self.stages
        np.copyto(stages[-1].gout, g)
        for k in range(len(stages) - 1, -1, -1):
            stages[k].backward(stages[k - 1].gout if k > 0 else input_grad_out)

    @property
    def batch_rows(self):
        """The batch size the per-layer buffers are allocated for (None before the first forward)."""
        return self._n
