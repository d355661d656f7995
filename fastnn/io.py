"""Model files that never execute code (and the public home of the PyTorch and ONNX exchange functions).

File format (version 1). A model file is a standard, uncompressed ``.npz`` archive (a zip of
``.npy`` arrays, readable with ``np.load(path, allow_pickle=False)``) holding only numeric arrays:

- ``__fastnn__``: uint8, the UTF-8 JSON header: format name and version, the architecture (each
  layer's class, from an allow-list, and its keywords), dtype, seed, the dropout step counter,
  epochs completed and, when saved, the training set-up (optimizer class, hyper-parameters of
  every param group, which state arrays each parameter has; loss class and keywords; metrics);
- ``param/<name>``: each parameter (``0.weight`` (in, out), ``0.bias`` (out,), ...), bit-exact;
- ``optimizer/state/<j>/<kind>``: the optimizer state of model parameter j (``step``, ``exp_avg``, ...);
- ``loss/<name>``: array keywords of the loss (``weight``, ``pos_weight``).

The header may also hold ``meta``, what the model is for, taken from ``model.meta`` when it is not
None (``fastnn train`` sets it; ``load_model`` gives it back as ``model.meta``, None for files
without it, ``load_info`` reads it without the weights). It is a small, fixed schema of strings and
numbers only, checked on save and on load:

- ``task``: ``"classification"`` or ``"regression"``;
- ``classes``: the class names, output j's label (distinct strings or finite numbers; one per output,
  or two for a single-output binary model; classification only);
- ``features``: the input columns' names (distinct strings, one per input);
- ``target``: the name of the predicted column (a string).

Files without ``meta`` are exactly as before (and load as before); an older fastnn refuses a file with
``meta`` ("unknown entry 'meta'") rather than dropping it.

Members are written with a fixed timestamp, so the same state always gives the same bytes.

Loading never unpickles and never looks a name up outside fixed allow-lists. Before anything is
built, the header is checked against a schema (every scalar in range: seed in [0, 2**64), the
dropout step counter and epoch in [0, 2**63), each optimizer ``step`` a whole number in [0, 2**53],
every hyper-parameter by the optimizer constructor's rules), and every member against what the
architecture implies, before any of its data is read: it must be stored uncompressed (compressed
members are refused, so a small file cannot inflate into a large allocation), its zip-declared size
must lie within the file and equal its ``.npy`` header plus the data its shape and dtype need, and
its name, shape and dtype must be those the architecture implies. The data are then read in
chunks (1 MiB) straight into the model's parameters, so loading needs little memory beyond the
model itself (optimizer state arrays pass through one temporary copy each), and the zip's CRC-32
of every member is verified. Any problem raises ``ValueError``
naming the file and the problem.

The classes a file may name are those of the registries ``fastnn.layers.LAYERS``,
``fastnn.optim.OPTIMIZERS`` and ``fastnn.losses.LOSSES`` (by class name), and each layer's keywords
are checked against its class's ``config_types``. Writes are atomic (fastnn._atomic): a failed save
leaves an existing file untouched. The path is used as given (no suffix is added).

``to_torch``, ``from_torch``, ``load_torch_weights``, ``copy_weights_to_torch`` (fastnn._torch_interop)
and ``to_onnx`` (fastnn.onnx) live here too.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import numbers
import os
import re
import struct
import zipfile
import zlib
from math import isfinite, prod

import numpy as np

from . import _validation as V
from . import layers as L
from . import losses as _losses
from . import optim as _optim
from ._atomic import _atomic_write, _fspath, _host  # noqa: F401 - _host: tests read the temporary files' names
from ._torch_interop import copy_weights_to_torch, from_torch, load_torch_weights, to_torch
from ._version import __version__
from .model import Sequential
from .onnx import to_onnx

__all__ = [
    "FORMAT", "FORMAT_VERSION", "save_model", "load_model", "load_info", "META_KEYS", "TASKS",
    "to_torch", "from_torch", "load_torch_weights", "copy_weights_to_torch", "to_onnx",
]

FORMAT = "fastnn-model"
FORMAT_VERSION = 1
HEADER = "__fastnn__"
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER_BYTES = 16 << 20
_MAX_LOSS_ARRAY_BYTES = 256 << 20
_NPY_SLACK = 10_000 + 16         # numpy's max .npy header size (max_header_size) + magic and length
_CHUNK = 1 << 20                 # bytes read from a member at a time
_MAX_COUNTER = (1 << 63) - 1     # the dropout step counter and the epoch fit an int64
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
META_KEYS = ("task", "classes", "features", "target")   # the only entries of the header's "meta"
TASKS = ("classification", "regression")
_MAX_META_TEXT = 1000            # characters in one class / feature / target name

# ------------------------------------------------------------------------------------------------
# allow-lists: the only classes a file can name, taken from the registries when fastnn.io is imported
# ------------------------------------------------------------------------------------------------

_LAYERS = dict(L.LAYERS)   # class name -> class (fixed at import); a class's config_types is its schema
_ACTIVATIONS = {name: cls for name, cls in _LAYERS.items() if issubclass(cls, L.Activation)}
_OPTIMIZERS = {cls.__name__: cls for cls in _optim.OPTIMIZERS.values()}
_LOSSES = {cls.__name__: cls for cls in _losses.LOSSES.values()}


class _Invalid(ValueError):
    """A problem with a file's contents (load_model adds the file name)."""


