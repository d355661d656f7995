"""fastnn: fast dense neural networks on the CPU."""

__version__ = "0.1.0"

from ._config import get_default_dtype, get_num_threads, set_default_dtype, set_num_threads, show_config  # noqa: E402

__all__ = ["__version__", "get_default_dtype", "get_num_threads", "set_default_dtype", "set_num_threads", "show_config"]
