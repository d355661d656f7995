"""Optimizer base: torch.optim's API over fastnn's flat arenas.

State layout. Each per-element state kind an optimizer keeps (Adam: exp_avg, exp_avg_sq,
max_exp_avg_sq) lives in one flat buffer per (kind, dtype), laid out parallel to the optimizer's
parameters in the order they were added; the step counts live in one flat float32 buffer with one
slot per parameter, in the same order. ``state[p][kind]`` is a view of p's slice (``state[p]["step"]``
a 0-d view of its slot). A buffer is allocated the first time any parameter needs that kind. If
``add_param_group`` adds parameters later, the buffers grow: their contents are copied and the
existing views are re-pointed. State buffers start on a 64-byte boundary (``parameter.aligned_zeros``).

Stepping. ``_fused_runs()`` splits each group's parameters into maximal *runs*: neighbours in the group
that all have a gradient, are contiguous in the same parameter arena and share a run key (Adam: the
step count; SGD: whether the momentum buffer exists), hence contiguous in every state buffer and in the
step buffer too. For each run it creates missing state and returns the kernel's tuple
``(kind, flags, param, grad, s0, s1, s2, hp, steps)`` (fastnn/_kernels/_optim.pxd): flat views and the
group's hyper-parameters. ``step()`` hands each to ``_optim.apply_run``; the kernel does all per-step
arithmetic (step counts += 1, bias corrections, decayed lr) in C, so a compiled training loop may apply
the same runs step after step. As in torch, a parameter whose grad is None is skipped entirely. First,
``_fused_runs()`` re-checks the hyper-parameters of every group that changed since its last check
(``param_groups[i]["lr"] = nan`` is refused by the next step, on every path).

Run cache. Regrouping costs ~8 us per call for a 9-layer model, as much as a small model's whole update,
so the last call's tuples are reused while nothing they depend on can have changed: no group re-checked,
the same ``has_grad`` for every parameter (a step advances every parameter of a run alike, so runs keep
their keys, and parameters left out keep theirs), the same ``state`` object holding the same per-parameter
dicts with as many entries, each run's step counts still equal (an in-place edit of one count splits a
run), and no structural change (``add_param_group``, ``load_state_dict``, a grown buffer, unpickling: each
drops the cache). A call that created state (a first step) is not cached, as its tuples may carry
first-step flags. Only fastnn's own ``_runs``/``_run_key``/``_prepare_run``/``_with_state`` are cached: a
subclass that overrides one of them is regrouped every call.

Subclasses define ``_kind`` (the kernel kind), ``_state_kinds``, ``_torch_flags`` (torch's implementation
flags, reported in state_dict() groups and ignored on load), ``_check_group`` (validate and normalise a
group's hyper-parameters), ``_run_key`` and ``_prepare_run`` (a run's missing state -> its tuple; it
must depend only on the group and the state, as the compiled loop repeats it).
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict

import numpy as np

from .._interrupt import deferred
from .._kernels._checks import runs_still_valid
from .._kernels._optim import FLAG_MAXIMIZE, FLAG_WEIGHT_DECAY, apply_run
from .._validation import FLOAT_DTYPES, check_bool
from ..parameter import Parameter, aligned_zeros

_DUMMY = {dt: np.empty(0, dt) for dt in FLOAT_DTYPES}
_NO_STATE = ()   # state.get(p, _NO_STATE): a parameter without state (len 0, compared by identity)
_RUN_HOOKS = ("_runs", "_run_key", "_prepare_run", "_with_state")
NO_STEPS = np.empty(0, np.float32)  # the steps of a kind that counts none (SGD)


def dummy(dtype) -> np.ndarray:
    """A length-0 buffer to pass for a state kind that the kernel's flags leave unused."""
    return _DUMMY[dtype]


