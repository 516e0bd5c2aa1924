"""A webhook receiver for tests: a small Starlette app under uvicorn on loopback.

It records every request it gets (headers and body, as sent) and answers with
``status`` (settable while it runs), so a test checks what a delivery or a
ping carried, verifies its signature with a Standard Webhooks library, and
makes the receiver fail on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.polling import async_wait_until
from tests.support.processes import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    status: int = 204
    requests: list[Received] = field(default_factory=list)


@contextlib.asynccontextmanager
async def receiving(status: int = 204) -> AsyncIterator[Receiver]:
    """A receiver on 127.0.0.1 (a free port) until the block ends."""
    port = free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}/hook", status=status)

    async def receive(request: Request) -> Response:
        receiver.requests.append(Received(request.url.path, dict(request.headers),
                                          await request.body()))
        return Response(status_code=receiver.status)

    app = Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())

    def started() -> bool:
        if task.done():
            raise AssertionError("the webhook receiver stopped before it started")
        return bool(server.started)

    try:
        await async_wait_until(started, timeout=10, what="the webhook receiver to start")
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
