"""A call's record over REST on real Redis (one node and the cluster): its
events pages (the stored bytes, a cursor that resumes the live stream
exactly), its transcript (JSON, script, WebVTT), its summary (and Get Call's),
scopes, bad input."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import msgspec
import pytest
import redis
import redis.asyncio as aioredis
import webvtt

from callhub import events as ev
from callhub.call_summary import CallSummary
from callhub.call_views import CallEventsPage
from callhub.cursor import Cursor, parse_stream_id
from callhub.keyspace import Keyspace
from callhub.layout import ENTRY_DATA, ENTRY_TYPE
from callhub.settings import Settings
from callhub.transcript import Transcript
from hub.api.auth import hash_key
from hub.api.call_records import AfterPosition, encode_after
from hub.api.openapi import openapi_document
from tests.support.conversations import Conversation, helpdesk_call
from tests.support.fences import fence
from tests.support.hubs import hub_client, serving
from tests.support.processes import free_port
from tests.support.spec_examples import publish_spec_examples
from tests.support.sse import subscribe
from tests.support.strategies import T0
from workers.commit.publisher import CallPublisher, CommitOutcome

pytestmark = pytest.mark.both_engines

RECORD_PATHS = ("events", "transcript", "summary")


async def commit(publisher: CallPublisher, events: list[ev.Event]) -> list[CommitOutcome]:
    outcomes = await publisher.commit_many(events)
    assert all(o.status == "committed" for o in outcomes), outcomes
    return outcomes


def stored(sync_redis: redis.Redis, keys: Keyspace, session_id: str,
           types: set[str] | None = None) -> list[bytes]:
    """The call's stream as stored: each event's JSON, in commit order."""
    return [fields[ENTRY_DATA] for _, fields in sync_redis.xrange(keys.call_events(session_id))
            if types is None or fields[ENTRY_TYPE].decode() in types]


async def walk(api: httpx.AsyncClient, session_id: str, **params: Any
               ) -> tuple[list[bytes], dict[str, Any]]:
    """Every page of a call's events: the raw JSON of each event, and the last page."""
    raw: list[bytes] = []
    while True:
        answer = await api.get(f"/v1/calls/{session_id}/events", params=params)
        assert answer.status_code == 200, answer.text
        page = msgspec.json.decode(answer.content, type=dict[str, msgspec.Raw])
        raw += [bytes(e) for e in msgspec.json.decode(page["events"], type=list[msgspec.Raw])]
        body = answer.json()
        msgspec.json.decode(answer.content, type=CallEventsPage)  # the documented shape
        if not body["has_more"]:
            return raw, body
        params["after"] = body["next_after"]


@pytest.mark.parametrize("event_types", [None, "speech_final,tts_started,call_terminated"])
async def test_events_pages_are_the_stored_bytes_and_their_cursor_resumes_the_stream(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis,
    event_types: str | None,
) -> None:
    settings = msgspec.structs.replace(settings, shards=3, ping_interval_ms=200)
    keys = settings.keyspace
    publisher = CallPublisher(aredis, settings)
    call = helpdesk_call().events
    other = Conversation("other-call").events  # another call, in another shard or not
    first, between, last = call[:9], call[9:13], call[13:]
    types = set(event_types.split(",")) if event_types else None
    params: dict[str, Any] = {"page_size": 2}
    if event_types:
        params["event_types"] = event_types
    async with serving(settings) as live, httpx.AsyncClient(base_url=live.url) as api:
        await commit(publisher, [*first, *other])
        pages, page = await walk(api, "call-abc-123", **params)
        assert pages == stored(sync_redis, keys, "call-abc-123", types)
        assert not page["ended"]
        cursor = Cursor.decode(page["cursor"], 3)
        shard = keys.shard_of("call-abc-123")
        assert [p is None for p in cursor.positions] == [s != shard for s in range(3)]
        # Later events: some before the client subscribes (caught up from the log),
        # the rest while it is live.
        await commit(publisher, between)
        stream_params = {"session_id": "call-abc-123"}
        if event_types:
            stream_params["event_types"] = event_types
        async with subscribe(f"{live.url}/v1/calls/events", params=stream_params,
                             headers={"Last-Event-ID": page["cursor"]}) as stream:
            outcomes = await commit(publisher, last)
            await fence(stream, outcomes, 3)
        assert pages + [f.data for f in stream.events] == stored(
            sync_redis, keys, "call-abc-123", types)
        # The same walk, from where the first one stopped, reads just the rest.
        rest, end = await walk(api, "call-abc-123", **params, after=page["next_after"])
        assert rest == [f.data for f in stream.events]
        assert end["ended"]


