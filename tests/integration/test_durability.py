"""Durability: with ``CALLHUB_DURABLE_REPLICAS`` a commit is acknowledged only
once replicas have it (WAIT), so a failover loses no acknowledged commit.
Real redis-servers: a master with a replica, and a 3-master cluster with one
replica each whose master is SIGKILLed while events flow, with a hub whose
readers and subscribers must carry on after the failover."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import msgspec
import pytest
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from callhub.connections import connect_client
from callhub.settings import Settings
from tests.support.hubs import serving
from tests.support.polling import async_wait_until, wait_until
from tests.support.redis_servers import RedisServer, start_redis_cluster, start_redis_server
from tests.support.sse import EventStreamReader, subscribe
from tests.support.strategies import call_started, dtmf
from workers.commit.publisher import CallPublisher, PublisherUnavailable


@pytest.fixture
def master_and_replica(redis_server: RedisServer) -> Iterator[tuple[RedisServer, RedisServer]]:
    master = start_redis_server()
    replica = start_redis_server(None, "--replicaof", "127.0.0.1", str(master.port))
    with master.client() as client:
        wait_until(lambda: client.info("replication").get("slave0", {}).get("state") == "online",
                 what="the replica to finish its first sync")
    yield master, replica
    replica.stop()
    master.stop()


async def test_a_durable_commit_is_on_the_replica_when_acknowledged(
    master_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = master_and_replica
    settings = Settings(redis_url=master.url, durable_replicas=1)
    client = connect_client(settings)
    try:
        outcomes = await CallPublisher(client, settings).commit_many(
            [call_started(f"c-{n}") for n in range(50)])
        assert {o.status for o in outcomes} == {"committed"}
        with replica.client() as on_replica:  # no waiting: WAIT already did
            assert on_replica.xlen(settings.keyspace.log(0)) == 50
    finally:
        await client.aclose()


async def test_without_enough_replicas_a_durable_commit_is_not_acknowledged(
    redis_url: str,
) -> None:
    settings = Settings(redis_url=redis_url, durable_replicas=1, durable_timeout_ms=50)
    client = connect_client(settings)
    try:
        publisher = CallPublisher(client, settings, retry_for_s=0.3)
        with pytest.raises(PublisherUnavailable, match="replica"):
            await publisher.commit(call_started("c-1"))
        # The retry after a replica appears is safe: the commit is idempotent.
        relaxed = CallPublisher(client, Settings(redis_url=redis_url))
        assert (await relaxed.commit(call_started("c-1"))).status == "duplicate"
    finally:
        await client.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("durable", [1, 0], ids=["durable", "not-durable"])
async def test_a_master_killed_while_events_flow_loses_no_acknowledged_commit(
    durable: int,
) -> None:
    cluster = start_redis_cluster(masters=3, replicas=1)
    settings = Settings(redis_url=cluster.url, redis_cluster=True, shards=6,
                        durable_replicas=durable, durable_timeout_ms=500)
    client = connect_client(settings)
    acknowledged: dict[str, int] = {}  # session -> highest seq acknowledged
    in_flight = 0
    stop = asyncio.Event()

    async def commit_forever() -> None:
        nonlocal in_flight
        publisher = CallPublisher(client, settings, retry_for_s=30)
        number = 0
        while not stop.is_set():
            batch = []
            for _ in range(20):
                number += 1
                sid = f"c-{number % 60}-{number // 60 // 10}"
                seq = acknowledged.get(sid, 0) + 1
                batch.append(call_started(sid) if seq == 1 else dtmf(sid, seq))
            in_flight = len(batch)
            outcomes = await publisher.commit_many(batch)
            in_flight = 0
            for outcome in outcomes:
                if outcome.stored:
                    acknowledged[outcome.event.session_id] = outcome.event.seq

    try:
        async with serving(settings) as live, \
                subscribe(f"{live.url}/v1/calls/events") as stays, \
                subscribe(f"{live.url}/v1/calls/events") as leaves:
            task = asyncio.create_task(commit_forever())
            await async_wait_until(lambda: sum(acknowledged.values()) > 500,
                                   what="commits to flow", timeout=15, interval=0.05)
            with RedisCluster.from_url(cluster.url) as sync:
                victim_port = sync.get_node_from_key(settings.keyspace.log(0)).port
            victim = next(i for i, s in enumerate(cluster.servers) if s.port == victim_port)
            survivor = next(s.url for s in cluster.servers if s.port != victim_port)
            before_kill = sum(acknowledged.values())
            in_flight_at_kill = in_flight
            os.kill(cluster.servers[victim].process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            cluster.servers[victim].process.wait()
            # One subscriber goes away at the kill and resumes after the failover.
            await leaves.response.aclose()
            cursor = leaves.last_id  # after the close: no frame arrives past it
            # The replica takes over; the old master comes back as its replica (so
            # a durable publisher has a replica to WAIT for again).
            await async_wait_until(lambda: promoted(survivor, victim_port), in_thread=True,
                                   what="a replica to take over", timeout=30, interval=0.05)
            failover_s = time.monotonic() - killed_at
            seen_at_failover = len(stays.events)
            await asyncio.to_thread(cluster.restart, victim)
            await async_wait_until(lambda: len(stays.events) > seen_at_failover,
                                   what="a delivery after the failover", timeout=30,
                                   interval=0.05)
            first_delivery_s = time.monotonic() - killed_at - failover_s
            await async_wait_until(lambda: sum(acknowledged.values()) > before_kill + 200,
                                   what="commits to resume after the failover", timeout=30,
                                   interval=0.05)
            stop.set()
            await asyncio.wait_for(task, 30)
            assert cursor is not None
            async with subscribe(f"{live.url}/v1/calls/events",
                                 headers={"Last-Event-ID": cursor}) as resumed:
                # Both subscribers end with every call's last acknowledged event:
                # the hub's shard readers found the new master.
                for name, readers in (("stayed", [stays]), ("resumed", [leaves, resumed])):
                    await async_wait_until(
                        lambda r=readers: has_all_last(r, acknowledged),  # type: ignore[misc]
                        what=f"the subscriber that {name} to get the events after the failover",
                        timeout=30, interval=0.05)
                received = seqs(leaves, resumed)
                stayed = seqs(stays)

        lost = 0
        async with AsyncRedisCluster.from_url(cluster.url) as check:
            for sid, seq in acknowledged.items():
                stored = await check.hget(settings.keyspace.call(sid), "seq")
                lost += max(0, seq - int(stored or 0))
        wanted = {(sid, n) for sid, seq in acknowledged.items() for n in range(1, seq + 1)}
        missed = {name: len(wanted - set(got)) for name, got in
                  (("stayed", stayed), ("resumed", received))}
        repeated = {name: len(got) - len(set(got)) for name, got in
                    (("stayed", stayed), ("resumed", received))}
        print(f"\nfailover ({'durable' if durable else 'not durable'}): "
              f"{sum(acknowledged.values())} commits acknowledged, {in_flight_at_kill} events in "
              f"flight at the kill, failover took {failover_s:.1f} s, first delivery "
              f"{first_delivery_s:.1f} s after it, "
              f"lost acknowledged commits: {lost}; subscribers (connected throughout / "
              f"resumed by Last-Event-ID): acknowledged events missed {missed['stayed']} / "
              f"{missed['resumed']}, delivered twice {repeated['stayed']} / "
              f"{repeated['resumed']}")
        if durable:
            assert lost == 0
            assert missed == {"stayed": 0, "resumed": 0}
    finally:
        stop.set()
        await client.aclose()
        cluster.stop()


def seqs(*readers: EventStreamReader) -> list[tuple[str, int]]:
    """(session, seq) of every event a subscriber received, in arrival order
    (over its successive connections)."""
    return [(event.session_id, event.seq) for reader in readers for event in
            (msgspec.json.decode(f.data or b"{}", type=Delivered) for f in reader.events)]


def has_all_last(readers: list[EventStreamReader], acknowledged: dict[str, int]) -> bool:
    got = set(seqs(*readers))
    return all((sid, seq) in got for sid, seq in acknowledged.items())


class Delivered(msgspec.Struct):
    session_id: str
    seq: int


def promoted(url: str, dead_port: int) -> bool:
    """Every slot is served again, and not by the dead node."""
    with RedisCluster.from_url(url) as client:
        info = client.cluster_info()
        masters = {node.port for node in client.get_primaries()}
        return bool(info["cluster_state"] == "ok" and dead_port not in masters)

