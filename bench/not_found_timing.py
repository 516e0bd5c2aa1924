"""Existence oracle benchmark: does a dialog-scoped key's 404 for another dialog's
call cost what its 404 for an id that does not exist costs?

Run as ``.venv/bin/python -m bench.not_found_timing [--samples N] [--rounds R]``.

A private redis-server holds one ended 200-event call of dialog ``helpdesk``
(the realistic mix of bench/read_api.py: prompts, partials, finals, hooks,
variables), committed by the real publisher. One ``callhub serve`` process
with a keys file whose only key sees dialog ``billing`` answers, over one
keep-alive connection, Get Call and the call's events, transcript and summary,
each for that foreign call and for an unknown id of the same length (the peer,
in the same run): both must be a 404 with the same body length. A second
table prices the check: the same call's 200s for a key scoped to its dialog
against a key that sees every dialog (a scoped key reads the call's dialog
first, one round trip more).

Method: the 404s and the 200s are measured in separate phases (a 200 costs
four 404s and leaves garbage that a following request would pay for), after a
warm-up. Within a phase the two requests compared are sent as a pair, back to
back in a random order, the routes shuffled each pass, with the client's own
garbage collector off during a round: drift (other load on the machine) falls
on both of a pair alike. Printed per route: the medians of all samples and
their ratio (foreign/unknown: target within 2%, 0.98-1.02), the ratio's range
over the rounds, and the median of the pairs' own ratios (the estimate least
moved by drift).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import BenchError, LocalRedis, Server, free_port
from bench.read_api import RECORD_CALL, record_call
from callhub.connections import connect
from callhub.settings import Settings
from hub.api.auth import hash_key
from workers.commit.publisher import CallPublisher

KEYS = {"billing": "bench-billing-key", "helpdesk": "bench-helpdesk-key",
        "every dialog": "bench-unscoped-key"}
SECRET = "bench-not-found-timing-secret-0123456789"  # keys on: the hub requires one
ROUTES = ("", "/events", "/transcript", "/summary")
# (kind, key, which call): the two 404s compared, and the call's own 200s for a
# scoped key and for one that sees every dialog (what the check first costs).
KINDS = (("foreign", "billing", "call"), ("unknown", "billing", "unknown"),
         ("own, scoped", "helpdesk", "call"), ("own, unscoped", "every dialog", "call"))


async def commit_foreign_call(url: str) -> None:
    settings = Settings(redis_url=url)
    client = connect(settings)
    outcomes = await CallPublisher(client, settings).commit_many(record_call())
    await client.aclose()
    if any(o.status != "committed" for o in outcomes):
        raise BenchError("the foreign call did not commit")


class KeepAlive:
    """One HTTP/1.1 connection, requests written and answers read by hand: the
    client's own cost is small and the same for every request."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def get(self, request: bytes) -> tuple[int, bytes, int]:
        """Send ``request``; its status, body and the nanoseconds to the last byte."""
        started = time.perf_counter_ns()
        self._sock.sendall(request)
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._receive()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:]
                      if line.lower().startswith(b"content-length:"))
        while len(self._buffer) < length:
            self._buffer += self._receive()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(lines[0].split()[1]), body, time.perf_counter_ns() - started

    def _receive(self) -> bytes:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise BenchError("the hub closed the connection")
        return chunk

    def close(self) -> None:
        self._sock.close()


