"""The commit script and the publisher against a real redis-server (I1, I2)."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from callhub import events as ev
from callhub.keyspace import Keyspace
from callhub.settings import Settings
from tests.support.polling import wait_until
from tests.support.processes import free_port
from tests.support.redis_servers import start_redis_server
from tests.support.redis_snapshot import snapshot
from tests.support.strategies import action, call_started, dtmf, terminated, transition
from workers.commit.publisher import COMMIT_SHA, CallPublisher, PublisherUnavailable

KEYS = Keyspace()

pytestmark = pytest.mark.both_engines


@pytest.fixture
async def publisher(aredis: aioredis.Redis, settings: Settings) -> CallPublisher:
    return CallPublisher(aredis, settings)


async def test_a_commit_writes_the_same_entry_to_the_log_and_the_session_stream(
    publisher: CallPublisher, sync_redis: redis.Redis
) -> None:
    outcomes = await publisher.commit_many([call_started("c-1"), dtmf("c-1", 2)])
    assert [o.status for o in outcomes] == ["committed", "committed"]
    log = sync_redis.xrange(KEYS.log(0))
    session = sync_redis.xrange(KEYS.call_events("c-1"))
    assert log == session
    assert [entry_id.decode() for entry_id, _ in log] == [o.entry_id for o in outcomes]
    fields = log[1][1]
    assert fields[b"type"] == b"dtmf_received"
    assert fields[b"session_id"] == b"c-1"
    assert fields[b"dialog"] == b"helpdesk"
    assert fields[b"seq"] == b"2"
    assert fields[b"data"] == ev.encode_event(dtmf("c-1", 2))


async def test_the_call_hash_and_indexes_follow_the_call(
    publisher: CallPublisher, sync_redis: redis.Redis
) -> None:
    await publisher.commit(call_started("c-1", at=5))
    call = sync_redis.hgetall(KEYS.call("c-1"))
    assert call[b"status"] == b"active"
    assert call[b"dialog_name"] == b"helpdesk"
    assert call[b"caller_id"] == b"+15551234567"
    assert int(call[b"start_ms"]) == 1749925800000 + 5000
    assert sync_redis.zscore(KEYS.active(0), "c-1") == 1749925805000
    assert sync_redis.zscore(KEYS.active_dialog(0, "helpdesk"), "c-1") == 1749925805000
    assert sync_redis.zscore(KEYS.leases(0), "c-1") is not None

    await publisher.commit_many([
        transition("c-1", 2, "greeting"),
        transition("c-1", 3, "menu", "greeting"),
        action("c-1", 4, "set_variable", {"customer_name": "Jane", "tier": 3, "vip": True}),
        action("c-1", 5, "hold"),
    ])
    call = sync_redis.hgetall(KEYS.call("c-1"))
    assert call[b"current_state"] == b"menu"
    assert call[b"state_transitions"] == b"2"
    assert call[b"status"] == b"on_hold"
    assert call[b"var:customer_name"] == b'"Jane"'
    assert call[b"var:tier"] == b"3"
    assert call[b"var:vip"] == b"true"

    await publisher.commit_many([
        action("c-1", 6, "resume", {"tier": None}),
    ])
    call = sync_redis.hgetall(KEYS.call("c-1"))
    assert call[b"status"] == b"active"
    assert b"var:tier" not in call
    await publisher.commit(action("c-1", 7, "transfer"))
    assert sync_redis.hget(KEYS.call("c-1"), "status") == b"transferring"


async def test_termination_ends_the_call_and_starts_its_retention(
    aredis: aioredis.Redis, settings: Settings, sync_redis: redis.Redis
) -> None:
    publisher = CallPublisher(aredis, msgspec.structs.replace(settings, call_retention_ms=60_000))
    await publisher.commit_many([call_started("c-1"), call_started("c-2")])
    outcome = await publisher.commit(terminated("c-1", 2, reason="caller_hangup", at=75))
    assert outcome.status == "committed"
    call = sync_redis.hgetall(KEYS.call("c-1"))
    assert call[b"status"] == b"terminated"
    assert call[b"reason"] == b"caller_hangup"
    assert call[b"final_state"] == b"goodbye"
    assert int(call[b"end_ms"]) == 1749925800000 + 75_000
    assert sync_redis.zrange(KEYS.active(0), 0, -1) == [b"c-2"]
    assert sync_redis.zrange(KEYS.active_dialog(0, "helpdesk"), 0, -1) == [b"c-2"]
    assert sync_redis.zscore(KEYS.leases(0), "c-1") is None
    for key in (KEYS.call("c-1"), KEYS.call_events("c-1")):
        assert 0 < sync_redis.pttl(key) <= 60_000
    assert sync_redis.pttl(KEYS.call("c-2")) == -1


async def test_an_ended_call_is_indexed_by_end_time_and_trimmed_by_the_retention(
    aredis: aioredis.Redis, settings: Settings, sync_redis: redis.Redis
) -> None:
    publisher = CallPublisher(aredis, msgspec.structs.replace(settings, call_retention_ms=60_000))
    caller = "+15551234567"
    await publisher.commit_many([call_started("c-1"), call_started("c-2", dialog="billing"),
                                 call_started("c-3")])
    await publisher.commit(terminated("c-1", 2, at=75))
    end_ms = 1749925800000 + 75_000
    indexes = (KEYS.ended(0), KEYS.ended_dialog(0, "helpdesk"), KEYS.ended_caller(0, caller),
               KEYS.ended_dialog_caller(0, "helpdesk", caller))
    for key in indexes:
        assert sync_redis.zrange(key, 0, -1, withscores=True) == [(b"c-1", end_ms)]
        assert 0 < sync_redis.pttl(key) <= 60_000  # a caller who never calls again goes
    assert not sync_redis.exists(KEYS.ended_dialog(0, "billing"))
    # 61 s later by the events' clock: c-1 ended more than the retention before c-2.
    await publisher.commit(terminated("c-2", 2, at=75 + 61))
    assert sync_redis.zrange(KEYS.ended(0), 0, -1) == [b"c-2"]
    assert sync_redis.zrange(KEYS.ended_caller(0, caller), 0, -1) == [b"c-2"]
    assert sync_redis.zrange(KEYS.ended_dialog(0, "billing"), 0, -1) == [b"c-2"]
    # The trim is per index: the helpdesk ones keep c-1 until a helpdesk call ends.
    assert sync_redis.zrange(KEYS.ended_dialog(0, "helpdesk"), 0, -1) == [b"c-1"]
    await publisher.commit(terminated("c-3", 2, at=75 + 30))  # within c-2's retention
    assert sync_redis.zrange(KEYS.ended(0), 0, -1) == [b"c-3", b"c-2"]
    assert sync_redis.zrange(KEYS.ended_dialog(0, "helpdesk"), 0, -1) == [b"c-1", b"c-3"]


async def test_an_ending_with_a_stale_caller_is_indexed_under_the_stored_one(
    aredis: aioredis.Redis, settings: Settings, sync_redis: redis.Redis
) -> None:
    """The script redirects; the publisher sends it again with the stored
    caller's keys (named up front, as a cluster wants them)."""
    publisher = CallPublisher(aredis, msgspec.structs.replace(settings, shards=3))
    keys = Keyspace(shards=3)
    await publisher.commit_many([call_started("c-1"), call_started("c-2")])
    sync_redis.hset(keys.call("c-1"), "caller_id", "+15550009999")
    outcomes = await publisher.commit_many([terminated("c-1", 2), terminated("c-2", 2)])
    assert [o.status for o in outcomes] == ["committed", "committed"]
    shard = keys.shard_of("c-1")
    assert sync_redis.zrange(keys.ended_caller(shard, "+15550009999"), 0, -1) == [b"c-1"]
    assert b"c-1" not in sync_redis.zrange(keys.ended_caller(shard, "+15551234567"), 0, -1)
    assert b"c-2" in sync_redis.zrange(
        keys.ended_caller(keys.shard_of("c-2"), "+15551234567"), 0, -1)


