"""Publisher logic that needs no real server: fakeredis runs the commit script
(it has Lua), which is enough for argument building and outcome mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.settings import Settings
from tests.strategies import call_started, dtmf, terminated
from workers.publisher import CallPublisher, timestamp_ms


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
    assert len(publisher._dialogs) == 3
    # c-0 was evicted: ending it looks its dialog up instead of guessing.
    assert (await publisher.commit(terminated("c-0", 2))).status == "committed"
    assert (await publisher.commit(terminated("c-4", 2))).status == "committed"
    assert "c-4" not in publisher._dialogs


async def test_an_empty_batch_costs_nothing(fake: fakeredis.aioredis.FakeRedis) -> None:
    assert await CallPublisher(fake, Settings()).commit_many([]) == []
