"""StatusLine: a live one-line status for commands that run a while.

On a terminal it rewrites one line in place; into a file or a CI log it prints
a plain line now and then, so the log shows progress without flooding.
"""

from __future__ import annotations

import time
from typing import TextIO


class StatusLine:
    def __init__(self, stream: TextIO, *, interval_s: float | None = None) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = interval_s if interval_s is not None else (0.2 if self._tty else 5.0)
        self._last = time.monotonic()
        self._width = 0

    def update(self, text: str, *, force: bool = False) -> None:
        """Show ``text`` if the interval has passed (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        if self._tty:
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def clear(self) -> None:
        """End the live line so ordinary output can follow it."""
        if self._tty and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
