"""QuietServer: uvicorn's server with a main loop that wakes once a second."""

from __future__ import annotations

import asyncio
import importlib
import signal
from typing import Any

import uvicorn

from hub.quiet_server import QuietServer, serving_quietly
from tests.support.polling import async_wait_until
from tests.support.processes import free_port


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _server() -> QuietServer:
    return QuietServer(uvicorn.Config(_app, host="127.0.0.1", port=free_port(),
                                      lifespan="off", log_level="warning"))


async def _started(server: QuietServer) -> asyncio.Task[None]:
    task = asyncio.create_task(server.serve())
    await async_wait_until(lambda: server.started, what="the server to start")
    return task


async def test_answers_carry_a_date_header_refreshed_every_second() -> None:
    server = _server()
    task = await _started(server)
    try:
        first = dict(server.server_state.default_headers)[b"date"]
        await async_wait_until(lambda: dict(server.server_state.default_headers)[b"date"] != first,
                               timeout=3, what="the Date header to be refreshed")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)


async def test_a_stop_signal_wakes_the_loop_at_once_not_at_the_next_second() -> None:
    server = _server()
    task = await _started(server)
    await async_wait_until(lambda: server._waiter is not None,
                           what="the main loop to wait for its next second")
    waiter = server._waiter
    assert waiter is not None
    # uvicorn raises the signals it caught again once it has stopped: one this
    # test process ignores stands in for SIGTERM.
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        server.handle_exit(signal.SIGUSR1, None)
        for _ in range(3):  # call_soon_threadsafe: the next loop turn or so
            await asyncio.sleep(0)
        assert waiter.done()
        await asyncio.wait_for(task, 5)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_uvicorn_run_serves_with_it_inside_the_block_only() -> None:
    module = importlib.import_module("uvicorn.main")
    original = getattr(module, "Server")  # noqa: B009 (typed as a module: no Server)
    with serving_quietly():
        assert getattr(module, "Server") is QuietServer  # noqa: B009
    assert getattr(module, "Server") is original  # noqa: B009