# ================================================================================================
# saving
# ================================================================================================

def _json_value(value, where: str):
    """A hyper-parameter or config value as JSON (numbers, strings, bools, None, lists of them)."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        return _json_value(value.item(), where)
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where} = {value!r} cannot be saved: only numbers, strings, booleans, None and lists of "
                     "them can be stored (use include_optimizer=False to save the model alone)")


def _activation_json(act: L.Activation, where: str) -> dict:
    name = _class_name(act, _ACTIVATIONS, where)
    return {"class": name, "config": _layer_config(act, name, where)}


def _class_name(obj, allowed: dict, where: str) -> str:
    for name, cls in allowed.items():
        if type(obj) is cls:
            return name
    raise ValueError(f"{where}: {type(obj).__name__} cannot be saved; fastnn model files hold only "
                     f"{', '.join(allowed)}")


def _layer_config(layer, name: str, where: str) -> dict:
    config = {k: _json_value(v, f"{where}.{k}") for k, v in layer._config().items()}
    unknown = set(config) - set(_LAYERS[name].config_types)
    if unknown:  # a keyword added to the layer but not to the file schema: refuse rather than lose it
        raise ValueError(f"{where}: fastnn.io does not know how to store {name}'s {sorted(unknown)}")
    return config


def _layer_json(layer, i: int) -> dict:
    where = f"layer {i}"
    name = _class_name(layer, _LAYERS, where)
    if name != "Dense":
        return {"class": name, "config": _layer_config(layer, name, where)}
    unknown = set(layer._config()) - set(L.Dense.config_types)
    if unknown:
        raise ValueError(f"{where}: fastnn.io does not know how to store Dense's {sorted(unknown)}")
    act = layer.activation
    return {"class": "Dense", "config": {
        "in_features": layer.in_features, "out_features": layer.out_features,
        "activation": None if type(act) is L.Identity else _activation_json(act, f"{where}.activation"),
        "use_bias": layer.use_bias, "init": layer.init,
    }}


def _training_json(model: Sequential, arrays: dict) -> dict | None:
    """The optimizer / loss / metrics section (None if the model has no optimizer); fills `arrays`."""
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    if not isinstance(opt, _optim.Optimizer):
        raise ValueError(f"model.optimizer is a {type(opt).__name__}, not a fastnn optimizer; it cannot be saved "
                         "(use include_optimizer=False)")
    opt_name = _class_name(opt, _OPTIMIZERS, "model.optimizer")
    index = {p: j for j, p in enumerate(model.parameters())}
    groups = []
    for g, group in enumerate(opt.param_groups):
        missing = [p.name for p in group["params"] if p not in index]
        if missing:
            raise ValueError(f"model.optimizer holds parameters that are not this model's ({missing[0]} in param "
                             f"group {g}); it cannot be saved with the model")
        packed = {k: _json_value(v, f"optimizer.param_groups[{g}][{k!r}]")
                  for k, v in group.items() if k != "params"}
        packed["params"] = [index[p] for p in group["params"]]
        groups.append(packed)
    state = {}
    for p, entries in opt.state.items():
        if not entries:
            continue
        j = index[p]
        kinds = []
        for kind, value in entries.items():
            if not (isinstance(kind, str) and _NAME_RE.match(kind)):
                raise ValueError(f"optimizer state name {kind!r} of parameter {p.name} cannot be saved")
            arr = np.asarray(value)
            if arr.dtype not in V.FLOAT_DTYPES and arr.dtype.kind not in "iu":
                raise ValueError(f"optimizer state {kind!r} of parameter {p.name} has dtype {arr.dtype}; "
                                 "only numeric arrays can be saved")
            arrays[f"optimizer/state/{j}/{kind}"] = arr  # write_array streams any layout
            kinds.append(kind)
        state[str(j)] = kinds
    out = {"optimizer": {
        "class": opt_name,
        "defaults": {k: _json_value(v, f"optimizer.defaults[{k!r}]") for k, v in opt.defaults.items()},
        "param_groups": groups, "state": state,
    }, "loss": None, "metrics": None}

    loss = getattr(model, "loss", None)
    if loss is not None:
        loss_name = _class_name(loss, _LOSSES, "model.loss")
        config, names = {}, []
        for key in _init_keywords(type(loss)):
            if not hasattr(loss, key):
                raise ValueError(f"model.loss: {loss_name}'s keyword {key!r} is not readable back; it cannot be saved")
            value = getattr(loss, key)
            if isinstance(value, np.ndarray) and value.ndim > 0:
                arrays[f"loss/{key}"] = np.array(value, order="C")
                names.append(key)
            else:
                config[key] = _json_value(value, f"model.loss.{key}")
        out["loss"] = {"class": loss_name, "config": config, "arrays": names}

    names = getattr(model, "metrics_names", None)   # the names as compiled (logged), e.g. "acc"
    metrics = names[1:] if isinstance(names, list) and names[:1] == ["loss"] else \
        getattr(model, "compiled_metrics", None)
    if metrics is not None:
        metrics = list(metrics)
        bad = next((m for m in metrics if not isinstance(m, str)), None)
        if bad is not None:
            raise ValueError(f"model.compiled_metrics holds {bad!r}; only metric names (str) can be saved")
        out["metrics"] = metrics
    return out


def _init_keywords(cls) -> list[str]:
    sig = inspect.signature(cls.__init__)
    return [n for n, p in sig.parameters.items()
            if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _model_arrays(model: Sequential, include_optimizer: bool) -> dict:
    """Every array of the file, the JSON header first."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastnn Sequential, got {type(model).__name__}")
    model._require_built("fnn.io.save_model()")
    include_optimizer = V.check_bool(include_optimizer, "include_optimizer")
    epoch = getattr(model, "epoch", 0)
    epoch = 0 if epoch is None else V.check_int(epoch, "model.epoch", low=0)
    arrays = {f"param/{p.name}": p.data for p in model.parameters()}
    training = _training_json(model, arrays) if include_optimizer else None
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fastnn_version": __version__,
        "model": {
            "class": "Sequential", "dtype": model.dtype.name, "seed": int(model.seed), "step": int(model._step),
            "epoch": epoch, "layers": [_layer_json(layer, i) for i, layer in enumerate(model.layers)],
        },
        "training": training,
    }
    meta = getattr(model, "meta", None)
    if meta is not None:
        try:
            header["meta"] = _check_meta(_meta_json(meta), model.in_features, model.out_features, "model.meta")
        except _Invalid as exc:
            raise ValueError(str(exc)) from None
    text = json.dumps(header, indent=1, sort_keys=False).encode("utf-8")
    return {HEADER: np.frombuffer(text, np.uint8), **arrays}


