"""fastnn: fast dense neural networks (multi-layer perceptrons) on the CPU.

Compiled Cython kernels (BLAS through scipy.linalg.cython_blas, OpenMP) under a
PyTorch-style API. See docs/design.md for the public contract (docs/README.md: all the documentation).
"""

from . import _build_check  # noqa: F401, I001 - first: a clear ImportError when the kernels are not built
from . import callbacks, datasets, functional, io, losses, metrics, nn, optim, plot
from ._config import (
    get_default_dtype,
    get_num_threads,
    set_default_dtype,
    set_num_threads,
    show_config,
    thread_report,
)
from ._version import __version__
from .clip import clip_grad_norm_, clip_grad_value_
from .io import load_model
from .layers import (
    ELU,
    GELU,
    Activation,
    Dense,
    Dropout,
    Identity,
    Input,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Softsign,
    Tanh,
)
from .losses import GradientTape
from .model import Sequential, enable_grad, is_grad_enabled, no_grad
from .parameter import Parameter

__all__ = [
    "__version__",
    "get_default_dtype", "get_num_threads", "set_default_dtype", "set_num_threads", "show_config", "thread_report",
    "Activation", "Dense", "Dropout", "ELU", "GELU", "Identity", "Input", "Layer", "LeakyReLU", "ReLU", "Sigmoid",
    "SiLU", "Softmax", "Softplus", "Softsign", "Tanh",
    "Sequential", "Parameter", "load_model", "clip_grad_norm_", "clip_grad_value_", "GradientTape", "no_grad",
    "enable_grad", "is_grad_enabled",
    "callbacks", "datasets", "functional", "io", "losses", "metrics", "nn", "optim", "plot",
]
