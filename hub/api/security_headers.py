"""The headers every answer of a replica carries, whatever served it.

``nosniff`` stops a browser from reading a JSON body (which holds caller text)
as something else; ``no-referrer`` keeps a dashboard URL (with a call id in its
fragment, or a key in an EventSource URL) out of other sites' logs. Call data
and webhook configuration are for the client that asked, never for a shared
cache or the browser's disk: everything under ``/v1/`` is ``no-store`` unless
the endpoint chose its own caching. Added by the one middleware every request
passes (``RequestObserver``) and by the event stream, which is served ahead of it.
"""

from __future__ import annotations

from typing import Final

EVERY_ANSWER: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_NO_STORE: Final = (b"cache-control", b"no-store")
_DATA_PATHS: Final = "/v1/"


def security_headers(path: str, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers to add to an answer to ``path`` that already has ``headers``."""
    if path.startswith(_DATA_PATHS) and not any(name.lower() == b"cache-control"
                                                for name, _ in headers):
        return [*EVERY_ANSWER, _NO_STORE]
    return list(EVERY_ANSWER)