def _meta_json(meta):
    """model.meta as plain JSON values (NumPy scalars and strings to Python's, tuples and arrays to lists)."""
    if not isinstance(meta, dict):
        raise _Invalid(f"model.meta must be None or a dict with entries among {', '.join(META_KEYS)}; "
                       f"got {type(meta).__name__}")

    def plain(value):
        if isinstance(value, (list, tuple, np.ndarray)):
            return [plain(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value
    return {k: plain(v) for k, v in meta.items()}


def _write_npz(fileobj, arrays: dict) -> None:
    """An uncompressed .npz (as np.savez writes, allow_pickle=False) with fixed member timestamps."""
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=arr.nbytes > (1 << 30)) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def save_model(model: Sequential, path, include_optimizer: bool = True) -> None:
    """Write `model` to `path` (str or PathLike, used as given) atomically; see the module docstring.

    Stores the architecture, dtype, seed, the dropout step counter, ``model.epoch`` and the weights
    (bit-exact); with include_optimizer=True and a compiled model (``model.optimizer`` set) also the
    optimizer (class, param groups, state), ``model.loss`` and ``model.compiled_metrics``, so that
    training resumes on the identical trajectory. Raises ValueError for something that cannot be
    stored (a custom layer, optimizer or loss class) before any file is touched, TypeError/ValueError
    for an invalid path (see the module docstring).
    """
    p = _fspath(path)
    arrays = _model_arrays(model, include_optimizer)
    _atomic_write(p, lambda f: _write_npz(f, arrays))


# ================================================================================================
# loading
# ================================================================================================

_TYPES = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
}


def _expect(value, kind: str, where: str, nullable: bool = False):
    if value is None and nullable:
        return None
    check, text = _TYPES[kind]
    if not check(value):
        raise _Invalid(f"header field {where} must be {text}, got {_short(value)}")
    return float(value) if kind == "float" else value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fields(obj, where: str, required=(), optional=()) -> dict:
    _expect(obj, "dict", where)
    missing = [k for k in required if k not in obj]
    if missing:
        raise _Invalid(f"header field {where} lacks {missing[0]!r}")
    unknown = [k for k in obj if k not in required and k not in optional]
    if unknown:
        raise _Invalid(f"header field {where} has an unknown entry {_short(unknown[0])}")
    return obj