async def test_a_retried_commit_returns_the_original_entry_and_writes_nothing(
    publisher: CallPublisher, sync_redis: redis.Redis
) -> None:
    first = await publisher.commit_many([call_started("c-1")] +
                                        [dtmf("c-1", seq) for seq in range(2, 80)])
    before = snapshot(sync_redis)
    for seq in (1, 2, 40, 79):  # the last one, an old one, the very first
        again = await publisher.commit(first[seq - 1].event)
        assert again.status == "duplicate"
        assert again.entry_id == first[seq - 1].entry_id
    assert snapshot(sync_redis) == before


@pytest.mark.parametrize(
    ("events", "code"),
    [
        ([dtmf("ghost", 1)], "unknown_call"),
        ([terminated("ghost", 1)], "unknown_call"),
        ([call_started("c-1"), call_started("c-1", seq=2)], "already_started"),
        ([call_started("c-1"), terminated("c-1", 2), dtmf("c-1", 3)], "call_ended"),
        ([call_started("c-1"), dtmf("c-1", 3), dtmf("c-1", 2)], "stale_seq"),
    ],
)
async def test_a_rejected_event_leaves_redis_exactly_as_it_was(
    publisher: CallPublisher, sync_redis: redis.Redis, events: list[ev.Event], code: str
) -> None:
    for event in events[:-1]:
        assert (await publisher.commit(event)).status == "committed"
    before = snapshot(sync_redis)
    outcome = await publisher.commit(events[-1])
    assert (outcome.status, outcome.code) == ("rejected", code)
    assert outcome.reason
    assert snapshot(sync_redis) == before


