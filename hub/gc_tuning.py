"""Garbage-collector settings for a serving replica (``callhub serve`` only).

Measured with ``bench/fanout.py`` (a replica with 1,000 subscribers through
its 5 s steady phase at 200 events/s): with CPython's defaults the cyclic
collector made two or three full (generation 2) passes over everything the
process had allocated, each a pause of up to 50-90 ms, and every delivery
waiting behind such a pause is late by as much. Two changes:

- ``gc.freeze()`` once start-up is done: the modules, classes and functions
  loaded by then live as long as the process, and a full pass no longer walks
  them (the longest pause fell to 11-14 ms).
- a higher first threshold: each event is fanned out to thousands of streams
  and allocates a few short-lived objects per stream (freed by reference
  counting, not by the collector), which with the default of 700 set off a
  young collection every few hundred deliveries. With both, no full pass ran
  in that replica's life at all (two runs).

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
