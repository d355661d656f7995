"""argparse ``type=`` callables shared by the command-line tools (``fastnn train``, ``fastnn bench``).

Each returns the parsed value or raises argparse.ArgumentTypeError, whose message argparse prints
after the option's name: "argument --epochs: must be >= 1, got 0".
"""

from __future__ import annotations

import argparse
import math


def integer(low: int):
    """An integer >= low."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False,
           finite: bool = True):
    """A float in [low, high] (either end open; high None: no upper bound; finite=False also takes inf)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = (not finite or math.isfinite(value)) and (value > low if low_open else value >= low) and \
            (high is None or (value < high if high_open else value <= high))
        if not ok:
            left = "(" if low_open else "["
            right = ")" if high_open or (high is None and finite) else "]"
            raise argparse.ArgumentTypeError(f"must be in {left}{low:g}, {'inf' if high is None else f'{high:g}'}"
                                             f"{right}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


def items(kind: str, choices=None):
    """A comma-separated list of words (each one of `choices` if given)."""
    def parse(text):
        out = [t.strip() for t in str(text).split(",") if t.strip()]
        if not out:
            raise argparse.ArgumentTypeError(f"{kind} must be a comma-separated list, got {text!r}")
        if choices is not None:
            bad = [t for t in out if t not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {kind} {', '.join(bad)}; choose from {', '.join(choices)}")
        return out
    return parse


def counts(kind: str, low: int = 1):
    """A comma-separated list of integers >= low, each with an optional k or M suffix ('1M,250k')."""
    def parse(text):
        try:
            out = [count(t) for t in items(kind)(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be comma-separated integers, got {text!r}") from None
        if any(i < low for i in out):
            raise argparse.ArgumentTypeError(f"{kind} must be >= {low}, got {text!r}")
        return out
    return parse


def count(text: str) -> int:
    """'1M' -> 1000000, '250k' -> 250000, '64' -> 64."""
    t = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if scale > 1 else t) * scale)
