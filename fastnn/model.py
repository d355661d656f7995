"""Sequential: the model - its layers, parameters, modes, copies and the explicit (PyTorch-style) loop.

The layers are planned into stages (fastnn._stages), which hold the per-layer execution path; the
model's ``_execution()`` is the one seam through which the compiled engine (fastnn.engine) runs it.
All parameters live in one flat arena and all gradients in another (fastnn.parameter). Training
(fit, train_step, evaluate, predict) comes from TrainingMixin (fastnn.training).
"""

from __future__ import annotations

import threading

import numpy as np

from . import _validation as V
from ._config import get_default_dtype
from ._stages import Execution, plan_stages
from .init import init_dense
from .layers import Dense, Layer
from .parameter import Arena
from .training import TrainingMixin


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
        seed = V.check_int(seed, "seed", low=0, high=(1 << 64) - 1)
        self.training = True
        self._last_forward = None   # (thread, eval-mode input or None, single sample) of the last forward
        stages = plan_stages(layers)
        self.in_features = next(layer for layer in layers if isinstance(layer, Dense)).in_features
        self.out_features = stages[-1].out_features
        self._build_parameters(seed)
        self._exec = Execution(stages, self._arena, self.dtype, self.in_features, seed)

    # ---------------------------------------------------------------- the engine's seam
    def _execution(self) -> Execution:
        """What the engine runs: stages, arena, dtype, widths, seed, dropout step counter (fastnn._stages)."""
        return self._exec

    @property
    def seed(self) -> int:
        """The seed of everything random in the model (initial weights, dropout masks)."""
        return self._exec.seed

    @property
    def _step(self) -> int:
        """Training-mode forward passes so far (the dropout masks' step counter)."""
        return self._exec.step

    @_step.setter
    def _step(self, value: int) -> None:
        self._exec.step = value

    @property
    def _stages(self):
        return self._exec.stages

    def _build_parameters(self, seed):
        dense = [(i, layer) for i, layer in enumerate(self.layers) if isinstance(layer, Dense)]
        shapes, names = [], []
        for i, layer in dense:
            for shape, kind in zip(layer._shapes(), ("weight", "bias")):
                shapes.append(shape)
                names.append(f"{i}.{kind}")
        total = sum(int(np.prod(shape, dtype=object)) for shape in shapes)
        V.check_nbytes("layers", total, self.dtype, what="the parameters and their gradients", arrays=2)
        self._arena = Arena(shapes, self.dtype, names)
        rng = np.random.default_rng(seed)
        params = iter(self._arena.params)
        for _, layer in dense:
            layer.params = [next(params) for _ in layer._shapes()]
            w = layer.params[0].data
            b = layer.params[1].data if layer.use_bias else None
            init_dense(rng, layer.init, w, b)

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
        h = self._exec.forward(x, self.training)
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
            n = 1 if single else (len(x_eval) if x_eval is not None else self._exec.batch_rows)
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
        self._exec.backward(g, input_grad_out)

    # ---------------------------------------------------------------- copies and pickles
    # Buffers, compiled plans and the use guard are rebuilt lazily by the copy; the parameter arena
    # (weights, gradients) and everything else is copied. Pickle is for in-process and trusted use
    # (multiprocessing, joblib, copies); model.save / fastnn.load_model is the safe file format.
    _TRANSIENT = ("_exec", "_compiled_engine", "_last_forward", "_train_out")

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}
        state["seed"], state["_step"] = self._exec.seed, self._exec.step
        return state

    def __setstate__(self, state):
        state = dict(state)
        seed, step = state.pop("seed"), state.pop("_step")
        self.__dict__.update(state)
        self._last_forward = None
        self._exec = Execution(plan_stages(self.layers), self._arena, self.dtype, self.in_features, seed, step)

    def save(self, path, include_optimizer: bool = True) -> None:
        """Write the model to one file (atomically; no pickle); fastnn.load_model(path) reads it back.

        Architecture, dtype, seed, weights (bit-exact), dropout step and epoch; with
        include_optimizer=True and a compiled model also the optimizer state, loss and metrics.
        The path is used as given (no suffix is added). See fastnn.io.
        """
        Sequential._writer(self, path, include_optimizer=include_optimizer)

    #: the file writer, fastnn.io.save_model, which installs itself here when fastnn.io is imported (by
    #: ``import fastnn``): io rebuilds models from files, so it imports this module, never the reverse
    _writer = None

    #: what the model is for, saved in its file: None or {"task", "classes", "features", "target"}
    #: (fastnn train sets it; fastnn.io checks it on save and load)
    meta = None

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n), dtype={self.dtype}, seed={self.seed}"
