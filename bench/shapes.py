"""The shapes and step factories live in fastnn.benchmarks.shapes (shipped in the wheel); kept importable here.

``fastnn_step`` here keeps its original meaning, the PyTorch-style five-step loop (the per-layer path);
``fastnn.benchmarks.shapes.fastnn_step`` (what `fastnn bench` times) uses ``model.train_step`` when it exists.
"""

from fastnn.benchmarks import shapes as _S
from fastnn.benchmarks.shapes import (
    INFERENCE_IMPLS,
    SHAPES,
    TRAIN_IMPLS,
    batch,
    numpy_step,
    sklearn_step,
    torch_step,
)


def fastnn_step(sizes, n, dtype):
    """The PyTorch-style five-step loop in fastnn (the per-layer path)."""
    return _S.fastnn_step(sizes, n, dtype, path="loop")


IMPLS = {"fastnn": fastnn_step, "numpy": numpy_step, "torch": torch_step}   # the original three

__all__ = ["IMPLS", "INFERENCE_IMPLS", "SHAPES", "TRAIN_IMPLS", "batch", "fastnn_step", "numpy_step", "sklearn_step",
           "torch_step"]
