"""Garbage-collector settings for a serving replica (``callhub serve`` only).

Measured with ``bench/fanout.py`` (1,000 subscribers, 200 events/s): with
CPython's defaults the cyclic collector's full (generation 2) passes over
everything the process had allocated took up to 50-90 ms each, two or three
of them during the 5 s steady phase, and every delivery waiting behind such a
pause is late by as much: they were most of the p99. Two changes:

- ``gc.freeze()`` once start-up is done: the modules, classes and functions
  loaded by then live as long as the process, and a full pass no longer walks
  them (the longest pause fell to 11-14 ms).
- a higher first threshold: each event is fanned out to thousands of streams
  and allocates a few short-lived objects per stream (freed by reference
  counting, not by the collector), which with the default of 700 set off a
  young collection every few hundred deliveries. With the thresholds below no
  full pass ran during the steady phase at all.

Cyclic garbage is still collected (young cycles as before; long-lived ones
less often), so memory stays bounded.
"""

from __future__ import annotations

import gc
from typing import Final

THRESHOLDS: Final = (10_000, 20, 100)


def tune_after_start_up() -> None:
    gc.collect()  # what start-up left behind, before it is frozen for good
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
