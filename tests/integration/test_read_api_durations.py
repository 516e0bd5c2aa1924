"""Get Call's and List Calls' ``duration_seconds`` on a real Redis: a call whose
``call_started`` is dated implausibly far from its commit (a backfill, a wrong
clock) lasts since the hub first saw it, as the reaper counts its age; a call
dated plausibly lasts since its own timestamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from callhub import events as ev
from callhub.settings import Settings
from tests.support.strategies import call_started
from workers.commit.publisher import CallPublisher

pytestmark = pytest.mark.both_engines


def started_at(sid: str, at: datetime) -> ev.CallStarted:
    return ev.CallStarted(event_id=f"{sid}-1", session_id=sid, timestamp=at, seq=1,
                          caller_id="+15551234567", called_number="+18001234567",
                          dialog_name="helpdesk")


def ended_now(sid: str, seq: int) -> ev.CallTerminated:
    """An end stamped with the hub's own clock, as the reaper commits one."""
    return ev.CallTerminated(event_id=f"{sid}-{seq}", session_id=sid, seq=seq,
                             timestamp=datetime.now(UTC), reason="timeout",
                             duration_seconds=0, state_transitions=0, final_state="greeting")


async def test_an_implausibly_dated_call_lasts_since_its_commit(
    settings: Settings, aredis: aioredis.Redis, api: httpx.AsyncClient
) -> None:
    publisher = CallPublisher(aredis, settings)
    four_minutes_ago = datetime.now(UTC) - timedelta(minutes=4)
    await publisher.commit_many([call_started("backfill", at=0),  # dated 2025
                                 started_at("plausible", four_minutes_ago)])
    backfill = (await api.get("/v1/calls/backfill")).json()
    assert backfill["start_time"] == "2025-06-14T18:30:00Z"  # the event's own data
    assert 0 <= backfill["duration_seconds"] <= 10
    plausible = (await api.get("/v1/calls/plausible")).json()
    assert 235 <= plausible["duration_seconds"] <= 250
    listed = {c["session_id"]: c["duration_seconds"]
              for c in (await api.get("/v1/calls")).json()["calls"]}
    assert 0 <= listed["backfill"] <= 10 and 235 <= listed["plausible"] <= 250

    await publisher.commit(ended_now("backfill", 2))
    ended = (await api.get("/v1/calls/backfill")).json()
    assert ended["status"] == "terminated"
    assert 0 <= ended["duration_seconds"] <= 10  # from its commit to the end the hub stamped
    page = (await api.get("/v1/calls?status=terminated")).json()
    assert [c["duration_seconds"] for c in page["calls"]] == [ended["duration_seconds"]]
