"""Publisher logic that needs no real server: fakeredis runs the commit script
(it has Lua), which is enough for argument building and outcome mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import AskError, ClusterDownError, TryAgainError

from callhub.connections import RedisClient
from callhub.settings import Settings
from tests.support.strategies import call_started, dtmf, terminated
from workers.commit.publisher import COMMIT_SCRIPT, CallPublisher, timestamp_ms


@pytest.fixture
def fake() -> fakeredis.aioredis.FakeRedis:
    return fakeredis.aioredis.FakeRedis()


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamp_ms_is_exact(moment: datetime) -> None:
    whole_ms = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert epoch + timedelta(milliseconds=timestamp_ms(moment)) == whole_ms


async def test_outcomes_come_back_in_the_order_of_the_events(
    fake: fakeredis.aioredis.FakeRedis,
) -> None:
    publisher = CallPublisher(fake, Settings())
    events = [call_started("a"), dtmf("ghost", 1), call_started("b"), dtmf("a", 2)]
    outcomes = await publisher.commit_many(events)
    assert [o.event for o in outcomes] == events
    assert [o.status for o in outcomes] == ["committed", "rejected", "committed", "committed"]
    assert outcomes[1].code == "unknown_call"
    assert all(o.stored for o in outcomes if o.status != "rejected")


async def test_the_dialog_cache_is_bounded_and_forgets_ended_calls(
    fake: fakeredis.aioredis.FakeRedis,
) -> None:
    publisher = CallPublisher(fake, Settings(), max_dialog_cache=3)
    await publisher.commit_many([call_started(f"c-{n}") for n in range(5)])
    assert len(publisher._calls) == 3
    # c-0 was evicted: ending it looks its dialog up instead of guessing.
    assert (await publisher.commit(terminated("c-0", 2))).status == "committed"
    assert (await publisher.commit(terminated("c-4", 2))).status == "committed"
    assert "c-4" not in publisher._calls


async def test_an_ended_call_is_indexed_under_the_caller_its_start_stored(
    fake: fakeredis.aioredis.FakeRedis,
) -> None:
    """The publisher's idea of the caller may be stale (a namesake started since):
    the script names the stored one, the termination goes again, and commits."""
    settings = Settings()
    keys = settings.keyspace
    publisher = CallPublisher(fake, settings)
    await publisher.commit(call_started("c-1"))
    await fake.hset(keys.call("c-1"), "caller_id", "+15550009999")
    outcomes = await publisher.commit_many([terminated("c-1", 2), dtmf("c-1", 3)])
    assert [o.status for o in outcomes] == ["committed", "rejected"]
    assert outcomes[1].code == "call_ended"  # held back until the termination was answered
    assert await fake.zscore(keys.ended_caller(0, "+15550009999"), "c-1") is not None
    assert await fake.zscore(keys.ended_dialog_caller(0, "helpdesk", "+15550009999"),
                             "c-1") is not None
    assert await fake.exists(keys.ended_caller(0, "+15551234567")) == 0
    assert await fake.zscore(keys.ended(0), "c-1") is not None


async def test_a_call_ended_unseen_is_indexed_under_its_stored_caller(
    fake: fakeredis.aioredis.FakeRedis,
) -> None:
    settings = Settings()
    await CallPublisher(fake, settings).commit(call_started("c-1"))
    reaper = CallPublisher(fake, settings)  # another process: no cache of c-1
    assert (await reaper.commit(terminated("c-1", 2))).status == "committed"
    assert await fake.zscore(settings.keyspace.ended_caller(0, "+15551234567"), "c-1") == (
        timestamp_ms(terminated("c-1", 2).timestamp))


async def test_an_empty_batch_costs_nothing(fake: fakeredis.aioredis.FakeRedis) -> None:
    assert await CallPublisher(fake, Settings()).commit_many([]) == []


class ReplyOnce:
    """A client whose next pipeline answers its first command with ``error``
    (after running it): a slot in transition, seen by one command of a batch."""

    def __init__(self, client: fakeredis.aioredis.FakeRedis, error: Exception) -> None:
        self._client = client
        self._error: Exception | None = error

    def pipeline(self, transaction: bool = False) -> Any:
        pipe = self._client.pipeline(transaction=transaction)
        execute = pipe.execute

        async def execute_once_wrong(raise_on_error: bool = True) -> list[Any]:
            replies = await execute(raise_on_error=raise_on_error)
            if self._error is not None:
                replies[0], self._error = self._error, None
            return list(replies)

        pipe.execute = execute_once_wrong
        return pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize("error", [TryAgainError("TRYAGAIN multiple keys"),
                                   AskError("3999 127.0.0.1:7001"),
                                   ClusterDownError("CLUSTERDOWN the cluster is down")])
async def test_a_slot_in_transition_retries_the_batch_instead_of_rejecting(
    fake: fakeredis.aioredis.FakeRedis, error: Exception,
) -> None:
    await fake.script_load(COMMIT_SCRIPT)  # so the first pipeline commits
    client = cast(RedisClient, ReplyOnce(fake, error))
    publisher = CallPublisher(client, Settings(), retry_for_s=5)
    events = [call_started("a"), call_started("b"), dtmf("a", 2)]
    outcomes = await publisher.commit_many(events)
    # Not one is rejected. The batch did run before one reply was lost: the
    # retry finds every commit stored, and stores none twice.
    assert [o.status for o in outcomes] == ["duplicate"] * 3
    assert all(o.stored for o in outcomes)
    assert publisher.retries == 1
    assert await fake.xlen(Settings().keyspace.log(0)) == 3