async def test_an_invalid_struct_is_refused_before_it_reaches_redis(
    publisher: CallPublisher, sync_redis: redis.Redis
) -> None:
    await publisher.commit(call_started("c-1"))
    before = snapshot(sync_redis)
    bad = dtmf("c-1", 2, digit="Z")  # type: ignore[arg-type]
    outcome = await publisher.commit(bad)
    assert (outcome.status, outcome.code) == ("rejected", "invalid")
    assert "$.digit" in (outcome.reason or "")
    assert snapshot(sync_redis) == before


async def test_a_call_ended_by_another_process_is_found_in_its_dialog_index(
    aredis: aioredis.Redis, settings: Settings, sync_redis: redis.Redis
) -> None:
    await CallPublisher(aredis, settings).commit(call_started("c-1", dialog="billing"))
    fresh = CallPublisher(aredis, settings)  # has never seen c-1 start
    assert (await fresh.commit(terminated("c-1", 2))).status == "committed"
    assert sync_redis.exists(KEYS.active_dialog(0, "billing")) == 0


async def test_many_calls_commit_in_one_pipeline_in_per_call_order(
    publisher: CallPublisher, sync_redis: redis.Redis
) -> None:
    events: list[ev.Event] = [call_started(f"c-{n}") for n in range(50)]
    events += [dtmf(f"c-{n}", seq) for seq in range(2, 6) for n in range(50)]
    outcomes = await publisher.commit_many(events)
    assert {o.status for o in outcomes} == {"committed"}
    for n in range(50):
        stream = sync_redis.xrange(KEYS.call_events(f"c-{n}"))
        assert [int(fields[b"seq"]) for _, fields in stream] == [1, 2, 3, 4, 5]
    assert sync_redis.xlen(KEYS.log(0)) == len(events)


async def test_shards_spread_calls_and_each_commit_stays_in_its_shard(
    aredis: aioredis.Redis, settings: Settings, sync_redis: redis.Redis
) -> None:
    keys = Keyspace(shards=4)
    publisher = CallPublisher(aredis, msgspec.structs.replace(settings, shards=4))
    sids = [f"call-{n}" for n in range(40)]
    await publisher.commit_many([call_started(sid) for sid in sids])
    for shard in range(4):
        logged = {fields[b"session_id"].decode() for _, fields in
                  sync_redis.xrange(keys.log(shard))}
        assert logged == {sid for sid in sids if keys.shard_of(sid) == shard}
        assert sync_redis.zcard(keys.active(shard)) == len(logged)


