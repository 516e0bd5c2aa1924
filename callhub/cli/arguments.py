"""Command-line value types shared by the ``callhub`` sub-commands.

argparse calls these on the raw text; a value out of range raises
``ArgumentTypeError``, which argparse turns into ``callhub X: error: …`` and
exit status 2 — the same message shape for every command.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers from ``low`` (to ``high``)."""
    span = f"from {low} to {high}" if high is not None else f"≥ {low}"

    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
            raise argparse.ArgumentTypeError(f"expected a whole number {span}, got {text!r}")
        return int(text)

    return parse


def seconds(text: str) -> float:
    """A duration in seconds, 0 to a day."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 86400, got {text!r}")
    return value


def positive(kind: type[float] | type[int], what: str) -> Callable[[str], float | int]:
    """A parser of finite numbers above 0 (``what`` names them in the error)."""

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse
