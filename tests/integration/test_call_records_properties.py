"""Properties of a call's record over REST on a real redis-server: no query,
header or id makes its endpoints answer with a 5xx, and a walk of an events
page chain under any page size and filter returns the stored stream's events
of those types, each once, in order."""

from __future__ import annotations

import asyncio
from urllib.parse import quote, urlencode

import httpx
import msgspec
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from callhub.events import EVENT_TYPES
from callhub.layout import ENTRY_DATA, ENTRY_TYPE
from callhub.settings import Settings
from hub.api.call_records import AfterPosition, encode_after
from tests.support.conversations import Conversation, conversations, helpdesk_call
from tests.support.hubs import hub_client
from tests.support.strategies import T0
from workers.commit.publisher import CallPublisher

T0_MS = int(T0.timestamp() * 1000)  # when the calls here start
parameter_names = st.sampled_from(
    ["event_types", "after", "page_size", "format", "api_key", "x", "page_token"]
) | st.text(max_size=12)
parameter_values = (
    st.text(max_size=40)
    | st.integers(-(10**30), 10**30).map(str)
    | st.sampled_from(["", "0", "1", "1000", "1001", "json", "text", "webvtt", "call_started",
                       "speech_final,,tts_started", "%00", "\u2603",
                       encode_after(AfterPosition("c-1", 0, "", 1, 0)),
                       encode_after(AfterPosition("nope", 0, "", 1, 0)),
                       # sealed by anyone (a token is no secret), with ids Redis refuses
                       encode_after(AfterPosition("c-1", T0_MS, "", -1, 0)),
                       encode_after(AfterPosition("c-1", T0_MS, "", 5, 2**64 - 1)),
                       encode_after(AfterPosition("c-1", T0_MS, "", 2**64 - 1, 2**63))])
)
accepts = st.sampled_from(["", "*/*", "text/plain", "text/vtt;q=0.9, application/json;q=0.1",
                           "text/plain;q=abc", "text/plain;q=nan", "\u2603/x"]) | st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
ids = st.sampled_from(["c-1", "nope", "\u2603", "%7B", "a b", "x" * 200]) | st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="/?#%"),
    min_size=1, max_size=20).filter(lambda text: text.strip(".") != "")  # no dot segments


def _publish(redis_url: str, events: list[object]) -> None:
    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await CallPublisher(client, Settings(redis_url=redis_url)).commit_many(events)  # type: ignore[arg-type]
        await client.aclose()

    asyncio.run(go())


@hypothesis_settings(max_examples=200, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    session_id=ids,
    path=st.sampled_from(["events", "transcript", "summary"]),
    pairs=st.lists(st.tuples(parameter_names, parameter_values), max_size=4),
    accept=accepts,
)
def test_no_query_id_or_accept_makes_a_record_endpoint_answer_5xx(
    redis_url: str, session_id: str, path: str, pairs: list[tuple[str, str]], accept: str,
) -> None:
    with redis.Redis.from_url(redis_url) as sync:
        if not sync.exists("callhub:{0}:call:c-1"):
            sync.flushall()
            _publish(redis_url, helpdesk_call("c-1").events[:-1])  # type: ignore[arg-type]

    async def ask() -> httpx.Response:
        async with hub_client(Settings(redis_url=redis_url)) as api:
            return await api.get(f"/v1/calls/{quote(session_id, safe='')}/{path}?"
                                 f"{urlencode(pairs)}", headers={"Accept": accept.encode()})

    answer = asyncio.run(ask())
    assert answer.status_code in (200, 400, 404), answer.text
    if answer.status_code != 200:
        assert answer.headers["content-type"] == "application/json"
        error = answer.json()["error"]
        assert error["code"] and error["message"] and error["param"] is not None


@hypothesis_settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=conversations(), page_size=st.integers(1, 7),
       types=st.none() | st.sets(st.sampled_from(EVENT_TYPES), min_size=1, max_size=3))
def test_a_walk_of_the_pages_is_the_stored_stream(
    redis_url: str, call: Conversation, page_size: int, types: set[str] | None,
) -> None:
    with redis.Redis.from_url(redis_url) as sync:
        sync.flushall()
    _publish(redis_url, call.events)  # type: ignore[arg-type]
    with redis.Redis.from_url(redis_url) as sync:
        stored = [bytes(f[ENTRY_DATA]) for _, f in sync.xrange(
            Settings().keyspace.call_events(call.session_id))
            if types is None or f[ENTRY_TYPE].decode() in types]

    async def walk() -> list[bytes]:
        raw: list[bytes] = []
        params: dict[str, str | int] = {"page_size": page_size}
        if types:
            params["event_types"] = ",".join(sorted(types))
        async with hub_client(Settings(redis_url=redis_url)) as api:
            for _ in range(1000):
                answer = await api.get(f"/v1/calls/{call.session_id}/events", params=params)
                assert answer.status_code == 200, answer.text
                page = msgspec.json.decode(answer.content, type=dict[str, msgspec.Raw])
                events = msgspec.json.decode(page["events"], type=list[msgspec.Raw])
                assert len(events) <= page_size
                raw += [bytes(e) for e in events]
                if not msgspec.json.decode(page["has_more"], type=bool):
                    break
                params["after"] = msgspec.json.decode(page["next_after"], type=str)
        return raw

    assert asyncio.run(walk()) == stored