async def test_pages_walk_a_call_once_while_it_goes_on(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis, api: httpx.AsyncClient,
) -> None:
    publisher = CallPublisher(aredis, settings)
    events = helpdesk_call().events
    await commit(publisher, events[:2])
    seen: list[bytes] = []
    params: dict[str, Any] = {"page_size": 3}
    for position in range(2, len(events) + 3):
        answer = (await api.get("/v1/calls/call-abc-123/events", params=params)).json()
        seen += [msgspec.json.encode(e) for e in answer["events"]]
        params["after"] = answer["next_after"]
        if position < len(events):  # one more event between every two pages
            await commit(publisher, events[position:position + 1])
    decoded = [msgspec.json.encode(msgspec.json.decode(e))
               for e in stored(sync_redis, settings.keyspace, "call-abc-123")]
    assert seen == decoded and len(seen) == len(events)
    assert answer["ended"] and not answer["has_more"] and answer["events"] == []


async def test_a_selective_filter_scans_on_and_an_empty_page_still_has_a_cursor(
    settings: Settings, aredis: aioredis.Redis, api: httpx.AsyncClient,
) -> None:
    call = Conversation("c-1")
    for n in range(40):
        call.transition(n * 100, f"s{n}")
    call.end(5000)
    await commit(CallPublisher(aredis, settings), call.events)
    answer = (await api.get("/v1/calls/c-1/events", params={
        "event_types": "call_terminated", "page_size": 1})).json()
    assert [e["type"] for e in answer["events"]] == ["call_terminated"]
    assert (answer["has_more"], answer["ended"]) == (False, True)
    none = (await api.get("/v1/calls/c-1/events", params={"event_types": "dtmf_received"})
            ).json()
    assert none["events"] == [] and not none["has_more"]
    assert none["cursor"] == answer["cursor"]  # both scanned to the call's last entry


async def test_the_transcript_of_the_spec_example_call(
    settings: Settings, api: httpx.AsyncClient,
) -> None:
    publish_spec_examples(settings.redis_url, 3, settings.redis_cluster)
    answer = await api.get("/v1/calls/call-abc-123/transcript")
    assert answer.headers["content-type"] == "application/json"
    transcript = msgspec.json.decode(answer.content, type=Transcript)
    [turn] = transcript.turns
    assert (turn.speaker, turn.kind, turn.text, turn.confidence, turn.offset_ms,
            turn.duration_ms) == ("caller", "speech", "I need a password reset", 0.94, 1900,
                                  2100)
    assert [w.text for w in turn.words] == ["I", "need", "a", "password", "reset"]
    assert transcript.ended and transcript.start_time == "2025-06-14T18:30:00Z"

    script = "[00:01.900] caller: I need a password reset  (confidence 0.94)"
    for asked in ({"params": {"format": "text"}}, {"headers": {"Accept": "text/plain"}},
                  {"headers": {"Accept": "application/json;q=0.5, text/plain"}}):
        text = await api.get("/v1/calls/call-abc-123/transcript", **asked)  # type: ignore[arg-type]
        assert text.headers["content-type"] == "text/plain; charset=utf-8", asked
        assert script in text.text.splitlines()
    for asked in ({"params": {"format": "webvtt"}}, {"headers": {"Accept": "text/vtt"}}):
        vtt = await api.get("/v1/calls/call-abc-123/transcript", **asked)  # type: ignore[arg-type]
        assert vtt.headers["content-type"] == "text/vtt; charset=utf-8"
        [cue] = webvtt.from_string(vtt.text, strict=True).captions
        assert (cue.start, cue.end, cue.voice, cue.text) == (
            "00:00:01.900", "00:00:04.000", "caller", "I need a password reset")
    plain = await api.get("/v1/calls/call-abc-123/transcript",
                          headers={"Accept": "text/plain"}, params={"format": "json"})
    assert plain.headers["content-type"] == "application/json"  # format wins over Accept


