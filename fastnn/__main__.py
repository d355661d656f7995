"""The `fastnn` console command (also `python -m fastnn`).

    fastnn info     version, OpenMP and threads, BLAS libraries and their threads, dtype, compiler flags
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastnn", description="fastnn: fast dense neural networks on the CPU")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the build and runtime configuration")
    info.add_argument("--threads", type=int, default=None, help="set the thread count first")
    args = parser.parse_args(argv)

    import fastnn

    if args.command == "info":
        if args.threads is not None:
            try:
                fastnn.set_num_threads(args.threads)
            except (TypeError, ValueError) as exc:
                print(f"fastnn info: {exc}", file=sys.stderr)
                return 2
        fastnn.show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
