"""Weight exchange with PyTorch: to_torch, from_torch, load_torch_weights, copy_weights_to_torch.

Re-exported by fastnn.io (their public home). torch is imported only when one of them runs. Dense is
nn.Linear (weight = W.T); Dropout is nn.Dropout; each activation class names its torch.nn counterpart
and how its keywords map (fastnn.layers.Activation: ``torch_module``, ``torch_params``).
"""

from __future__ import annotations

import numpy as np

from . import layers as L
from . import optim as _optim
from .model import Sequential

__all__ = ["to_torch", "from_torch", "load_torch_weights", "copy_weights_to_torch"]

#: the activation classes with a torch counterpart (exact classes: a subclass may compute something else)
_ACTIVATIONS = tuple(dict.fromkeys(L.ACTIVATIONS.values()))


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("this function needs PyTorch: pip install torch") from None
    return torch


def _torch_activation(nn, act: L.Activation):
    """The torch module computing the same function as a fastnn activation."""
    cls = type(act)
    if cls not in _ACTIVATIONS:
        raise ValueError(f"activation {cls.__name__} has no PyTorch counterpart in fastnn.io")
    return getattr(nn, cls.torch_module)(**{attr: getattr(act, key) for key, attr in cls.torch_params.items()})


def to_torch(model: Sequential):
    """A torch.nn.Sequential computing the same function as `model`, with copies of its weights.

    Dense -> nn.Linear (weight = W.T, bias = b) followed by the activation module (if not linear);
    activation layers -> their torch modules; Dropout(p) -> nn.Dropout(p). The torch parameters have
    the model's dtype (bit-exact copies) and the torch model has the fastnn model's train/eval mode.
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastnn Sequential, got {type(model).__name__}")
    model._require_built("fnn.io.to_torch()")
    tdtype = torch.float64 if model.dtype == np.float64 else torch.float32
    mods = []
    for i, layer in enumerate(model.layers):
        if type(layer) is L.Dense:
            lin = nn.Linear(layer.in_features, layer.out_features, bias=layer.use_bias, dtype=tdtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.params[0].data.T)))
                if layer.use_bias:
                    lin.bias.copy_(torch.from_numpy(layer.params[1].data.copy()))
            mods.append(lin)
            if type(layer.activation) is not L.Identity:
                mods.append(_torch_activation(nn, layer.activation))
        elif type(layer) is L.Dropout:
            mods.append(nn.Dropout(layer.p))
        elif isinstance(layer, L.Activation):
            mods.append(_torch_activation(nn, layer))
        else:
            raise ValueError(f"layer {i} ({type(layer).__name__}) has no PyTorch counterpart in fastnn.io")
    return nn.Sequential(*mods).train(model.training)


def _flat_modules(nn, module, prefix=""):
    """(name, module) leaves of nested nn.Sequential containers, in order."""
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            yield from _flat_modules(nn, child, full + ".")
        else:
            yield full, child


def from_torch(torch_sequential, dtype=None, seed=None, optimizer=None):
    """A fastnn Sequential equal to a torch nn.Sequential of Linear, activation and Dropout modules.

    Supported modules: nn.Linear, nn.Dropout and the torch counterparts of fastnn.layers.ACTIVATIONS
    (nn.ReLU, nn.GELU, nn.Softmax over the last dim, ...; nested nn.Sequential is flattened); anything
    else raises ValueError naming it. dtype=None takes the Linear weights' dtype (float32 or float64:
    the weights are then copied bit-exactly); seed as in Sequential.

    optimizer: a torch.optim optimizer over (some of) the module's parameters. Then the result is
    ``(model, fastnn_optimizer)``: the fastnn optimizer of the same class (``fastnn.optim.OPTIMIZERS``:
    SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta) with torch's param groups and hyper-parameters and
    its state (exp_avg, exp_avg_sq, max_exp_avg_sq, momentum_buffer, square_avg, grad_avg, acc_delta,
    sum, step), the nn.Linear weights' state transposed to fastnn's (in, out) layout. Continuing
    training in both gives the same numbers (up to float rounding of the matrix products).
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(torch_sequential, nn.Sequential):
        raise TypeError(f"torch_sequential must be a torch.nn.Sequential, got {type(torch_sequential).__name__}")
    activations = {}   # torch module class -> the first registered activation computing it
    for cls in _ACTIVATIONS:
        activations.setdefault(getattr(nn, cls.torch_module), cls)
    layers, linears = [], []
    for name, m in _flat_modules(nn, torch_sequential):
        kind = type(m)
        if kind is nn.Linear:
            layers.append(L.Dense(m.in_features, m.out_features, use_bias=m.bias is not None))
            linears.append(m)
        elif kind is nn.Dropout:
            layers.append(L.Dropout(m.p))
        elif kind in activations:
            try:
                layers.append(activations[kind]._from_torch(m))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"module {name} ({m!r}) is not supported: {exc}") from None
        else:
            names = ", ".join(cls.torch_module for cls in _ACTIVATIONS)
            raise ValueError(f"module {name} ({kind.__name__}) is not supported; from_torch takes nn.Linear, "
                             f"nn.Dropout and the activations {names}")
    if not linears:
        raise ValueError("torch_sequential must contain at least one nn.Linear")
    if dtype is None:
        dts = {p.dtype for m in linears for p in m.parameters()}
        names = {torch.float32: "float32", torch.float64: "float64"}
        if len(dts) != 1 or next(iter(dts)) not in names:
            raise ValueError(f"the Linear layers have dtypes {sorted(str(d) for d in dts)}; pass dtype='float32' or "
                             "'float64' to convert them")
        dtype = names[next(iter(dts))]
    model = Sequential(layers, dtype=dtype, seed=seed)
    load_torch_weights(model, torch_sequential)
    model.train(torch_sequential.training)
    if optimizer is None:
        return model
    return model, _convert_optimizer(torch, model, torch_sequential, optimizer)