async def test_get_call_of_an_ended_call_carries_its_summary(
    settings: Settings, aredis: aioredis.Redis, api: httpx.AsyncClient,
) -> None:
    publisher = CallPublisher(aredis, settings)
    events = helpdesk_call().events
    await commit(publisher, events[:-1])
    active = (await api.get("/v1/calls/call-abc-123")).json()
    assert "summary" not in active
    going = msgspec.json.decode((await api.get("/v1/calls/call-abc-123/summary")).content,
                                type=CallSummary)
    assert not going.ended and going.reason is None
    assert going.duration_ms > 15_000  # the call "started" in 2025: still going, to now
    await commit(publisher, events[-1:])
    call = (await api.get("/v1/calls/call-abc-123")).json()
    summary = (await api.get("/v1/calls/call-abc-123/summary")).json()
    assert call["summary"] == summary
    assert call["reason"] == summary["reason"] == "caller_hangup"
    assert summary["duration_ms"] == 15_500 and call["duration_seconds"] == 15
    assert summary["turns"] == {"caller": 4, "agent": 4}
    assert summary["response_latency"] == {"count": 3, "p50_ms": 650, "p95_ms": 700,
                                           "max_ms": 700}
    assert summary["hooks"]["called"] == 2 and summary["hooks"]["failed"] == 1
    assert summary["states"] == ["greeting", "lookup"]
    assert (await api.get("/v1/calls")).json()["calls"] == []  # List Calls: unchanged


async def test_every_answer_fits_the_openapi_document(
    settings: Settings, aredis: aioredis.Redis, api: httpx.AsyncClient,
) -> None:
    events = helpdesk_call().events
    await commit(CallPublisher(aredis, settings), events[:-1])
    document = openapi_document()

    def fits(path: str, answer: httpx.Response) -> None:
        assert answer.status_code == 200, answer.text
        operation = document["paths"][f"/v1/calls/{{id}}{path}"]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.validator_for({**schema,
                                                 "components": document["components"]})
        validator.validate(answer.json())

    for ended in (False, True):
        fits("", await api.get("/v1/calls/call-abc-123"))
        fits("/events", await api.get("/v1/calls/call-abc-123/events"))
        fits("/transcript", await api.get("/v1/calls/call-abc-123/transcript"))
        fits("/summary", await api.get("/v1/calls/call-abc-123/summary"))
        if not ended:
            await commit(CallPublisher(aredis, settings), events[-1:])


