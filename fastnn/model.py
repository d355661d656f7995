"""Sequential: the model, its planner, and the per-layer (phase 1) execution path.

Planning. The user's layer list is turned into *stages*, the units the kernels run:
a Dense followed by an activation layer becomes one DenseStage (GEMM, then one fused
bias + activation pass); any other activation is an ActStage; Dropout is a DropoutStage.

Memory. All parameters live in one flat arena and all gradients in another
(fastnn.parameter). Activation buffers (z, a), gradient buffers and dropout masks are
allocated once per batch size and reused; the forward input is copied (and converted
to the model dtype) into a buffer of its own, so later changes to the caller's array
cannot corrupt the backward pass.

Gradients accumulate across backward() calls until zero_grad(), as in PyTorch: the
first backward writes a parameter's gradient with beta = 0 (no zeroing pass), later
ones add with beta = 1.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _validation as V
from ._config import get_default_dtype
from ._kernels import _activations, _dense, _dropout
from .init import init_dense
from .layers import Activation, Dense, Dropout, Identity, Layer
from .parameter import Arena
from .training import TrainingMixin

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}
_EMPTY2 = {dt: a.reshape(0, 0) for dt, a in _EMPTY.items()}


class _Stage:
    """One fused unit of execution with its buffers for the current batch size."""

    out_features: int
    out: np.ndarray    # forward output (n, out_features)
    gout: np.ndarray   # gradient w.r.t. out, filled by the next stage (or model.backward)

    def allocate(self, n: int, dtype) -> None:
        self.gout = np.empty((n, self.out_features), dtype)


class _DenseStage(_Stage):
    def __init__(self, layer: Dense, act: Activation):
        self.layer, self.act = layer, act
        self.code = _activations.CODES[act.kind]
        self.out_features = layer.out_features

    def allocate(self, n, dtype):
        super().allocate(n, dtype)
        self.z = np.empty((n, self.out_features), dtype)
        linear = isinstance(self.act, Identity)
        self.out = self.z if linear else np.empty_like(self.z)

    def forward(self, x, training, model):
        self.x = x
        w = self.layer.params[0].data
        b = self.layer.params[1].data if self.layer.use_bias else _EMPTY[x.dtype]
        _dense.forward(x, w, b, self.z, self.out, self.code, self.act.param)
        return self.out

    def backward(self, dx_out):
        w, *rest = self.layer.params
        db = rest[0]._grad if rest else _EMPTY[self.z.dtype]
        dx = dx_out if dx_out is not None else _EMPTY2[self.z.dtype]
        # a gradient that is None is written (beta = 0), an existing one is added to
        _dense.backward(self.x, w.data, self.z, self.out, self.gout, w._grad, db, dx,
                        self.code, self.act.param, w.has_grad, rest[0].has_grad if rest else False)
        for p in self.layer.params:
            p.has_grad = True


class _ActStage(_Stage):
    def __init__(self, act: Activation, width: int):
        self.act = act
        self.code = _activations.CODES[act.kind]
        self.out_features = width

    def allocate(self, n, dtype):
        super().allocate(n, dtype)
        self.out = np.empty((n, self.out_features), dtype)

    def forward(self, x, training, model):
        self.x = x
        _activations.forward(x, _EMPTY[x.dtype], self.out, self.code, self.act.param)
        return self.out

    def backward(self, dx_out):
        if dx_out is not None:
            _activations.backward(self.gout, self.x, self.out, dx_out, self.code, self.act.param)


class _DropoutStage(_Stage):
    def __init__(self, layer: Dropout, width: int, stream: int):
        self.layer, self.stream = layer, stream
        self.out_features = width
        self.active = False

    def allocate(self, n, dtype):
        super().allocate(n, dtype)
        self.out = np.empty((n, self.out_features), dtype)
        self.mask = np.empty(n * self.out_features, np.uint8)

    def forward(self, x, training, model):
        self.active = training and self.layer.p > 0.0
        if not self.active:
            return x
        _dropout.forward(x.reshape(-1), self.out.reshape(-1), self.mask, self.layer.p,
                         model.seed, self.stream, model._step)
        return self.out

    def backward(self, dx_out):
        if dx_out is None:
            return
        if self.active:
            _dropout.backward(self.gout.reshape(-1), self.mask, dx_out.reshape(-1), self.layer.p)
        else:
            dx_out[...] = self.gout


class Sequential(TrainingMixin):
    """A stack of layers trained as one model.

    Sequential([layer, ...], dtype="float32", seed=None), or PyTorch's Sequential(layer, layer, ...).
    `seed` seeds everything random in the model: initial weights and dropout masks (same seed ->
    bit-identical results). A new model is in training mode; model.eval() turns dropout off.
    """

    def __init__(self, *layers, dtype=None, seed=None):
        if len(layers) == 1 and not isinstance(layers[0], Layer):
            layers = layers[0]   # one list (or other iterable) of layers
            if isinstance(layers, (str, bytes, dict, np.ndarray)) or not hasattr(layers, "__iter__"):
                raise TypeError(f"layers must be a list of fastnn layers (or the layers as arguments), got "
                                f"{type(layers).__name__}")
        layers = list(layers)
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            bad = next((layer for layer in layers if not isinstance(layer, Layer)), None)
            hint = ""
            if isinstance(bad, (str, np.dtype, type, int, list, tuple)) and not isinstance(bad, bool):
                hint = "; pass dtype and seed as keywords: Sequential([...], dtype='float32', seed=0)"
            raise TypeError(
                "layers must be a non-empty list of fastnn layers"
                + (f", got an element of type {type(bad).__name__}" if layers else ", got an empty list") + hint
            )
        if not any(isinstance(layer, Dense) for layer in layers):
            raise ValueError("layers must contain at least one Dense layer (it fixes the input width)")
        if len({id(layer) for layer in layers}) != len(layers) or any(layer.params for layer in layers):
            raise ValueError("a layer object can be used only once, in one model")
        self.layers = layers
        self.dtype = V.resolve_dtype(get_default_dtype() if dtype is None else dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (1 << 63))
        self.seed = V.check_int(seed, "seed", low=0, high=(1 << 64) - 1)
        self.training = True
        self._step = 0
        self._n = None
        self._last_forward = None   # (thread, eval-mode input or None, single sample) of the last forward
        self._stages = self._plan()
        self.in_features = next(layer for layer in layers if isinstance(layer, Dense)).in_features
        self.out_features = self._stages[-1].out_features
        self._build_parameters()

    # ---------------------------------------------------------------- planning
    def _plan(self):
        stages, width = [], None
        i = 0
        while i < len(self.layers):
            layer = self.layers[i]
            if isinstance(layer, Dense):
                if width is not None and layer.in_features != width:
                    raise ValueError(
                        f"layer {i} ({layer!r}) expects in_features={layer.in_features}, "
                        f"but the previous layer gives {width} features"
                    )
                act = layer.activation
                nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
                if isinstance(act, Identity) and isinstance(nxt, Activation):
                    act, i = nxt, i + 1   # fuse Dense -> activation layer
                stages.append(_DenseStage(layer, act))
                width = layer.out_features
            elif isinstance(layer, Activation):
                stages.append(_ActStage(layer, width))
            elif isinstance(layer, Dropout):
                stages.append(_DropoutStage(layer, width, stream=i))
            else:
                raise TypeError(f"layer {i} has unsupported type {type(layer).__name__}")
            i += 1
        first_width = next(layer for layer in self.layers if isinstance(layer, Dense)).in_features
        for stage in stages:   # activation/dropout layers before the first Dense
            if stage.out_features is None:
                stage.out_features = first_width
            else:
                break
        return stages

    def _build_parameters(self):
        dense = [(i, layer) for i, layer in enumerate(self.layers) if isinstance(layer, Dense)]
        shapes, names = [], []
        for i, layer in dense:
            for shape, kind in zip(layer._shapes(), ("weight", "bias")):
                shapes.append(shape)
                names.append(f"{i}.{kind}")
        total = sum(int(np.prod(shape, dtype=object)) for shape in shapes)
        V.check_nbytes("layers", total, self.dtype, what="the parameters and their gradients", arrays=2)
        self._arena = Arena(shapes, self.dtype, names)
        rng = np.random.default_rng(self.seed)
        params = iter(self._arena.params)
        for _, layer in dense:
            layer.params = [next(params) for _ in layer._shapes()]
            w = layer.params[0].data
            b = layer.params[1].data if layer.use_bias else None
            init_dense(rng, layer.init, w, b)

    def _allocate(self, n: int) -> None:
        if self._n == n:
            return
        width = self.in_features + 3 * sum(stage.out_features for stage in self._stages)   # x, then gout/z/out
        V.check_nbytes("x", (n, width), self.dtype, what="the input copy and every layer's buffers")
        self._x = np.empty((n, self.in_features), self.dtype)
        for stage in self._stages:
            stage.allocate(n, self.dtype)
        self._n = n

    # ---------------------------------------------------------------- public API
    def parameters(self):
        """Each Dense layer's weight (in, out) then bias (out,), in layer order."""
        return list(self._arena.params)

    def named_parameters(self):
        return [(p.name, p) for p in self._arena.params]

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        set_to_none = V.check_bool(set_to_none, "set_to_none")
        for p in self._arena.params:
            p.zero_grad(set_to_none)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        """The model's output for x of shape (n, in_features) (or one sample (in_features,)).

        Training mode runs the per-layer path on the model's buffers (training is exclusive to one
        thread: a second thread gets a RuntimeError). Eval mode runs the compiled inference plan,
        which any number of threads may call at once.
        """
        single = isinstance(x, np.ndarray) and x.ndim == 1
        x = V.as_float_array(x, "x", None, ndim=(1, 2) if single else 2)   # converted once, below
        if single:
            x = x.reshape(1, -1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features (columns), got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError("x must have at least one row, got shape (0, ...)")
        if self.training:
            guard = self._arena.guard
            guard.enter_train("model(x) in training mode")
            try:
                out = self._forward(x, single).copy()
            finally:
                guard.exit_train()
        else:   # eval mode: the compiled forward plan, on a private copy kept for a later backward()
            xc = np.array(x, dtype=self.dtype, order="C")
            out = self._engine().forward(xc)
            self._last_forward = (threading.get_ident(), xc, single)   # one assignment: never torn
        return out[0] if single else out

    def _forward(self, x, single=False):
        """Run the stages on a validated x (any layout, any real dtype); returns the output buffer.

        The stages keep what backward needs; the pass is recorded as this thread's last forward."""
        self._allocate(x.shape[0])
        np.copyto(self._x, x)
        if self.training:
            self._step += 1
        h = self._x
        for stage in self._stages:
            h = stage.forward(h, self.training, self)
        self._last_forward = (threading.get_ident(), None, single)
        return h

    def backward(self, grad):
        """Backpropagate grad = d loss / d output through the last forward pass.

        Parameter gradients accumulate into p.grad until zero_grad(). Returns None. The forward
        pass must have run in this thread (another thread's forward raises RuntimeError).
        """
        last = self._last_forward
        if last is None:
            raise RuntimeError("backward() needs a forward pass first: call model(x) before model.backward(grad)")
        thread, x_eval, single = last
        if thread != threading.get_ident():
            raise RuntimeError("backward(): the last forward pass of this model ran in another thread; call "
                               "model(x) and model.backward(grad) in the same thread (train from one thread)")
        guard = self._arena.guard
        guard.enter_train("model.backward()")
        try:
            if self._last_forward is not last:
                raise RuntimeError("backward(): another forward pass of this model ran meanwhile")
            n = 1 if single else (len(x_eval) if x_eval is not None else self._n)
            want = (self.out_features,) if single else (n, self.out_features)
            g = V.as_float_array(grad, "grad", self.dtype, shape=want)
            if x_eval is not None:   # the eval-mode forward ran on the plan: rerun it through the stages (eval mode)
                training, self.training = self.training, False
                try:
                    self._forward(x_eval, single)
                finally:
                    self.training = training
            self._backward(g.reshape(n, self.out_features))
        finally:
            guard.exit_train()

    def _backward(self, g, input_grad_out=None):
        """Backward through every stage from g (n, out); d loss / d x goes to input_grad_out if given."""
        stages = self._stages
        np.copyto(stages[-1].gout, g)
        for k in range(len(stages) - 1, -1, -1):
            stages[k].backward(stages[k - 1].gout if k > 0 else input_grad_out)

    # ---------------------------------------------------------------- copies and pickles
    # Buffers, compiled plans and the use guard are rebuilt lazily by the copy; the parameter arena
    # (weights, gradients) and everything else is copied. Pickle is for in-process and trusted use
    # (multiprocessing, joblib, copies); model.save / fastnn.load_model is the safe file format.
    _TRANSIENT = ("_stages", "_compiled_engine", "_x", "_n", "_last_forward", "_train_out")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._n = None
        self._last_forward = None
        self._stages = self._plan()

    def save(self, path, include_optimizer: bool = True) -> None:
        """Write the model to one file (atomically; no pickle); fastnn.load_model(path) reads it back.

        Architecture, dtype, seed, weights (bit-exact), dropout step and epoch; with
        include_optimizer=True and a compiled model also the optimizer state, loss and metrics.
        The path is used as given (no suffix is added). See fastnn.io.
        """
        from .io import save_model

        save_model(self, path, include_optimizer=include_optimizer)

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n), dtype={self.dtype}, seed={self.seed}"
