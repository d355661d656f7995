"""The docs/design.md benchmark shapes, their FLOP/byte accounting, and each implementation's step.

Every training step runs the same recipe: ReLU hidden layers, softmax cross-entropy,
Adam(lr=1e-3), one step on a fixed batch. A *factory* ``make(sizes, n, dtype) -> fn`` builds
the model and batch once and returns a no-argument callable that runs one step (training) or
one forward pass (inference); the harness times calls of that callable.
"""

from __future__ import annotations

import inspect

import numpy as np

SHAPES = {
    "tiny": ([784, 128, 10], 64),
    "medium": ([784, 512, 512, 10], 256),
    "large": ([2048, 2048, 2048, 10], 1024),
    "deep": ([64] + [64] * 8 + [10], 32),
}
LABELS = {
    "tiny": "784-128-10",
    "medium": "784-512-512-10",
    "large": "2048-2048-2048-10",
    "deep": "64-(64x8)-10",
}
INFERENCE_BATCHES = (1, 32, 1024)
ADAM_ARRAYS = 7   # params, grads, m, v read; params, m, v written


# ------------------------------------------------------------------------------------------ accounting

def param_count(sizes) -> int:
    """Weights and biases of the MLP `sizes`."""
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def gemm_flops(sizes, n, train=True) -> int:
    """GEMM FLOPs (2*m*n*k each) of one step: forward x@W; backward dW = h.T@G and dX = G@W.T (not for layer 0)."""
    fwd = sum(2 * n * i * o for i, o in zip(sizes[:-1], sizes[1:]))
    if not train:
        return fwd
    return 3 * fwd - 2 * n * sizes[0] * sizes[1]


def adam_bytes(sizes, dtype) -> int:
    """Bytes one Adam pass over the parameter arena streams once (7 arrays of param_count elements)."""
    return ADAM_ARRAYS * param_count(sizes) * np.dtype(dtype).itemsize


def floor_seconds(sizes, n, dtype, gemm_flops_per_s, bytes_per_s) -> float:
    """The step's floor: its GEMM FLOPs at the GEMM peak plus one Adam pass at the memory bandwidth."""
    return gemm_flops(sizes, n) / gemm_flops_per_s + adam_bytes(sizes, dtype) / bytes_per_s


