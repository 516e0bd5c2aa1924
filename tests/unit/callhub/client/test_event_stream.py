"""The client's event stream against scripted answers (httpx.MockTransport, no sleeping):
typed items, cursors, checkpoints, history seams and the errors a retry cannot fix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub import events as ev
from callhub.client import (
    BadRequest,
    CallhubClient,
    Forbidden,
    HistoryEnd,
    MemoryCursorStore,
    NotAHub,
    NotFound,
    RetriesExhausted,
    RetryPolicy,
    StreamReset,
    Unauthorized,
    UnknownEvent,
)
from callhub.client.event_stream import StreamItem
from hub.stream import frames as sse
from tests.support.strategies import dialog_names, dtmf, session_ids

URL = "http://hub.test"
STREAM = {"content-type": "text/event-stream"}
Answer = Callable[[httpx.Request], httpx.Response]


class Stop(Exception):
    """Raised by the fake sleep when the script has run out."""


def event(sid: str, seq: int) -> tuple[bytes, bytes]:
    return b"dtmf_received", ev.encode_event(dtmf(sid, seq))


def live(cursor: str, sid: str, seq: int) -> bytes:
    return sse.event_frame(cursor, *event(sid, seq))


def history(sid: str, seq: int) -> bytes:
    return sse.history_frame(*event(sid, seq))


def stream(*chunks: bytes, then: Exception | None = None) -> Answer:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
        if then is not None:
            raise then

    return lambda request: httpx.Response(200, headers=STREAM, content=body())


def error(status: int, message: str, param: str | None = None) -> Answer:
    body = {"error": {"code": "not_found" if status == 404 else "x", "message": message,
                      "param": param}}
    return lambda request: httpx.Response(status, json=body)


class Script:
    """The hub's answers, one per connection attempt, and what was asked."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)(request)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if not self.answers:
            raise Stop

    def client(self) -> CallhubClient:
        return CallhubClient(URL, api_key="k", transport=httpx.MockTransport(self.handler))

    def policy(self, **options: Any) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, jitter=lambda: 0.0, **options)


async def collect(script: Script, **options: Any) -> list[StreamItem]:
    items: list[StreamItem] = []
    async with script.client() as hub:
        with pytest.raises(Stop):
            async for item in hub.events(retry=script.policy(), **options):
                items.append(item)
    return items


async def test_events_are_the_kernels_structs_and_unknown_ones_come_through() -> None:
    future = b'{"type":"sentiment","session_id":"call-1","seq":9,"score":0.3}'
    broken = b'{"type":"dtmf_received","session_id":"call-1","digit":"Z"}'
    script = Script(stream(live("c1", "call-1", 2), sse.event_frame("c2", b"sentiment", future),
                           sse.event_frame("c3", b"dtmf_received", broken)))
    first, unknown, invalid = await collect(script)
    assert first == dtmf("call-1", 2)
    assert isinstance(first, ev.DtmfReceived)
    assert isinstance(unknown, UnknownEvent)
    assert (unknown.type, unknown.session_id, unknown.data) == ("sentiment", "call-1", future)
    assert isinstance(invalid, UnknownEvent) and invalid.type == "dtmf_received"
    assert invalid.error


async def test_a_drop_resumes_after_the_last_cursor_and_pings_move_it() -> None:
    script = Script(stream(live("c1", "a", 2), sse.ping("c5"), then=httpx.ReadError("reset")),
                    stream(live("c6", "a", 3)))
    items = await collect(script)
    assert items == [dtmf("a", 2), dtmf("a", 3)]
    assert "last-event-id" not in script.requests[0].headers
    assert script.requests[1].headers["last-event-id"] == "c5"
    assert script.requests[0].headers["authorization"] == "Bearer k"


async def test_stream_reset_is_yielded_typed_and_given_to_on_reset() -> None:
    seen: list[StreamReset] = []
    reset = sse.stream_reset_frame(sse.StreamReset("cursor_expired", "c0", "too old"))
    items = await collect(Script(stream(reset, live("c1", "a", 2))), on_reset=seen.append)
    assert items[0] == StreamReset("cursor_expired", "c0", "too old") == seen[0]
    assert items[1] == dtmf("a", 2)


async def test_history_ends_with_a_seam_and_a_reconnect_in_history_repeats_nothing() -> None:
    script = Script(
        stream(history("a", 1), history("b", 1), then=httpx.ReadError("cut")),
        stream(history("a", 1), history("b", 1), history("b", 2), sse.cursor_mark("m1"),
               live("c2", "a", 2)),
    )
    items = await collect(script, include_history=True)
    assert items == [dtmf("a", 1), dtmf("b", 1), dtmf("b", 2), HistoryEnd("m1"), dtmf("a", 2)]
    assert "last-event-id" not in script.requests[1].headers
    assert script.requests[1].url.params["include_history"] == "true"


