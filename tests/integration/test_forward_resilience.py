"""Webhook delivery under faults and changes: Redis restarted mid-delivery, a
forwarder SIGKILLed while events flow (a single redis-server and a Redis
Cluster), a subscription edited while it delivers, a receiver that stops
answering (backpressure), CloudEvents headers, and ``callhub forward
--metrics-port``. Real redis-servers, real receivers on loopback (verifying
every signature with ``standardwebhooks``), real ``callhub forward`` processes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from secrets import token_hex

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from callhub import events as ev
from callhub.cursor import parse_stream_id
from callhub.settings import Settings
from callhub.signing import new_secret
from callhub.webhooks import DeliveryAttempt
from tests.support.forwarding import (
    assert_duplicates_only_above,
    assert_one_id_per_event,
    call,
    cursors_past,
    duplicates,
    event_position,
    forward_process,
    forwarder_started,
    forwarding,
    holder_of,
    in_order_per_call,
    interleaved,
    publishing,
    records,
    stored_cursors,
)
from tests.support.hubs import hub_client
from tests.support.metrics import scrape
from tests.support.polling import async_wait_until, wait_until
from tests.support.processes import free_port, stop_process
from tests.support.receiver import Received, receiving
from tests.support.redis_servers import RedisServer, engine_env
from tests.support.strategies import call_started, dtmf, terminated, transition
from tests.support.subscriptions import store_subscription
from workers.commit.publisher import CallPublisher
from workers.forward.forwarder import REFRESH_S

SECRET = new_secret()


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
            async with publishing(publisher, events) as flow:
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
                assert flow.task is not None
                await asyncio.wait_for(flow.task, 30)
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


# -- a subscription edited while it delivers -------------------------------------------


def key_presses_and_transitions(sid: str) -> Iterator[ev.Event]:
    """A call that goes on until stopped: started, then a key press and a state
    transition, over and over."""
    yield call_started(sid)
    for seq in itertools.count(2, 2):
        yield dtmf(sid, seq)
        yield transition(sid, seq + 1, "menu")


async def test_an_edit_through_the_api_takes_effect_within_about_a_second(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
) -> None:
    api_settings = msgspec.structs.replace(settings, webhook_allow_http=True,
                                           webhook_allow_private=True)
    sid = "edited"
    # Within about a second: the next re-read of the subscriptions, and a read.
    soon_s = REFRESH_S + 0.6
    with receiving("") as first, receiving("") as second:
        async with hub_client(api_settings) as api:
            created = await api.post("/v1/webhooks", json={
                "name": "edited", "url": first.url, "event_types": ["dtmf_received"]})
            assert created.status_code == 201, created.text
            webhook_id, secret = created.json()["id"], created.json()["secret"]
            first.secret = second.secret = secret
            publisher = CallPublisher(aredis, settings)
            async with forwarding(aredis, settings, refresh_s=REFRESH_S), \
                    publishing(publisher, key_presses_and_transitions(sid), 0.02) as flow:
                await async_wait_until(lambda: len(first.delivered()) >= 5,
                                       what="key presses delivered")

                patched = await api.patch(f"/v1/webhooks/{webhook_id}",
                                          json={"event_types": ["state_transition"]})
                assert patched.status_code == 200, patched.text
                filtered_at = time.monotonic()
                switched = await async_wait_until(
                    lambda: next((r for r in first.delivered()
                                  if r.headers["callhub-event-type"] == "state_transition"),
                                 None),
                    timeout=soon_s + 1, what="the new event types to be delivered")

                patched = await api.patch(f"/v1/webhooks/{webhook_id}",
                                          json={"url": second.url})
                assert patched.status_code == 200, patched.text
                moved_at = time.monotonic()
                moved = await async_wait_until(lambda: next(iter(second.delivered()), None),
                                               timeout=soon_s + 1,
                                               what="deliveries to the new URL")
                await async_wait_until(lambda: len(second.delivered()) >= 5,
                                       what="deliveries going on at the new URL")
                flow.stop()
                assert flow.task is not None
                await flow.task
                last = flow.committed[-1][1]
                last_wanted = last.seq if isinstance(last, ev.StateTransition) else last.seq - 1
                await async_wait_until(lambda: any(r.seq == last_wanted
                                                   for r in second.delivered()),
                                       what="the last transition delivered")
    assert first.bad_signatures == second.bad_signatures == []
    # One switch of filters, then one of URL, each for good: what arrived is
    # every key press before the first switch, every transition from it on,
    # the earlier ones at the old URL, the later ones at the new, each once.
    # The switch is at the position the forwarder had read to when the edit
    # reached it: some boundary at or before the first transition delivered.
    got = [r.seq for r in first.all()] + [r.seq for r in second.all()]

    def wanted_from(boundary: int) -> list[int]:
        return [event.seq for _, event in flow.committed
                if (isinstance(event, ev.DtmfReceived) and event.seq < boundary)
                or (isinstance(event, ev.StateTransition) and event.seq >= boundary)]

    boundaries = [b for b in range(1, switched.seq + 1) if wanted_from(b) == got]
    assert boundaries, got
    wanted = wanted_from(boundaries[0])
    assert [r.seq for r in second.all()] == [seq for seq in wanted if seq >= moved.seq]
    assert all(r.status == 200 for r in first.all() + second.all())
    # Events committed a moment after each edit already followed it.
    assert flow.committed_at(switched.seq, sid) - filtered_at <= soon_s
    assert flow.committed_at(moved.seq, sid) - moved_at <= soon_s


# -- backpressure: a receiver that stops answering ------------------------------------


def command_calls(client: redis.Redis, command: str) -> int:
    """How many times the server ran ``command`` (INFO commandstats)."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_stuck_receiver_holds_at_most_max_held_events_per_shard_then_all_arrive(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
) -> None:
    shards, max_held, per_shard = 2, 5, 12
    settings = msgspec.structs.replace(settings, shards=shards)
    keys = settings.keyspace
    # One event per call, so every event held is a POST of its own in flight:
    # what the receiver has waiting is exactly what the forwarder holds.
    names = (f"bp-{n}" for n in itertools.count())
    sessions = [[s for s, _ in zip((n for n in names if keys.shard_of(n) == shard),
                                   range(per_shard), strict=False)]
                for shard in range(shards)]
    with receiving(SECRET) as receiver:
        subscription = store_subscription(sync_redis, receiver.url, keyspace=keys,
                                          secret=SECRET)
        await CallPublisher(aredis, settings).commit_many(
            [call_started(s) for shard in sessions for s in shard])
        assert [sync_redis.xlen(keys.log(shard)) for shard in range(shards)] == \
            [per_shard] * shards
        receiver.hold()
        async with forwarding(aredis, settings, max_held=max_held) as forwarder:
            metric = forwarder.metrics.registry.get_sample_value
            await async_wait_until(lambda: len(receiver.waiting()) == shards * max_held,
                                   what=f"{max_held} events held per shard")
            reads = command_calls(sync_redis, "xread")
            renewals = command_calls(sync_redis, "evalsha")
            # While it holds max_held, it reads no more: a second of lease
            # renewals (four a second per shard) and not one XREAD meanwhile,
            # where an idle reader blocks 0.5 s per read.
            await async_wait_until(
                lambda: command_calls(sync_redis, "evalsha") >= renewals + 4 * shards,
                what="a second of lease renewals")
            assert command_calls(sync_redis, "xread") == reads
            waiting = receiver.waiting()
            assert len(waiting) == shards * max_held
            assert sorted(event_position(r.webhook_id, subscription.id)[0]
                          for r in waiting) == [0] * max_held + [1] * max_held
            assert metric("callhub_forward_in_flight",
                          {"subscription": subscription.id}) == shards * max_held
            for shard in range(shards):
                lag = metric("callhub_forward_lag_seconds",
                             {"subscription": subscription.id, "shard": str(shard)})
                assert lag is not None and lag > 0
            first_entries = [parse_stream_id(sync_redis.xrange(keys.log(s), count=1)[0][0])
                             for s in range(shards)]
            assert all(cursor < first for cursor, first in zip(
                stored_cursors(sync_redis, keys, subscription.id, shards), first_entries,
                strict=True))

            receiver.release()
            await async_wait_until(lambda: len(receiver.delivered()) == shards * per_shard,
                                   what="every event delivered once released")
            await async_wait_until(
                lambda: metric("callhub_forward_in_flight",
                               {"subscription": subscription.id}) == 0,
                what="nothing in flight")
        assert receiver.bad_signatures == []
        received = receiver.all()
        assert sorted(r.session_id for r in received) == sorted(s for shard in sessions
                                                                for s in shard)
        assert duplicates(received) == []


