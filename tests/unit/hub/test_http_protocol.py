"""GuardedHttpProtocol's lean request cycle behaves as uvicorn's own.

The protocol swaps uvicorn's per-request and per-connection objects for
smaller ones (docs/performance.md, "Idle subscriber memory"); these tests
serve a small ASGI app with it on 127.0.0.1 and check what a client sees:
request bodies, pipelined and kept-alive requests, a client that stops
reading (flow control) and one that goes away. The head guards (431, the
head timeout, 503) are tested against ``callhub serve`` in
tests/integration/test_http_protocol.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from hub.http_protocol import IMPORT_PATH, GuardedHttpProtocol, _Signal
from tests.support.polling import async_wait_until
from tests.support.processes import free_port

# -- _Signal: asyncio.Event's behaviour -----------------------------------------


async def test_a_signal_wakes_every_waiter_and_stays_set() -> None:
    signal = _Signal()
    waiters = [asyncio.ensure_future(signal.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    signal.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert signal.is_set() and await signal.wait()


async def test_a_waiter_woken_before_a_clear_still_returns() -> None:
    signal = _Signal()
    waiter = asyncio.ensure_future(signal.wait())
    await asyncio.sleep(0)
    signal.set()
    signal.clear()
    assert await waiter and not signal.is_set()


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    signal = _Signal()
    gone, staying = asyncio.ensure_future(signal.wait()), asyncio.ensure_future(signal.wait())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert not staying.done()
    signal.set()
    assert await staying


async def test_a_cancelled_waiter_is_let_go_at_the_next_set() -> None:
    signal = _Signal()
    waiter = asyncio.ensure_future(signal.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    signal.set()
    assert signal._waiters is None


async def test_a_set_signal_is_waited_on_at_once() -> None:
    signal = _Signal(True)
    assert signal.wait().result() is True


# -- the protocol, serving an app -----------------------------------------------

BIG = 8 * 2**20  # well over the transport's write buffer: flow control pauses the app


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
            _FIRST_PART.set()
        await _answer(send, body)
    elif path == "/big":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(BIG).encode())]})
        for _ in range(BIG // 2**20):
            await send({"type": "http.response.body", "body": b"x" * 2**20, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/wait":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"open\n", "more_body": True})
        message = await receive()  # the request's end, then the disconnect
        while message["type"] != "http.disconnect":
            message = await receive()
        _app.disconnects += 1  # type: ignore[attr-defined]
    else:
        await _answer(send, path.encode())


_app.disconnects = 0  # type: ignore[attr-defined]
_FIRST_PART = asyncio.Event()


async def _answer(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server() -> AsyncIterator[uvicorn.Server]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=port, http=IMPORT_PATH,
                                           lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    await async_wait_until(lambda: server.started, what="the server to start")
    try:
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
def port(server: uvicorn.Server) -> int:
    return server.config.port


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return await reader.readexactly(length)


async def test_a_request_body_in_several_writes_reaches_the_app(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
    _FIRST_PART.clear()
    await writer.drain()
    await asyncio.wait_for(_FIRST_PART.wait(), 10)  # the app now waits in receive()
    writer.write(b"world")
    assert await _read_answer(reader) == b"helloworld"
    writer.close()


async def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(3)))
    assert [await _read_answer(reader) for _ in range(3)] == [b"/0", b"/1", b"/2"]
    writer.write(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")  # still kept alive
    assert await _read_answer(reader) == b"/again"
    writer.close()


async def test_a_client_that_stops_reading_gets_everything_once_it_reads(
        server: uvicorn.Server, port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**16)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await async_wait_until(
        lambda: any(isinstance(c, GuardedHttpProtocol) and c.flow.write_paused
                    for c in server.server_state.connections),
        what="the app to fill the socket buffers and wait on flow control")
    assert len(await _read_answer(reader)) == BIG
    writer.close()


async def test_the_app_hears_of_a_client_that_went_away(port: int) -> None:
    before = _app.disconnects  # type: ignore[attr-defined]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"open\n")
    writer.close()
    await async_wait_until(lambda: _app.disconnects > before,  # type: ignore[attr-defined]
                           what="the app's receive() to report the disconnect")


async def test_a_kept_alive_request_in_pieces_after_a_finished_one_is_answered(
        server: uvicorn.Server, port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await _read_answer(reader) == b"/first"
    (connection,) = server.server_state.connections
    assert isinstance(connection, GuardedHttpProtocol)
    await async_wait_until(lambda: connection.parser is None,
                           what="the parser to go once the request was read")
    writer.write(b"GET /sec")
    await async_wait_until(lambda: connection.parser is not None,
                           what="a parser for the next request's first bytes")
    writer.write(b"ond HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await _read_answer(reader) == b"/second"
    writer.close()


async def test_a_stream_holds_no_parser_and_still_hears_the_client_leave(
        server: uvicorn.Server, port: int) -> None:
    before = _app.disconnects  # type: ignore[attr-defined]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"open\n")
    (connection,) = server.server_state.connections
    assert isinstance(connection, GuardedHttpProtocol) and connection.parser is None
    writer.close()
    await async_wait_until(lambda: _app.disconnects > before,  # type: ignore[attr-defined]
                           what="the app's receive() to report the disconnect")
