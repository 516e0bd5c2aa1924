"""Webhook delivery (``callhub forward``) on a real Redis, to a real receiver
that verifies every request with the ``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from itertools import count
from pathlib import Path

import httpx
import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from callhub.cursor import Cursor, format_stream_id, parse_stream_id
from callhub.positions import predecessor
from callhub.settings import Settings
from callhub.signing import new_secret
from callhub.webhooks import RECORD_FIELD, DeadLetter, DeliveryAttempt, message_id
from tests.support.forwarding import (
    assert_one_id_per_event,
    call,
    event_position,
    forward_process,
    forwarding,
    holder_of,
    in_order_per_call,
    interleaved,
    records,
)
from tests.support.hubs import hub_client
from tests.support.polling import async_wait_until, wait_until
from tests.support.processes import stop_process
from tests.support.receiver import Received, Receiver, receiving
from tests.support.redis_servers import engine_env
from tests.support.strategies import call_started, dtmf, terminated
from tests.support.subscriptions import store_subscription, stored_subscription
from workers.commit.publisher import CallPublisher

SECRET = new_secret()


@pytest.mark.both_engines
async def test_every_event_arrives_signed_in_order_per_call(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    settings = msgspec.structs.replace(settings, shards=2)
    keys = settings.keyspace
    with receiving(SECRET) as receiver:
        subscription = store_subscription(sync_redis, receiver.url, keyspace=keys, secret=SECRET)
        calls = [call(f"basic-{n}", 5) for n in range(6)]
        async with forwarding(aredis, settings) as forwarder:
            await CallPublisher(aredis, settings).commit_many(interleaved(calls))
            await async_wait_until(lambda: len(receiver.delivered()) >= 30,
                                   what="30 deliveries")
            holder = forwarder.holder
        assert receiver.bad_signatures == []
        delivered = receiver.delivered()
        assert len({r.webhook_id for r in delivered}) == 30
        assert in_order_per_call(delivered) == {f"basic-{n}": [1, 2, 3, 4, 5] for n in range(6)}
        for shard in range(2):
            stored = {entry_id.decode(): fields for entry_id, fields in
                      sync_redis.xrange(keys.log(shard))}
            for request in delivered:
                position = request.webhook_id.removeprefix(f"msg_{subscription.id}_")
                in_shard, _, entry_id = position.partition("-")
                if int(in_shard) == shard:
                    assert entry_id in stored
                    assert request.webhook_id == message_id(subscription.id,
                                                            f"{shard}-{entry_id}")
                    assert request.body == stored[entry_id][b"data"]
                    assert request.headers["callhub-event-type"] == \
                        stored[entry_id][b"type"].decode()
                    cursor = Cursor.decode(request.headers["callhub-cursor"], 2)
                    assert cursor.positions[shard] == parse_stream_id(entry_id)
            # Stopped: the cursor is past everything delivered, the lease released.
            assert sync_redis.get(keys.webhook_lease(shard, subscription.id)) != holder.encode()
            last = max(stored)
            cursor_value = sync_redis.get(keys.webhook_cursor(shard, subscription.id))
            assert cursor_value is not None
            assert parse_stream_id(cursor_value) >= parse_stream_id(last)


async def test_an_outage_of_500s_then_429s_is_retried_until_every_event_arrives_in_order(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    numbers = count(1)

    def outage(_: Received) -> tuple[int, dict[str, str]]:
        n = next(numbers)
        if n <= 6:
            return 500, {}
        if n <= 9:
            return 429, {"retry-after": "1"}
        return 200, {}

    with receiving(SECRET, outage) as receiver:
        subscription = store_subscription(sync_redis, receiver.url, secret=SECRET)
        async with forwarding(aredis, settings):
            await CallPublisher(aredis, settings).commit_many(
                interleaved([call(f"outage-{n}", 4) for n in range(3)]))
            await async_wait_until(lambda: len(receiver.delivered()) >= 12, timeout=20,
                                   what="every event delivered after the outage")
        assert receiver.bad_signatures == []
        assert in_order_per_call(receiver.delivered()) == \
            {f"outage-{n}": [1, 2, 3, 4] for n in range(3)}
        # Nothing was answered 2xx twice, and no call's event overtook its predecessor.
        for n in range(3):
            seqs = [r.seq for r in receiver.all() if r.session_id == f"outage-{n}"]
            assert seqs == sorted(seqs)
        attempts = records(sync_redis, settings.keyspace.webhook_deliveries(subscription.id),
                           DeliveryAttempt)
        statuses = [(a.status_code, a.outcome) for a in attempts]  # type: ignore[attr-defined]
        assert statuses.count((500, "retrying")) == 6
        assert statuses.count((429, "retrying")) == 3
        assert statuses.count((200, "delivered")) == 12
        for attempt in attempts:
            if attempt.status_code == 429:  # type: ignore[attr-defined]
                # Retry-After: 1 is honoured over the test's 0.2 s backoff cap.
                assert attempt.next_retry_ms - attempt.at_ms >= 1000  # type: ignore[attr-defined]


async def test_a_short_retry_window_dead_letters_and_delivery_moves_on(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    settings = msgspec.structs.replace(settings, webhook_retry_window_ms=600)

    def bad_call_fails(request: Received) -> tuple[int, dict[str, str]]:
        return (500, {}) if request.session_id == "bad" else (200, {})

    with receiving(SECRET, bad_call_fails) as receiver:
        subscription = store_subscription(sync_redis, receiver.url, secret=SECRET)
        publisher = CallPublisher(aredis, settings)
        async with forwarding(aredis, settings):
            await publisher.commit_many([call_started("bad"), dtmf("bad", 2),
                                         call_started("good")])
            # The good call keeps getting through while the bad one's events fail.
            for seq in range(2, 200):
                await publisher.commit(dtmf("good", seq))
                if len(sync_redis.xrange(settings.keyspace.webhook_dead_letters(
                        subscription.id))) >= 2:
                    break
                await asyncio.sleep(0.05)
            await publisher.commit(terminated("bad", 3))
            await async_wait_until(lambda: any(r.session_id == "bad" and r.seq == 3
                                               for r in receiver.all()),
                                   what="the bad call's last event to be tried")
        letters = records(sync_redis, settings.keyspace.webhook_dead_letters(subscription.id),
                          DeadLetter)
        assert [(d.session_id, d.reason.split(":")[0]) for d in letters[:2]] == \
            [("bad", "retry_window"), ("bad", "retry_window")]  # type: ignore[attr-defined]
        assert all(d.attempts >= 1 and d.last_status_code == 500 for d in letters)  # type: ignore[attr-defined]
        bad = [r.seq for r in receiver.all() if r.session_id == "bad"]
        assert bad == sorted(bad) and bad[0] == 1
        good = in_order_per_call(receiver.delivered())["good"]
        assert good == list(range(1, len(good) + 1)) and len(good) > 3
        stored = stored_subscription(sync_redis, subscription.id)
        assert stored is not None and stored.enabled
        assert receiver.bad_signatures == []


async def test_failing_for_the_whole_retry_window_disables_the_subscription(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    settings = msgspec.structs.replace(settings, webhook_retry_window_ms=400)
    with receiving(SECRET, lambda _: (503, {})) as receiver:
        subscription = store_subscription(sync_redis, receiver.url, secret=SECRET)
        async with forwarding(aredis, settings) as forwarder:
            await CallPublisher(aredis, settings).commit(call_started("doomed"))
            stored = await async_wait_until(
                lambda: (s := stored_subscription(sync_redis, subscription.id)) is not None
                and not s.enabled and s, what="the subscription to be disabled")
            assert "retry window" in stored.disabled_reason
            await async_wait_until(lambda: forwarder.held == 0,
                                   what="the forwarder to let the disabled subscription go")
        letters = sync_redis.xrange(settings.keyspace.webhook_dead_letters(subscription.id))
        assert len(letters) == 1
        assert receiver.delivered() == []


async def test_410_gone_disables_the_subscription(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    with receiving(SECRET, lambda _: (410, {})) as receiver:
        subscription = store_subscription(sync_redis, receiver.url, secret=SECRET)
        async with forwarding(aredis, settings) as forwarder:
            await CallPublisher(aredis, settings).commit_many(call("gone", 3))
            stored = await async_wait_until(
                lambda: (s := stored_subscription(sync_redis, subscription.id)) is not None
                and not s.enabled and s, what="the subscription to be disabled")
            assert "410" in stored.disabled_reason
            await async_wait_until(lambda: forwarder.held == 0,
                                   what="the forwarder to let the disabled subscription go")
        assert [(r.seq, r.status) for r in receiver.all()] == [(1, 410)]
        attempts = records(sync_redis, settings.keyspace.webhook_deliveries(subscription.id),
                           DeliveryAttempt)
        assert [a.outcome for a in attempts] == ["disabled"]  # type: ignore[attr-defined]
        # The event was not given up on: the cursor stays below it for a re-enable.
        first = sync_redis.xrange(settings.keyspace.log(0))[0][0]
        cursor_value = sync_redis.get(settings.keyspace.webhook_cursor(0, subscription.id))
        assert cursor_value is not None
        assert parse_stream_id(cursor_value) < parse_stream_id(first)


async def test_a_retention_gap_is_dead_lettered_and_delivery_resumes_after_it(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    keys = settings.keyspace
    with receiving(SECRET) as receiver:
        subscription = store_subscription(sync_redis, receiver.url, secret=SECRET)
        sync_redis.set(keys.webhook_cursor(0, subscription.id), "1-0")  # long ago
        await CallPublisher(aredis, settings).commit_many(call("trimmed", 6))
        sync_redis.xtrim(keys.log(0), maxlen=3, approximate=False)
        first_kept = sync_redis.xrange(keys.log(0))[0][0]
        async with forwarding(aredis, settings):
            await async_wait_until(lambda: len(receiver.delivered()) >= 3,
                                   what="the kept events delivered")
        letters = records(sync_redis, keys.webhook_dead_letters(subscription.id), DeadLetter)
        assert len(letters) == 1
        gap = letters[0]
        assert gap.event_id == "1-1"  # type: ignore[attr-defined]
        assert gap.lost_until == format_stream_id(  # type: ignore[attr-defined]
            predecessor(parse_stream_id(first_kept)))
        assert gap.reason.startswith("retention_gap")  # type: ignore[attr-defined]
        assert [r.seq for r in receiver.delivered()] == [4, 5, 6]


# -- processes ---------------------------------------------------------------------


async def test_a_killed_forwarder_loses_nothing_and_sigterm_releases_the_leases(
    redis_url: str, settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
    callhub_env: dict[str, str],
) -> None:
    shards = 4
    settings = msgspec.structs.replace(settings, shards=shards)
    keys = settings.keyspace
    env = {**callhub_env, **engine_env(settings), "CALLHUB_REDIS_URL": redis_url,
           "CALLHUB_SHARDS": str(shards), "CALLHUB_FORWARD_LEASE": "1s",
           "CALLHUB_WEBHOOK_ALLOW_PRIVATE": "1"}
    calls = interleaved([call(f"kill-{n}", 10) for n in range(8)])
    publisher = CallPublisher(aredis, settings)
    with receiving(SECRET) as receiver:
        subscription = store_subscription(sync_redis, receiver.url, keyspace=keys,
                                          secret=SECRET)
        leases = [keys.webhook_lease(s, subscription.id) for s in range(shards)]
        first, _ = forward_process(env)
        second, second_log = None, ""
        try:
            wait_until(lambda: all(sync_redis.get(k) for k in leases), timeout=20,
                       what="the first forwarder to hold every lease")
            second, second_log = forward_process(env)
            wait_until(lambda: "delivering webhooks from" in Path(second_log).read_text(),
                       timeout=20, what="the second forwarder to start")
            for event in calls[:40]:
                await publisher.commit(event)
            await async_wait_until(lambda: len(receiver.delivered()) >= 10,
                                   what="deliveries under way")
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            for event in calls[40:]:
                await publisher.commit(event)
            await async_wait_until(
                lambda: len({r.webhook_id for r in receiver.delivered()}) >= 80, timeout=20,
                what="every event delivered after the takeover")
            taker = holder_of(second_log)
            assert {sync_redis.get(k) for k in leases} == {taker.encode()}

            os.kill(second.pid, signal.SIGTERM)
            assert second.wait(timeout=10) == 0
            assert [sync_redis.get(k) for k in leases] == [None] * shards
        finally:
            stop_process(first)
            if second is not None:
                stop_process(second)
        assert receiver.bad_signatures == []
        received = receiver.all()
        assert in_order_per_call(received) == {f"kill-{n}": list(range(1, 11)) for n in range(8)}
        # A duplicate is a redelivery of the same event, under the same webhook-id.
        ids_by_event: dict[tuple[str, int], set[str]] = {}
        for request in received:
            ids_by_event.setdefault((request.session_id, request.seq), set()).add(
                request.webhook_id)
        assert all(len(ids) == 1 for ids in ids_by_event.values())
        assert len(received) - 80 <= 40  # only what the killed one had not recorded done


# -- /redeliver: dead letters and rewinds, through the API ----------------------


def through_the_api(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, webhook_allow_http=True, webhook_allow_private=True)


async def created(api: httpx.AsyncClient, receiver: Receiver, **fields: object) -> str:
    """A subscription made through the API; the receiver verifies with its secret."""
    answer = await api.post("/v1/webhooks", json={"name": "crm", "url": receiver.url, **fields})
    assert answer.status_code == 201, answer.text
    receiver.secret = answer.json()["secret"]
    return str(answer.json()["id"])


async def test_a_disabled_subscription_re_enabled_and_its_dead_letters_redelivered(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    """The recovery a user makes after an outage longer than the retry window:
    the first event was dead-lettered and the subscription disabled; enabled
    again it delivers the rest from its cursor, and the dead letter redelivered
    arrives with the webhook-id its failed attempts had."""
    settings = through_the_api(msgspec.structs.replace(settings, webhook_retry_window_ms=300))
    keys = settings.keyspace
    outage = True

    def failing(_: Received) -> tuple[int, dict[str, str]]:
        return (500, {}) if outage else (200, {})

    with receiving(SECRET, failing) as receiver:
        async with hub_client(settings) as api:
            id_ = await created(api, receiver)
            async with forwarding(aredis, settings):
                await CallPublisher(aredis, settings).commit_many(call("down", 4))
                await async_wait_until(
                    lambda: (stored := stored_subscription(sync_redis, id_, keys)) is not None
                    and not stored.enabled, what="the subscription to be disabled")
                letters = (await api.get(f"/v1/webhooks/{id_}/dead-letters")).json()
                assert [d["session_id"] for d in letters["dead_letters"]] == ["down"]
                failed = {r.webhook_id for r in receiver.all()}
                assert len(failed) == 1
                # A retention gap's letter names events that are gone: not redeliverable.
                gap = DeadLetter(event_id="1-0", shard=0, reason="retention_gap", at_ms=1,
                                 lost_until="5-0")
                gap_id = sync_redis.xadd(keys.webhook_dead_letters(id_),
                                         {RECORD_FIELD: msgspec.json.encode(gap)}).decode()
                outage = False
                answer = await api.patch(f"/v1/webhooks/{id_}", json={"enabled": True})
                assert answer.status_code == 200, answer.text
                await async_wait_until(lambda: len(receiver.delivered()) == 3,
                                       what="the three events after the cursor")
                answer = await api.post(f"/v1/webhooks/{id_}/redeliver",
                                        json={"dead_letters": "all"})
                assert answer.status_code == 202, answer.text
                assert answer.json() == {"queued": 1, "not_redeliverable": [gap_id],
                                         "rewind_generation": 0}
                await async_wait_until(lambda: len(receiver.delivered()) == 4,
                                       what="the dead letter redelivered")
                await async_wait_until(
                    lambda: sync_redis.xlen(keys.webhook_redeliveries(0, id_)) == 0,
                    what="the redelivery request to be settled")
        delivered = receiver.delivered()
        assert [r.seq for r in delivered] == [2, 3, 4, 1]
        assert delivered[-1].webhook_id in failed  # the same id: deduplicable
        assert records(sync_redis, keys.webhook_dead_letters(id_), DeadLetter) == [gap]
        assert receiver.bad_signatures == []


async def test_redelivering_chosen_dead_letters_and_unknown_ids(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    settings = through_the_api(settings)
    keys = settings.keyspace
    with receiving(SECRET) as receiver:
        async with hub_client(settings) as api:
            await CallPublisher(aredis, settings).commit_many(call("c", 3))
            id_ = await created(api, receiver)  # from now: the three are before it
            logged = sync_redis.xrange(keys.log(0))
            letter_ids = []
            for entry_id, fields in logged:  # as a forwarder gives them up
                letter = DeadLetter(event_id=entry_id.decode(), shard=0, reason="retry_window",
                                    at_ms=1, session_id="c",
                                    event_type=fields[b"type"].decode())
                letter_ids.append(sync_redis.xadd(keys.webhook_dead_letters(id_), {
                    RECORD_FIELD: msgspec.json.encode(letter)}).decode())
            answer = await api.post(f"/v1/webhooks/{id_}/redeliver", json={
                "dead_letters": [letter_ids[1], "1-1", "not-an-id", letter_ids[1]]})
            assert answer.status_code == 202, answer.text
            assert answer.json()["queued"] == 1
            assert answer.json()["not_redeliverable"] == ["1-1", "not-an-id"]
            # Queued while no forwarder runs: the one that starts sends it.
            assert sync_redis.xlen(keys.webhook_redeliveries(0, id_)) == 1
            async with forwarding(aredis, settings):
                await async_wait_until(lambda: len(receiver.delivered()) == 1,
                                       what="the one redelivery")
                await async_wait_until(
                    lambda: sync_redis.xlen(keys.webhook_redeliveries(0, id_)) == 0,
                    what="the request to be settled")
        assert receiver.delivered()[0].webhook_id == message_id(id_, f"0-{logged[1][0].decode()}")
        assert len(sync_redis.xrange(keys.webhook_dead_letters(id_))) == 2


@pytest.mark.both_engines
async def test_redelivering_from_a_cursor_sends_everything_after_it_again(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    settings = through_the_api(msgspec.structs.replace(settings, shards=2))
    keys = settings.keyspace
    with receiving(SECRET) as receiver:
        async with hub_client(settings) as api:
            id_ = await created(api, receiver)
            calls = [call(f"rewind-{n}", 5) for n in range(4)]
            async with forwarding(aredis, settings):
                await CallPublisher(aredis, settings).commit_many(interleaved(calls))
                await async_wait_until(lambda: len(receiver.delivered()) == 20,
                                       what="20 deliveries")
                first = receiver.delivered()[:20]
                # Every event of shard s after the one the cursor names comes again.
                mark = first[5]
                cursor = mark.headers["callhub-cursor"]
                shard = next(n for n, p in enumerate(Cursor.decode(cursor, 2).positions)
                             if p is not None)
                position = Cursor.decode(cursor, 2).positions[shard]
                again = {r.webhook_id for r in first
                         if (at := event_position(r.webhook_id, id_))[0] == shard
                         and at[1] > position}
                answer = await api.post(f"/v1/webhooks/{id_}/redeliver", json={"from": cursor})
                assert answer.status_code == 202, answer.text
                assert answer.json()["rewind_generation"] == 1
                await async_wait_until(lambda: len(receiver.delivered()) >= 20 + len(again),
                                       what=f"{len(again)} redeliveries")
                # A cursor ahead of delivery changes nothing: never forward.
                ahead = Cursor(tuple(predecessor((time.time_ns() // 1_000_000 + 60_000, 0))
                                     for _ in range(2)))
                answer = await api.post(f"/v1/webhooks/{id_}/redeliver",
                                        json={"from": ahead.encode()})
                assert answer.json()["rewind_generation"] == 2
                await CallPublisher(aredis, settings).commit_many(call("after", 2))
                await async_wait_until(
                    lambda: {"after"} <= {r.session_id for r in receiver.delivered()},
                    what="the next call")
                await async_wait_until(
                    lambda: all(sync_redis.get(keys.webhook_rewound(s, id_)) == b"2"
                                for s in range(2)), what="the second rewind to be applied")
        delivered = receiver.delivered()
        repeated = [r.webhook_id for r in delivered[20:] if r.session_id != "after"]
        assert sorted(repeated) == sorted(again)
        assert in_order_per_call([r for r in delivered[20:] if r.session_id != "after"]) == \
            in_order_per_call([r for r in first if r.webhook_id in again])
        assert receiver.bad_signatures == []


async def test_bad_redeliver_requests_are_400s_and_change_nothing(
    settings: Settings, sync_redis: redis.Redis
) -> None:
    settings = through_the_api(settings)
    with receiving(SECRET) as receiver:
        async with hub_client(settings) as api:
            id_ = await created(api, receiver)
            before = sync_redis.hget(settings.keyspace.webhooks(), id_)
            bodies: list[tuple[object, str]] = [
                ({}, "body"),
                ({"dead_letters": "all", "from": "x"}, "body"),
                ({"from": "not-a-cursor"}, "from"),
                ({"from": "now"}, "from"),
                ({"dead_letters": "some"}, "dead_letters"),
                ({"dead_letters": []}, "dead_letters"),
                ({"dead_letters": [1]}, "dead_letters"),
                ({"dead_letters": ["x" * 65]}, "dead_letters"),
                ({"since": "x"}, "since"),
                ([], "body"),
            ]
            for body, param in bodies:
                answer = await api.post(f"/v1/webhooks/{id_}/redeliver", json=body)
                assert answer.status_code == 400, (body, answer.text)
                assert answer.json()["error"]["param"] == param, (body, answer.text)
            answer = await api.post("/v1/webhooks/wh_absent/redeliver",
                                    json={"dead_letters": "all"})
            assert answer.status_code == 404
            assert sync_redis.hget(settings.keyspace.webhooks(), id_) == before
            assert sync_redis.xlen(settings.keyspace.webhook_redeliveries(0, id_)) == 0


# -- sharing the leases, and a subscription deleted mid-flight -------------------


async def test_forwarders_split_the_shards_and_one_stopping_hands_its_share_over(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    """The first forwarder takes every lease; a second one started makes the
    first hand half over (ceil(shards / live forwarders) each); the second
    stopped, the first takes them all again. Nothing lost, order kept."""
    shards = 4
    settings = msgspec.structs.replace(settings, shards=shards)
    keys = settings.keyspace
    publisher = CallPublisher(aredis, settings)
    events = interleaved([call(f"split-{n}", 10) for n in range(8)])
    with receiving(SECRET) as receiver:
        subscription = store_subscription(sync_redis, receiver.url, keyspace=keys,
                                          secret=SECRET)
        leases = [keys.webhook_lease(s, subscription.id) for s in range(shards)]

        def owners() -> list[bytes | None]:
            return [sync_redis.get(k) for k in leases]  # type: ignore[misc]

        async with forwarding(aredis, settings) as first:
            await async_wait_until(lambda: first.held == shards, what="every lease taken")
            await publisher.commit_many(events[:40])
            async with forwarding(aredis, settings) as second:
                await async_wait_until(lambda: first.held == second.held == 2, timeout=15,
                                       what="the leases split two and two")
                assert sorted(o for o in owners() if o) == sorted(
                    [first.holder.encode()] * 2 + [second.holder.encode()] * 2)
                await publisher.commit_many(events[40:])
                await async_wait_until(lambda: len(receiver.delivered()) >= 80,
                                       what="both halves delivering")
            await async_wait_until(lambda: first.held == shards, timeout=15,
                                   what="the second's share handed back")
            assert set(owners()) == {first.holder.encode()}
    received = receiver.all()
    assert in_order_per_call(received) == {f"split-{n}": list(range(1, 11)) for n in range(8)}
    assert_one_id_per_event(received)
    assert receiver.bad_signatures == []


async def test_a_subscription_deleted_with_posts_in_flight_leaves_no_keys_behind(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deleted through the API while the receiver holds its requests: once they
    are answered, nothing of the subscription is left (the attempts recorded
    after the deletion are removed again), and the log says it was deleted."""
    settings = through_the_api(settings)
    caplog.set_level("INFO", logger="callhub.forward")
    with receiving(SECRET) as receiver:
        async with hub_client(settings) as api:
            id_ = await created(api, receiver)
            async with forwarding(aredis, settings) as forwarder:
                await async_wait_until(lambda: forwarder.held == settings.shards,
                                       what="the leases taken")
                receiver.hold()
                await CallPublisher(aredis, settings).commit_many(
                    [call_started(f"gone-{n}") for n in range(4)])
                await async_wait_until(lambda: len(receiver.waiting()) == 4,
                                       what="four requests in flight")
                assert (await api.delete(f"/v1/webhooks/{id_}")).status_code == 204
                receiver.release()
                await async_wait_until(lambda: forwarder.held == 0, what="deliveries stopped")
                await async_wait_until(
                    lambda: not list(sync_redis.scan_iter(match=f"*webhook:{id_}:*")),
                    timeout=5, what="every key of the deleted subscription gone")
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"{id_} was deleted" in line or "subscription was deleted" in line
               for line in lines), lines
    assert not any("lease lost" in line for line in lines), lines
