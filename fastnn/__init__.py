"""fastnn: fast dense neural networks (multi-layer perceptrons) on the CPU.

Compiled Cython kernels (BLAS through scipy.linalg.cython_blas, OpenMP) under a
PyTorch-style API. See DESIGN.md for the public contract.
"""

__version__ = "0.1.0"

from . import callbacks, datasets, io, losses, metrics, optim, plot  # noqa: E402
from ._config import (  # noqa: E402
    get_default_dtype,
    get_num_threads,
    set_default_dtype,
    set_num_threads,
    show_config,
)
from .clip import clip_grad_norm_, clip_grad_value_  # noqa: E402
from .io import load_model  # noqa: E402
from .layers import (  # noqa: E402
    ELU,
    GELU,
    Activation,
    Dense,
    Dropout,
    Identity,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from .model import Sequential  # noqa: E402
from .parameter import Parameter  # noqa: E402

__all__ = [
    "__version__",
    "get_default_dtype", "get_num_threads", "set_default_dtype", "set_num_threads", "show_config",
    "Activation", "Dense", "Dropout", "ELU", "GELU", "Identity", "Layer", "LeakyReLU", "ReLU", "Sigmoid",
    "SiLU", "Softmax", "Tanh",
    "Sequential", "Parameter", "load_model", "clip_grad_norm_", "clip_grad_value_",
    "callbacks", "datasets", "io", "losses", "metrics", "optim", "plot",
]