async def test_the_log_is_trimmed_by_time(
    aredis: aioredis.Redis, settings: Settings, sync_redis: redis.Redis
) -> None:
    publisher = CallPublisher(aredis, msgspec.structs.replace(settings, log_retention_ms=1))
    old = [call_started(f"old-{n}") for n in range(300)]
    await publisher.commit_many(old)
    now_ms = int(sync_redis.time()[0]) * 1000
    wait_until(lambda: int(sync_redis.time()[0]) * 1000 > now_ms + 5, what="the server clock")
    await publisher.commit(call_started("new"))
    # Trimming is approximate (whole stream nodes), so some old entries may
    # stay, but the ones in full nodes older than the retention are gone.
    assert sync_redis.xlen(KEYS.log(0)) < 300
    # Session streams are not trimmed by the log's retention.
    assert sync_redis.xlen(KEYS.call_events("old-0")) == 1


async def test_a_flushed_script_cache_is_reloaded(
    publisher: CallPublisher, sync_redis: redis.Redis
) -> None:
    await publisher.commit(call_started("c-1"))
    sync_redis.script_flush()
    assert sync_redis.script_exists(COMMIT_SHA) == [False]
    assert (await publisher.commit(dtmf("c-1", 2))).status == "committed"
    assert sync_redis.xlen(KEYS.log(0)) == 2


async def test_commits_wait_out_a_redis_outage_and_are_not_duplicated() -> None:
    port = free_port()
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    publisher = CallPublisher(
        client, Settings(redis_url=f"redis://127.0.0.1:{port}/0"), retry_for_s=20
    )
    servers = []

    async def start_later() -> None:
        await asyncio.sleep(0.3)  # the outage the publisher has to ride out
        servers.append(await asyncio.to_thread(start_redis_server, port))

    try:
        starter = asyncio.create_task(start_later())
        outcomes = await publisher.commit_many([call_started("c-1"), dtmf("c-1", 2)])
        await starter
        assert [o.status for o in outcomes] == ["committed", "committed"]
        with servers[0].client() as sync:
            assert sync.xlen(KEYS.log(0)) == 2
    finally:
        await client.aclose()
        for server in servers:
            server.stop()


async def test_an_outage_longer_than_the_retry_window_is_reported() -> None:
    port = free_port()
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
    publisher = CallPublisher(
        client, Settings(redis_url=f"redis://127.0.0.1:{port}/0"), retry_for_s=0.3
    )
    with pytest.raises(PublisherUnavailable):
        await publisher.commit(call_started("c-1"))
    await client.aclose()


async def test_the_stored_json_is_the_encoded_event(
    publisher: CallPublisher, sync_redis: redis.Redis
) -> None:
    event = call_started("c-1")
    await publisher.commit(event)
    [(_, fields)] = sync_redis.xrange(KEYS.log(0))
    assert json.loads(fields[b"data"]) == json.loads(ev.encode_event(event))
    assert ev.decode_event(fields[b"data"]) == event


def test_callhub_publish_commits_to_the_engine(
    redis_url: str, redis_engine: str, sync_redis: redis.Redis, callhub_env: dict[str, str]
) -> None:
    """``callhub publish`` (the spec's example events) on a single node and on a cluster."""
    import subprocess
    import sys

    from tests.support.paths import DATA

    env = {**callhub_env, "CALLHUB_REDIS_CLUSTER": str(redis_engine == "cluster").lower()}
    done = subprocess.run(
        [sys.executable, "-m", "callhub.cli", "publish", "--redis-url", redis_url,
         str(DATA / "spec_events.jsonl")],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert sync_redis.xlen(KEYS.log(0)) >= 3
