"""The dashboard page at ``/``: one static HTML file, no build step, no external assets.

The page is read once per process and served from memory; it talks to the same
public API as any other client (EventSource on ``/v1/calls/events``, ``fetch``
on ``/v1/calls`` and ``/v1/webhooks``), so it needs no endpoint of its own.

It goes out with a Content-Security-Policy that lets only its own inline script
run (by the script's hash) and lets it talk only to its own origin: the page
puts event text into the DOM as text, and should a future change ever slip
markup in, an injected ``<img onerror=…>`` still could not run.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


@cache
def dashboard_html() -> bytes:
    return resources.files("hub.api").joinpath("static/dashboard.html").read_bytes()


@cache
def content_security_policy() -> str:
    """The page's policy: its own scripts (by hash), inline styles, its own origin."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(dashboard_html())
    )
    return (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
            "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


async def dashboard(request: Request) -> Response:
    return Response(dashboard_html(), media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-cache",
                             "Content-Security-Policy": content_security_policy()})
