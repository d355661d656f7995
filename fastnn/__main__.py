"""The `fastnn` console command (also `python -m fastnn`).

    fastnn train    train an MLP (the bundled digits by default, or your CSV/.npz) and report test metrics
    fastnn predict  a saved model's predictions (labels, probabilities or values) for new rows of a CSV file
    fastnn bench    benchmark one training step, optimizer steps and inference against NumPy/PyTorch
    fastnn info     version, OpenMP and threads, BLAS libraries and their threads, dtype, compiler flags
    fastnn --version (-V)  the version

Each command lives in its own module with `configure(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ._version import __version__

COMMANDS = {
    "train": ("fastnn._cli_train", "train an MLP and report its test metrics"),
    "predict": ("fastnn._cli_predict", "predict with a saved model for new rows of a CSV file"),
    "bench": ("fastnn.benchmarks.cli", "benchmark fastnn against NumPy, PyTorch and scikit-learn"),
    "info": (None, "print the build and runtime configuration"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    """`fastnn info`'s arguments."""
    parser.add_argument("--threads", type=int, default=None, help="set the thread count first")


def run(args: argparse.Namespace) -> int:
    """`fastnn info`."""
    import fastnn

    if args.threads is not None:
        try:
            fastnn.set_num_threads(args.threads)
        except (TypeError, ValueError) as exc:
            print(f"fastnn info: {exc}", file=sys.stderr)
            return 2
    fastnn.show_config()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastnn", description="fastnn: fast dense neural networks on the CPU")
    parser.add_argument("-V", "--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module, help_text) in COMMANDS.items():
        modules[name] = mod = importlib.import_module(module) if module else sys.modules[__name__]
        mod.configure(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