async def test_the_store_gives_the_start_and_ack_saves_the_cursor_after_the_event() -> None:
    store = MemoryCursorStore("c0")
    script = Script(stream(live("c1", "a", 2), live("c2", "a", 3)))
    async with script.client() as hub:
        events = hub.events(cursor_store=store, retry=script.policy())
        with pytest.raises(Stop):
            async for item in events:
                if item == dtmf("a", 2):
                    await events.ack()
    assert script.requests[0].headers["last-event-id"] == "c0"
    assert store.cursor == "c1"  # the second was never acked


async def test_checkpoint_every_saves_once_handled_and_follows_marks_when_up_to_date() -> None:
    store = MemoryCursorStore()
    script = Script(stream(live("c1", "a", 2), live("c2", "a", 3), live("c3", "a", 4),
                           sse.ping("c9")))
    async with script.client() as hub:
        with pytest.raises(Stop):
            async for _ in hub.events(cursor_store=store, checkpoint_every=2,
                                      retry=script.policy()):
                pass
    assert store.cursor == "c9"
    assert store.saves == 2  # c2 after two handled, then the ping (c3 was pending till then)


async def test_an_explicit_cursor_wins_over_the_store() -> None:
    script = Script(stream())
    await collect(script, last_event_id="mine", cursor_store=MemoryCursorStore("stored"))
    assert script.requests[0].headers["last-event-id"] == "mine"


@pytest.mark.parametrize(("answer", "kind", "words"), [
    (error(401, "the API key is not valid"), Unauthorized, "the API key is not valid"),
    (error(403, "no"), Forbidden, "no"),
    (error(400, "unknown event type 'dtfm'", "event_types"), BadRequest, "unknown event type"),
    (error(404, "no such path"), NotFound, "no such path"),
])
async def test_answers_no_retry_can_change_raise_typed_with_the_hubs_message(
    answer: Answer, kind: type[Exception], words: str,
) -> None:
    script = Script(answer)
    async with script.client() as hub:
        with pytest.raises(kind, match=words) as raised:
            async for _ in hub.events(retry=script.policy()):
                pass
    assert script.sleeps == []
    if kind is BadRequest:
        assert raised.value.param == "event_types"  # type: ignore[attr-defined]


async def test_not_an_event_stream_is_not_a_hub() -> None:
    script = Script(lambda r: httpx.Response(200, text="<html>",
                                             headers={"content-type": "text/html"}))
    async with script.client() as hub:
        with pytest.raises(NotAHub, match="not an event stream"):
            async for _ in hub.events(retry=script.policy()):
                pass


async def test_503_waits_its_retry_after_and_max_retries_gives_up() -> None:
    busy = lambda r: httpx.Response(503, json={"error": {"message": "busy"}},  # noqa: E731
                                    headers={"Retry-After": "7"})
    script = Script(busy, busy, busy)
    async with script.client() as hub:
        with pytest.raises(RetriesExhausted, match="giving up after 2 retries: the hub "
                           "answered 503 Service Unavailable: busy"):
            async for _ in hub.events(retry=script.policy(max_retries=2)):
                pass
    assert script.sleeps == [7.0, 7.0]


@given(types=st.lists(st.sampled_from(ev.EVENT_TYPES), max_size=4, unique=True),
       session=st.one_of(st.just(""), session_ids), dialog=st.one_of(st.just(""), dialog_names),
       history_too=st.booleans())
async def test_filters_go_to_the_hub_as_given_and_nothing_else(
    types: list[str], session: str, dialog: str, history_too: bool,
) -> None:
    script = Script(stream())
    await collect(script, event_types=types, session_id=session, dialog_name=dialog,
                  include_history=history_too)
    expected = {"event_types": ",".join(types), "session_id": session, "dialog_name": dialog,
                "include_history": "true" if history_too else ""}
    assert dict(script.requests[0].url.params) == {k: v for k, v in expected.items() if v}
    assert script.requests[0].url.path == "/v1/calls/events"


async def test_without_validation_events_are_still_their_classes_and_typed() -> None:
    broken = b'{"type":"dtmf_received","event_id":"e","session_id":"a","timestamp":' \
             b'"2025-06-14T18:30:00Z","seq":2,"digit":"Z","duration_ms":1}'
    script = Script(stream(live("c1", "a", 2), sse.event_frame("c2", b"dtmf_received", broken)))
    first, refused = await collect(script, validate=False)
    assert isinstance(first, ev.DtmfReceived)
    assert ev.encode_event(first) == ev.encode_event(dtmf("a", 2))
    match first:
        case ev.DtmfReceived(digit="5", session_id="a"):
            pass
        case _:
            raise AssertionError(first)
    assert isinstance(refused, UnknownEvent)  # a Literal is still checked