def _class_of(spec, allowed: dict, where: str, kind: str):
    name = _expect(spec, "str", where)
    if name not in allowed:
        raise _Invalid(f"header field {where} names {kind} class {_short(name)}, which is not one of "
                       f"{', '.join(allowed)}")
    return allowed[name]


def _construct(cls, kwargs: dict, where: str):
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"{where}: {exc}") from None


def _activation_from_json(spec, where: str) -> L.Activation | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        try:
            return L.get_activation(spec)
        except ValueError as exc:
            raise _Invalid(f"{where}: {exc}") from None
    return _layer_from_json(spec, where, _ACTIVATIONS)


def _layer_from_json(spec, where: str, allowed: dict = _LAYERS):
    _fields(spec, where, ("class",), ("config",))
    cls = _class_of(spec["class"], allowed, f"{where}.class", "layer")
    config = _expect(spec.get("config", {}), "dict", f"{where}.config")
    schema = cls.config_types
    kwargs = {}
    for key, value in config.items():
        if key not in schema:
            raise _Invalid(f"header field {where}.config has an unknown keyword {_short(key)} for {cls.__name__}")
        kind = schema[key]
        if kind == "activation":
            kwargs[key] = _activation_from_json(value, f"{where}.config.activation")
        else:
            kwargs[key] = _expect(value, kind, f"{where}.config.{key}")
    return _construct(cls, kwargs, where)