class Optimizer:
    """Base class: param groups, lazily created state in flat buffers, fused steps over runs."""

    #: the kernel kind (_optim.KIND_*) this class's runs use; None: no kernel of its own
    _kind: int | None = None
    _state_kinds: tuple[str, ...] = ()
    _torch_flags: dict = {}
    #: what torch's ``__setstate__`` fills into a loaded param group that lacks the key (older state dicts)
    _load_defaults: dict = {"maximize": False}
    #: whether every parameter's state holds a "step" count (all but SGD)
    _counts_steps: bool = True
    #: whether torch.optim has this class (same name, same update): fastnn.io.from_torch, the benchmarks' torch
    #: rows and the torch comparisons use it; scikit-learn's optimizers (SklearnSGD, SklearnAdam) have none
    torch_counterpart: bool = True

    def __init__(self, params, defaults: dict):
        self.defaults = self._check_group(dict(defaults))
        self.param_groups: list[dict] = []
        self.state: defaultdict = defaultdict(dict)
        self._offsets: dict[Parameter, int] = {}  # parameter -> its offset in the state buffers of its dtype
        self._joins: dict[Parameter, bool] = {}  # parameter -> it continues its group predecessor in the arena
        self._sizes: dict[np.dtype, int] = {}  # dtype -> elements laid out so far
        self._buffers: dict[tuple[str, np.dtype], np.ndarray] = {}  # (kind, dtype) -> flat state buffer
        self._slots: dict[Parameter, int] = {}  # parameter -> its slot in the step buffer (order added)
        self._steps = np.zeros(0, np.float32)  # the step counts, one slot per parameter
        self._views: dict[tuple, object] = {}  # (first, last) / (kind, first, last) -> a run's flat slices
        self._checked: list[tuple[dict, dict]] = []  # per param group: (the group, its hyper-parameters as checked)
        self._run_cache: tuple | None = None  # the last _fused_runs() call's tuples and what they depend on
        # params left out (Keras's habit: Adam(learning_rate=...) passed to compile): compile adds the model's
        # parameters as one group; until then step() refuses (see _fused_runs)
        if isinstance(params, numbers.Real) and not isinstance(params, bool):
            name = type(self).__name__
            raise TypeError(f"{name}'s first argument is the parameters (PyTorch's order), got the number {params!r}; "
                            f"write {name}(learning_rate={params!r}) (Keras: compile binds it to the model) or "
                            f"{name}(model.parameters(), lr={params!r})")
        if hasattr(params, "parameters") and callable(params.parameters):   # a model (iterable over its layers)
            name = type(self).__name__
            raise TypeError(f"{name}'s first argument is the parameters, got the {type(params).__name__} itself; "
                            f"write {name}(model.parameters(), lr=...)")
        self._arenas: list = []   # the arenas of the parameters (set by add_param_group)
        for group in _param_groups(params) if params is not LATER else ():
            self.add_param_group(group)

    # ------------------------------------------------------------------ hooks for subclasses

    def _check_group(self, group: dict) -> dict:
        """Validate and normalise the hyper-parameters in `group` (in place); return it."""
        return group

    def _run_key(self, group: dict, p: Parameter):
        """Parameters of one run must share this value (e.g. their step count)."""
        return None

    def _prepare_run(self, group: dict, run: list[Parameter], key) -> tuple:
        """A run's missing state; its (kind, flags, param, grad, s0, s1, s2, hp, steps) (see _optim.pxd)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters, with hyper-parameters that override the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"param_group must have a 'params' entry, got keys {sorted(param_group)}")
        params = param_group["params"]
        params = [params] if isinstance(params, Parameter) else list(_iterable(params, "param_group['params']"))
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"an optimizer can only optimize fastnn Parameters, got {type(p).__name__}")
            if p.dtype not in FLOAT_DTYPES:
                raise TypeError(f"parameter {p.name} must be float32 or float64, got {p.dtype}")
        if len(set(params)) != len(params) or any(p in self._offsets for p in params):
            raise ValueError("some parameters appear more than once (in this or another param group)")
        hyper = {k: v for k, v in param_group.items() if k != "params"}
        group = self._check_group({"params": params, **self.defaults, **hyper})
        for q, p in zip([None, *params], params):
            self._offsets[p] = self._sizes.get(p.dtype, 0)
            self._sizes[p.dtype] = self._offsets[p] + p.size
            self._joins[p] = q is not None and p.arena is q.arena and p.offset == q.offset + q.size
            self._slots[p] = len(self._slots)
        self.param_groups.append(group)
        self._run_cache = None
        self._arenas = list({id(p.arena): p.arena for g in self.param_groups for p in g["params"]}.values())
        for kind, dtype in list(self._buffers):  # grow now, so that no buffer moves in the middle of a step
            self._buffer(kind, dtype)
        self._grow_steps()

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given.

        As torch: ``closure`` (a callable re-evaluating the model, or None) is called once, before the update.
        """
        if closure is not None and not callable(closure):
            raise TypeError(f"closure must be a callable (re-evaluating the model and returning the loss) or None, "
                            f"got {_short(closure)}")
        loss = closure() if closure is not None else None
        entered = []
        try:
            for arena in self._arenas:   # an update is training: exclusive to one thread (parameter.Arena.guard)
                arena.guard.enter_train("optimizer.step()")
                entered.append(arena)
            with deferred():   # Ctrl-C lands before or after the whole update, never inside it
                for run in self._fused_runs():
                    apply_run(*run)
        finally:
            for arena in entered:
                arena.guard.exit_train()
        return loss

    def apply_gradients(self, grads_and_vars) -> None:
        """Keras/TensorFlow's ``optimizer.apply_gradients(zip(grads, variables))``: set each variable's grad, step.

        Each pair is (gradient array or None, Parameter of this optimizer). A None gradient skips its
        variable (as TensorFlow); the optimizer's parameters not listed are not updated this step (their
        grads are left as they were). Everything is checked before anything changes: a variable that is
        not a Parameter (TypeError) or not in this optimizer, a gradient whose shape differs from its
        variable's, or a variable listed twice (ValueError). The update is step()'s (same numbers).
        """
        try:
            pairs = list(grads_and_vars)
        except TypeError:
            raise TypeError(f"grads_and_vars must be an iterable of (gradient, variable) pairs, e.g. "
                            f"zip(grads, model.trainable_variables), got {_short(grads_and_vars)}") from None
        given: dict[Parameter, np.ndarray | None] = {}
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"grads_and_vars[{i}] must be a (gradient, variable) pair, got {_short(pair)}")
            g, p = pair
            if not isinstance(p, Parameter):
                raise TypeError(f"grads_and_vars[{i}]: the variable must be a fastnn Parameter (from "
                                f"model.trainable_variables), got {type(p).__name__}")
            if p not in self._offsets:
                raise ValueError(f"grads_and_vars[{i}]: variable {p.name} {p.shape} is not optimized by this "
                                 f"optimizer (build it with the model's parameters: "
                                 f"{type(self).__name__}(model.trainable_variables, ...))")
            if p in given:
                raise ValueError(f"grads_and_vars[{i}]: variable {p.name} appears twice")
            if g is not None:
                if hasattr(g, "detach") and hasattr(g, "cpu"):   # a torch tensor
                    g = g.detach().cpu().numpy()
                g = np.asarray(g)
                if g.dtype.kind not in "biuf":
                    raise TypeError(f"grads_and_vars[{i}]: the gradient of {p.name} must hold real numbers, "
                                    f"got dtype {g.dtype}")
                if g.shape != p.shape:
                    raise ValueError(f"grads_and_vars[{i}]: the gradient of {p.name} must have the variable's "
                                     f"shape {p.shape}, got {g.shape}")
            given[p] = g
        others = [p for p in self._offsets if p not in given or given[p] is None]
        flags = [p.has_grad for p in others]
        for p, g in given.items():
            if g is not None:
                p.grad = g
        for p in others:
            p.has_grad = False
        try:
            self.step()
        finally:
            for p, flag in zip(others, flags):
                p.has_grad = flag

    def _fused_runs(self) -> list[tuple]:
        """Create missing state; return one (kind, flags, param, grad, s0, s1, s2, hp, steps) per run.

        The tuples are ready for ``_optim.apply_run`` (see _optim.pxd), which also advances the run's step
        counts. First, any hyper-parameter changed since it was last checked (``param_groups[i]["lr"] = ...``)
        is checked again with the constructor's rules (ValueError/TypeError naming the group), before any
        state or weight changes.
        """
        if not self.param_groups:
            raise RuntimeError(f"this {type(self).__name__} has no parameters to update: pass it to "
                               f"model.compile(optimizer=...), or create it with {type(self).__name__}("
                               "model.parameters(), ...)")
        changed = self._check_changed_groups()
        state, cache = self.state, self._run_cache
        if cache is not None and not changed and cache[0] is state and runs_still_valid(state, *cache[1:], _NO_STATE):
            return cache[-1]
        params = [p for group in self.param_groups for p in group["params"]]
        before = [len(state.get(p, _NO_STATE)) for p in params]
        runs = [self._prepare_run(group, run, key) for group in self.param_groups for run, key in self._runs(group)]
        self._run_cache = None
        if _cacheable(type(self)):
            dicts = [state.get(p, _NO_STATE) for p in params]
            sizes = list(map(len, dicts))
            if sizes == before:   # no state created: not a first step
                self._run_cache = (state, params, [p.has_grad for p in params], dicts, sizes, runs)
        return runs

    def _check_changed_groups(self) -> bool:
        """Re-check the hyper-parameters of every group that changed since its last check (cheap when none did);
        whether any group was checked again."""
        checked, groups = self._checked, self.param_groups
        changed = len(checked) != len(groups)
        if changed:
            del checked[len(groups):]
        for g, group in enumerate(groups):
            if g < len(checked):
                ref, seen = checked[g]
                if ref is group and _unchanged(group, seen):
                    continue
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"param_groups[{g}] must be a dict with a 'params' entry, got {_short(group)}")
            missing = [k for k in self.defaults if k not in group]
            if missing:
                raise ValueError(f"param_groups[{g}] lacks the hyper-parameter {missing[0]!r}")
            try:
                self._check_group(group)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{g}]: {exc}") from None
            entry = (group, {k: v for k, v in group.items() if k != "params"})
            changed = True
            if g < len(checked):
                checked[g] = entry
            else:
                checked.append(entry)
        return changed

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients (None by default, else zeros); grads that are None stay None."""
        set_to_none = check_bool(set_to_none, "set_to_none")
        for group in self.param_groups:
            for p in group["params"]:
                if p.has_grad:
                    p.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        """torch's layout: {"state": {i: {...}}, "param_groups": [{..., "params": [i, ...]}]}.

        Parameters are numbered in their order across groups. The arrays are copies, so the
        dict is a snapshot that later steps do not change.
        """
        index: dict[Parameter, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed.update(self._torch_flags)
            packed["params"] = [index.setdefault(p, len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[p]: {k: np.array(v) for k, v in st.items()} for p, st in self.state.items()}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load hyper-parameters and state saved by state_dict() (fastnn's or torch's).

        As torch: each param group becomes the saved group (with this optimizer's parameters); a flag an
        older state dict lacks gets torch's default (``_load_defaults``: ``maximize=False``, ...), not the
        current value. Everything is checked before anything changes: the dict's layout (TypeError /
        ValueError naming ``state_dict``), every hyper-parameter with the constructor's rules, a
        hyper-parameter missing from a group, the shapes and dtypes of the state arrays, and each ``step``
        (a whole number in [0, 2**53]).
        """
        saved_groups, saved_state = _state_dict_parts(state_dict)
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} param groups, "
                             f"this optimizer has {len(self.param_groups)}")
        index, groups = {}, []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {i} of state_dict has {len(saved['params'])} parameters, "
                                 f"this optimizer's has {len(group['params'])}")
            index.update(zip(saved["params"], group["params"]))
            hyper = {**self._load_defaults,
                     **{k: v for k, v in saved.items() if k != "params" and k not in self._torch_flags}}
            missing = [k for k in self.defaults if k not in hyper]
            if missing:
                raise ValueError(f"state_dict['param_groups'][{i}] lacks the hyper-parameter {missing[0]!r}")
            try:
                groups.append(self._check_group({**hyper, "params": group["params"]}))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"state_dict['param_groups'][{i}]: {exc}") from None
        if len(index) != sum(len(g["params"]) for g in saved_groups):
            raise ValueError("state_dict['param_groups'] lists a parameter index twice")
        loaded = {}
        for i, saved in saved_state.items():
            if i not in index:
                raise ValueError(f"state_dict['state'] has an entry for parameter {i!r}, which is in no param group")
            if not isinstance(saved, dict):
                raise TypeError(f"state_dict['state'][{i!r}] must be a dict of state arrays, got {_short(saved)}")
            p = index[i]
            entry = {}
            for kind, value in saved.items():
                if value is None:  # torch's SGD can hold momentum_buffer=None
                    continue
                where = f"state_dict['state'][{i!r}][{kind!r}]"
                if kind == "step":
                    entry[kind] = np.array(check_step(value, where), np.float32)
                    continue
                value = _real_array(value, where)
                if value.shape != p.shape:
                    raise ValueError(f"{where} must have the shape {p.shape} of parameter {p.name}, got {value.shape}")
                entry[kind] = value
            if entry and self._counts_steps and "step" not in entry:
                raise ValueError(f"state_dict['state'][{i!r}] holds {sorted(entry)} but no 'step' count")
            loaded[p] = entry
        self.param_groups = groups
        self._checked = [(g, {k: v for k, v in g.items() if k != "params"}) for g in groups]
        self._run_cache = None
        self.state.clear()
        for p, entry in loaded.items():
            st = self.state[p]
            for kind, value in entry.items():
                if kind == "step":
                    st[kind] = self._new_step(p)
                    st[kind][()] = value
                elif kind in self._state_kinds:
                    st[kind] = self._state_view(kind, p)
                    st[kind][...] = value
                else:
                    st[kind] = value.copy()

    def __getstate__(self):
        """Copies and pickles: per-element state and step counts are stored once, in the flat buffers (each
        ``state[p][kind]`` is a view into them, re-pointed by __setstate__); cached run views are dropped."""
        state = self.__dict__.copy()
        kinds = self._state_kinds
        state["state"] = {p: {k: (None if k in kinds or k == "step" else v) for k, v in st.items()}
                          for p, st in self.state.items()}
        state["_views"] = {}
        state["_run_cache"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._run_cache = None
        self.state = defaultdict(dict, self.state)
        for p, st in self.state.items():
            for kind in st:
                if kind == "step":
                    st[kind] = self._steps[self._slots[p], ...]
                elif kind in self._state_kinds:
                    st[kind] = self._slice(self._buffers[kind, p.dtype], p).reshape(p.shape)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines + [")"])

    # ------------------------------------------------------------------ arena plumbing

    def _runs(self, group: dict) -> list[tuple[list[Parameter], object]]:
        """Maximal (run, key) pairs: neighbours with a grad, contiguous in their arena, sharing a run key."""
        runs, key, open_run = [], None, False
        for p in group["params"]:
            if not p.has_grad:
                open_run = False  # a skipped parameter ends the run
                continue
            k = self._run_key(group, p)
            if not (open_run and self._joins[p] and k == key):
                runs.append(([], k))
            runs[-1][0].append(p)
            key, open_run = k, True
        return runs

    def _buffer(self, kind: str, dtype: np.dtype) -> np.ndarray:
        """The flat buffer of state `kind` for parameters of `dtype`, covering all of them."""
        size = self._sizes[dtype]
        buf = self._buffers.get((kind, dtype))
        if buf is None or buf.size != size:
            new = aligned_zeros(size, dtype)  # 64-byte aligned, like the arenas
            if buf is not None:  # parameters were added since: grow and re-point the views
                self._views.clear()
                self._run_cache = None
                new[:buf.size] = buf
                for p, st in self.state.items():
                    if kind in st and p.dtype == dtype:
                        st[kind] = self._slice(new, p).reshape(p.shape)
            self._buffers[kind, dtype] = buf = new
        return buf

    def _slice(self, buf: np.ndarray, p: Parameter, size: int | None = None) -> np.ndarray:
        offset = self._offsets[p]
        return buf[offset:offset + (p.size if size is None else size)]

    def _state_view(self, kind: str, p: Parameter) -> np.ndarray:
        """p's slice of the `kind` buffer, shaped like p (contents undefined: fill or overwrite it)."""
        return self._slice(self._buffer(kind, p.dtype), p).reshape(p.shape)

    def _zeros(self, kind: str, p: Parameter) -> np.ndarray:
        view = self._state_view(kind, p)
        view.fill(0)
        return view

    def _grow_steps(self) -> None:
        """Give every parameter a step slot: grow the step buffer and re-point the "step" views."""
        old = self._steps
        if old.size != len(self._slots):
            self._steps = np.zeros(len(self._slots), np.float32)
            self._steps[:old.size] = old
            self._views.clear()
            self._run_cache = None
            for p, st in self.state.items():
                if "step" in st:
                    st["step"] = self._steps[self._slots[p], ...]

    def _new_step(self, p: Parameter) -> np.ndarray:
        """p's step count, 0: a 0-d float32 view of its slot in the step buffer."""
        view = self._steps[self._slots[p], ...]
        view[()] = 0
        return view

    def _with_state(self, run: list[Parameter], kinds=()) -> None:
        """Give each parameter of the run its "step" count (0) and zeros for its missing state `kinds`, if missing.
        Keys are created in torch's order: step first, then `kinds` in the order given."""
        state = self.state
        for p in run:
            st = state[p]
            if "step" not in st:
                st["step"] = self._new_step(p)
            for kind in kinds:
                if kind not in st:
                    st[kind] = self._zeros(kind, p)

    @staticmethod
    def _base_flags(group: dict) -> int:
        """The protocol's MAXIMIZE and WEIGHT_DECAY bits for `group` (torch's `if weight_decay != 0`)."""
        return (FLAG_MAXIMIZE if group["maximize"] else 0) | (FLAG_WEIGHT_DECAY if group["weight_decay"] != 0 else 0)

    def _flat(self, run: list[Parameter]) -> tuple[np.ndarray, np.ndarray]:
        """The run's flat slices of its parameter and gradient arenas (cached: runs recur every step)."""
        first, last = run[0], run[-1]
        views = self._views.get((first, last))
        if views is None:
            lo, hi = first.offset, last.offset + last.size
            views = self._cache((first, last), (first.arena.data[lo:hi], first.arena.grad[lo:hi]))
        return views

    def _flat_steps(self, run: list[Parameter]) -> np.ndarray:
        """The run's slots of the step buffer (cached until it grows)."""
        first, last = run[0], run[-1]
        view = self._views.get(("step", first, last))
        if view is None:
            view = self._cache(("step", first, last), self._steps[self._slots[first]:self._slots[last] + 1])
        return view

    def _flat_state(self, kind: str, run: list[Parameter]) -> np.ndarray:
        """The run's flat slice of the `kind` state buffer (cached until a buffer grows)."""
        first, last = run[0], run[-1]
        view = self._views.get((kind, first, last))
        if view is None:
            buf = self._buffer(kind, first.dtype)
            view = self._cache((kind, first, last), self._slice(buf, first, last.offset + last.size - first.offset))
        return view

    def _cache(self, key, views):
        if len(self._views) >= 4096:  # many different runs (changing holes): start over
            self._views.clear()
            self._run_cache = None
        self._views[key] = views
        return views


