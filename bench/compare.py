"""Side-by-side step times, measured alternately in one process: a shortcut for `fastnn bench`.

    python bench/compare.py [--shapes tiny,medium,deep] [--threads 1] [--dtype float32] [--reps 30]

is `fastnn bench --sections train --shapes ... --threads ... --dtypes ... --repeats ...`; any other
`fastnn bench` option is passed through (see `fastnn bench --help` and bench/README.md).
"""

from __future__ import annotations

import argparse
import sys

from fastnn.benchmarks import cli


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="tiny,medium,deep")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reps", default="30")
    args, rest = ap.parse_known_args(argv)
    return cli.main(["--sections", "train", "--shapes", args.shapes, "--threads", args.threads,
                     "--dtypes", args.dtype, "--repeats", args.reps, *rest])


if __name__ == "__main__":
    sys.exit(main())
