"""The peer for the read benchmark: a bare Starlette route in the same set-up.

Same uvicorn, same process model, a response of the same size as a Get Call,
and nothing else: no Redis, no auth, no decoding. The ratio of the hub's Get
Call rate to this one is the cost of the hub's own work per request.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = (
    b'{"session_id":"call-abc-123","caller_id":"+15551234567","called_number":"+18001234567",'
    b'"dialog_name":"helpdesk","current_state":"collect_info","start_time":"2025-06-14T18:30:00Z",'
    b'"duration_seconds":45,"status":"active","variables":{},"cursor":"AZGRks8AAAGiDHvVkgHVID55J9AXqg"}'
)


async def call(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


def create() -> Starlette:
    return Starlette(routes=[Route("/v1/calls/{id}", call)])
