"""bench/export.py: how fast ``callhub export`` hands ended calls to a log pipeline.

One redis-server, one ``callhub serve``, N ended calls of about 30 events each
(a prompt, the caller's partials and final, a transition and a hook per turn).
Then, in the same run, alternating:

- ``callhub export --status terminated`` (each call with its summary), and with
  ``--with-transcript``;
- the peer: what a user writes without it, one request at a time with httpx —
  list the pages, then Get Call (which carries an ended call's summary) and, for
  the transcript row, ``/transcript`` per call.

Prints calls/s, wall time, the exporter's CPU and the ratio to the peer.
``make bench-export``; ``--calls`` and ``--rounds`` size it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx

from bench.harness import BenchError, LocalRedis, Server, free_port
from bench.read_api import record_call
from callhub import events as ev
from callhub.cli.status_line import StatusLine
from callhub.connections import connect
from callhub.settings import Settings
from workers.commit.publisher import CallPublisher

EVENTS_PER_CALL = 30


def _call(n: int, start: datetime) -> list[ev.Event]:
    """Call ``n``: ``record_call``'s shape, moved to ``start`` and renamed."""
    made = record_call(f"exp-{n:06}", EVENTS_PER_CALL)
    shift = start - made[0].timestamp
    return [type(e)(**{**{f: getattr(e, f) for f in e.__struct_fields__},
                       "timestamp": e.timestamp + shift, "event_id": f"exp-{n}-{e.seq}"})
            for e in made]


async def populate(url: str, calls: int) -> None:
    settings = Settings(redis_url=url, call_retention_ms=24 * 3_600_000)
    client = connect(settings)
    publisher = CallPublisher(client, settings)
    status = StatusLine(sys.stderr)
    now = datetime.now(UTC) - timedelta(minutes=4)  # plausible: minutes old, all ended
    batch = 50
    for first in range(0, calls, batch):
        events = [e for n in range(first, min(first + batch, calls))
                  for e in _call(n, now + timedelta(milliseconds=n))]
        outcomes = await publisher.commit_many(events)
        if any(not o.stored for o in outcomes):
            raise BenchError(f"a commit failed: {next(o for o in outcomes if not o.stored)}")
        status.update(f"populating: {min(first + batch, calls):,}/{calls:,} ended calls")
    status.clear()
    await client.aclose()


def run_export(url: str, with_transcript: bool) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of the exporter, lines written."""
    command = [sys.executable, "-m", "callhub.cli", "export", "--url", url,
               "--status", "terminated", "--page-size", "200"]
    if with_transcript:
        command.append("--with-transcript")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(f"callhub export failed: {done.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout.count(b"\n")


async def _naive(url: str, with_transcript: bool) -> int:
    lines = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        params = {"status": "terminated", "page_size": "200"}
        while True:
            page = (await client.get("/v1/calls", params=params)).json()
            for call in page["calls"]:
                record = (await client.get(f"/v1/calls/{call['session_id']}")).json()
                if with_transcript:
                    record["transcript"] = (await client.get(
                        f"/v1/calls/{call['session_id']}/transcript")).json()
                lines += 1
            if not page.get("next_page_token"):
                return lines
            params["page_token"] = page["next_page_token"]


def run_naive(url: str, with_transcript: bool) -> tuple[float, float, int]:
    before = time.process_time()
    started = time.perf_counter()
    lines = asyncio.run(_naive(url, with_transcript))
    return time.perf_counter() - started, time.process_time() - before, lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    args = parser.parse_args(argv)
    redis = LocalRedis("redis-server")
    redis.start()
    port = free_port()
    hub = Server("callhub serve", [sys.executable, "-m", "callhub.cli", "serve", "--port",
                                   str(port), "--host", "127.0.0.1", "--redis-url", redis.url,
                                   "--no-access-log"], port,
                 env={**os.environ, "CALLHUB_CALL_RETENTION": "24h"})
    try:
        hub.wait_ready("/healthz")
        asyncio.run(populate(redis.url, args.calls))
        rows = []
        for with_transcript in (False, True):
            runs: dict[str, list[tuple[float, float, int]]] = {"export": [], "naive": []}
            for round_ in range(args.rounds):
                print(f"round {round_ + 1}/{args.rounds}"
                      f"{' (with transcript)' if with_transcript else ''}", file=sys.stderr)
                runs["export"].append(run_export(hub.url, with_transcript))
                runs["naive"].append(run_naive(hub.url, with_transcript))
            for name, measured in runs.items():
                if any(lines != args.calls for _, _, lines in measured):
                    raise BenchError(f"{name} exported {[m[2] for m in measured]} calls, "
                                     f"not {args.calls}")
            rows.append((with_transcript, {name: (statistics.median(m[0] for m in measured),
                                                  statistics.median(m[1] for m in measured))
                                           for name, measured in runs.items()}))
    finally:
        hub.stop()
        redis.stop()
    load = os.getloadavg()[0]
    print(f"\nExport of {args.calls:,} ended calls ({EVENTS_PER_CALL} events each), "
          f"median of {args.rounds}; load average {load:.1f}\n")
    print("| what | client | calls/s | wall s | client CPU s | vs peer |")
    print("|---|---|---|---|---|---|")
    for with_transcript, medians in rows:
        what = "summary + transcript" if with_transcript else "summary"
        peer = args.calls / medians["naive"][0]
        for name, label in (("export", "callhub export"), ("naive", "httpx, one at a time")):
            wall, cpu = medians[name]
            rate = args.calls / wall
            print(f"| {what} | {label} | {rate:,.0f} | {wall:.2f} | {cpu:.2f} | "
                  f"x {rate / peer:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
