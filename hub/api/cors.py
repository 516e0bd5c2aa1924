"""CORS, configured once from ``CALLHUB_CORS_ORIGINS`` for both ways a request is served.

Most endpoints get their CORS headers from Starlette's ``CORSMiddleware``. The
event stream is served ahead of the middleware stack (``hub.app``), so it adds
the same headers itself: ``simple_headers`` answers exactly what the
middleware answers to a simple (non-preflight) request, from the same
settings, so a browser sees one policy on every path. Preflight requests are
left to the middleware on every path.
"""

from __future__ import annotations

from typing import Final

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Scope

ALLOW_HEADERS: Final = ("Authorization", "X-API-Key", "Last-Event-ID")
MAX_AGE_S: Final = 600
_VARY: Final = (b"vary", b"Origin")


class CorsPolicy:
    def __init__(self, setting: str) -> None:
        self.origins = [o.strip() for o in setting.split(",") if o.strip()]
        self._any = "*" in self.origins

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def middleware(self) -> list[Middleware]:
        if not self.enabled:
            return []
        return [Middleware(CORSMiddleware, allow_origins=self.origins, allow_methods=["GET"],
                           allow_headers=list(ALLOW_HEADERS), max_age=MAX_AGE_S)]

    def simple_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The headers ``CORSMiddleware`` adds to a response to this (simple) request."""
        if not self.enabled:
            return []
        origin = next((value for name, value in scope["headers"] if name == b"origin"), None)
        if origin is None:
            return [_VARY]
        if self._any:
            return [(b"access-control-allow-origin", b"*"), _VARY]
        if origin.decode("latin-1") in self.origins:
            return [(b"access-control-allow-origin", origin), _VARY]
        return [_VARY]
