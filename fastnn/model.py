"""Sequential: the model - its layers, parameters, modes, copies and the explicit (PyTorch-style) loop.

The layers are planned into stages (fastnn._stages), which hold the per-layer execution path; the
model's ``_execution()`` is the one seam through which the compiled engine (fastnn.engine) runs it.
All parameters live in one flat arena and all gradients in another (fastnn.parameter). Training
(fit, train_step, evaluate, predict) comes from TrainingMixin (fastnn.training).
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import NamedTuple

import numpy as np

from . import _validation as V
from ._config import get_default_dtype
from ._stages import Execution, plan_stages
from .init import init_dense
from .layers import Activation, Dense, Dropout, Input, Layer
from .losses import _tag_output
from .parameter import Arena
from .training import TrainingMixin


class Sequential(TrainingMixin):
    """A stack of layers trained as one model.

    Sequential([layer, ...], dtype="float32", seed=None), or PyTorch's Sequential(layer, layer, ...).
    The first entry may be ``fnn.Input(shape=(n,))`` (Keras), which fixes the input width; a model whose
    first Dense was written ``Dense(units)`` without it is *unbuilt* until it first sees data (a call,
    fit, predict, evaluate, train_step or ``build``), as in Keras: its weights are made then, from the
    same seed, exactly as if the width had been given. Keras's ``Sequential()`` followed by
    ``model.add(layer)`` works too (see ``add``).
    `seed` seeds everything random in the model: initial weights and dropout masks (same seed ->
    bit-identical results). A new model is in training mode; model.eval() turns dropout off.
    """

    def __init__(self, *layers, dtype=None, seed=None):
        if not layers:   # Keras's Sequential() then model.add(layer) ...
            self._empty(dtype, seed)
            return
        if len(layers) == 1 and not isinstance(layers[0], (Layer, Input)):
            layers = layers[0]   # one list (or other iterable) of layers
            if isinstance(layers, (str, bytes, dict, np.ndarray)) or not hasattr(layers, "__iter__"):
                raise TypeError(f"layers must be a list of fastnn layers (or the layers as arguments), got "
                                f"{type(layers).__name__}")
        layers = list(layers)
        input_width = None
        if layers and isinstance(layers[0], Input):
            input_width = layers.pop(0).width
        if any(isinstance(layer, Input) for layer in layers):
            raise ValueError("fnn.Input(shape=(n,)) can only be the first entry of a Sequential")
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
        if len({id(layer) for layer in layers}) != len(layers) or any(
                layer.params or getattr(layer, "_claimed", False) for layer in layers):
            raise ValueError("a layer object can be used only once, in one model")
        _infer_widths(layers, input_width)
        self.layers = layers
        self.dtype = V.resolve_dtype(get_default_dtype() if dtype is None else dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (1 << 63))
        seed = V.check_int(seed, "seed", low=0, high=(1 << 64) - 1)
        self.training = True
        self._last_forward = None   # (thread, eval-mode input or None, single sample) of the last forward
        self._out_tag = None        # the tag of the array the last model(x) returned (fastnn.losses._tag_output)
        self._self_ref = weakref.ref(self)
        if next(layer for layer in layers if isinstance(layer, Dense)).in_features is None:
            self._unbuilt(seed, input_width)   # Keras's Dense(units): the weights wait for the input width
            return
        stages = plan_stages(layers)
        self.in_features = next(layer for layer in layers if isinstance(layer, Dense)).in_features
        self.out_features = stages[-1].out_features
        self._build_parameters(seed)
        self._exec = Execution(stages, self._arena, self.dtype, self.in_features, seed)

    # ---------------------------------------------------------------- the engine's seam
    def _execution(self) -> Execution:
        """What the engine runs: stages, arena, dtype, widths, seed, dropout step counter (fastnn._stages)."""
        if self._exec is None:
            self._require_built("the compiled engine")
        return self._exec

    @property
    def seed(self) -> int:
        """The seed of everything random in the model (initial weights, dropout masks)."""
        return self._exec.seed if self._exec is not None else self._pending_seed

    @property
    def _step(self) -> int:
        """Training-mode forward passes so far (the dropout masks' step counter)."""
        return self._exec.step if self._exec is not None else 0

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

    # ---------------------------------------------------------------- the layers as a container (torch)
    def __len__(self) -> int:
        """The number of layers (as len(torch.nn.Sequential))."""
        return len(self.layers)

    def __iter__(self):
        """The layers, in order."""
        return iter(self.layers)

    def __getitem__(self, index):
        """Layer `index` (negative counts from the end). Slices raise TypeError (see docs/howto-pytorch.md).

        PyTorch's model[a:b] is a new Sequential sharing the layers (and their parameters) with the model;
        a fastnn layer's parameters are views into its model's one flat parameter arena and a layer
        belongs to one model, so a slice that shares them cannot exist.
        """
        if isinstance(index, slice):
            raise TypeError(
                "a fastnn Sequential cannot be sliced (model[a:b]): in PyTorch a slice shares its layers' "
                "parameters with the model, and a fastnn layer's parameters live in its own model's flat arena. "
                "Index one layer (model[i]), iterate (for layer in model), or build a new fnn.Sequential of new "
                "layers and copy the weights in with new_model.load_state_dict(...)")
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"model[index]: index must be an integer, got {type(index).__name__} {index!r}")
        n = len(self.layers)
        if not -n <= index < n:
            raise IndexError(f"model[index]: index {index} is out of range for a model of {n} layers")
        return self.layers[index]

    # ---------------------------------------------------------------- public API
    def parameters(self):
        """Each Dense layer's weight (in, out) then bias (out,), in layer order."""
        self._require_built("model.parameters()")
        return list(self._arena.params)

    def named_parameters(self):
        self._require_built("model.named_parameters()")
        return [(p.name, p) for p in self._arena.params]

    @property
    def trainable_variables(self):
        """The parameters (Keras/TensorFlow's name; the list parameters() returns)."""
        return self.parameters()

    @property
    def trainable_weights(self):
        """The parameters (Keras's name; the list parameters() returns)."""
        return self.parameters()

    def state_dict(self) -> dict:
        """{name: copy of the parameter's values}, in parameter order.

        Names are ``"<layer index>.weight"`` and ``"<layer index>.bias"``, the index being the Dense
        layer's position in ``model.layers`` (as torch.nn.Sequential's keys). Layout is fastnn's: a
        weight has shape (in_features, out_features) (z = x @ W + b), the transpose of torch's
        nn.Linear weight (out_features, in_features); a bias is (out_features,). The arrays are copies
        in the model's dtype: later training does not change them.
        """
        self._require_built("model.state_dict()")
        return {p.name: p.data.copy() for p in self._arena.params}

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays from a state_dict() (fastnn's names and layout) into the parameters.

        strict=True (as torch): the keys must be exactly this model's, else RuntimeError listing the
        missing and unexpected keys. strict=False loads the keys both have and reports the others.
        Every array must have its parameter's shape (a torch-layout (out, in) weight is named as
        such in the error) and real values (converted to the model's dtype). Everything is checked
        before anything is copied. Returns (missing_keys, unexpected_keys), as torch.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"state_dict must be a dict of name -> array (as model.state_dict() returns), got "
                            f"{type(state_dict).__name__}")
        strict = V.check_bool(strict, "strict")
        self._require_built("model.load_state_dict()")
        params = {p.name: p for p in self._arena.params}
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in params]
        if strict and (missing or unexpected):
            raise RuntimeError(
                "Error(s) in loading state_dict for Sequential: "
                + "; ".join(f"{what} key(s): {', '.join(map(repr, keys))}"
                            for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys)
                + f" (this model's keys: {', '.join(params)})")
        arrays = {}
        for name, p in params.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if hasattr(value, "detach") and hasattr(value, "cpu"):   # a torch tensor
                value = value.detach().cpu().numpy()
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"state_dict[{name!r}] must hold real numbers, got an array of dtype {arr.dtype}")
            if arr.shape != p.shape:
                hint = ""
                if len(p.shape) == 2 and arr.shape == p.shape[::-1]:
                    hint = (" - that is PyTorch's nn.Linear layout (out, in); fastnn's weights are (in, out): "
                            "pass the transpose, or use fnn.io.load_torch_weights(model, torch_module)")
                raise RuntimeError(f"size mismatch for {name}: the model's parameter has shape {p.shape}, "
                                   f"state_dict[{name!r}] has shape {arr.shape}{hint}")
            arrays[p] = arr
        for p, arr in arrays.items():
            p.data[...] = arr
        return _IncompatibleKeys(missing, unexpected)

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        set_to_none = V.check_bool(set_to_none, "set_to_none")
        if self._exec is None:
            return   # no weights, no gradients
        for p in self._arena.params:
            p.zero_grad(set_to_none)

    def __call__(self, x, training=None):
        """model(x): forward(x). training=True/False (Keras's keyword) runs this one call in training /
        inference mode and then restores the model's mode (None: the model's mode, model.train()/eval())."""
        if training is None:
            return self.forward(x)
        training = V.check_bool(training, "training")
        mode, self.training = self.training, training
        try:
            return self.forward(x)
        finally:
            self.training = mode

    def forward(self, x):
        """The model's output for x of shape (n, in_features) (or one sample (in_features,)).

        Training mode runs the per-layer path on the model's buffers (training is exclusive to one
        thread: a second thread gets a RuntimeError). Eval mode runs the compiled inference plan,
        which any number of threads may call at once. The returned array is tagged as this pass's
        output (a weak reference, fastnn.losses._tag_output): loss_fn(out, y).backward() comes back here.
        """
        if not self.training and type(x) is np.ndarray and x.dtype is self.dtype and self._exec is not None:
            # eval mode, an array of the model's dtype: its copy (kept for a later backward()) goes straight to the
            # engine, whose plan takes it as it is or validates it with the messages below
            if not _GRAD.enabled:   # no_grad(): nothing kept, x read in place (as predict reads it)
                res = self._engine().forward(x)
                self._last_forward, self._out_tag = _NO_GRAD_PASS, None
                return res
            xc = x.copy()
            res = self._engine().forward(xc)
            self._last_forward = (threading.get_ident(), xc.reshape(1, -1) if x.ndim == 1 else xc, x.ndim == 1)
            self._out_tag = _tag_output(res, self._self_ref)
            return res
        single = isinstance(x, np.ndarray) and x.ndim == 1
        x = V.as_float_array(x, "x", None, ndim=(1, 2) if single else 2)   # converted once, below
        if single:
            x = x.reshape(1, -1)
        self._build_for(x.shape[1])
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
        res = out[0] if single else out
        if not _GRAD.enabled:   # no_grad(): the pass is not kept for backward (PyTorch records no graph)
            self._last_forward, self._out_tag = _NO_GRAD_PASS, None
            return res
        self._out_tag = _tag_output(res, self._self_ref)   # loss_fn(res, y).backward() comes back here
        return res

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
        if last is _NO_GRAD_PASS:
            raise RuntimeError("backward(): the last forward pass ran under fnn.no_grad(), which keeps nothing for "
                               "backward (as PyTorch records no graph there); call model(x) outside no_grad() first")
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
    _TRANSIENT = ("_exec", "_compiled_engine", "_last_forward", "_train_out", "_out_tag", "_self_ref")

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}
        if self._exec is None:   # unbuilt: its seed is kept in _pending_seed
            return state
        state["seed"], state["_step"] = self._exec.seed, self._exec.step
        return state

    def __setstate__(self, state):
        state = dict(state)
        if state.get("_arena") is None:   # an unbuilt model
            self.__dict__.update(state)
            self._last_forward = None
            self._out_tag = None
            self._self_ref = weakref.ref(self)
            self._exec = None
            return
        seed, step = state.pop("seed"), state.pop("_step")
        self.__dict__.update(state)
        self._last_forward = None
        self._out_tag = None
        self._self_ref = weakref.ref(self)
        self._exec = Execution(plan_stages(self.layers), self._arena, self.dtype, self.in_features, seed, step)

    def save(self, path, include_optimizer: bool = True) -> None:
        """Write the model to one file (atomically; no pickle); fastnn.load_model(path) reads it back.

        Architecture, dtype, seed, weights (bit-exact), dropout step and epoch; with
        include_optimizer=True and a compiled model also the optimizer state, loss and metrics.
        The path is used as given (no suffix is added). See fastnn.io.
        """
        self._require_built("model.save()")
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

    # ---------------------------------------------------------------- Keras's build (unbuilt models)
    @property
    def built(self) -> bool:
        """Whether the model has its weights (Keras's ``model.built``): False for a Sequential of
        Dense(units) layers that has not seen data yet."""
        return self._exec is not None

    def build(self, input_shape) -> None:
        """Make the weights for inputs of input_shape (Keras: ``model.build((None, n))``; ``(n,)`` and
        ``n`` work too). A built model must get its own width."""
        shape = (input_shape,) if isinstance(input_shape, int) and not isinstance(input_shape, bool) else input_shape
        if not isinstance(shape, (tuple, list)) or len(shape) not in (1, 2):
            raise ValueError(f"input_shape must be (batch, n) (batch may be None) or (n,), got {input_shape!r}")
        width = V.check_int(shape[-1], "input_shape[-1]", low=1)
        self._build_for(width)
        if width != self.in_features:
            raise ValueError(f"input_shape gives {width} features, but the model takes {self.in_features}")

    def _empty(self, dtype, seed) -> None:
        """Sequential() with no layers yet (Keras's model.add habit)."""
        self.layers = []
        self.dtype = V.resolve_dtype(get_default_dtype() if dtype is None else dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (1 << 63))
        self.training = True
        self._last_forward = None
        self._out_tag = None
        self._self_ref = weakref.ref(self)
        self._unbuilt(V.check_int(seed, "seed", low=0, high=(1 << 64) - 1))

    def add(self, layer) -> None:
        """Append a layer (Keras's ``model.add``), or ``fnn.Input(shape=(n,))`` first. Only before the model
        has its weights: they are made, from the seed, when it first needs them (data, ``build``,
        ``compile``, ``summary``, ``parameters()``), exactly as for the same layers given at once."""
        if self._exec is not None:
            raise ValueError("add(): the model already has its weights; add every layer before using the model "
                             "(or give all the layers to Sequential([...]))")
        if isinstance(layer, Input):
            if self.layers or self._input_width is not None:
                raise ValueError("fnn.Input(shape=(n,)) can only be the first entry of a Sequential")
            self._input_width = layer.width
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"add() takes a fastnn layer (or fnn.Input first), got {type(layer).__name__}")
        if layer.params or getattr(layer, "_claimed", False) or any(layer is m for m in self.layers):
            raise ValueError("a layer object can be used only once, in one model")
        _infer_widths(self.layers + [layer], self._input_width)
        self.layers.append(layer)
        if isinstance(layer, Dense):
            layer._claimed = True
            self.out_features = layer.out_features

    def _unbuilt(self, seed, input_width=None) -> None:
        self._arena = self._exec = None
        self._pending_seed = seed
        self._input_width = input_width
        self.in_features = None
        self.out_features = next((layer.out_features for layer in reversed(self.layers) if isinstance(layer, Dense)),
                                 None)
        for layer in self.layers:
            if isinstance(layer, Dense):
                layer._claimed = True   # a layer belongs to one model, even before it has weights

    def _build_for(self, width: int) -> None:
        """Build an unbuilt model for inputs of `width` features (nothing if it is built)."""
        if self._exec is not None:
            return
        first = next((layer for layer in self.layers if isinstance(layer, Dense)), None)
        if first is None:
            raise ValueError("the model has no Dense layer yet: add its layers first (model.add(fnn.Dense(...)))")
        if first.in_features is None:
            first._set_input_width(width)
        _infer_widths(self.layers, None)
        seed = self._pending_seed
        stages = plan_stages(self.layers)
        self.in_features = first.in_features
        self.out_features = stages[-1].out_features
        self._build_parameters(seed)
        self._exec = Execution(stages, self._arena, self.dtype, self.in_features, seed)
        del self._pending_seed, self._input_width
        for layer in self.layers:
            layer.__dict__.pop("_claimed", None)
        self._on_built()   # TrainingMixin: makes the optimizer compiled by name before the build

    def _build_if_known(self) -> None:
        """Build a model assembled with add() whose input width is known (fnn.Input, input_shape=)."""
        if self._exec is None:
            first = next((layer for layer in self.layers if isinstance(layer, Dense)), None)
            if first is not None and first.in_features is not None:
                self._build_for(first.in_features)

    def _require_built(self, what: str) -> None:
        self._build_if_known()
        if self._exec is None:
            raise ValueError(f"{what}: the model is not built yet (its first Dense layer was given no input "
                             "width): call it on data (model(x), fit, predict), call model.build((None, n)), or "
                             "start with fnn.Input(shape=(n,))")

    # ---------------------------------------------------------------- Keras's summary
    def count_params(self) -> int:
        """The number of weights (all trainable), as Keras's ``model.count_params()``."""
        self._require_built("model.count_params()")
        return int(self._arena.size)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                layer_range=None) -> None:
        """Print a table of the layers (Keras's ``model.summary()``): name and type, output shape, parameter
        count, then the totals. print_fn (default print) receives each line. An unbuilt model shows "?"
        and "0 (unbuilt)" as Keras does. positions, expand_nested, show_trainable and layer_range are
        accepted for Keras compatibility (no nested models; every weight is trainable)."""
        width = 80 if line_length is None else V.check_int(line_length, "line_length", low=40)
        self._build_if_known()
        emit = print if print_fn is None else print_fn
        built = self.built
        rows = []
        out = None
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                out = layer.out_features
                act = layer.activation.kind
                kind = "Dense" + ("" if act == "linear" else f", {act}")
                params = (layer.in_features * layer.out_features + layer.out_features * layer.use_bias
                          if built else None)
            else:
                kind = type(layer).__name__ + (f", p={layer.p:g}" if isinstance(layer, Dropout) else "")
                params = 0
            shape = f"(None, {out})" if out is not None else f"(None, {self.in_features})" if built else "?"
            count = "0 (unbuilt)" if params is None else f"{params:,}"
            rows.append((f"{i} ({kind})", shape, count))
        c2 = 24
        c3 = 16
        c1 = max(width - c2 - c3, 20)
        rule = "=" * (c1 + c2 + c3)
        emit('Model: "sequential"')
        emit(rule)
        emit(f"{'Layer (type)':<{c1}}{'Output Shape':<{c2}}{'Param #':>{c3}}")
        emit(rule)
        for name, shape, count in rows:
            emit(f"{name:<{c1}}{shape:<{c2}}{count:>{c3}}")
        emit(rule)
        total = self.count_params() if built else 0
        size = _human_bytes(total * self.dtype.itemsize)
        emit(f" Total params: {total:,} ({size})")
        emit(f" Trainable params: {total:,} ({size})")
        emit(" Non-trainable params: 0 (0.00 B)")
        if not built:
            emit(" The model is not built yet: call it on data, or start with fnn.Input(shape=(n,)).")
        emit(rule)

    # ---------------------------------------------------------------- probabilities
    def predict_proba(self, X, batch_size=None, verbose=0) -> np.ndarray:
        """Class probabilities for X (n, in_features), whatever the model's head (eval mode):

        - a model ending in Softmax or Sigmoid: its outputs, as predict() gives them;
        - compiled with a loss on logits: the softmax of the outputs for CrossEntropyLoss
          (cross_entropy, from_logits=True crossentropies), the sigmoid for BCEWithLogitsLoss
          (one probability per output column), exp for NLLLoss (log-probabilities);
        - otherwise (regression losses, an uncompiled model of logits) a ValueError.
        """
        head = self._head_kind()
        kind = type(self.loss).__name__ if self.loss is not None else None
        if head in ("softmax", "sigmoid"):
            return self.predict(X, batch_size, verbose)
        if kind == "CrossEntropyLoss":
            out = self.predict(X, batch_size, verbose)
            out -= out.max(axis=1, keepdims=True)
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
            return out
        if kind == "BCEWithLogitsLoss":
            out = self.predict(X, batch_size, verbose)
            return 0.5 * (1.0 + np.tanh(0.5 * out, out=out))   # the logistic function, without overflow
        if kind == "NLLLoss":
            out = self.predict(X, batch_size, verbose)
            return np.exp(out, out=out)
        if kind is None:
            raise ValueError("predict_proba(): the model ends in raw outputs and is not compiled, so it is not "
                             "known what they are; end it in a Softmax/Sigmoid, or compile it with a "
                             "classification loss (cross_entropy, bce_with_logits, ...)")
        raise ValueError(f"predict_proba() needs a classifier, but the model is compiled with {kind} (a "
                         "regression loss) and does not end in a Softmax or Sigmoid; use predict()")

    def _head_kind(self):
        """The kind of the activation that produces the output ('softmax', 'sigmoid', 'linear', ...)."""
        for layer in reversed(self.layers):
            if isinstance(layer, Dense):
                return layer.activation.kind
            if isinstance(layer, Activation):
                return layer.kind
        return "linear"


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GB"


