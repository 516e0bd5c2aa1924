"""A dialog-scoped key's 404 for another dialog's call reads what its 404 for an
unknown id reads: the scope is checked before the call's hash or events leave
Redis, so neither the answer nor its cost says that the call exists.

Measured on a real redis-server, by what it reports: the commands it ran and the
bytes it sent (``INFO commandstats``, ``INFO stats``). The timing itself is
bench/not_found_timing.py's subject.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from callhub.call_summary import SUMMARY_EVENT_TYPES
from callhub.settings import Settings
from callhub.transcript import TRANSCRIPT_EVENT_TYPES
from hub.errors import NotFound
from hub.store.call_records import CallRecords
from hub.store.call_store import CallStore
from tests.support.conversations import helpdesk_call
from tests.support.hubs import hub_client
from tests.support.keys import write_keys_file
from workers.commit.publisher import CallPublisher

BILLING = frozenset({"billing"})
FOREIGN = "call-abc-123"  # helpdesk_call's dialog is helpdesk
UNKNOWN = "call-xyz-999"  # same length


async def _redis_work(client: aioredis.Redis, read: Callable[[], Awaitable[object]]
                      ) -> tuple[dict[str, int], int]:
    """The commands ``read`` made Redis run (by name) and the bytes Redis sent,
    ``read`` having to end in a 404."""
    before_calls = await client.info("commandstats")
    before_bytes = (await client.info("stats"))["total_net_output_bytes"]
    with pytest.raises(NotFound):
        await read()
    after_bytes = (await client.info("stats"))["total_net_output_bytes"]
    after_calls = await client.info("commandstats")
    ran = {name.removeprefix("cmdstat_"): stats["calls"] - before_calls.get(name, {}).get(
        "calls", 0) for name, stats in after_calls.items()}
    ran = {name: n for name, n in ran.items() if n and name not in ("info",)}
    return ran, after_bytes - before_bytes


@pytest.mark.parametrize("route", ["get_call", "events_page", "transcript_events",
                                   "summary_events"])
async def test_a_foreign_calls_404_reads_what_an_unknown_ids_does(
        aredis: aioredis.Redis, settings: Settings, route: str) -> None:
    call = helpdesk_call(FOREIGN)
    await CallPublisher(aredis, settings).commit_many(call.events)
    store, records = CallStore(aredis, settings.keyspace), CallRecords(aredis, settings.keyspace)
    reads: dict[str, Callable[[str], Awaitable[object]]] = {
        "get_call": lambda sid: store.get_call(sid, BILLING),
        "events_page": lambda sid: records.page(sid, BILLING, None, None, None, 100),
        "transcript_events": lambda sid: records.events(sid, BILLING, TRANSCRIPT_EVENT_TYPES),
        "summary_events": lambda sid: records.events(sid, BILLING, SUMMARY_EVENT_TYPES),
    }
    foreign = await _redis_work(aredis, lambda: reads[route](FOREIGN))
    unknown = await _redis_work(aredis, lambda: reads[route](UNKNOWN))
    assert foreign[0] == unknown[0], "the same commands"
    assert not {"hgetall", "xrange"} & set(foreign[0]), "nothing of the foreign call read"
    # Redis's answers differ by the dialog's name alone ("helpdesk" against nil),
    # give or take a digit of INFO's own reply: never the call's data.
    assert abs(foreign[1] - unknown[1]) <= 32, (foreign, unknown)
    # And the call is there: a key that sees its dialog reads it.
    assert (await store.get_call(FOREIGN, frozenset({"helpdesk"}))).dialog_name == "helpdesk"
    page = await records.page(FOREIGN, frozenset({"helpdesk"}), None, None, None, 100)
    assert len(page.events) == len(call.events)


@pytest.mark.parametrize("route", ["", "/events", "/transcript", "/summary"])
async def test_a_foreign_calls_404_answers_what_an_unknown_ids_does(
        aredis: aioredis.Redis, settings: Settings, tmp_path: Path, route: str) -> None:
    """Over HTTP, every route of a call: the same status, headers and body but
    for the id, for a key scoped to another dialog; the call's own key gets it."""
    await CallPublisher(aredis, settings).commit_many(helpdesk_call(FOREIGN).events)
    keyed = msgspec.structs.replace(settings, secret="foreign-404-test-secret-0123456789",
                                    api_keys_file=str(write_keys_file(
                                        tmp_path / "keys.toml", helpdesk_dialogs=["billing"])))
    async with hub_client(keyed) as api:
        scoped = {"X-API-Key": "helpdesk-key"}  # named helpdesk, scoped to billing
        foreign = await api.get(f"/v1/calls/{FOREIGN}{route}", headers=scoped)
        unknown = await api.get(f"/v1/calls/{UNKNOWN}{route}", headers=scoped)
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.content.replace(FOREIGN.encode(), UNKNOWN.encode()) == unknown.content
        headers = [{k: v for k, v in answer.headers.items() if k != "x-request-id"}
                   for answer in (foreign, unknown)]
        assert headers[0] == headers[1]
        own = await api.get(f"/v1/calls/{FOREIGN}{route}", headers={"X-API-Key": "ops-key"})
        assert own.status_code == 200, own.text
