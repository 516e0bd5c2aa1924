"""Get Call and List Calls on a real redis-server, as the spec shows them."""

from __future__ import annotations

import httpx
import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from callhub.cursor import Cursor, parse_stream_id
from callhub.keyspace import Keyspace
from callhub.settings import Settings
from hub.store.call_store import PagePosition, encode_page_token
from tests.support.hubs import hub_client
from tests.support.polling import wait_until
from tests.support.processes import free_port
from tests.support.redis_servers import sync_client
from tests.support.spec_examples import publish_spec_examples
from tests.support.strategies import action, call_started, terminated, transition
from workers.commit.publisher import CallPublisher

pytestmark = pytest.mark.both_engines

SPEC_CALL_FIELDS = {
    "session_id", "caller_id", "called_number", "dialog_name", "current_state",
    "start_time", "duration_seconds", "status", "variables",
}


async def test_the_spec_examples_answer_as_the_spec_shows(
    settings: Settings, api: httpx.AsyncClient
) -> None:
    publish_spec_examples(settings.redis_url, 2, settings.redis_cluster)
    call = (await api.get("/v1/calls/call-abc-123")).json()
    assert set(call) >= SPEC_CALL_FIELDS
    assert set(call) - SPEC_CALL_FIELDS == {"cursor"}
    assert call["session_id"] == "call-abc-123"
    assert call["caller_id"] == "+15551234567"
    assert call["called_number"] == "+18001234567"
    assert call["dialog_name"] == "helpdesk"
    assert call["start_time"] == "2025-06-14T18:30:00Z"
    assert call["status"] == "active"
    assert call["variables"] == {}
    # Dated 2025, committed now: implausible, so it counts from its commit (as the reaper does)
    assert isinstance(call["duration_seconds"], int) and 0 <= call["duration_seconds"] <= 10

    for query in ("page_size=50", "dialog_name=helpdesk&page_size=25"):
        page = (await api.get(f"/v1/calls?{query}")).json()
        assert set(page) == {"calls", "next_page_token", "total_count"}
        assert page["next_page_token"] == ""
        assert page["total_count"] == 1
        assert [c["session_id"] for c in page["calls"]] == ["call-abc-123"]
        assert set(page["calls"][0]) == SPEC_CALL_FIELDS | {"cursor"}
    other = (await api.get("/v1/calls?dialog_name=billing&page_size=25")).json()
    assert other == {"calls": [], "next_page_token": "", "total_count": 0}


async def test_a_call_shows_its_state_variables_and_cursor(
    redis_url: str, aredis: aioredis.Redis, settings: Settings, api: httpx.AsyncClient,
    sync_redis: redis.Redis,
) -> None:
    publisher = CallPublisher(aredis, settings)
    outcomes = await publisher.commit_many([
        call_started("c-1"), transition("c-1", 2, "collect_info", "greeting"),
        action("c-1", 3, "set_variable", {"customer_name": "Jane", "intent": "password_reset"}),
        action("c-1", 4, "hold"),
    ])
    call = (await api.get("/v1/calls/c-1")).json()
    assert call["current_state"] == "collect_info"
    assert call["status"] == "on_hold"
    assert call["variables"] == {"customer_name": "Jane", "intent": "password_reset"}
    cursor = Cursor.decode(call["cursor"], shards=1)
    assert cursor.positions == (parse_stream_id(outcomes[-1].entry_id or ""),)


async def test_an_ended_call_is_readable_until_its_retention_ends(
    redis_url: str, settings: Settings, aredis: aioredis.Redis
) -> None:
    settings = msgspec.structs.replace(settings, call_retention_ms=1500)
    await CallPublisher(aredis, settings).commit_many(
        [call_started("c-1", at=0), terminated("c-1", 2, reason="caller_hangup", at=135)]
    )
    async with hub_client(settings) as api:
        call = (await api.get("/v1/calls/c-1")).json()
        assert call["status"] == "terminated"
        assert call["duration_seconds"] == 135
        assert call["end_time"] == "2025-06-14T18:32:15Z"
        assert call["reason"] == "caller_hangup"
        assert call["final_state"] == "goodbye"
        assert (await api.get("/v1/calls")).json()["total_count"] == 0
    with sync_client(settings) as sync:
        wait_until(lambda: not sync.exists(Keyspace().call("c-1")), timeout=10,
                 what="the ended call's retention to end")
    async with hub_client(settings) as api:
        gone = await api.get("/v1/calls/c-1")
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "not_found"