def _still_valid(state, params, grads, dicts, sizes, runs) -> bool:
    """Whether the cached runs still hold (see "Run cache"); allocates nothing (a step must not). The twin of
    _checks.runs_still_valid, which _fused_runs calls (tests compare the two)."""
    for p, g, d, n in zip(params, grads, dicts, sizes):
        now = state.get(p, _NO_STATE)
        if p.has_grad is not g or now is not d or len(now) != n:
            return False
    for run in runs:
        if not _uniform_steps(run):
            return False
    return True


def _uniform_steps(run: tuple) -> bool:
    """Whether the run's step counts are all equal (an in-place edit of one ``state[p]["step"]`` splits a run)."""
    steps = run[8]
    if len(steps) < 2:
        return True
    b = steps.tobytes()
    return b == b[:4] * len(steps)


def _cacheable(cls) -> bool:
    """Whether cls regroups with fastnn's own run hooks only (see "Run cache")."""
    ok = _CACHEABLE.get(cls)
    if ok is None:
        ok = _CACHEABLE[cls] = all(getattr(cls, h).__module__.startswith("fastnn.optim.") for h in _RUN_HOOKS)
    return ok


_CACHEABLE: dict[type, bool] = {}


def _iterable(obj, name):
    if isinstance(obj, (dict, np.ndarray, str)) or not hasattr(obj, "__iter__"):
        raise TypeError(f"{name} must be an iterable of Parameters, got {type(obj).__name__}")
    return obj