def _convert_optimizer(torch, model: Sequential, torch_module, torch_opt):
    """The fastnn optimizer equal to torch_opt (class, param groups, hyper-parameters, state) for `model`."""
    if not isinstance(torch_opt, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim optimizer, got {type(torch_opt).__name__}")
    classes = {cls.__name__: cls for cls in _optim.OPTIMIZERS.values() if cls.torch_counterpart}
    name = type(torch_opt).__name__
    cls = classes.get(name)
    if cls is None or getattr(torch.optim, name, None) is not type(torch_opt):
        raise ValueError(f"optimizer {name} has no fastnn counterpart; from_torch converts "
                         f"{', '.join('torch.optim.' + n for n in classes)}")
    # torch parameter (by identity) -> (fastnn Parameter, transpose?)
    where = {}
    for layer, lin in _linear_pairs(model, torch_module):
        where[id(lin.weight)] = (layer.params[0], True)
        if layer.use_bias:
            where[id(lin.bias)] = (layer.params[1], False)
    groups, order = [], []
    for g, group in enumerate(torch_opt.param_groups):
        params = []
        for tp in group["params"]:
            if id(tp) not in where:
                raise ValueError(f"optimizer param group {g} holds a parameter of shape {tuple(tp.shape)} that is "
                                 "not a weight or bias of the module's nn.Linear layers")
            params.append(where[id(tp)])
        order.extend(params)
        groups.append({"params": [p for p, _ in params]})
    saved = torch_opt.state_dict()
    fnn_opt = cls(groups)
    state = {}
    for i, entry in saved["state"].items():
        _, transpose = order[i]
        state[i] = {kind: _state_array(value, transpose and kind != "step") for kind, value in entry.items()}
    fnn_opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    return fnn_opt


def _state_array(value, transpose: bool):
    """A torch state entry as NumPy (a weight's per-element state transposed from (out, in) to (in, out))."""
    if value is None or not hasattr(value, "detach"):
        return value
    arr = value.detach().cpu().numpy()
    return np.ascontiguousarray(arr.T) if transpose and arr.ndim == 2 else arr.copy()


def _linear_pairs(model: Sequential, torch_module):
    """(Dense layer, nn.Linear) pairs in order, after checking they match in number, shape and bias."""
    torch = _torch()
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastnn Sequential, got {type(model).__name__}")
    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(f"torch_module must be a torch.nn.Module, got {type(torch_module).__name__}")
    dense = [layer for layer in model.layers if isinstance(layer, L.Dense)]
    linears = [(n, m) for n, m in torch_module.named_modules() if isinstance(m, torch.nn.Linear)]
    if len(dense) != len(linears):
        raise ValueError(f"the model has {len(dense)} Dense layers but torch_module has {len(linears)} nn.Linear "
                         "modules")
    for k, (layer, (name, lin)) in enumerate(zip(dense, linears)):
        if (lin.in_features, lin.out_features) != (layer.in_features, layer.out_features):
            raise ValueError(f"Dense layer {k} is {layer.in_features} -> {layer.out_features} but nn.Linear {name} is "
                             f"{lin.in_features} -> {lin.out_features}")
        if (lin.bias is not None) != layer.use_bias:
            raise ValueError(f"Dense layer {k} has use_bias={layer.use_bias} but nn.Linear {name} has "
                             f"bias={lin.bias is not None}")
    return [(layer, lin) for layer, (_, lin) in zip(dense, linears)]


def load_torch_weights(model: Sequential, torch_module) -> Sequential:
    """Copy the weights of torch_module's nn.Linear modules (in module order) into model's Dense layers.

    W := weight.T, b := bias, converted to the model's dtype (bit-exact when the dtypes match).
    Shapes and bias presence must match. Returns the model.
    """
    pairs = _linear_pairs(model, torch_module)
    for layer, lin in pairs:
        layer.params[0].data[...] = lin.weight.detach().cpu().numpy().T
        if layer.use_bias:
            layer.params[1].data[...] = lin.bias.detach().cpu().numpy()
    return model


def copy_weights_to_torch(model: Sequential, torch_module):
    """Copy model's Dense weights into torch_module's nn.Linear modules (weight := W.T); returns torch_module."""
    torch = _torch()
    pairs = _linear_pairs(model, torch_module)
    with torch.no_grad():
        for layer, lin in pairs:
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.params[0].data.T)))
            if layer.use_bias:
                lin.bias.copy_(torch.from_numpy(layer.params[1].data.copy()))
    return torch_module