def _tuples(value):
    """JSON lists back to tuples (torch keeps betas and the like as tuples)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _hyper(obj, where: str) -> dict:
    _expect(obj, "dict", where)
    out = {}
    for key, value in obj.items():
        _check_json_value(value, f"{where}[{key!r}]")
        out[key] = _tuples(value)
    return out


def _check_json_value(value, where: str, depth: int = 0) -> None:
    if isinstance(value, list) and depth < 4:
        for i, v in enumerate(value):
            _check_json_value(v, f"{where}[{i}]", depth + 1)
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise _Invalid(f"header field {where} must be a number, string, boolean, null or a short list of them, "
                       f"got {_short(value)}")


def _counter(value, where: str, high: int, bound: str) -> int:
    value = _expect(value, "int", where)
    if not 0 <= value <= high:
        raise _Invalid(f"header field {where} must be an integer in [0, {bound}), got {_short(value)}")
    return value


class _Spec:
    """What the header says the file must hold: array name -> (shape or None, allowed dtypes, max bytes)."""

    def __init__(self):
        self.arrays: dict[str, tuple] = {}

    def add(self, name, shape, dtypes, max_bytes=None):
        if name in self.arrays:
            raise _Invalid(f"array {name!r} is listed twice in the header")
        if shape is not None:
            max_bytes = prod(shape) * max(np.dtype(d).itemsize for d in dtypes)
        self.arrays[name] = (shape, tuple(np.dtype(d) for d in dtypes), max_bytes)


def _parse_header(header: dict):
    """Validate the header; return (model kwargs, layers, training section, _Spec of the arrays)."""
    _fields(header, "(top level)", ("format", "format_version", "model"), ("fastnn_version", "training", "meta"))
    if header["format"] != FORMAT:
        raise _Invalid(f"its format is {_short(header['format'])}, not {FORMAT!r}")
    version = _expect(header["format_version"], "int", "format_version")
    if version != FORMAT_VERSION:
        newer = " (written by a newer fastnn; upgrade fastnn)" if version > FORMAT_VERSION else ""
        raise _Invalid(f"format version {version} is not supported; this fastnn reads version {FORMAT_VERSION}{newer}")
    m = _fields(header["model"], "model", ("class", "dtype", "seed", "layers"), ("step", "epoch"))
    if m["class"] != "Sequential":
        raise _Invalid(f"header field model.class must be 'Sequential', got {_short(m['class'])}")
    dtype_name = _expect(m["dtype"], "str", "model.dtype")
    if dtype_name not in ("float32", "float64"):
        raise _Invalid(f"header field model.dtype must be 'float32' or 'float64', got {_short(dtype_name)}")
    seed = _counter(m["seed"], "model.seed", (1 << 64) - 1, "2**64")
    step = _counter(m.get("step", 0), "model.step", _MAX_COUNTER, "2**63")
    epoch = _counter(m.get("epoch", 0), "model.epoch", _MAX_COUNTER, "2**63")
    layer_specs = _expect(m["layers"], "list", "model.layers")
    if not layer_specs:
        raise _Invalid("header field model.layers is empty")
    layers = [_layer_from_json(spec, f"model.layers[{i}]") for i, spec in enumerate(layer_specs)]

    dtype = np.dtype(dtype_name)
    spec = _Spec()
    shapes = []  # model parameter j -> (name, shape), in parameters() order
    for i, layer in enumerate(layers):
        if isinstance(layer, L.Dense):
            for shape, kind in zip(layer._shapes(), ("weight", "bias")):
                shapes.append((f"{i}.{kind}", shape))
                spec.add(f"param/{i}.{kind}", shape, [dtype])
    training = header.get("training")
    if training is not None:
        training = _parse_training(training, shapes, dtype, spec)
    dense = [layer for layer in layers if isinstance(layer, L.Dense)]
    meta = header.get("meta")
    if meta is not None:
        meta = _check_meta(meta, dense[0].in_features if dense else None,
                           dense[-1].out_features if dense else None, "header field meta")
    version = header.get("fastnn_version")   # informational (load_info), never checked
    version = version if isinstance(version, str) else None
    kwargs = {"dtype": dtype, "seed": seed, "step": step, "epoch": epoch, "meta": meta, "version": version}
    return kwargs, layers, training, spec


def _check_meta(meta, n_in, n_out, where: str) -> dict:
    """meta checked against META_KEYS' schema and the model's widths; a new dict (raises _Invalid)."""
    if not isinstance(meta, dict):
        raise _Invalid(f"{where} must be an object with entries among {', '.join(META_KEYS)}, got {_short(meta)}")
    unknown = [k for k in meta if k not in META_KEYS]
    if unknown:
        raise _Invalid(f"{where} has an unknown entry {_short(unknown[0])} (known: {', '.join(META_KEYS)})")

    def number(v):
        if isinstance(v, bool):
            return False
        return isinstance(v, int) and abs(v) <= 1 << 53 or isinstance(v, float) and isfinite(v)

    def names(key, numbers_too):
        value = meta[key]
        if not isinstance(value, list):
            raise _Invalid(f"{where}['{key}'] must be a list, got {_short(value)}")
        for v in value:
            ok = isinstance(v, str) and 0 < len(v) <= _MAX_META_TEXT or numbers_too and number(v)
            if not ok:
                kind = "non-empty strings or finite numbers" if numbers_too else "non-empty strings"
                raise _Invalid(f"{where}['{key}'] must hold {kind} (at most {_MAX_META_TEXT} characters), "
                               f"got {_short(v)}")
        if len({(type(v) is str, v) for v in value}) != len(value):
            raise _Invalid(f"{where}['{key}'] holds a name twice: {_short(value)}")
        return list(value)

    out = {}
    task = meta.get("task")
    if task is not None:
        if task not in TASKS:
            raise _Invalid(f"{where}['task'] must be one of {', '.join(TASKS)}, got {_short(task)}")
        out["task"] = task
    if "classes" in meta:
        classes = names("classes", True)
        if task != "classification":
            raise _Invalid(f"{where}['classes'] needs task 'classification', got task {_short(task)}")
        if n_out is not None and not (len(classes) == n_out or (len(classes) == 2 and n_out == 1)):
            raise _Invalid(f"{where}['classes'] names {len(classes)} classes, but the model has {n_out} outputs")
        out["classes"] = classes
    if "features" in meta:
        features = names("features", False)
        if n_in is not None and len(features) != n_in:
            raise _Invalid(f"{where}['features'] names {len(features)} features, but the model takes {n_in}")
        out["features"] = features
    if "target" in meta:
        target = meta["target"]
        if not (isinstance(target, str) and 0 < len(target) <= _MAX_META_TEXT):
            raise _Invalid(f"{where}['target'] must be a non-empty string, got {_short(target)}")
        out["target"] = target
    return out


def _parse_training(t, shapes, dtype, spec: _Spec) -> dict:
    _fields(t, "training", ("optimizer",), ("loss", "metrics"))
    o = _fields(t["optimizer"], "training.optimizer", ("class", "param_groups"), ("defaults", "state"))
    cls = _class_of(o["class"], _OPTIMIZERS, "training.optimizer.class", "optimizer")
    defaults = _hyper(o.get("defaults", {}), "training.optimizer.defaults")
    groups, seen = [], set()
    for g, group in enumerate(_expect(o["param_groups"], "list", "training.optimizer.param_groups")):
        where = f"training.optimizer.param_groups[{g}]"
        _expect(group, "dict", where)
        hyper = _hyper({k: v for k, v in group.items() if k != "params"}, where)
        idx = _expect(group.get("params"), "list", f"{where}['params']")
        for j in idx:
            if not (isinstance(j, int) and not isinstance(j, bool) and 0 <= j < len(shapes)) or j in seen:
                raise _Invalid(f"header field {where}['params'] must list distinct parameter indices in "
                               f"[0, {len(shapes) - 1}], got {_short(j)}")
            seen.add(j)
        if not idx:
            raise _Invalid(f"header field {where}['params'] is empty")
        groups.append((idx, hyper))
    if not groups:
        raise _Invalid("header field training.optimizer.param_groups is empty")
    state = {}
    for key, kinds in _expect(o.get("state", {}), "dict", "training.optimizer.state").items():
        where = f"training.optimizer.state[{key!r}]"
        if not (key.isascii() and key.isdigit() and int(key) in seen):
            raise _Invalid(f"header field {where}: the key must be the index of an optimized parameter")
        j = int(key)
        for kind in _expect(kinds, "list", where):
            if not (isinstance(kind, str) and _NAME_RE.match(kind)):
                raise _Invalid(f"header field {where} holds an invalid state name {_short(kind)}")
            shape = () if kind == "step" else shapes[j][1]
            allowed = [np.float32, np.float64, np.int64] if kind == "step" else [dtype]
            spec.add(f"optimizer/state/{j}/{kind}", shape, allowed)
        state[j] = list(kinds)

    loss = None
    if t.get("loss") is not None:
        lo = _fields(t["loss"], "training.loss", ("class",), ("config", "arrays"))
        lcls = _class_of(lo["class"], _LOSSES, "training.loss.class", "loss")
        allowed_keys = _init_keywords(lcls)
        config = _hyper(lo.get("config", {}), "training.loss.config")
        names = _expect(lo.get("arrays", []), "list", "training.loss.arrays")
        for key in [*config, *names]:
            if key not in allowed_keys:
                raise _Invalid(f"header field training.loss names an unknown keyword {_short(key)} for "
                               f"{lcls.__name__} (known: {', '.join(allowed_keys)})")
        for key in names:
            if key in config:
                raise _Invalid(f"header field training.loss gives {key!r} twice")
            spec.add(f"loss/{key}", None, [np.float64, np.float32], _MAX_LOSS_ARRAY_BYTES)
        loss = (lcls, config, names)
    metrics = t.get("metrics")
    if metrics is not None:
        for m in _expect(metrics, "list", "training.metrics"):
            if not (isinstance(m, str) and _NAME_RE.match(m)):
                raise _Invalid(f"header field training.metrics holds an invalid metric name {_short(m)}")
    return {"optimizer": (cls, defaults, groups, state), "loss": loss, "metrics": metrics}


class _Member:
    """A checked .npy member: its zip entry, the length of its .npy header, shape, Fortran order, dtype."""

    def __init__(self, info, offset, shape, fortran, dtype):
        self.info, self.offset, self.shape, self.fortran, self.dtype = info, offset, tuple(shape), fortran, dtype


def _check_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, shape, dtypes, max_bytes, archive_size) -> _Member:
    """Check one .npy member against the zip directory and what the header implies, reading only its .npy header."""
    name = info.filename[:-4]
    dtypes = [np.dtype(d) for d in dtypes]
    if info.compress_type != zipfile.ZIP_STORED:
        raise _Invalid(f"array {name!r} is compressed (zip method {info.compress_type}); fastnn model files hold "
                       "uncompressed (stored) members only, as save_model writes them")
    if info.compress_size != info.file_size:
        raise _Invalid(f"array {name!r} is stored but its zip entry declares {info.compress_size} bytes in the "
                       f"file and {info.file_size} bytes of data")
    if info.header_offset + info.compress_size > archive_size:
        raise _Invalid(f"array {name!r} declares {info.file_size} bytes, more than the file holds (it may be "
                       "truncated)")
    if info.file_size > max_bytes + _NPY_SLACK:
        raise _Invalid(f"array {name!r} is {info.file_size} bytes, more than its expected shape needs")
    with zf.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            got_shape, fortran, dt = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            got_shape, fortran, dt = np.lib.format.read_array_header_2_0(fp)
        else:
            raise _Invalid(f"array {name!r} has an unsupported .npy format version {version}")
        offset = fp.tell()
    if dt.hasobject or dt.kind not in "biuf" or dt.fields is not None or dt.subdtype is not None:
        raise _Invalid(f"array {name!r} has dtype {dt}; fastnn model files hold plain numeric arrays only")
    if dt.newbyteorder("=") not in dtypes:
        raise _Invalid(f"array {name!r} has dtype {dt}, expected {' or '.join(str(d) for d in dtypes)}")
    if shape is not None and tuple(got_shape) != tuple(shape):
        raise _Invalid(f"array {name!r} has shape {tuple(got_shape)}, but the architecture needs {tuple(shape)}")
    nbytes = prod(got_shape) * dt.itemsize
    if nbytes > max_bytes:
        raise _Invalid(f"array {name!r} of shape {tuple(got_shape)} is too large ({nbytes} bytes)")
    if offset + nbytes > info.file_size:
        raise _Invalid(f"array {name!r} is truncated: its shape needs {nbytes} bytes, the member has "
                       f"{info.file_size - offset}")
    if offset + nbytes != info.file_size:
        raise _Invalid(f"array {name!r}: its zip entry declares {info.file_size} bytes, but its .npy header and "
                       f"shape {tuple(got_shape)} imply {offset + nbytes}")
    return _Member(info, offset, got_shape, fortran, dt)


def _read_data(zf: zipfile.ZipFile, m: _Member, out: np.ndarray | None = None) -> np.ndarray:
    """A checked member's data, read in chunks into `out` (same shape, native dtype, C order) or a new array."""
    name = m.info.filename[:-4]
    native = m.dtype.newbyteorder("=")
    direct = (out is not None and out.dtype == m.dtype and not m.fortran and out.shape == m.shape
              and out.flags.c_contiguous and out.flags.writeable)
    flat = out.reshape(-1) if direct else np.empty(prod(m.shape), m.dtype)
    dest = flat.view(np.uint8)
    nbytes = dest.size
    with zf.open(m.info) as fp:
        if len(fp.read(m.offset)) != m.offset:
            raise _Invalid(f"array {name!r} is truncated")
        pos = 0
        while pos < nbytes:
            chunk = fp.read(min(nbytes - pos, _CHUNK))
            if not chunk:
                raise _Invalid(f"array {name!r} does not hold the {nbytes} bytes of data its header announces")
            dest[pos:pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
            pos += len(chunk)
        if fp.read(1):  # reading to the end also checks the member's CRC-32
            raise _Invalid(f"array {name!r} holds more than the {nbytes} bytes of data its header announces")
    if direct:
        return out
    arr = flat.reshape(m.shape[::-1]).T if m.fortran else flat.reshape(m.shape)
    arr = arr if m.dtype == native else arr.astype(native)
    if out is not None:
        out[...] = arr
        return out
    return arr


def _open_archive(f):
    """The zip archive of an open model file, after checking its signature."""
    head = f.read(8)
    if not head:
        raise _Invalid("the file is empty")
    if head[:4] != _ZIP_MAGIC:
        hint = ""
        if head.startswith(b"\x93NUMPY"):
            hint = " (it is a single .npy array)"
        elif head[:1] == b"\x80":
            hint = " (it looks like a pickle, which fastnn never loads)"
        raise _Invalid(f"it is not a fastnn model file: it does not start with the zip signature{hint}")
    f.seek(0)
    return zipfile.ZipFile(f)


def _read_file(zf: zipfile.ZipFile, archive_size: int):
    """((model kwargs, layers, training, spec), members) of an open archive, every member checked (no data read)."""
    infos = zf.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise _Invalid("the archive lists an array twice")
    by_name = {n[:-4]: i for n, i in zip(names, infos) if n.endswith(".npy")}
    if HEADER not in by_name:
        torch_hint = " (a PyTorch checkpoint? see fastnn.io.from_torch)" if any(
            n.endswith("data.pkl") for n in names) else ""
        raise _Invalid(f"it is not a fastnn model file: the archive has no {HEADER!r} header{torch_hint}")
    raw = _read_data(zf, _check_member(zf, by_name[HEADER], None, [np.uint8], _MAX_HEADER_BYTES, archive_size))
    if raw.ndim != 1:
        raise _Invalid(f"the {HEADER!r} header must be a 1-D uint8 array, got shape {raw.shape}")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Invalid(f"the header is not valid JSON ({exc})") from None
    parsed = _parse_header(header)
    spec = parsed[3]
    extra = sorted(set(by_name) - set(spec.arrays) - {HEADER}) + sorted(
        n for n in names if not n.endswith(".npy"))
    if extra:
        raise _Invalid(f"the archive holds an unexpected member {extra[0]!r}")
    missing = sorted(set(spec.arrays) - set(by_name))
    if missing:
        raise _Invalid(f"array {missing[0]!r} is missing (the file may be truncated or incomplete)")
    members = {name: _check_member(zf, by_name[name], *spec.arrays[name], archive_size) for name in spec.arrays}
    return parsed, members


def load_model(path) -> Sequential:
    """Rebuild the model saved by ``model.save(path)`` / ``save_model``; never executes code from the file.

    Restores architecture, dtype, seed, weights (bit-exact), the dropout step counter and
    ``model.epoch``. If the file holds a training set-up, the optimizer is rebuilt with its state
    and the model is compiled with it, the loss and the metrics (``model.optimizer`` etc.), so
    training continues exactly as it would have. The model comes back in training mode.
    Raises ValueError (naming the file and the problem) for a file that is not a valid fastnn model
    file, FileNotFoundError/OSError if it cannot be read, TypeError for a path of the wrong type and
    ValueError for an empty path, one holding a NUL character or naming a directory.
    """
    p = _fspath(path)
    with open(p, "rb") as f:
        model, kw = _load(f, p)
    model._step = kw["step"]
    model.epoch = kw["epoch"]
    model.meta = kw["meta"]
    return model


def load_info(path) -> dict:
    """What a model file holds, without building the model or reading its weights.

    Returns {"fastnn_version", "dtype", "in_features", "out_features", "layers" (class names),
    "epoch", "trained_with" (optimizer class or None), "meta" (dict or None)}. The header and the
    members' sizes are checked exactly as load_model checks them (ValueError naming the file).
    """
    p = _fspath(path)
    with open(p, "rb") as f, _load_errors(p):
        archive_size = os.fstat(f.fileno()).st_size
        with _open_archive(f) as zf:
            (kw, layers, training, _), _members = _read_file(zf, archive_size)
    dense = [layer for layer in layers if isinstance(layer, L.Dense)]
    return {
        "fastnn_version": kw["version"],
        "dtype": kw["dtype"].name, "in_features": dense[0].in_features, "out_features": dense[-1].out_features,
        "layers": [type(layer).__name__ for layer in layers], "epoch": kw["epoch"],
        "trained_with": None if training is None else training["optimizer"][0].__name__,
        "meta": kw["meta"],
    }


@contextlib.contextmanager
def _load_errors(p: str):
    """Whatever reading the file at `p` raises becomes a ValueError naming the file (see the module docstring)."""
    try:
        yield
    except _Invalid as exc:
        raise ValueError(f"cannot load model file '{p}': {exc}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, struct.error, NotImplementedError, RuntimeError, OSError,
            OverflowError, UnicodeError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"cannot load model file '{p}': the file is damaged or is not a fastnn model file "
                         f"({type(exc).__name__}: {exc})") from exc


def _load(f, p: str):
    with _load_errors(p):
        archive_size = os.fstat(f.fileno()).st_size
        with _open_archive(f) as zf:
            (kw, layers, training, _), members = _read_file(zf, archive_size)
            model = _construct(lambda: Sequential(layers, dtype=kw["dtype"], seed=kw["seed"]), {}, "model")
            for param in model.parameters():  # straight into the model: no second copy of the weights
                _read_data(zf, members.pop(f"param/{param.name}"), param.data)
            arrays = {name: _read_data(zf, m) for name, m in members.items()}
        if training is not None:
            _restore_training(model, training, arrays)
    return model, kw


def _restore_training(model: Sequential, training: dict, arrays: dict) -> None:
    cls, defaults, groups, state = training["optimizer"]
    params = model.parameters()
    opt = None
    for g, (idx, hyper) in enumerate(groups):  # one at a time, so that an error names its group
        group = {"params": [params[j] for j in idx], **hyper}
        try:
            if opt is None:
                opt = cls([group])
            else:
                opt.add_param_group(group)
        except (TypeError, ValueError) as exc:
            raise _Invalid(f"the optimizer cannot be restored: header field "
                           f"training.optimizer.param_groups[{g}]: {exc}") from None
    try:
        opt.defaults = opt._check_group({**opt.defaults, **defaults})
    except (TypeError, ValueError, KeyError) as exc:
        raise _Invalid(f"the optimizer cannot be restored: header field training.optimizer.defaults: {exc}") from None
    for j, kinds in state.items():
        if "step" in kinds:
            name = f"optimizer/state/{j}/step"
            try:
                _optim.optimizer.check_step(arrays[name], f"array {name!r}")
            except (TypeError, ValueError) as exc:
                raise _Invalid(f"the optimizer cannot be restored: {exc}") from None
    try:
        order = [j for idx, _ in groups for j in idx]   # the optimizer's own parameter numbering
        local = {j: i for i, j in enumerate(order)}
        opt.load_state_dict({
            "param_groups": [{**opt.param_groups[g], "params": [local[j] for j in idx]}
                             for g, (idx, _) in enumerate(groups)],
            "state": {local[j]: {kind: arrays[f"optimizer/state/{j}/{kind}"] for kind in kinds}
                      for j, kinds in state.items()},
        })
    except (TypeError, ValueError, KeyError) as exc:
        raise _Invalid(f"the optimizer cannot be restored: {exc}") from None
    loss = None
    if training["loss"] is not None:
        lcls, config, names = training["loss"]
        loss = _construct(lcls, {**config, **{k: arrays[f"loss/{k}"] for k in names}}, "training.loss")
    metrics = training["metrics"]
    compile_ = getattr(model, "compile", None)
    if callable(compile_) and loss is not None:
        try:
            compile_(optimizer=opt, loss=loss, metrics=metrics)
        except (TypeError, ValueError) as exc:
            raise _Invalid(f"the model cannot be compiled with the saved set-up: {exc}") from None
    else:
        model.optimizer, model.loss, model.compiled_metrics = opt, loss, metrics


Sequential._writer = staticmethod(save_model)   # Sequential.save delegates here (model.py cannot import io)
