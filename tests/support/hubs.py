"""The hub in the test's own process: fast to start, and open to inspection.

``hub_client`` wires an HTTP client straight into the ASGI app (no socket; it
cannot stream, so not for the event stream). ``serving`` runs the app under
uvicorn on a loopback port inside the test's event loop, for real streaming
clients, with the hub object at hand (its dispatcher, its readers).
A `callhub serve` process is in tests/support/processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.applications import Starlette

from callhub.settings import Settings
from hub.api.replica import Replica
from hub.app import create_app
from tests.support.polling import async_wait_until
from tests.support.processes import free_port


@contextlib.asynccontextmanager
async def hub_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client wired straight into a hub app, its lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


@dataclass
class LiveHub:
    """A hub app served by uvicorn inside the test's event loop (inspectable)."""

    url: str
    app: Starlette

    @property
    def replica(self) -> Replica:
        replica: Replica = self.app.state.replica
        return replica


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[LiveHub]:
    """The hub app on 127.0.0.1 (a free port), once its dispatcher is ready."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    def started() -> bool:
        if task.done():
            raise AssertionError("the in-process hub stopped before it started")
        return bool(server.started)

    try:
        await async_wait_until(started, timeout=10, what="the in-process hub to start")
        live = LiveHub(f"http://127.0.0.1:{port}", app)
        await asyncio.wait_for(live.replica.dispatcher.ready.wait(), 10)
        yield live
    finally:
        if server.started:
            app.state.replica.dispatcher.close_all()
        server.should_exit = True
        await asyncio.wait_for(task, 15)
