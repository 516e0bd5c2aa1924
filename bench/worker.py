"""Worker benchmark: how many events/s does one simulated worker process sustain?

Run as ``.venv/bin/python -m bench.worker [--calls N] [--speed F]`` (or
``make bench-worker``).

Two phases on one private ``redis-server`` (127.0.0.1, free port, no persistence):

W. ``callhub worker --simulate`` as its own process, the bundled dialogs, as
   many calls at once as the rate allows, simulated time running ``--speed``
   times faster than real time, so the worker is CPU-bound: dialog runtime,
   caller scripts, hooks (the simulated back end), leases, reaper, publisher.
   Events/s = events stored / the worker's wall time.
P. The peer, in the same run: the very events phase W stored (read back from
   the shard log), committed again into an empty database by one bare
   ``CallPublisher`` in batches of 256, in the same order. That is the
   ceiling of a worker that does nothing but commit, so W / P is the share of
   the publisher's speed the dialog runtime keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import cast

import redis.asyncio as aioredis

from bench.harness import BenchError, LocalRedis
from callhub.connections import describe
from callhub.events import AnyEvent, decode_event
from callhub.settings import Settings
from workers.commit.publisher import CallPublisher

BATCH = 256


def run_worker(url: str, calls: int, speed: float, rate: float) -> tuple[int, int, float]:
    """Phase W: (calls, events, seconds) of one ``callhub worker --simulate`` run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "callhub.cli", "worker", "--simulate", "--redis-url", url,
         "--calls", str(calls), "--rate", f"{rate:g}", "--speed", f"{speed:g}", "--seed", "1"],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"the worker failed ({done.returncode}): {done.stderr[-2000:]}")
    found = re.search(r"(\d+) calls, (\d+) events", done.stdout)
    if not found:
        raise BenchError(f"no summary in the worker's output: {done.stdout!r}")
    return int(found.group(1)), int(found.group(2)), seconds


async def stored_events(client: aioredis.Redis, settings: Settings) -> list[AnyEvent]:
    events: list[AnyEvent] = []
    for shard in range(settings.shards):
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]],
                       await client.xrange(settings.keyspace.log(shard)))
        events.extend(decode_event(fields[b"data"]) for _, fields in entries)
    return events


async def republish(client: aioredis.Redis, settings: Settings,
                    events: Sequence[AnyEvent]) -> float:
    """Phase P: commit ``events`` again with a bare publisher; seconds taken."""
    publisher = CallPublisher(client, settings)
    started = time.perf_counter()
    for start in range(0, len(events), BATCH):
        outcomes = await publisher.commit_many(events[start:start + BATCH])
        refused = [o for o in outcomes if o.status != "committed"]
        if refused:
            raise BenchError(f"the peer could not commit: {refused[0]}")
    return time.perf_counter() - started


async def benchmark(url: str, args: argparse.Namespace) -> None:
    settings = Settings(redis_url=url)
    print(f"phase W: callhub worker --simulate, {args.calls:,} calls ...", file=sys.stderr)
    calls, events, worker_s = run_worker(url, args.calls, args.speed, args.rate)
    client = aioredis.Redis.from_url(url)
    try:
        stored = await stored_events(client, settings)
        if len(stored) != events:
            raise BenchError(f"the worker reported {events} events, the log holds {len(stored)}")
        await client.flushall()
        print(f"phase P: CallPublisher, the same {events:,} events ...", file=sys.stderr)
        peer_s = await republish(client, settings, stored)
    finally:
        await client.aclose()
    worker_rate, peer_rate = events / worker_s, events / peer_s
    print(f"\none simulated worker process vs a bare publisher, same events, same run "
          f"({os.cpu_count()} CPUs)")
    print(f"{'phase':<40}{'calls':>8}{'events':>10}{'seconds':>9}{'events/s':>11}")
    print(f"{'W callhub worker --simulate':<40}{calls:>8,}{events:>10,}{worker_s:>9.2f}"
          f"{worker_rate:>11,.0f}")
    print(f"{'P CallPublisher.commit_many (256)':<40}{calls:>8,}{events:>10,}{peer_s:>9.2f}"
          f"{peer_rate:>11,.0f}")
    print(f"ratio W / P: {worker_rate / peer_rate:.2f}   "
          f"({events / calls:.1f} events per call; W includes process start-up)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="calls in phase W (2000)")
    parser.add_argument("--speed", type=float, default=1000.0,
                        help="simulated time factor (1000: the worker is CPU-bound)")
    parser.add_argument("--rate", type=float, default=500.0, help="new calls per second (500)")
    args = parser.parse_args(argv)
    executable = shutil.which("redis-server")
    if executable is None:
        print("bench/worker.py: redis-server is not on PATH", file=sys.stderr)
        return 2
    server = LocalRedis(executable)
    try:
        server.start()
        print(f"Redis: {describe(server.url)}", file=sys.stderr)
        asyncio.run(benchmark(server.url, args))
    except BenchError as error:
        print(f"bench/worker.py: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