# -- CloudEvents -----------------------------------------------------------------------


@pytest.mark.both_engines
async def test_a_cloudevents_subscription_gets_the_binary_mode_headers(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
) -> None:
    keys = settings.keyspace
    published = [call_started("ce-call", at=5), dtmf("ce-call", 2),
                 transition("ce-call", 3, "menu"), terminated("ce-call", 4, at=75)]
    with receiving(SECRET) as receiver:
        cloud = store_subscription(sync_redis, receiver.url, keyspace=keys, secret=SECRET,
                                   cloudevents=True)
        plain = store_subscription(sync_redis, receiver.url, keyspace=keys, secret=SECRET)
        async with forwarding(aredis, settings):
            await CallPublisher(aredis, settings).commit_many(published)
            await async_wait_until(lambda: len(receiver.delivered()) == 2 * len(published),
                                   what="every event delivered to both subscriptions")
    assert receiver.bad_signatures == []
    by_seq = {event.seq: event for event in published}
    received = receiver.delivered()
    to_cloud = [r for r in received if r.webhook_id.startswith(f"msg_{cloud.id}_")]
    to_plain = [r for r in received if r.webhook_id.startswith(f"msg_{plain.id}_")]
    assert [r.seq for r in to_cloud] == [r.seq for r in to_plain] == [1, 2, 3, 4]
    for request in to_cloud:
        event = by_seq[request.seq]
        headers = request.headers
        event_type = msgspec.json.decode(request.body)["type"]
        assert headers["content-type"] == "application/json"  # binary mode: data is the body
        assert headers["ce-specversion"] == "1.0"
        assert headers["ce-id"] == request.webhook_id == headers["webhook-id"]
        assert headers["ce-source"] == f"/callhub/webhooks/{cloud.id}"
        assert headers["ce-type"] == f"com.voicetyped.callhub.{event_type}"
        assert headers["ce-subject"] == event.session_id == "ce-call"
        # ce-time: the event's own timestamp (RFC 3339), not the time it was sent.
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                            headers["ce-time"])
        assert datetime.fromisoformat(headers["ce-time"]) == event.timestamp
    assert {r.headers["ce-type"] for r in to_cloud} == {
        "com.voicetyped.callhub.call_started", "com.voicetyped.callhub.dtmf_received",
        "com.voicetyped.callhub.state_transition", "com.voicetyped.callhub.call_terminated"}
    assert len({r.headers["ce-id"] for r in to_cloud}) == len(published)
    for request in to_plain:
        assert [h for h in request.headers if h.startswith("ce-")] == []


