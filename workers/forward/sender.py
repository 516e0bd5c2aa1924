"""WebhookSender: the POSTs, over one pooled keep-alive HTTP client.

Every subscription of a forwarder shares one ``httpx.AsyncClient``: its
connection pool keeps connections to each receiver alive between events.
It is ``callhub.destination_guard``'s client: every connection it makes goes
only to an address the webhook address rule allows (a private one only with
``allow_private``), whatever the host name resolves to by then; a refused one
is a failed attempt like any other connect error. Redirects are not followed
(a 3xx is a failed attempt: a subscription's URL is checked when it is set, a
redirect could point anywhere). A receiver's answer is read only up to
``body_limit`` bytes, which is all a delivery needs of it; a longer one costs
the connection, not the forwarder's memory. One attempt, connect to last
byte, takes at most the timeout.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import msgspec

from callhub.destination_guard import guarded_client

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
    def __init__(self, timeout_s: float, *, allow_private: bool, max_connections: int = 1024,
                 body_limit: int = BODY_LIMIT) -> None:
        self._timeout_s = timeout_s
        self._body_limit = body_limit
        self._client = guarded_client(
            timeout_s=timeout_s, allow_private=allow_private,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections))

    async def send(self, url: str, body: bytes,
                   headers: Sequence[tuple[str, str]]) -> AttemptResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._post(url, body, headers, started)
        except (httpx.HTTPError, TimeoutError, OSError) as error:
            kind = "timed out" if isinstance(error, TimeoutError | httpx.TimeoutException) \
                else type(error).__name__
            return AttemptResult(0, _since(started), error=f"{kind}: {error}"[:300])

    async def _post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]],
                    started: float) -> AttemptResult:
        async with self._client.stream("POST", url, content=body, headers=list(headers)) \
                as response:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > self._body_limit:
                    break  # closing an unread response drops the connection
            status = response.status_code
            error = "" if 200 <= status < 300 else f"HTTP {status}"
            wait = retry_after(response.headers.get("retry-after")) \
                if status in RETRY_AFTER_STATUSES else None
            return AttemptResult(status, _since(started), error=error, retry_after_s=wait)

    async def aclose(self) -> None:
        await self._client.aclose()


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
