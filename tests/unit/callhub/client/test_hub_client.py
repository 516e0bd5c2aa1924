"""The client's REST calls against scripted answers: pages followed, errors typed,
retryable answers retried (no sleeping), and the synchronous facade."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest

from callhub.client import (
    BadRequest,
    Call,
    CallhubClient,
    ClientConfigError,
    HubUnavailable,
    HubUnreachable,
    MemoryCursorStore,
    NotAHub,
    NotFound,
)
from callhub.client import sync as sync_client
from callhub.events import decode_event, encode_event
from hub.stream import frames as sse
from tests.support.strategies import dtmf

URL = "http://hub.test/prefix"
Handler = Callable[[httpx.Request], httpx.Response]


def call(sid: str, **fields: Any) -> dict[str, Any]:
    return {"session_id": sid, "caller_id": "+1555", "called_number": "+1800",
            "dialog_name": "helpdesk", "current_state": "menu",
            "start_time": "2025-06-14T18:30:00Z", "duration_seconds": 3, "status": "active",
            "variables": {}, "cursor": "c", **fields}


def pages(*pages: list[str]) -> Handler:
    """List Calls answering ``pages`` of session ids, chained by tokens ``t1``, ``t2``…"""
    def handler(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("page_token", "t0")
        index = int(token[1:])
        next_token = f"t{index + 1}" if index + 1 < len(pages) else ""
        return httpx.Response(200, json={"calls": [call(s) for s in pages[index]],
                                         "next_page_token": next_token, "total_count": 5})
    return handler


def client(handler: Handler, requests: list[httpx.Request] | None = None) -> CallhubClient:
    def recording(request: httpx.Request) -> httpx.Response:
        if requests is not None:
            requests.append(request)
        return handler(request)

    async def no_wait(seconds: float) -> None:
        pass

    return CallhubClient(URL, transport=httpx.MockTransport(recording), rest_sleep=no_wait)


async def test_list_calls_follows_every_page_with_the_filters() -> None:
    requests: list[httpx.Request] = []
    async with client(pages(["a", "b"], ["c", "d"], ["e"]), requests) as hub:
        ids = [c.session_id async for c in hub.list_calls(dialog_name="helpdesk",
                                                          status="terminated", page_size=2)]
    assert ids == ["a", "b", "c", "d", "e"]
    assert [r.url.params.get("page_token") for r in requests] == [None, "t1", "t2"]
    assert all(r.url.path == "/prefix/v1/calls" for r in requests)
    assert dict(requests[0].url.params) == {"dialog_name": "helpdesk", "status": "terminated",
                                            "page_size": "2"}


async def test_get_call_is_typed_and_a_missing_call_is_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/call-1"):
            return httpx.Response(200, json=call("call-1", variables={"tier": 2}))
        return httpx.Response(404, json={"error": {"code": "not_found",
                                                   "message": "call 'x' not found"}})

    async with client(handler) as hub:
        found = await hub.get_call("call-1")
        assert isinstance(found, Call) and found.variables == {"tier": 2}
        with pytest.raises(NotFound, match="call 'x' not found"):
            await hub.get_call("x")


async def test_retryable_answers_are_retried_then_typed() -> None:
    answers = [httpx.Response(503, json={"error": {"message": "busy"}}),
               httpx.Response(200, json=call("a"))]
    async with client(lambda r: answers.pop(0)) as hub:
        assert (await hub.get_call("a")).session_id == "a"
    async with client(lambda r: httpx.Response(502, text="Bad Gateway")) as hub:
        with pytest.raises(HubUnavailable) as raised:
            await hub.get_call("a")
        assert raised.value.status == 502

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with client(refused) as hub:
        with pytest.raises(HubUnreachable, match=r"cannot reach http://hub\.test/prefix"):
            await hub.get_call("a")


async def test_something_that_is_not_a_hub_says_so() -> None:
    async with client(lambda r: httpx.Response(404, text="<html>")) as hub:
        with pytest.raises(NotAHub, match="is not found"):
            await hub.get_call("a")
    async with client(lambda r: httpx.Response(200, json={"hello": 1})) as hub:
        with pytest.raises(NotAHub, match="did not answer as a hub does"):
            await hub.get_call("a")


async def test_bad_parameters_are_bad_requests_naming_them() -> None:
    body = {"error": {"code": "invalid_parameter", "message": "page_size must be at most 1000",
                      "param": "page_size"}}
    async with client(lambda r: httpx.Response(400, json=body)) as hub:
        with pytest.raises(BadRequest) as raised:
            async for _ in hub.list_calls(page_size=5000):
                pass
    assert (raised.value.param, raised.value.status) == ("page_size", 400)


@pytest.mark.parametrize("url", ["ftp://hub", "hub:8080", "http://", "http://h/?x=1"])
def test_urls_that_cannot_name_a_hub_are_refused(url: str) -> None:
    with pytest.raises(ClientConfigError):
        CallhubClient(url)


def test_the_sync_facade_returns_plain_values() -> None:
    requests: list[httpx.Request] = []
    handler = pages(["a"], ["b"])

    def recording(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return handler(request)

    with sync_client.CallhubClient(URL, transport=httpx.MockTransport(recording)) as hub:
        assert [c.session_id for c in hub.list_calls()] == ["a", "b"]
        first = next(iter(hub.list_call_pages()))
        assert msgspec.structs.asdict(first.calls[0])["session_id"] == "a"


def test_the_sync_facade_streams_and_acks() -> None:
    data = encode_event(dtmf("a", 2))

    async def body() -> AsyncIterator[bytes]:
        yield sse.event_frame("c1", b"dtmf_received", data)
        yield sse.event_frame("c2", b"dtmf_received", encode_event(dtmf("a", 3)))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=body())

    store = MemoryCursorStore()
    with sync_client.CallhubClient(URL, transport=httpx.MockTransport(handler)) as hub:
        stream = hub.events(cursor_store=store)
        for item in stream:
            assert item == decode_event(data)
            stream.ack()
            break
    assert store.cursor == "c1" == stream.cursor
