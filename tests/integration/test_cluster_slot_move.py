"""A shard's slot moves to another master while events flow (resharding).

Real 3-master Redis Cluster; the slot of shard 0 is migrated by hand the way
``redis-cli --cluster reshard`` does it (IMPORTING / MIGRATING, MIGRATE of
every key, SETSLOT NODE), with commits going on throughout. Commits in the
middle meet ASK and TRYAGAIN, commits after it meet MOVED from a stale slot
map; the hub's reader of shard 0 loses its key to the move. Nothing may be
rejected, lost, duplicated or reordered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from callhub.connections import connect_client
from callhub.settings import Settings
from tests.support.hubs import serving
from tests.support.polling import async_wait_until
from tests.support.redis_servers import RedisClusterNodes, start_redis_cluster
from tests.support.sse import subscribe
from tests.support.strategies import call_started, dtmf
from workers.commit.publisher import CallPublisher


@pytest.fixture
def cluster() -> Iterator[RedisClusterNodes]:
    nodes = start_redis_cluster(masters=3)  # its own: this test moves slots
    yield nodes
    nodes.stop()


class Delivered(msgspec.Struct):
    session_id: str
    seq: int


def move_slot(cluster: RedisClusterNodes, slot: int) -> tuple[int, int]:
    """Migrate ``slot`` to another master, a few keys at a time with pauses for
    commits to land mid-way; (from port, to port)."""
    with RedisCluster.from_url(cluster.url) as client:
        source = client.nodes_manager.get_node_from_slot(slot)
        target = next(n for n in client.get_primaries() if n.port != source.port)
        masters = [n.port for n in client.get_primaries()]
    with redis.Redis(port=source.port) as src, redis.Redis(port=target.port) as dst:
        source_id, target_id = src.cluster("MYID"), dst.cluster("MYID")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 3):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS",
                                *keys)
            time.sleep(0.02)
        for port in masters:
            with redis.Redis(port=port) as node:
                node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return source.port, target.port


async def test_a_slot_moving_mid_stream_loses_nothing(cluster: RedisClusterNodes) -> None:
    settings = Settings(redis_url=cluster.url, redis_cluster=True, shards=2,
                        ping_interval_ms=200)
    keys = settings.keyspace
    sessions = [f"call-{n}" for n in range(40)]
    moved = [sid for sid in sessions if keys.shard_of(sid) == 0]
    assert moved and len(moved) < len(sessions)
    client = connect_client(settings)
    publisher = CallPublisher(client, settings, retry_for_s=30)
    committed: dict[str, int] = {}
    rejected: list[object] = []
    rounds = 0
    stop = asyncio.Event()

    async def commit_rounds() -> None:
        nonlocal rounds
        seq = 0
        while not stop.is_set():
            seq += 1
            batch = [call_started(sid) if seq == 1 else dtmf(sid, seq) for sid in sessions]
            for outcome in await publisher.commit_many(batch):
                if outcome.status in ("committed", "duplicate"):
                    committed[outcome.event.session_id] = outcome.event.seq
                else:
                    rejected.append(outcome)
            rounds += 1
            await asyncio.sleep(0.01)

    try:
        async with serving(settings) as live, \
                subscribe(f"{live.url}/v1/calls/events") as reader:
            task = asyncio.create_task(commit_rounds())
            await async_wait_until(lambda: min(committed.values(), default=0) >= 3,
                                   what="commits to flow", timeout=20)
            rounds_before = rounds
            source, target = await asyncio.to_thread(move_slot, cluster,
                                                     key_slot(keys.log(0).encode()))
            rounds_during = rounds - rounds_before
            at_move = dict(committed)
            await async_wait_until(
                lambda: all(committed[sid] >= at_move[sid] + 3 for sid in sessions),
                what="commits to go on after the move", timeout=30)
            stop.set()
            await asyncio.wait_for(task, 30)
            final = dict(committed)

            def got() -> list[tuple[str, int]]:
                return [(d.session_id, d.seq) for d in (
                    msgspec.json.decode(f.data or b"", type=Delivered) for f in reader.events)]

            await async_wait_until(
                lambda: all((sid, seq) in set(got()) for sid, seq in final.items()),
                what="the subscriber to get every commit", timeout=30)
            received = got()
            async with httpx.AsyncClient(base_url=live.url) as api:
                call = (await api.get(f"/v1/calls/{moved[0]}")).json()
                metrics = (await api.get("/metrics")).text
        reconnects = next(line for line in metrics.splitlines()
                          if line.startswith('callhub_shard_reader_reconnects_total{shard="0"}'))
        print(f"\nslot move: {rounds_during} commit rounds during the migration, publisher "
              f"retries {publisher.retries}, shard 0 reader: {reconnects}")
        assert rejected == []
        assert source != target
        assert float(reconnects.split()[-1]) >= 1  # the reader followed its slot
        with RedisCluster.from_url(cluster.url) as check:
            assert check.get_node_from_key(keys.log(0)).port == target
        # Every committed event once, each call's in seq order.
        assert sorted(received) == sorted({(sid, n) for sid, last in final.items()
                                           for n in range(1, last + 1)})
        for sid in sessions:
            assert [seq for s, seq in received if s == sid] == list(range(1, final[sid] + 1))
        assert call["session_id"] == moved[0] and call["status"] == "active"
    finally:
        stop.set()
        await client.aclose()