def request(path: str, key: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n\r\n").encode()


def measure(port: int, samples: int, rounds: int, warmup: int
            ) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], list[float]],
                       dict[tuple[str, str], list[float]]]:
    """Microseconds per (route, kind); per (route, kind over), the per-round
    ratios of the medians and the ratio of every pair."""
    ids = {"call": RECORD_CALL, "unknown": "x" * len(RECORD_CALL)}
    kinds = {kind: (key, which) for kind, key, which in KINDS}
    targets = {(route, kind): request(f"/v1/calls/{ids[which]}{route}", KEYS[key])
               for route in ROUTES for kind, (key, which) in kinds.items()}
    client = KeepAlive(port)
    times: dict[tuple[str, str], list[float]] = {t: [] for t in targets}
    ratios: dict[tuple[str, str], list[float]] = {}
    pairs: dict[tuple[str, str], list[float]] = {}
    try:
        for route in ROUTES:  # the two 404s are the same but for the id
            answers = [client.get(targets[(route, kind)])[:2] for kind in ("foreign", "unknown")]
            if [status for status, _ in answers] != [404, 404] or \
                    len({len(body) for _, body in answers}) != 1:
                raise BenchError(f"{route}: not two 404s of one length: {answers}")
            for kind in ("own, scoped", "own, unscoped"):
                status, body, _ = client.get(targets[(route, kind)])
                if status != 200:
                    raise BenchError(f"{route} ({kind}): {status} {body[:200]!r}")
        # The 404s and the 200s are measured apart (a 200 costs four 404s and
        # leaves garbage behind it), each as pairs: the two requests compared are
        # sent back to back, in a random order, so drift falls on both alike.
        for (over, under), count in ((("foreign", "unknown"), samples),
                                     (("own, scoped", "own, unscoped"), samples // 5)):
            routes = list(ROUTES)
            for _ in range(warmup):
                for route in routes:
                    client.get(targets[(route, over)])
                    client.get(targets[(route, under)])
            for _ in range(rounds):
                by_route: dict[str, dict[str, list[float]]] = {
                    route: {over: [], under: []} for route in ROUTES}
                gc.collect()
                gc.disable()  # the client's own collections would fall on one of a pair
                try:
                    for _ in range(count // rounds):
                        random.shuffle(routes)
                        for route in routes:
                            pair = [over, under] if random.random() < 0.5 else [under, over]
                            took = {kind: client.get(targets[(route, kind)])[2] / 1000
                                    for kind in pair}
                            for kind in pair:
                                by_route[route][kind].append(took[kind])
                            pairs.setdefault((route, over), []).append(took[over] / took[under])
                finally:
                    gc.enable()
                for route, values in by_route.items():
                    for kind in (over, under):
                        times[(route, kind)] += values[kind]
                    ratios.setdefault((route, over), []).append(
                        statistics.median(values[over]) / statistics.median(values[under]))
    finally:
        client.close()
    return times, ratios, pairs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=5000,
                        help="404s per route and kind (a fifth as many 200s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args(argv)
    if args.samples < 5 * args.rounds:
        parser.error("--samples must be at least five times --rounds")
    local = LocalRedis(shutil.which("redis-server") or "redis-server")
    scratch = tempfile.TemporaryDirectory(prefix="callhub-bench-404-")
    keys = Path(scratch.name) / "keys.toml"
    keys.write_text("".join(
        f'[[keys]]\nname = "{name}"\nsha256 = "{hash_key(key)}"\n'
        + (f'dialogs = ["{name}"]\n' if name != "every dialog" else "")
        for name, key in KEYS.items()))
    hub: Server | None = None
    try:
        local.start()
        asyncio.run(commit_foreign_call(local.url))
        port = free_port()
        hub = Server("callhub serve", [sys.executable, "-m", "callhub.cli", "serve", "--port",
                                       str(port), "--redis-url", local.url, "--no-access-log"],
                     port, env={"PATH": "/usr/bin:/bin", "CALLHUB_API_KEYS_FILE": str(keys),
                                "CALLHUB_SECRET": SECRET})
        hub.wait_ready("/healthz")
        times, ratios, pairs = measure(port, args.samples, args.rounds, args.warmup)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    finally:
        if hub is not None:
            hub.stop()
        local.stop()
        scratch.cleanup()
    print(f"one connection, median µs of {args.samples} 404s (and {args.samples // 5} 200s) "
          f"per route and kind, sent in pairs; the ratio of the medians, its range over the "
          f"{args.rounds} rounds, and the median of the {args.samples} pairs' own ratios")
    print("404s of a key scoped to dialog billing: a helpdesk call against an unknown id "
          "(target ratio 0.98-1.02)")
    print(f"{'route':<32}{'foreign':>9}{'unknown':>9}{'ratio':>8}{'rounds':>15}{'pairs':>8}")
    _rows(times, ratios, pairs, "foreign", "unknown")
    print("the helpdesk call's 200s: a key scoped to helpdesk against one that sees every "
          "dialog (the price of checking the scope first)")
    print(f"{'route':<32}{'scoped':>9}{'unscoped':>9}{'ratio':>8}{'rounds':>15}{'pairs':>8}")
    _rows(times, ratios, pairs, "own, scoped", "own, unscoped")
    return 0


def _rows(times: dict[tuple[str, str], list[float]], ratios: dict[tuple[str, str], list[float]],
          pairs: dict[tuple[str, str], list[float]], over: str, under: str) -> None:
    for route in ROUTES:
        a, b = statistics.median(times[(route, over)]), statistics.median(times[(route, under)])
        spread = ratios[(route, over)]
        print(f"{'GET /v1/calls/{id}' + route:<32}{a:>9.1f}{b:>9.1f}{a / b:>8.3f}"
              f"{min(spread):>8.3f}-{max(spread):.3f}"
              f"{statistics.median(pairs[(route, over)]):>8.3f}")


if __name__ == "__main__":
    sys.exit(main())
