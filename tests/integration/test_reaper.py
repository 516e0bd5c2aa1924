"""Leases and the reaper against a real redis-server (DESIGN I7): no call is
active forever, and each abandoned call ends exactly once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from callhub import events as ev
from callhub.settings import Settings
from tests.support.polling import async_wait_until
from tests.support.strategies import call_started, dtmf
from workers.commit.leases import LeaseKeeper
from workers.commit.publisher import CallPublisher
from workers.commit.reaper import Reaper
from workers.metrics import WorkerMetrics

NEVER = 10**12  # a maximum call duration no test call reaches (ms)


def ends_of(client: redis.Redis, settings: Settings, sid: str) -> list[dict[str, object]]:
    """The call_terminated events stored in a call's stream."""
    entries = client.xrange(settings.keyspace.call_events(sid))
    return [json.loads(fields[b"data"]) for _, fields in entries
            if fields[b"type"] == b"call_terminated"]


async def start_calls(publisher: CallPublisher, sids: list[str]) -> None:
    outcomes = await publisher.commit_many([call_started(sid) for sid in sids])
    assert all(o.status == "committed" for o in outcomes), outcomes


async def sweep_until(reaper: Reaper, want: int, timeout: float = 10.0) -> int:
    """Sweep until ``want`` calls have ended in total (leases take time to run out)."""
    ended = 0

    async def enough() -> bool:
        nonlocal ended
        tally = await reaper.sweep()
        ended += tally.expired + tally.timed_out
        return ended >= want

    try:
        await async_wait_until(enough, timeout=timeout, interval=0.02,
                               what=f"{want} calls to be reaped")
    except AssertionError as error:
        raise AssertionError(f"only {ended} of {want} calls reaped: {error}") from error
    return ended


async def test_calls_whose_lease_ran_out_end_with_reason_error(
    aredis: aioredis.Redis, sync_redis: redis.Redis, redis_url: str
) -> None:
    settings = Settings(redis_url=redis_url, lease_ms=200, max_call_ms=NEVER)
    publisher = CallPublisher(aredis, settings)
    sids = [f"abandoned-{n}" for n in range(5)]
    await start_calls(publisher, sids)
    assert (await publisher.commit(dtmf(sids[0], 2))).status == "committed"

    metrics = WorkerMetrics()
    reaper = Reaper(aredis, publisher, settings, metrics=metrics)
    assert await sweep_until(reaper, len(sids)) == len(sids)
    assert metrics.registry.get_sample_value(
        "callhub_worker_reaped_calls_total", {"reason": "error"}) == len(sids)

    keys = settings.keyspace
    for sid in sids:
        (end,) = ends_of(sync_redis, settings, sid)
        assert end["reason"] == "error"
        assert end["seq"] == (3 if sid == sids[0] else 2)
        assert sync_redis.hget(keys.call(sid), "status") == b"terminated"
    assert sync_redis.zcard(keys.active(0)) == 0
    assert sync_redis.zcard(keys.leases(0)) == 0
    assert reaper.total.expired == len(sids)


async def test_several_reapers_end_each_call_exactly_once(
    aredis: aioredis.Redis, sync_redis: redis.Redis, redis_url: str
) -> None:
    settings = Settings(redis_url=redis_url, lease_ms=100, max_call_ms=NEVER, shards=4)
    publisher = CallPublisher(aredis, settings)
    sids = [f"orphan-{n}" for n in range(200)]
    await start_calls(publisher, sids)
    keys = settings.keyspace

    def leases_left() -> int:
        return sum(sync_redis.zcard(keys.leases(s)) for s in range(keys.shards))

    reapers = [Reaper(aredis, CallPublisher(aredis, settings), settings, interval_s=0.01,
                      batch=16) for _ in range(3)]
    tasks = [asyncio.create_task(r.run()) for r in reapers]
    try:
        await async_wait_until(lambda: leases_left() == 0, timeout=15, interval=0.02,
                               what="every call's lease to be reaped")
    finally:
        for reaper in reapers:
            reaper.stop()
        await asyncio.gather(*tasks)

    assert sum(r.total.expired for r in reapers) == len(sids)
    for sid in sids:
        assert len(ends_of(sync_redis, settings, sid)) == 1, sid


async def test_a_kept_lease_keeps_the_call_and_a_released_one_is_reaped(
    aredis: aioredis.Redis, sync_redis: redis.Redis, redis_url: str
) -> None:
    settings = Settings(redis_url=redis_url, lease_ms=300, max_call_ms=NEVER)
    publisher = CallPublisher(aredis, settings)
    await start_calls(publisher, ["kept", "released"])
    keeper = LeaseKeeper(aredis, settings.keyspace, settings.lease_ms)
    keeper.hold("kept")
    keeper.hold("released")
    keeper.release("released")
    keeping = asyncio.create_task(keeper.run())
    reaper = Reaper(aredis, publisher, settings)
    try:
        await sweep_until(reaper, 1)
        # Three more leases' worth of sweeps: the kept call is never reaped.
        loop = asyncio.get_running_loop()
        until = loop.time() + 3 * settings.lease_ms / 1000
        while loop.time() < until:
            assert (await reaper.sweep()).expired == 0
            await asyncio.sleep(0.05)
    finally:
        keeper.stop()
        await keeping
    assert ends_of(sync_redis, settings, "kept") == []
    assert [e["reason"] for e in ends_of(sync_redis, settings, "released")] == ["error"]


