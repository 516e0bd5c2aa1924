"""WebhookSender: the POSTs, over the forwarder's own pooled keep-alive HTTP client.

Every subscription of a forwarder shares one ``ConnectionPool``: it keeps
connections to each receiver alive between events, and every connection it
makes goes only to an address the webhook address rule allows (a private one
only with ``allow_private``), whatever the host name resolves to by then; a
refused one is a failed attempt like any other connect error. Redirects are
not followed (a 3xx is a failed attempt: a subscription's URL is checked when
it is set, a redirect could point anywhere). A receiver's answer is read only
up to ``body_limit`` bytes, which is all a delivery needs of it; a longer one
costs the connection, not the forwarder's memory. One attempt, connect to
last byte, takes at most the timeout. Why not httpx: ``connection_pool``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import msgspec

from callhub.destination_guard import Resolver
from callhub.webhooks import resolve_addresses
from workers.forward.connection_pool import ConnectionPool, HttpError

BODY_LIMIT = 16 * 1024
RETRY_AFTER_STATUSES = frozenset({429, 503})
_DELAY_SECONDS = re.compile(r"[0-9]+")


class AttemptResult(msgspec.Struct, frozen=True):
    """What one POST came to: the status (0: no answer), how long, why it failed."""

    status_code: int
    latency_ms: float
    error: str = ""
    retry_after_s: float | None = None  # the receiver's Retry-After, on 429 and 503

    @property
    def delivered(self) -> bool:
        return 200 <= self.status_code < 300


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` (RFC 9110 section 10.2.3) in seconds from ``now``, or None.

    Either delay-seconds (ASCII digits only: ``str.isdigit`` takes "²", which
    ``float`` refuses) or an HTTP-date; a date already past is 0; anything else
    is None (the backoff decides). A date without a zone (asctime) is GMT, as
    HTTP-dates are.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


class WebhookSender:
    def __init__(self, timeout_s: float, *, allow_private: bool, body_limit: int = BODY_LIMIT,
                 ssl_context: ssl.SSLContext | None = None,
                 resolve: Resolver = resolve_addresses) -> None:
        self._timeout_s = timeout_s
        self.pool = ConnectionPool(allow_private=allow_private, body_limit=body_limit,
                                   ssl_context=ssl_context, resolve=resolve)

    async def send(self, url: str, body: bytes,
                   headers: Sequence[tuple[str, str]]) -> AttemptResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                status, retry_header = await self.pool.post(url, body, headers)
        except TimeoutError as error:
            return AttemptResult(0, _since(started), error=f"timed out: {error}"[:300])
        except (HttpError, OSError, ValueError) as error:
            return AttemptResult(0, _since(started),
                                 error=f"{type(error).__name__}: {error}"[:300])
        if 200 <= status < 300:
            return AttemptResult(status, _since(started))
        wait = retry_after(retry_header) if status in RETRY_AFTER_STATUSES else None
        return AttemptResult(status, _since(started), error=f"HTTP {status}",
                             retry_after_s=wait)

    async def aclose(self) -> None:
        await self.pool.aclose()


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
