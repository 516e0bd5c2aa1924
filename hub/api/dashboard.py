"""The dashboard page at ``/``: one static HTML file, no build step, no external assets.

The page is read once per process and served from memory; it talks to the same
public API as any other client (EventSource on ``/v1/calls/events``, ``fetch``
on ``/v1/calls`` and ``/v1/webhooks``), so it needs no endpoint of its own.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response


@cache
def dashboard_html() -> bytes:
    return resources.files("hub.api").joinpath("static/dashboard.html").read_bytes()


async def dashboard(request: Request) -> Response:
    return Response(dashboard_html(), media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-cache"})