async def test_renewal_never_gives_an_ended_call_a_lease_again(
    aredis: aioredis.Redis, sync_redis: redis.Redis, redis_url: str
) -> None:
    settings = Settings(redis_url=redis_url, max_call_ms=NEVER)
    publisher = CallPublisher(aredis, settings)
    await start_calls(publisher, ["short"])
    end = ev.CallTerminated(event_id="e", session_id="short", timestamp=datetime.now(UTC),
                            seq=2, reason="normal", duration_seconds=1, state_transitions=0,
                            final_state="")
    assert (await publisher.commit(end)).status == "committed"
    keeper = LeaseKeeper(aredis, settings.keyspace, settings.lease_ms)
    keeper.hold("short")
    assert await keeper.renew() == 0
    assert sync_redis.zscore(settings.keyspace.leases(0), "short") is None


def started(session_id: str, at: datetime) -> ev.CallStarted:
    return ev.CallStarted(event_id=f"{session_id}-1", session_id=session_id, timestamp=at,
                          seq=1, caller_id="+1555", called_number="+1800",
                          dialog_name="helpdesk")


async def test_calls_past_the_maximum_duration_end_with_reason_timeout(
    aredis: aioredis.Redis, sync_redis: redis.Redis, redis_url: str
) -> None:
    settings = Settings(redis_url=redis_url, max_call_ms=60_000)
    publisher = CallPublisher(aredis, settings)
    now = datetime.now(UTC)
    # 70 s old by its timestamp: a plausible clock (well within MAX_CLOCK_SKEW_MS).
    await publisher.commit_many([started("marathon", now - timedelta(seconds=70)),
                                 started("sprint", now)])

    reaper = Reaper(aredis, publisher, settings)
    tally = await reaper.sweep()
    assert (tally.timed_out, tally.expired) == (1, 0)
    (end,) = ends_of(sync_redis, settings, "marathon")
    assert end["reason"] == "timeout"
    assert 70 <= int(str(end["duration_seconds"])) <= 80
    assert ends_of(sync_redis, settings, "sprint") == []
    assert (await reaper.sweep()).timed_out == 0


@pytest.mark.both_engines
@pytest.mark.parametrize("skew", [timedelta(days=-400), timedelta(days=2)],
                         ids=["dated-long-ago", "dated-ahead"])
async def test_an_implausible_timestamp_times_out_by_when_the_call_was_committed(
    aredis: aioredis.Redis, sync_redis: redis.Redis, settings: Settings, skew: timedelta,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call dated a year back (the spec's examples) is not ended at once, nor one
    dated days ahead never: both last the maximum duration from their commit."""
    settings = msgspec.structs.replace(settings, max_call_ms=1_500, lease_ms=60_000)
    publisher = CallPublisher(aredis, settings)
    # Enough calls dated that way to fill several of the reaper's batches, all
    # passed over, so one plausible overlong call behind them is still found.
    skewed = [f"skewed-{n}" for n in range(7)]
    with caplog.at_level("WARNING", logger="callhub.publisher"):
        await publisher.commit_many([started(sid, datetime.now(UTC) + skew) for sid in skewed])
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "callhub.publisher"]
    assert "skewed-0" in warning and ("before" if skew < timedelta(0) else "after") in warning
    assert "6 more calls" not in warning  # the rest are counted, not each reported
    await publisher.commit(started("plain", datetime.now(UTC) - timedelta(seconds=2)))

    reaper = Reaper(aredis, publisher, settings, batch=3)
    tally = await reaper.sweep()
    assert (tally.timed_out, tally.expired) == (1, 0)  # "plain", behind 7 passed over
    assert all(ends_of(sync_redis, settings, sid) == [] for sid in skewed)

    await sweep_until(reaper, len(skewed), timeout=10)
    for sid in skewed:
        (end,) = ends_of(sync_redis, settings, sid)
        assert end["reason"] == "timeout"
        assert 1 <= int(str(end["duration_seconds"])) <= 10, end  # from the commit


@pytest.mark.parametrize("status", ["terminated", "expired"])
async def test_a_lease_left_behind_by_an_ended_call_is_dropped_not_reaped(
    aredis: aioredis.Redis, sync_redis: redis.Redis, redis_url: str, status: str
) -> None:
    settings = Settings(redis_url=redis_url, max_call_ms=NEVER)
    keys = settings.keyspace
    sync_redis.zadd(keys.leases(0), {"ghost": 1})
    if status == "terminated":
        sync_redis.hset(keys.call("ghost"), mapping={"seq": 4, "status": "terminated"})
    reaper = Reaper(aredis, CallPublisher(aredis, settings), settings)
    assert (await reaper.sweep()).expired == 0
    assert sync_redis.zscore(keys.leases(0), "ghost") is None
    assert not sync_redis.exists(keys.call_events("ghost"))