async def test_pages_walk_every_call_once_in_start_order_across_shards(
    redis_url: str, settings: Settings, aredis: aioredis.Redis
) -> None:
    settings = msgspec.structs.replace(settings, shards=3)
    # Ties: ten calls start in each second.
    events = [call_started(f"c-{n:03}", at=n // 10) for n in range(95)]
    await CallPublisher(aredis, settings).commit_many(events)
    async with hub_client(settings) as api:
        seen: list[str] = []
        token = ""
        while True:
            page = (await api.get("/v1/calls", params={"page_size": 7, "page_token": token}
                                  if token else {"page_size": 7})).json()
            assert page["total_count"] == 95
            seen += [c["session_id"] for c in page["calls"]]
            token = page["next_page_token"]
            if not token:
                break
    assert seen == [f"c-{n:03}" for n in range(95)]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("page_size=0", "page_size"), ("page_size=1001", "page_size"), ("page_size=", "page_size"),
        ("page_size=abc", "page_size"), ("page_size=99999999999999999999", "page_size"),
        ("page_size=-1", "page_size"), ("page_size=1&page_size=2", "page_size"),
        ("page_token=garbage", "page_token"), ("dialog_name=a%7Bb", "dialog_name"),
        ("dialog_name=%E2%98%83", "dialog_name"), ("limit=5", "limit"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(
    api: httpx.AsyncClient, query: str, param: str
) -> None:
    answer = await api.get(f"/v1/calls?{query}")
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["param"] == param
    assert error["message"]


async def test_a_page_token_of_another_listing_is_refused(api: httpx.AsyncClient) -> None:
    token = encode_page_token(PagePosition("billing", 0, "c-1"))
    answer = await api.get("/v1/calls", params={"page_token": token, "dialog_name": "helpdesk"})
    assert answer.status_code == 400
    assert "different dialog_name" in answer.json()["error"]["message"]


async def test_a_bad_session_id_is_a_400_and_an_unknown_one_a_404(
    api: httpx.AsyncClient,
) -> None:
    bad = await api.get("/v1/calls/a%7Bb%7D")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "id"
    missing = await api.get("/v1/calls/no-such-call")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "id"


async def test_lost_redis_is_a_503_with_retry_after_and_readyz_fails(settings: Settings, ) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with hub_client(settings) as api:
        for path in ("/v1/calls", "/v1/calls/c-1"):
            answer = await api.get(path)
            assert answer.status_code == 503
            assert answer.headers["retry-after"]
            assert answer.json()["error"]["code"] == "unavailable"
        assert (await api.get("/readyz")).status_code == 503
        assert (await api.get("/healthz")).status_code == 200


async def test_browsers_on_other_origins_may_read_the_api(settings: Settings) -> None:
    """With keys, any origin (with a key); with none, only this machine's pages;
    an empty setting turns CORS off."""
    keyed = msgspec.structs.replace(settings, api_keys="k-1")
    async with hub_client(keyed) as api:
        answer = await api.get("/v1/calls", headers={"Origin": "http://dashboard.example",
                                                     "X-API-Key": "k-1"})
        assert answer.headers["access-control-allow-origin"] == "*"
        preflight = await api.options("/v1/calls/events", headers={
            "Origin": "http://dashboard.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id"})
        assert preflight.status_code == 200
    async with hub_client(settings) as api:
        local = await api.get("/v1/calls", headers={"Origin": "http://localhost:3000"})
        assert local.headers["access-control-allow-origin"] == "http://localhost:3000"
        foreign = await api.get("/v1/calls", headers={"Origin": "http://dashboard.example"})
        assert "access-control-allow-origin" not in foreign.headers
    async with hub_client(msgspec.structs.replace(settings, cors_origins="")) as api:
        answer = await api.get("/v1/calls", headers={"Origin": "http://localhost:3000"})
        assert "access-control-allow-origin" not in answer.headers
