"""Resume cursors a client can forge: only a 200 or a 400, never a wait for nothing.

Anyone can seal a cursor (its digest is a checksum, not a secret), so the
positions it carries are input like any other: numbers Redis would refuse are
a 400 naming Last-Event-ID, and a position past the newest entry a log ever had
(forged, or from a Redis that lost entries) goes on at once instead of waiting
for readers that will never get there.
"""

from __future__ import annotations

import time

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from callhub.cursor import Cursor
from callhub.settings import Settings
from callhub.tokens import seal
from hub.api.event_stream import READY_TIMEOUT_S
from tests.support.hubs import serving
from tests.support.polling import async_wait_until
from tests.support.sse import subscribe
from tests.support.strategies import call_started
from workers.commit.publisher import CallPublisher

_PART = st.integers(-(2**63), 2**64 - 1)
_POSITION = st.none() | st.tuples(_PART, _PART)


@pytest.mark.both_engines
async def test_a_cursor_past_the_log_goes_on_at_once_and_streams_what_comes(
    settings: Settings, aredis: aioredis.Redis
) -> None:
    now_ms = int(time.time() * 1000)
    future = Cursor(tuple((now_ms + 10**9, 0) for _ in range(settings.shards))).encode()
    async with serving(settings) as live, httpx.AsyncClient(timeout=10) as client:
        started = time.perf_counter()
        async with subscribe(f"{live.url}/v1/calls/events", headers={"Last-Event-ID": future},
                             client=client) as stream:
            waited = time.perf_counter() - started
            assert stream.response.status_code == 200
            assert waited < READY_TIMEOUT_S / 2, f"held {waited:.2f} s for a cursor never reached"
            await CallPublisher(aredis, settings).commit_many([call_started("c-after")])
            await async_wait_until(lambda: [e.data for e in stream.events if e.event != "ping"],
                                   what="the next event on a stream resumed past the log")


@hypothesis_settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(positions=st.lists(_POSITION, min_size=0, max_size=3), kind=st.sampled_from(
    [b"callhub-cursor", b"callhub-page"]), version=st.integers(0, 3))
async def test_a_forged_cursor_is_a_200_or_a_400_naming_last_event_id(
    settings: Settings, positions: list[tuple[int, int] | None], kind: bytes, version: int
) -> None:
    forged = seal(kind, version, [positions])
    async with serving(settings) as live, httpx.AsyncClient(timeout=10) as client, \
            client.stream("GET", f"{live.url}/v1/calls/events",
                          headers={"Last-Event-ID": forged}) as answer:
        assert answer.status_code in (200, 400)
        if answer.status_code == 400:
            error = msgspec.json.decode(await answer.aread())["error"]
            assert error["param"] == "Last-Event-ID"
