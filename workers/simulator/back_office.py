"""The simulated back office: the HTTP service the example dialogs' hooks call.

``callhub worker --simulate`` starts it on 127.0.0.1 (a free port) unless
``--hook-url`` names a real one, so the bundled dialogs' hooks are real HTTP
round trips. It answers like a small CRM and billing system, and fails the
way real ones do, decided by the caller's number so a seeded run repeats:

    caller_id ends in 7    404, no such account      -> hook_error http_status
    caller_id ends in 88   answers too late          -> hook_error timeout
    caller_id ends in 99   answers something not JSON -> hook_error invalid_response
    otherwise              200 {"variables": {...}}  -> hook_result

``serve_locally`` runs any ASGI app this way (tests use it for their own
hooks): uvicorn inside the running event loop, without uvicorn's signal
handlers and without its logging set-up, so the embedding process's SIGTERM
handling and logging stay as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import zlib
from collections.abc import AsyncIterator, Generator
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from workers.dialog.hooks import HookRequest

NAMES = ("Jane", "Omar", "Priya", "Lucas", "Mei", "Tomás", "Amara", "Sven", "Aiko", "Dmitri")
_request = msgspec.json.Decoder(HookRequest)
_json = msgspec.json.Encoder()


def _pick(caller_id: str, choices: tuple[str, ...]) -> str:
    return choices[zlib.crc32(caller_id.encode()) % len(choices)]


def _answers(path: str, request: HookRequest) -> dict[str, Any]:
    number = zlib.crc32(request.caller_id.encode())
    if path == "/accounts/lookup":
        return {"customer_name": _pick(request.caller_id, NAMES),
                "account_id": f"ACC-{number % 1_000_000:06d}"}
    if path == "/accounts/reset-password":
        return {"reset_link_sent": True}
    if path == "/billing/balance":
        return {"balance": f"{number % 50_000 / 100:.2f}", "due_date": f"June {number % 28 + 1}"}
    return {}


def simulated_back_office(*, slow_s: float = 3.0) -> Starlette:
    """The app; ``slow_s`` is how late a "slow" answer comes (more than any hook timeout)."""

    async def answer(request: Request) -> Response:
        try:
            call = _request.decode(await request.body())
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            return Response(_json.encode({"error": str(error)}), 400,
                            media_type="application/json")
        if call.caller_id.endswith("88"):
            await asyncio.sleep(slow_s)
        elif call.caller_id.endswith("99"):
            return Response(b"<html>Service Unavailable</html>", 200, media_type="text/html")
        elif call.caller_id.endswith("7"):
            return Response(_json.encode({"error": "no account for this number"}), 404,
                            media_type="application/json")
        variables = _answers(request.url.path, call)
        return Response(_json.encode({"variables": variables}), media_type="application/json")

    paths = ("/accounts/lookup", "/accounts/reset-password", "/billing/balance")
    return Starlette(routes=[Route(path, answer, methods=["POST"]) for path in paths])


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the embedding process owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_locally(app: Any, *, port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (``port`` 0: a free one); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    # No log_config, log_level or access_log: uvicorn would set them on the
    # process-wide "uvicorn.*" loggers, changing the logging of any other
    # uvicorn server in the process (the hub, in callhub demo).
    config = uvicorn.Config(app, log_config=None, log_level=None, lifespan="off",
                            timeout_graceful_shutdown=1)
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the local HTTP server stopped while starting")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        sock.close()