# -- callhub forward --metrics-port ------------------------------------------------------


async def test_forward_metrics_show_what_happened_and_no_secret_is_served_or_logged(
    redis_url: str, settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
    callhub_env: dict[str, str],
) -> None:
    keys = settings.keyspace
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    env = {**callhub_env, "CALLHUB_REDIS_URL": redis_url, "CALLHUB_WEBHOOK_RETRY_WINDOW": "2s"}
    signing = {name: new_secret() for name in ("ok", "gone", "failing")}
    url_token = f"token-{token_hex(12)}"  # a receiver URL that is a credential itself
    attempts = itertools.count()

    def busy_at_first(_: Received) -> tuple[int, dict[str, str]]:
        # Retry-After as an HTTP-date in the past: try again at once.
        busy = (503, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
        return busy if next(attempts) == 0 else (200, {})

    with receiving(signing["ok"], busy_at_first) as ok_receiver, \
            receiving(signing["gone"], lambda _: (410, {})) as gone_receiver, \
            receiving(signing["failing"], lambda _: (500, {})) as failing_receiver:
        ok = store_subscription(sync_redis, f"{ok_receiver.url}?key={url_token}",
                                keyspace=keys, secret=signing["ok"])
        gone = store_subscription(sync_redis, gone_receiver.url, keyspace=keys,
                                  secret=signing["gone"])
        failing = store_subscription(sync_redis, failing_receiver.url, keyspace=keys,
                                     secret=signing["failing"])
        ok_receiver.hold()
        forwarder, log = forward_process(env, "--metrics-port", str(port))
        try:
            await async_wait_until(
                lambda: scrape(metrics_url)[1].get("callhub_forward_leases_held{}") == 3,
                timeout=20, in_thread=True, interval=0.05,
                what="the forwarder to serve metrics and hold the three subscriptions")
            await CallPublisher(aredis, settings).commit_many(call("metered", 4))

            def held_up() -> dict[str, float] | None:
                _, now = scrape(metrics_url)
                in_flight = now.get(f'callhub_forward_in_flight{{subscription="{ok.id}"}}')
                lag = now.get(f'callhub_forward_lag_seconds{{shard="0",subscription="{ok.id}"}}')
                return now if in_flight == 1 and lag is not None and lag >= 0.3 else None

            during = await async_wait_until(held_up, in_thread=True, interval=0.05,
                                            what="a request in flight and the lag growing")
            ok_receiver.release()

            def settled() -> tuple[str, dict[str, float]] | None:
                text, now = scrape(metrics_url)
                done = (now.get(deliveries(ok.id, "delivered")) == 4
                        and now.get(f'callhub_forward_lag_seconds{{shard="0",'
                                    f'subscription="{ok.id}"}}') == 0
                        and now.get("callhub_forward_leases_held{}") == 1)
                return (text, now) if done else None

            text, after = await async_wait_until(
                settled, in_thread=True, interval=0.05, timeout=15,
                what="the ok subscription delivered, the other two disabled")
            os.kill(forwarder.pid, signal.SIGTERM)
            assert forwarder.wait(timeout=10) == 0
        finally:
            stop_process(forwarder)
    output = Path(log).read_text(errors="replace")
    assert ok_receiver.bad_signatures == gone_receiver.bad_signatures == \
        failing_receiver.bad_signatures == []
    assert during.get(deliveries(ok.id, "delivered"), 0) == 0
    # Deliveries by subscription and outcome, as the receivers saw them.
    assert [r.status for r in ok_receiver.all()] == [503, 200, 200, 200, 200]
    assert after[deliveries(ok.id, "retrying")] == 1
    busy, *_ = records(sync_redis, keys.webhook_deliveries(ok.id), DeliveryAttempt)
    assert (busy.status_code, busy.outcome) == (503, "retrying")  # type: ignore[attr-defined]
    assert busy.next_retry_ms == busy.at_ms  # type: ignore[attr-defined]
    assert [r.status for r in gone_receiver.all()] == [410]
    assert after[deliveries(gone.id, "disabled")] == 1
    failed = len(failing_receiver.all())
    assert failed >= 1 and all(r.status == 500 for r in failing_receiver.all())
    assert after.get(deliveries(failing.id, "retrying"), 0) == failed - 1
    assert after[deliveries(failing.id, "dead_lettered")] == 1
    outcomes = {k: v for k, v in after.items()
                if k.startswith("callhub_forward_deliveries_total{") and v}
    assert len(outcomes) == (5 if failed > 1 else 4)
    # Dead letters and disabled subscriptions, by reason.
    assert {k: v for k, v in after.items()
            if k.startswith("callhub_forward_dead_letters_total{")} == {
        f'callhub_forward_dead_letters_total{{reason="retry_window",'
        f'subscription="{failing.id}"}}': 1}
    assert after['callhub_forward_disabled_subscriptions_total{reason="gone"}'] == 1
    assert after['callhub_forward_disabled_subscriptions_total{reason="failing"}'] == 1
    # One latency per attempt; the held one took the time it was held.
    attempted = len(ok_receiver.all()) + 1 + failed
    assert after["callhub_forward_attempt_latency_seconds_count{}"] == attempted
    assert after['callhub_forward_attempt_latency_seconds_bucket{le="+Inf"}'] == attempted
    assert after['callhub_forward_attempt_latency_seconds_bucket{le="0.25"}'] < attempted
    assert after["callhub_forward_attempt_latency_seconds_sum{}"] >= 0.3
    # In flight and lag: none now; no lag kept for the subscriptions let go.
    assert after[f'callhub_forward_in_flight{{subscription="{ok.id}"}}'] == 0
    lags = [k for k in after if k.startswith("callhub_forward_lag_seconds{")]
    assert lags == [f'callhub_forward_lag_seconds{{shard="0",subscription="{ok.id}"}}']
    # No secret, nor the credential in a URL, is served or logged.
    for secret in [*signing.values(), *(s.removeprefix("whsec_") for s in signing.values()),
                   url_token]:
        assert secret not in text
        assert secret not in output
    assert "delivering webhooks from" in output


def deliveries(subscription_id: str, outcome: str) -> str:
    return (f'callhub_forward_deliveries_total{{outcome="{outcome}",'
            f'subscription="{subscription_id}"}}')
