"""What Redis Cluster mode and the durability option cost the write path.

Run as ``.venv/bin/python -m bench.cluster_cost [--events N]`` (or
``make bench-cluster``).

On one small machine three masters share the same cores, so this is not a
scaling claim: it is the price of cluster mode (slot routing, one pipeline per
node) and of ``CALLHUB_DURABLE_REPLICAS=1`` (a marker write and a WAIT per
master per batch), each as a ratio of the plain single node, same run, same
events (the realistic mix of ``bench/ingest.py``), same publisher:

  S   one redis-server, 6 shards
  R   one redis-server with a replica, 6 shards, durable_replicas=1
  K   a 3-master Redis Cluster, 6 shards (two per master)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Sequence

from bench.harness import BenchError, LocalRedis, LocalRedisCluster, percentile
from bench.ingest import CONCURRENT_CALLS, PhaseResult, realistic_mix, run_publisher_phase
from callhub.cli.status_line import StatusLine
from callhub.connections import connect_client
from callhub.events import Event
from callhub.settings import Settings
from workers.commit.publisher import CallPublisher

SHARDS = 6
BATCH = 256


async def phase(name: str, settings: Settings, events: Sequence[Event],
                status: StatusLine) -> PhaseResult:
    client = connect_client(settings)
    try:
        await client.flushall()
        publisher = CallPublisher(client, settings)
        return await run_publisher_phase(name, publisher, events, batch=BATCH,
                                         time_limit_s=120, status=status)
    finally:
        await client.aclose()


async def replica_online(port: int, within_s: float = 30) -> None:
    """Wait until the master's replica has finished its first sync."""
    import redis.asyncio as aioredis

    async with aioredis.Redis(host="127.0.0.1", port=port) as client:
        for _ in range(int(within_s / 0.05)):
            info = await client.info("replication")
            if info.get("slave0", {}).get("state") == "online":
                return
            await asyncio.sleep(0.05)
    raise BenchError(f"the replica did not come online in {within_s:g} s")


def report(results: list[PhaseResult]) -> None:
    base = results[0]
    print(f"\n{'phase':<44}{'events':>9}{'seconds':>9}{'events/s':>11}{'p50 ms':>8}"
          f"{'p99 ms':>8}{'ratio':>7}")
    for result in results:
        p50 = percentile(result.batch_seconds, 0.5) * 1000
        p99 = percentile(result.batch_seconds, 0.99) * 1000
        ratio = result.rate / base.rate if base.rate else 0.0
        print(f"{result.name:<44}{result.events:>9,}{result.seconds:>9.2f}{result.rate:>11,.0f}"
              f"{p50:>8.2f}{p99:>8.2f}{ratio:>7.2f}")
        if result.failures:
            print(f"    not committed: {dict(result.failures)}")
    print(f"(ratio: events/s over phase S; p50/p99: one commit_many of {BATCH} events)")


async def benchmark(args: argparse.Namespace, executable: str) -> None:
    status = StatusLine(sys.stderr)
    events = realistic_mix(args.events, CONCURRENT_CALLS)
    results: list[PhaseResult] = []
    single = LocalRedis(executable)
    replica: LocalRedis | None = None
    cluster = LocalRedisCluster(executable, masters=3)
    try:
        single.start()
        results.append(await phase("S single node", Settings(
            redis_url=single.url, shards=SHARDS), events, status))
        replica = LocalRedis(executable, ["--replicaof", "127.0.0.1", str(single.port)])
        replica.start()
        await replica_online(single.port)
        results.append(await phase("R single node + replica, durable (WAIT 1)", Settings(
            redis_url=single.url, shards=SHARDS, durable_replicas=1), events, status))
        cluster.start()
        results.append(await phase("K cluster, 3 masters", Settings(
            redis_url=cluster.url, shards=SHARDS, redis_cluster=True), events, status))
    finally:
        status.clear()
        cluster.stop()
        if replica is not None:
            replica.stop()
        single.stop()
    report(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=60_000, help="events per phase (60,000)")
    args = parser.parse_args(argv)
    executable = shutil.which("redis-server")
    if executable is None or shutil.which("redis-cli") is None:
        print("bench/cluster_cost.py: redis-server and redis-cli must be on PATH", file=sys.stderr)
        return 2
    try:
        asyncio.run(benchmark(args, executable))
    except BenchError as error:
        print(f"bench/cluster_cost.py: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
