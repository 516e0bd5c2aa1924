"""CORS, configured once from ``CALLHUB_CORS_ORIGINS`` for both ways a request is served.

Most endpoints get their CORS headers from Starlette's ``CORSMiddleware``. The
event stream is served ahead of the middleware stack (``hub.app``), so it adds
the same headers itself: ``simple_headers`` answers exactly what the
middleware answers to a simple (non-preflight) request, from the same
settings, so a browser sees one policy on every path. Preflight requests are
left to the middleware on every path.

Unset, the policy follows the keys: with API keys, any origin (the spec's
EventSource example runs on pages served elsewhere, and a key is still needed);
with no keys, only pages served from this machine (``localhost``, ``127.0.0.1``,
``[::1]``, any port). An open API that answered every origin would let any web
page a user visits read the calls of a hub on their machine or network.
"""

from __future__ import annotations

import re
from typing import Final

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Scope

ALLOW_HEADERS: Final = ("Authorization", "X-API-Key", "Last-Event-ID")
MAX_AGE_S: Final = 600
LOOPBACK_ORIGINS: Final = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?"
_VARY: Final = (b"vary", b"Origin")


class CorsPolicy:
    def __init__(self, setting: str | None, *, keys_enabled: bool) -> None:
        if setting is None:
            setting = "*" if keys_enabled else ""
            self._pattern: re.Pattern[str] | None = (
                None if keys_enabled else re.compile(LOOPBACK_ORIGINS))
        else:
            self._pattern = None
        self.origins = [o.strip() for o in setting.split(",") if o.strip()]
        self._any = "*" in self.origins

    @property
    def enabled(self) -> bool:
        return bool(self.origins) or self._pattern is not None

    def middleware(self) -> list[Middleware]:
        if not self.enabled:
            return []
        return [Middleware(CORSMiddleware, allow_origins=self.origins,
                           allow_origin_regex=self._pattern.pattern if self._pattern else None,
                           allow_methods=["GET"], allow_headers=list(ALLOW_HEADERS),
                           max_age=MAX_AGE_S)]

    def simple_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The headers ``CORSMiddleware`` adds to a response to this (simple) request."""
        if not self.enabled:
            return []
        origin = next((value for name, value in scope["headers"] if name == b"origin"), None)
        if origin is None:
            return [_VARY]
        if self._any:
            return [(b"access-control-allow-origin", b"*"), _VARY]
        text = origin.decode("latin-1")
        if text in self.origins or (self._pattern is not None and self._pattern.fullmatch(text)):
            return [(b"access-control-allow-origin", origin), _VARY]
        return [_VARY]