def _param_groups(params) -> list[dict]:
    """`params` as a list of param-group dicts: an iterable of Parameters is one group."""
    if isinstance(params, Parameter):
        raise TypeError("params must be an iterable of Parameters or of param-group dicts, got a single "
                        "Parameter (wrap it in a list)")
    params = list(_iterable(params, "params"))
    if not params:
        raise ValueError("params must not be empty: the optimizer got an empty parameter list")
    if all(isinstance(g, dict) for g in params):
        return params
    return [{"params": params}]


#: the largest step count a state may hold (every whole number up to it is exact in float64)
MAX_STEP = 2 ** 53


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unchanged(group, seen: dict) -> bool:
    """Whether `group` holds exactly the hyper-parameters `seen` (values compared by type and value)."""
    if len(group) != len(seen) + 1:
        return False
    try:
        for k, v in seen.items():
            now = group.get(k, _unchanged)
            if now is not v and not (type(now) is type(v) and bool(now == v)):
                return False
    except (TypeError, ValueError):  # a value that cannot be compared (an array...): check it again
        return False
    return True


def check_step(value, where: str) -> float:
    """A step count (a number or a one-element array): a whole number in [0, MAX_STEP] -> float."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        step = int(value)
        ok = 0 <= step <= MAX_STEP
    else:
        try:
            arr = np.asarray(value)
        except Exception:  # noqa: BLE001 - an object numpy cannot take
            arr = np.asarray(None)
        if arr.dtype.kind not in "iuf" or arr.size != 1:
            raise TypeError(f"{where} must be a step count (a number or a one-element numeric array), "
                            f"got {_short(value)}")
        step = arr.reshape(()).item()
        ok = math.isfinite(step) and 0 <= step <= MAX_STEP and step == int(step)
    if not ok:
        raise ValueError(f"{where} must be a whole number in [0, 2**53], got {_short(value)}")
    return float(step)


def _real_array(value, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value)  # np.array() warns on torch tensors
    except Exception:  # noqa: BLE001 - ragged lists and the like
        raise TypeError(f"{where} must be an array of real numbers, got {type(value).__name__}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where} must be an array of real numbers, got {_short(value)}")
    return arr


def _state_dict_parts(state_dict) -> tuple[list, dict]:
    """(param_groups, state) of an optimizer state dict, after checking its layout."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict with 'state' and 'param_groups' (as state_dict() returns), "
                        f"got {_short(state_dict)}")
    for key in ("state", "param_groups"):
        if key not in state_dict:
            raise ValueError(f"state_dict lacks the key {key!r} (it has {sorted(map(str, state_dict))})")
    groups, state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(groups, (list, tuple)):
        raise TypeError(f"state_dict['param_groups'] must be a list of dicts, got {_short(groups)}")
    if not isinstance(state, dict):
        raise TypeError(f"state_dict['state'] must be a dict, got {_short(state)}")
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"state_dict['param_groups'][{i}] must be a dict with a 'params' entry, got "
                            f"{_short(group)}")
        params = group["params"]
        if not isinstance(params, (list, tuple)):
            raise TypeError(f"state_dict['param_groups'][{i}]['params'] must be a list of parameter indices, got "
                            f"{_short(params)}")
        for j in params:
            try:
                hash(j)
            except TypeError:
                raise TypeError(f"state_dict['param_groups'][{i}]['params'] holds an unhashable {_short(j)}") from None
    return list(groups), state


class _Later:
    """The default of an optimizer's params: none yet; compile(optimizer=...) gives it the model's."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<the model's parameters, given by compile>"


LATER = _Later()


class DefaultLR(float):
    """A constructor's default learning rate (a float that knows it was not given), so that ``learning_rate=``
    (Keras's name) and ``lr=`` (torch's) can be told apart: giving both is an error."""

    __slots__ = ()


def resolve_lr(lr, learning_rate, cls_name: str):
    """The learning rate from torch's ``lr`` or Keras's ``learning_rate`` (not both)."""
    if learning_rate is None:
        return float(lr) if type(lr) is DefaultLR else lr
    if type(lr) is not DefaultLR:
        raise TypeError(f"{cls_name}() got both lr={lr!r} and learning_rate={learning_rate!r}; give one of them "
                        "(lr is PyTorch's name, learning_rate Keras's)")
    return learning_rate
