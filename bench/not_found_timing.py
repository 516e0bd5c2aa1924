"""Existence oracle benchmark: does a dialog-scoped key's 404 for another dialog's
call cost what its 404 for an id that does not exist costs?

Run as ``.venv/bin/python -m bench.not_found_timing [--samples N] [--rounds R]``.

A private redis-server holds one ended 200-event call of dialog ``helpdesk``
(the realistic mix of bench/read_api.py: prompts, partials, finals, hooks,
variables), committed by the real publisher. One ``callhub serve`` process
with a keys file whose only key sees dialog ``billing`` answers, over one
keep-alive connection, Get Call and the call's events, transcript and summary,
each for that foreign call and for an unknown id of the same length (the peer,
in the same run): both must be a 404 with the same body length. Requests
alternate between the two, in a shuffled order each pass, so drift (other load
on the machine) falls on both alike; the medians of all samples and their
ratio (foreign/unknown; target within 2%, i.e. 0.98-1.02) are printed per
route, with the round-to-round spread of the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
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

KEY = "bench-billing-key"
ROUTES = ("", "/events", "/transcript", "/summary")


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


def request(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n\r\n").encode()


def measure(port: int, samples: int, rounds: int, warmup: int
            ) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """Per route: (foreign µs, unknown µs, per-round median ratios)."""
    unknown_id = "x" * len(RECORD_CALL)
    targets = {(route, kind): request(f"/v1/calls/{sid}{route}")
               for route in ROUTES for kind, sid in (("foreign", RECORD_CALL),
                                                     ("unknown", unknown_id))}
    client = KeepAlive(port)
    shuffled = list(targets)
    times: dict[tuple[str, str], list[float]] = {t: [] for t in targets}
    ratios: dict[str, list[float]] = {route: [] for route in ROUTES}
    try:
        for target in targets:  # both answers are the same 404 but for the id
            status, body, _ = client.get(targets[target])
            if status != 404:
                raise BenchError(f"{target}: {status} {body[:200]!r}, not a 404")
        lengths = {route: {len(client.get(targets[(route, k)])[1]) for k in
                           ("foreign", "unknown")} for route in ROUTES}
        if any(len(sizes) != 1 for sizes in lengths.values()):
            raise BenchError(f"the two 404 bodies differ in length: {lengths}")
        for _ in range(warmup):
            for target in shuffled:
                client.get(targets[target])
        for _ in range(rounds):
            this_round: dict[tuple[str, str], list[float]] = {t: [] for t in targets}
            for _ in range(samples // rounds):
                random.shuffle(shuffled)
                for target in shuffled:
                    this_round[target].append(client.get(targets[target])[2] / 1000)
            for target, values in this_round.items():
                times[target] += values
            for route in ROUTES:
                ratios[route].append(statistics.median(this_round[(route, "foreign")])
                                     / statistics.median(this_round[(route, "unknown")]))
    finally:
        client.close()
    return {route: (times[(route, "foreign")], times[(route, "unknown")], ratios[route])
            for route in ROUTES}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=5000, help="requests per route and kind")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args(argv)
    local = LocalRedis(shutil.which("redis-server") or "redis-server")
    scratch = tempfile.TemporaryDirectory(prefix="callhub-bench-404-")
    keys = Path(scratch.name) / "keys.toml"
    keys.write_text(f'[[keys]]\nname = "billing"\nsha256 = "{hash_key(KEY)}"\n'
                    'dialogs = ["billing"]\n')
    hub: Server | None = None
    try:
        local.start()
        asyncio.run(commit_foreign_call(local.url))
        port = free_port()
        hub = Server("callhub serve", [sys.executable, "-m", "callhub.cli", "serve", "--port",
                                       str(port), "--redis-url", local.url, "--no-access-log"],
                     port, env={"PATH": "/usr/bin:/bin", "CALLHUB_API_KEYS_FILE": str(keys)})
        hub.wait_ready("/healthz")
        results = measure(port, args.samples, args.rounds, args.warmup)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    finally:
        if hub is not None:
            hub.stop()
        local.stop()
        scratch.cleanup()
    print(f"404 of a foreign call vs an unknown id, dialog-scoped key, one connection, "
          f"{args.samples} requests each, median µs (target ratio 0.98-1.02)")
    print(f"{'route':<34}{'foreign':>10}{'unknown':>10}{'ratio':>8}{'rounds':>16}")
    for route, (foreign, unknown, ratios) in results.items():
        ratio = statistics.median(foreign) / statistics.median(unknown)
        print(f"{'GET /v1/calls/{id}' + route:<34}{statistics.median(foreign):>10.1f}"
              f"{statistics.median(unknown):>10.1f}{ratio:>8.3f}"
              f"{min(ratios):>8.3f}-{max(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
