"""Webhook delivery under faults and changes: Redis restarted mid-delivery, a
forwarder SIGKILLed while events flow (a single redis-server and a Redis
Cluster), a subscription edited while it delivers, a receiver that stops
answering (backpressure), CloudEvents headers, and ``callhub forward
--metrics-port``. Real redis-servers, real receivers on loopback (verifying
every signature with ``standardwebhooks``), real ``callhub forward`` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from callhub import events as ev
from callhub.settings import Settings
from callhub.signing import new_secret
from tests.support.forwarding import (
    assert_duplicates_only_above,
    assert_one_id_per_event,
    call,
    cursors_past,
    event_position,
    forward_process,
    forwarder_started,
    holder_of,
    in_order_per_call,
    interleaved,
    stored_cursors,
)
from tests.support.polling import async_wait_until, wait_until
from tests.support.processes import stop_process
from tests.support.receiver import receiving
from tests.support.redis_servers import RedisServer, engine_env
from tests.support.subscriptions import store_subscription
from workers.commit.publisher import CallPublisher

SECRET = new_secret()


@contextlib.asynccontextmanager
async def publishing(publisher: CallPublisher, events: Sequence[ev.Event],
                     pace_s: float = 0.01) -> AsyncIterator[asyncio.Task[None]]:
    """Commit ``events`` one by one, ``pace_s`` apart, in the background: events
    that keep flowing while the test does something to the forwarders."""

    async def flow() -> None:
        for event in events:
            await publisher.commit(event)
            await asyncio.sleep(pace_s)

    task = asyncio.create_task(flow())
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- Redis restarted mid-delivery ----------------------------------------------------


async def test_a_redis_restart_mid_delivery_loses_nothing_and_the_forwarder_resumes(
    durable_redis: RedisServer, callhub_env: dict[str, str],
) -> None:
    shards, calls = 2, 6
    settings = Settings(redis_url=durable_redis.url, shards=shards)
    keys = settings.keyspace
    # The default lease (10 s): a delivery that stopped on the outage would
    # wait that long for its own lease to run out before resuming.
    env = {**callhub_env, "CALLHUB_REDIS_URL": durable_redis.url,
           "CALLHUB_SHARDS": str(shards)}
    events = [call(f"restart-{n}", 6) for n in range(calls)]
    # Each batch: two more events of every call.
    batches = [interleaved([c[b:b + 2] for c in events]) for b in (0, 2, 4)]
    sync = durable_redis.client()
    aredis = aioredis.Redis.from_url(durable_redis.url)
    publisher = CallPublisher(aredis, settings, retry_for_s=20)
    with receiving(SECRET) as receiver:
        subscription = store_subscription(sync, receiver.url, keyspace=keys, secret=SECRET)
        leases = [keys.webhook_lease(s, subscription.id) for s in range(shards)]
        forwarder, log = forward_process(env)
        try:
            wait_until(lambda: all(sync.get(k) for k in leases), timeout=20,
                       what="the forwarder to hold every lease")
            await publisher.commit_many(batches[0])
            await async_wait_until(lambda: len(receiver.delivered()) == 2 * calls,
                                   what="the first batch delivered")
            # The receiver stops answering: every call's next event is in flight.
            receiver.hold()
            await publisher.commit_many(batches[1])
            await async_wait_until(lambda: len(receiver.waiting()) == calls,
                                   what="one event of every call in flight")
            held = {r.webhook_id for r in receiver.waiting()}
            # Everything answered is recorded done before Redis goes.
            cursors = await async_wait_until(
                lambda: cursors_past(sync, keys, subscription.id, shards, receiver.delivered()),
                what="the cursors stored past the first batch")

            durable_redis.stop()  # a clean shutdown: the AOF has every write
            # Answered while Redis is down: the forwarder cannot record them done
            # (nor journal them) until it is back; the events it had read go on.
            receiver.release()
            await async_wait_until(lambda: held <= {r.webhook_id for r in receiver.delivered()},
                                   what="the requests in flight answered")
            await async_wait_until(
                lambda: "reading the log failed" in Path(log).read_text(errors="replace"),
                what="the forwarder to notice Redis is gone")
            await asyncio.to_thread(durable_redis.restart)

            await publisher.commit_many(batches[2])
            await async_wait_until(
                lambda: len({r.webhook_id for r in receiver.delivered()}) == 6 * calls,
                timeout=8, what="every event delivered soon after the restart")
            assert forwarder.poll() is None, "the forwarder exited on a Redis restart"
            # Delivery carried on through the outage: no (subscription, shard) stopped.
            assert "delivering failed" not in Path(log).read_text(errors="replace")
            assert {sync.get(k) for k in leases} == {holder_of(log).encode()}
            os.kill(forwarder.pid, signal.SIGTERM)
            assert forwarder.wait(timeout=10) == 0
        finally:
            stop_process(forwarder)
            sync.close()
            await aredis.aclose()
        assert receiver.bad_signatures == []
        received = receiver.all()
        assert in_order_per_call(received) == {f"restart-{n}": [1, 2, 3, 4, 5, 6]
                                               for n in range(calls)}
        assert_one_id_per_event(received)
        again = assert_duplicates_only_above(received, subscription.id, cursors)
        # Redelivered: only what was in flight when Redis went away.
        assert {r.webhook_id for r in again} <= held


# -- a forwarder SIGKILLed while events flow -------------------------------------------


@pytest.mark.both_engines
async def test_two_forwarders_one_sigkilled_mid_flight_lose_nothing_and_redeliver_only_in_flight(
    redis_url: str, settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
    callhub_env: dict[str, str],
) -> None:
    shards, calls, per_call = 4, 8, 12
    settings = msgspec.structs.replace(settings, shards=shards)
    keys = settings.keyspace
    env = {**callhub_env, **engine_env(settings), "CALLHUB_REDIS_URL": redis_url,
           "CALLHUB_SHARDS": str(shards), "CALLHUB_FORWARD_LEASE": "1s"}
    events = interleaved([call(f"flow-{n}", per_call) for n in range(calls)])
    total = calls * per_call
    publisher = CallPublisher(aredis, settings, retry_for_s=20)
    with receiving(SECRET) as receiver:
        receiver.delay_s = 0.005  # a receiver that takes its time: requests overlap
        subscription = store_subscription(sync_redis, receiver.url, keyspace=keys,
                                          secret=SECRET)
        leases = [keys.webhook_lease(s, subscription.id) for s in range(shards)]
        first, first_log = forward_process(env)
        second, second_log = forward_process(env)
        try:
            wait_until(lambda: forwarder_started(first_log) and forwarder_started(second_log),
                       timeout=20, what="both forwarders to start")
            holders = {holder_of(first_log): first, holder_of(second_log): second}
            wait_until(lambda: all(sync_redis.get(k) for k in leases), timeout=20,
                       what="every lease taken")
            async with publishing(publisher, events) as flowing:
                await async_wait_until(lambda: len(receiver.delivered()) >= total // 4,
                                       what="deliveries under way")
                # The one holding the most leases dies with requests in flight.
                owners = [sync_redis.get(k).decode() for k in leases]  # type: ignore[union-attr]
                victim_holder = max(set(owners), key=owners.count)
                victim = holders.pop(victim_holder)
                (survivor_holder, survivor), = holders.items()
                victim_shards = {s for s, owner in enumerate(owners) if owner == victim_holder}

                def victims_in_flight() -> set[str]:
                    return {r.webhook_id for r in receiver.waiting()
                            if event_position(r.webhook_id, subscription.id)[0] in victim_shards}

                receiver.hold()
                await async_wait_until(victims_in_flight,
                                       what="the victim's requests in flight to the receiver")
                cursors = stored_cursors(sync_redis, keys, subscription.id, shards)
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(timeout=10)
                in_flight = victims_in_flight()
                receiver.release()
                await asyncio.wait_for(flowing, 30)
            await async_wait_until(
                lambda: len({r.webhook_id for r in receiver.delivered()}) == total,
                timeout=20, what="every event delivered after the takeover")
            assert {sync_redis.get(k) for k in leases} == {survivor_holder.encode()}
            assert survivor.poll() is None
        finally:
            stop_process(first)
            stop_process(second)
        assert receiver.bad_signatures == []
        received = receiver.all()
        assert in_order_per_call(received) == {f"flow-{n}": list(range(1, per_call + 1))
                                               for n in range(calls)}
        # Deduplicable: every copy of an event carries its one webhook-id and body.
        assert_one_id_per_event(received)
        # Redelivered: what the killed one had in flight or had not recorded done
        # (above the cursors it had stored) -- and all of what was in flight.
        again = assert_duplicates_only_above(received, subscription.id, cursors)
        assert in_flight <= {r.webhook_id for r in again}
        assert len(received) == total + len(again)  # nothing else came twice