def batch(sizes, n, dtype, seed=0):
    """A fixed batch: x (n, sizes[0]) standard normal in `dtype`, y (n,) int64 class indices."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], n)


# ------------------------------------------------------------------------------------------ fastnn

def fastnn_model(sizes, dtype, seed=0):
    """fastnn's Sequential for `sizes`: Dense + ReLU hidden layers, a linear last layer."""
    import fastnn as fnn

    last = len(sizes) - 2
    layers = [fnn.Dense(i, o, activation="relu" if k < last else None)
              for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return fnn.Sequential(layers, dtype=dtype, seed=seed)


def fastnn_step_path() -> str:
    """Which fastnn training step the harness times: "train_step" (compiled) when the model has it, else "loop"."""
    import fastnn

    return "train_step" if hasattr(fastnn.Sequential, "train_step") else "loop"


def compile_adam(model, lr=1e-3) -> None:
    """model.compile(optimizer=Adam(lr), loss=CrossEntropyLoss()), in whichever Adam form compile accepts."""
    import fastnn as fnn

    attempts = (
        lambda: fnn.optim.Adam(lr=lr),                      # Keras-style, bound by compile
        lambda: fnn.optim.Adam(model.parameters(), lr=lr),  # torch-style, bound here
        lambda: "adam",                                     # by name (default lr 1e-3)
    )
    errors = []
    for make in attempts:
        try:
            model.compile(optimizer=make(), loss=fnn.losses.CrossEntropyLoss())
            return
        except (TypeError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    raise RuntimeError("model.compile accepted no form of Adam: " + "; ".join(errors))


def fastnn_trainer(sizes, n, dtype, path=None):
    """(step, model, x, y): fastnn's training step on a fixed batch, with the model and batch it uses.

    path="train_step": ``model.train_step(x, y)`` after ``compile_adam``; path="loop": the PyTorch-style
    five steps (loss_fn(model(x), y), model.backward(loss_fn.backward()), opt.step(), opt.zero_grad()).
    The default is fastnn_step_path(): the compiled step as soon as fastnn has it.
    """
    import fastnn as fnn

    path = path or fastnn_step_path()
    model = fastnn_model(sizes, dtype)
    x, y = batch(sizes, n, dtype)
    model.train()
    if path == "train_step":
        compile_adam(model)
        train_step = model.train_step
        return (lambda: train_step(x, y)), model, x, y
    if path != "loop":
        raise ValueError(f"path must be 'train_step' or 'loop', got {path!r}")
    loss_fn = fnn.losses.CrossEntropyLoss()
    opt = fnn.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
        return loss

    return step, model, x, y


def fastnn_step(sizes, n, dtype, path=None):
    """fastnn's training step (see fastnn_trainer) as a no-argument callable."""
    return fastnn_trainer(sizes, n, dtype, path)[0]


def fastnn_forward(sizes, n, dtype, method="call"):
    """fastnn inference in eval mode: ``model(x)`` under ``fnn.no_grad()``, as PyTorch's row runs under
    ``torch.no_grad()`` (method="call"), or ``model.predict(x)`` (method="predict")."""
    import fastnn

    model = fastnn_model(sizes, dtype)
    x, _ = batch(sizes, n, dtype)
    model.eval()
    if method == "call":
        if not hasattr(fastnn, "is_grad_enabled"):   # a fastnn whose no_grad() did nothing
            return lambda: model(x)
        no_grad = fastnn.no_grad

        def forward():
            with no_grad():
                return model(x)

        return forward
    predict = model.predict
    kwargs = {}
    params = inspect.signature(predict).parameters
    if "batch_size" in params:
        kwargs["batch_size"] = n   # one batch, as model(x)
    if "verbose" in params:
        kwargs["verbose"] = 0
    return lambda: predict(x, **kwargs)


def fastnn_has_predict() -> bool:
    import fastnn

    return hasattr(fastnn.Sequential, "predict")


# ------------------------------------------------------------------------------------------ NumPy

def numpy_step(sizes, n, dtype):
    """The careful pure-NumPy step (fastnn.benchmarks.numpy_mlp)."""
    from .numpy_mlp import NumpyMLP

    mlp = NumpyMLP(sizes, n, dtype)
    x, y = batch(sizes, n, dtype)
    return lambda: mlp.step(x, y)


def numpy_forward(sizes, n, dtype):
    from .numpy_mlp import NumpyMLP

    mlp = NumpyMLP(sizes, n, dtype, train=False)
    x, _ = batch(sizes, n, dtype)
    return lambda: mlp.forward(x)


# ------------------------------------------------------------------------------------------ PyTorch

def _torch_model(sizes, dtype):
    import torch

    torch.manual_seed(0)
    tdt = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    mods = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(torch.nn.Linear(i, o, dtype=tdt))
        if k < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def torch_step(sizes, n, dtype):
    """PyTorch's five-step loop with torch.optim.Adam's defaults for the CPU (lr=1e-3)."""
    import torch

    model = _torch_model(sizes, dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = batch(sizes, n, dtype)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    return step


def torch_forward(sizes, n, dtype):
    """PyTorch inference: eval mode, under torch.no_grad()."""
    import torch

    model = _torch_model(sizes, dtype).eval()
    xt = torch.from_numpy(batch(sizes, n, dtype)[0])

    def forward():
        with torch.no_grad():
            return model(xt)

    return forward


# ------------------------------------------------------------------------------------------ scikit-learn

def sklearn_step(sizes, n, dtype):
    """scikit-learn's MLPClassifier: one ``partial_fit`` on the batch (batch_size=n: one Adam step, relu, no L2)."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), activation="relu", solver="adam", alpha=0.0,
                        batch_size=n, learning_rate_init=1e-3, shuffle=False, random_state=0)
    x, y = batch(sizes, n, dtype)
    clf.partial_fit(x, y, classes=np.arange(sizes[-1]))

    def step():
        clf.partial_fit(x, y)
        return clf.loss_

    return step


TRAIN_IMPLS = {"fastnn": fastnn_step, "numpy": numpy_step, "torch": torch_step, "sklearn": sklearn_step}
INFERENCE_IMPLS = {"fastnn": fastnn_forward, "numpy": numpy_forward, "torch": torch_forward}