async def test_simulated_calls_have_the_turns_and_latencies_their_events_say(
    settings: Settings, sync_redis: redis.Redis, callhub_env: dict[str, str],
    api: httpx.AsyncClient,
) -> None:
    env = {**callhub_env, "CALLHUB_REDIS_CLUSTER": "true" if settings.redis_cluster else "false"}
    done = subprocess.run(
        [sys.executable, "-m", "callhub.cli", "worker", "--redis-url", settings.redis_url,
         "--simulate", "--calls", "12", "--rate", "2000", "--speed", "1000", "--seed", "11"],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    keys = settings.keyspace
    started = [msgspec.json.decode(data) for _, fields in sync_redis.xrange(keys.log(0))
               if (data := fields[ENTRY_DATA]) and fields[ENTRY_TYPE] == b"call_started"]
    assert len(started) == 12
    interrupted_prompts = 0
    for call in started:
        sid = call["session_id"]
        events = [msgspec.json.decode(e) for e in stored(sync_redis, keys, sid)]
        transcript = (await api.get(f"/v1/calls/{sid}/transcript")).json()
        # Independently of callhub.transcript: turns in commit order, and what answers what.
        made = [e for e in events
                if e["type"] in ("speech_final", "dtmf_received", "tts_started")]
        by_id = {t["event_id"]: t for t in transcript["turns"]}
        assert sorted(by_id) == sorted(e["event_id"] for e in made)
        completions = {e["utterance_id"]: e for e in events if e["type"] == "tts_completed"}
        for event, following in zip(made, [*made[1:], None], strict=False):
            turn = by_id[event["event_id"]]
            if event["type"] == "tts_started":
                completion = completions[event["utterance_id"]]
                assert turn["duration_ms"] == completion["duration_ms"]
                assert turn["interrupted"] == completion["interrupted"]
                interrupted_prompts += completion["interrupted"]
                continue
            if event["type"] == "speech_final":
                assert (turn["text"], turn["confidence"]) == (event["transcript"],
                                                              event["confidence"])
            if following is not None and following["type"] == "tts_started":
                latency = (ev_time(following) - ev_time(event)) // 1000
                assert turn["response_latency_ms"] == max(0, latency)
            else:
                assert turn["response_latency_ms"] is None
        summary = (await api.get(f"/v1/calls/{sid}/summary")).json()
        assert summary["ended"] and summary["reason"] == events[-1]["reason"]
        assert summary["states"] == [e["to_state"] for e in events
                                     if e["type"] == "state_transition"]
        assert summary["final_state"] == events[-1]["final_state"]
        assert summary["duration_ms"] == (ev_time(events[-1]) - ev_time(events[0])) // 1000
        vtt = (await api.get(f"/v1/calls/{sid}/transcript", params={"format": "webvtt"})).text
        assert len(webvtt.from_string(vtt, strict=True).captions) == len(made)
    assert interrupted_prompts > 0  # the simulated callers barge in now and then


def ev_time(event: dict[str, Any]) -> int:
    """An event's timestamp in whole microseconds since the epoch."""
    moment = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    return (moment - EPOCH) // timedelta(microseconds=1)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(f"""
[[keys]]
name = "helpdesk-dashboard"
sha256 = "{hash_key('helpdesk-key')}"
dialogs = ["helpdesk"]

[[keys]]
name = "ops"
sha256 = "{hash_key('ops-key')}"
""")
    return path


async def test_a_dialog_scoped_key_gets_404_for_a_foreign_call_everywhere(
    settings: Settings, aredis: aioredis.Redis, keys_file: Path,
) -> None:
    await commit(CallPublisher(aredis, settings), [
        *Conversation("h-1", dialog="helpdesk").events,
        *Conversation("b-1", dialog="billing").events,
    ])
    settings = msgspec.structs.replace(settings, api_keys_file=str(keys_file))
    scoped, ops = {"X-API-Key": "helpdesk-key"}, {"X-API-Key": "ops-key"}
    async with hub_client(settings) as api:
        foreign_after = (await api.get("/v1/calls/b-1/events", headers=ops)).json()["next_after"]
        extra = {"transcript": [{"format": "text"}, {"format": "webvtt"}],
                 "events": [{"after": foreign_after}, {"event_types": "call_started"}]}
        for path in RECORD_PATHS:
            for params in [{}, *extra.get(path, [])]:
                own = await api.get(f"/v1/calls/h-1/{path}", headers=scoped)
                assert own.status_code == 200, (path, own.text)
                foreign = await api.get(f"/v1/calls/b-1/{path}", headers=scoped, params=params)
                missing = await api.get(f"/v1/calls/nope/{path}", headers=scoped)
                assert foreign.status_code == missing.status_code == 404, (path, params)
                assert foreign.json()["error"] == {
                    "code": "not_found", "message": "call b-1 does not exist", "param": "id"}
                assert (await api.get(f"/v1/calls/b-1/{path}", headers=ops)).status_code == 200
            assert (await api.get(f"/v1/calls/h-1/{path}")).status_code == 401


@pytest.mark.parametrize(("path", "query", "param"), [
    ("events", "page_size=0", "page_size"), ("events", "page_size=1001", "page_size"),
    ("events", "page_size=", "page_size"), ("events", "page_size=x", "page_size"),
    ("events", "event_types=bogus", "event_types"),
    ("events", "event_types=call_started&event_types=dtmf_received", "event_types"),
    ("events", "after=garbage", "after"), ("events", "after=%E2%98%83", "after"),
    ("events", "limit=5", "limit"),
    ("transcript", "format=xml", "format"), ("transcript", "format=", "format"),
    ("transcript", "format=text&format=json", "format"), ("transcript", "page_size=1", "page_size"),
    ("summary", "format=json", "format"),
])
async def test_a_bad_parameter_is_a_400_naming_it(
    settings: Settings, aredis: aioredis.Redis, api: httpx.AsyncClient, path: str, query: str,
    param: str,
) -> None:
    await commit(CallPublisher(aredis, settings), Conversation("c-1").events)
    answer = await api.get(f"/v1/calls/c-1/{path}?{query}")
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_parameter"
    assert answer.json()["error"]["param"] == param
    bad_id = await api.get(f"/v1/calls/a%7Bb/{path}")
    assert bad_id.status_code == 400 and bad_id.json()["error"]["param"] == "id"


async def test_an_after_token_is_bound_to_its_call_and_filter(
    settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis, api: httpx.AsyncClient,
) -> None:
    publisher = CallPublisher(aredis, settings)
    await commit(publisher, [*Conversation("c-1").events, *Conversation("c-2").events])
    token = (await api.get("/v1/calls/c-1/events",
                           params={"event_types": "call_started"})).json()["next_after"]
    for path, params, message in (
        ("c-2", {"event_types": "call_started"}, "another call"),
        ("c-1", {}, "different event_types"),
        ("c-1", {"event_types": "dtmf_received"}, "different event_types"),
    ):
        answer = await api.get(f"/v1/calls/{path}/events", params={**params, "after": token})
        assert answer.status_code == 400 and message in answer.json()["error"]["message"]
    # The same token with the types in another order (or spaced) is the same filter.
    same = await api.get("/v1/calls/c-1/events", params={"event_types": " call_started ",
                                                         "after": token})
    assert same.status_code == 200
    # A session id that starts a fresh call once the first one expired: a token of
    # the first is refused, not read as a position in the second.
    entry = parse_stream_id(sync_redis.xrange(settings.keyspace.call_events("c-1"))[0][0])
    old = encode_after(AfterPosition("c-1", 0, "", *entry))
    refused = await api.get("/v1/calls/c-1/events", params={"after": old})
    assert refused.status_code == 400
    assert "earlier call" in refused.json()["error"]["message"]
    # Anyone can seal a token: one naming an id Redis would refuse is a 400 too.
    start_ms = int(T0.timestamp() * 1000)
    for ms, seq in ((-1, 0), (0, 2**64 - 1), (2**64 - 1, 0)):
        forged = encode_after(AfterPosition("c-1", start_ms, "", ms, seq))
        answer = await api.get("/v1/calls/c-1/events", params={"after": forged})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "after"
    edge = encode_after(AfterPosition("c-1", start_ms, "", 2**63 - 1, 2**63 - 1))
    late = (await api.get("/v1/calls/c-1/events", params={"after": edge})).json()
    assert late["events"] == [] and not late["has_more"]


async def test_lost_redis_is_a_503_on_every_record_path() -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with hub_client(settings) as api:
        for path in RECORD_PATHS:
            answer = await api.get(f"/v1/calls/c-1/{path}")
            assert answer.status_code == 503 and answer.headers["retry-after"]