def _infer_widths(layers, width) -> None:
    """Give each Dense(units) layer its input width from the layer before it (or `width`, the model's input
    width, for the first one) where that is known; refuse widths that do not chain."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Dense):
            continue
        if layer.in_features is None:
            if width is not None:
                layer._set_input_width(width)
        elif width is not None and layer.in_features != width:
            raise ValueError(f"layer {i} ({layer!r}) expects in_features={layer.in_features}, but "
                             + ("the previous layer gives" if any(isinstance(m, Dense) for m in layers[:i])
                                else "the input (fnn.Input) has") + f" {width} features")
        width = layer.out_features


class _IncompatibleKeys(NamedTuple):
    """What load_state_dict returns (as torch's): the keys it did not find, and those it did not use."""

    missing_keys: list
    unexpected_keys: list


class _GradMode(threading.local):
    """This thread's grad mode (per thread, as PyTorch's): off inside no_grad(), back on inside enable_grad()."""

    enabled = True

    def __init__(self):
        self.saved: list[bool] = []   # the modes the open no_grad()/enable_grad() blocks replaced


_GRAD = _GradMode()

#: model._last_forward after a forward pass under no_grad(): nothing kept for backward()
_NO_GRAD_PASS = ("no_grad",)


def is_grad_enabled() -> bool:
    """Whether model(x) in this thread keeps its pass for backward() (False inside ``fnn.no_grad()``)."""
    return _GRAD.enabled


class _GradModeBlock:
    _mode = True

    def __enter__(self):
        _GRAD.saved.append(_GRAD.enabled)   # a stack per thread: one instance may be entered in several threads
        _GRAD.enabled = self._mode
        return self

    def __exit__(self, *exc):
        _GRAD.enabled = _GRAD.saved.pop()
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self:
                return func(*args, **kwargs)
        return wrapper


class no_grad(_GradModeBlock):   # noqa: N801 - PyTorch's name
    """PyTorch's ``with torch.no_grad():`` (also as a decorator ``@fnn.no_grad()``), per thread and nestable.

    Inside it, ``model(x)`` keeps nothing for a backward pass: in eval mode it reads x in place instead of
    keeping a private copy of it, and its output is not tagged for ``loss.backward()``. A later
    ``model.backward(grad)`` or ``loss_fn(out, y).backward()`` on that pass raises RuntimeError, as
    PyTorch's backward does on a tensor computed under no_grad. The numbers are the same as outside it.
    It does not change the model's mode: as in PyTorch, ``model.eval()`` turns dropout off. Training
    calls (``train_step``, ``fit``) compute their own gradients and are not affected.
    """

    _mode = False


class enable_grad(_GradModeBlock):   # noqa: N801 - PyTorch's name
    """PyTorch's ``torch.enable_grad()``: inside a no_grad() block, keep model(x)'s pass for backward again."""

    _mode = True
