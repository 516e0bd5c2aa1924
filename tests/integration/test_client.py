"""``callhub.client`` against a real hub (in process, on a loopback port) and a real Redis:
typed events, the REST calls, scopes and the errors a caller catches by kind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from callhub import events as ev
from callhub.client import (
    BadRequest,
    CallhubClient,
    HistoryEnd,
    MemoryCursorStore,
    NotFound,
    Unauthorized,
)
from callhub.client import sync as sync_client
from callhub.settings import Settings
from tests.support.conversations import helpdesk_call
from tests.support.hubs import serving
from tests.support.keys import write_keys_file
from tests.support.polling import async_wait_until
from tests.support.strategies import call_started, dtmf, terminated
from workers.commit.publisher import CallPublisher


@pytest.fixture
def keyed(settings: Settings, tmp_path: Path) -> Settings:
    """The settings with two keys: ``ops-key`` sees everything, ``helpdesk-key`` one dialog."""
    keys = write_keys_file(tmp_path / "keys.toml")
    return Settings(redis_url=settings.redis_url, redis_cluster=settings.redis_cluster,
                    api_keys_file=str(keys))


async def test_events_come_typed_in_order_and_the_store_resumes_exactly(
    aredis: aioredis.Redis, settings: Settings,
) -> None:
    publisher = CallPublisher(aredis, settings)
    store = MemoryCursorStore()
    async with serving(settings) as live, CallhubClient(live.url) as hub:
        got: list[ev.Event] = []

        async def consume(limit: int) -> None:
            stream = hub.events(event_types=["call_started", "dtmf_received"],
                                cursor_store=store)
            async for item in stream:
                assert isinstance(item, ev.Event)
                got.append(item)
                await stream.ack()
                if len(got) >= limit:
                    return

        first = asyncio.create_task(consume(2))
        await async_wait_until(lambda: live.replica.dispatcher.count > 0,
                               what="the client to subscribe")
        await publisher.commit_many([call_started("a"), dtmf("a", 2), terminated("a", 3),
                                     call_started("b"), dtmf("b", 2, "9")])
        await asyncio.wait_for(first, 10)
        assert got == [call_started("a"), dtmf("a", 2)]
        # A new stream from the store's cursor goes on after the last acked event.
        await asyncio.wait_for(consume(4), 10)
    assert got == [call_started("a"), dtmf("a", 2), call_started("b"), dtmf("b", 2, "9")]


async def test_history_then_a_seam_then_live(aredis: aioredis.Redis, settings: Settings) -> None:
    publisher = CallPublisher(aredis, settings)
    await publisher.commit_many([call_started("h", dialog="helpdesk"), dtmf("h", 2)])
    async with serving(settings) as live, CallhubClient(live.url) as hub:
        items: list[object] = []
        stream = hub.events(dialog_name="helpdesk", include_history=True)

        async def consume() -> None:
            async for item in stream:
                items.append(item)
                if isinstance(item, HistoryEnd):
                    await publisher.commit(dtmf("h", 3, "1"))
                if len(items) == 4:
                    return

        await asyncio.wait_for(consume(), 10)
    assert items[:2] == [call_started("h", dialog="helpdesk"), dtmf("h", 2)]
    assert isinstance(items[2], HistoryEnd) and items[2].cursor
    assert items[3] == dtmf("h", 3, "1")


async def test_rest_calls_are_typed_and_page_through_everything(
    aredis: aioredis.Redis, settings: Settings,
) -> None:
    publisher = CallPublisher(aredis, settings)
    await publisher.commit_many([call_started(f"call-{n}") for n in range(7)])
    conversation = helpdesk_call("talk-1")
    await publisher.commit_many(conversation.events)
    async with serving(settings) as live, CallhubClient(live.url) as hub:
        listed = [call.session_id async for call in hub.list_calls(page_size=3)]
        assert sorted(listed) == [f"call-{n}" for n in range(7)]  # active calls (talk-1 ended)
        assert len(listed) == len(set(listed))
        stored = [event async for event in hub.call_events("talk-1", page_size=2)]
        assert stored == conversation.events
        transcript = await hub.transcript("talk-1")
        assert transcript.turns and transcript.session_id == "talk-1"
        summary = await hub.summary("talk-1")
        assert summary.turns.caller >= 1
        ended = await hub.get_call("talk-1")
        assert ended.status == "terminated" and ended.summary == summary


async def test_a_scoped_key_sees_only_its_dialog_and_errors_are_typed(
    aredis: aioredis.Redis, keyed: Settings,
) -> None:
    await CallPublisher(aredis, keyed).commit_many([
        call_started("h-1", dialog="helpdesk"), call_started("b-1", dialog="billing")])
    async with serving(keyed) as live:
        async with CallhubClient(live.url, api_key="helpdesk-key") as scoped:
            assert [c.session_id async for c in scoped.list_calls()] == ["h-1"]
            with pytest.raises(NotFound):
                await scoped.get_call("b-1")
            with pytest.raises(NotFound):
                await scoped.transcript("b-1")
            with pytest.raises(BadRequest) as bad:
                await scoped.get_call("bad id")
            assert bad.value.param == "id"
            with pytest.raises(BadRequest, match="dtfm") as bad_type:
                async for _ in scoped.events(event_types="dtfm"):
                    pass
            assert bad_type.value.param == "event_types"
        async with CallhubClient(live.url, api_key="wrong") as refused:
            with pytest.raises(Unauthorized, match="not valid"):
                await refused.get_call("h-1")
            with pytest.raises(Unauthorized):
                async for _ in refused.events():
                    pass


def test_the_sync_facade_against_a_real_hub(redis_url: str, settings: Settings) -> None:
    async def commit() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await CallPublisher(client, settings).commit_many([call_started("s-1")])
        await client.aclose()

    asyncio.run(commit())

    async def check() -> None:
        async with serving(settings) as live:
            def use() -> list[str]:
                with sync_client.CallhubClient(live.url) as hub:
                    assert hub.get_call("s-1").status == "active"
                    return [c.session_id for c in hub.list_calls()]

            assert await asyncio.to_thread(use) == ["s-1"]

    asyncio.run(check())
