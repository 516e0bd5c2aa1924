"""What sealing cursors under the server secret costs.

Run as ``.venv/bin/python -m bench.tokens [--rounds N]``.

A replica seals one cursor per event it dispatches (the SSE ``id:``), and opens
one per resume; this measures both for the unkeyed checksum (no secret: the
peer, what every cursor cost before) and for AES-SIV under ``CALLHUB_SECRET``,
in the same run, for 1 and 16 shards, and prints the ratio.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

from callhub.cursor import Cursor
from callhub.tokens import use_secret

SECRET = "bench-secret-bench-secret-bench-secret"


def _per_op_us(call: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(5):  # the best of five: the least disturbed by the shared machine
        started = time.perf_counter()
        for _ in range(rounds):
            call()
        best = min(best, time.perf_counter() - started)
    return best / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    rounds = parser.parse_args().rounds
    print(f"{'shards':>6} {'operation':<7} {'checksum us':>12} {'AES-SIV us':>11} {'ratio':>6}")
    for shards in (1, 16):
        cursor = Cursor(tuple((1_764_000_000_000 + n, n) for n in range(shards)))
        results = {}
        for mode, secret in (("checksum", None), ("siv", SECRET)):
            use_secret(secret)
            text = cursor.encode()
            results[mode] = (_per_op_us(cursor.encode, rounds),
                             _per_op_us(functools.partial(Cursor.decode, text, shards), rounds))
        for index, operation in enumerate(("seal", "open")):
            plain, keyed = results["checksum"][index], results["siv"][index]
            print(f"{shards:>6} {operation:<7} {plain:>12.2f} {keyed:>11.2f} "
                  f"{keyed / plain:>5.2f}x")
    use_secret(None)


if __name__ == "__main__":
    main()
