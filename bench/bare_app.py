"""The peer for the read benchmark: a bare route in the hub's own set-up.

The peer is ``callhub serve`` itself (same command line, so the same uvicorn
flags, event loop, HTTP parser and garbage-collector tuning) serving the real
app (same middleware stack: error handling, CORS, exception mapping; same
router, same lifespan with its Redis pool and shard readers), with one change:
the Get Call route at the same place in the router answers a fixed body of a
Get Call's size, with no Redis read, no auth, no decoding. The ratio of the
hub's Get Call rate to this one is the cost of the hub's own per-request work.

Run as ``python -m bench.bare_app {stack|plain} serve --port P --redis-url URL
...`` (then the arguments of ``callhub serve``). ``plain`` serves a Starlette
app with that one route and no middleware (``create_plain``): not the peer,
a reference that shows what the hub's middleware stack costs by itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callhub.cli import main as callhub_main
from hub.app import create_app_from_environment

GET_CALL_PATH = "/v1/calls/{id}"
BODY = (
    b'{"session_id":"call-000042","caller_id":"+15551234567","called_number":"+18001234567",'
    b'"dialog_name":"helpdesk","current_state":"","start_time":"2026-01-01T00:00:04Z",'
    b'"duration_seconds":28297442,"status":"active","variables":{},'
    b'"cursor":"AZGRks8AAAGiDYfWuCejD_bH6D_JfQ"}'
)


async def call(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


def create() -> Starlette:
    """The real app from the environment, its Get Call route answering ``BODY``."""
    app = create_app_from_environment()
    routes = app.router.routes
    places = [n for n, r in enumerate(routes) if getattr(r, "path", None) == GET_CALL_PATH]
    if len(places) != 1:
        raise RuntimeError(f"the hub's app has {len(places)} routes for {GET_CALL_PATH}")
    routes[places[0]] = Route(GET_CALL_PATH, call)
    return app


def create_plain() -> Starlette:
    """The route alone: no middleware, no lifespan (the reference row)."""
    return Starlette(routes=[Route(GET_CALL_PATH, call)])


FACTORIES = {"stack": "bench.bare_app:create", "plain": "bench.bare_app:create_plain"}


def main(argv: Sequence[str] | None = None) -> int:
    """``callhub serve`` with its arguments, serving a bare app instead of the hub."""
    which, *serve_argv = list(argv) if argv is not None else sys.argv[1:]
    factory = FACTORIES[which]
    run = uvicorn.run

    def run_bare(app: Any, **options: Any) -> None:
        run(factory, **options)

    uvicorn.run = run_bare  # this process only: callhub serve's own call, other factory
    try:
        return callhub_main(serve_argv)
    finally:
        uvicorn.run = run


if __name__ == "__main__":
    sys.exit(main())
