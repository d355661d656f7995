"""The careful pure-NumPy MLP step lives in fastnn.benchmarks.numpy_mlp (shipped in the wheel); kept importable here."""

from fastnn.benchmarks.numpy_mlp import NumpyMLP

__all__ = ["NumpyMLP"]
