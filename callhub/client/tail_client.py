"""The loop behind ``callhub tail``: the client's event stream, printed for a person.

A tail is ``CallhubClient.events()`` (``callhub/client/event_stream.py``:
the exact resume, the backoff, the errors no retry fixes) with a printer on
top: one line per event (``tail_format``) or the event JSON exactly as
received, and a notice on stderr for every connection, reconnection and
``stream_reset``. What the client raises becomes the tail's exit status: 2
with the hub's own words for an answer no retry changes, 1 when
``max_retries`` runs out.

Interrupting it (Ctrl-C) is the normal way to stop it; ``callhub/cli/tail.py``
turns that into status 0.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, TextIO

import httpx

from callhub.client.errors import (
    ClientConfigError,
    Forbidden,
    HubError,
    NotAHub,
    NotFound,
    RetriesExhausted,
    Unauthorized,
    UntrustedCertificate,
)
from callhub.client.event_stream import EVENTS_PATH, Delivery, RetryPolicy
from callhub.client.hub_client import CallhubClient, check_base_url
from callhub.client.hub_client import tls_context as _client_tls_context
from callhub.client.models import StreamReset
from callhub.client.tail_format import clean, format_event

DEFAULT_RETRY_MS: Final = 3000


class UsageError(ValueError):
    """An option the tail cannot work with (exit status 2)."""


@dataclass(frozen=True)
class TailOptions:
    url: str
    event_types: str = ""
    session_id: str = ""
    dialog_name: str = ""
    include_history: bool = False
    last_event_id: str = ""
    api_key: str = ""
    json: bool = False
    colour: bool = False
    max_retries: int | None = None  # None: retry for ever
    idle_timeout_s: float | None = 60.0  # None: wait for ever
    tls_ca: str = ""  # CA bundle that signs the hub's certificate (default: httpx's)
    tls_cert: str = ""  # client certificate (PEM, may hold the key too) for mTLS
    tls_key: str = ""

    @property
    def base_url(self) -> str:
        """The hub's base URL (``--url`` may name the stream itself)."""
        base = self.url.rstrip("/")
        return base.removesuffix(EVENTS_PATH) if base.endswith(EVENTS_PATH) else base

    @property
    def stream_url(self) -> str:
        """The event stream under the hub's base URL (which may carry a path prefix)."""
        return self.base_url + EVENTS_PATH


def check_url(url: str) -> str:
    """``url`` if it can name a hub, else a UsageError saying why."""
    try:
        check_base_url(url)
    except ClientConfigError as error:
        raise UsageError(f"--url {error.message}") from None
    return url


def tls_context(options: TailOptions) -> object:
    """The TLS settings for ``--tls-ca``/``--tls-cert``/``--tls-key``; UsageError if unusable."""
    try:
        return _client_tls_context(options.tls_ca, options.tls_cert, options.tls_key)
    except ClientConfigError as error:
        raise UsageError(error.message) from None


class Tail:
    """Follows one stream until interrupted, a fatal answer, or ``max_retries``.

    ``transport``, ``sleep`` and ``jitter`` are seams for the unit tests.
    """

    def __init__(
        self, options: TailOptions, out: BinaryIO, err: TextIO, *, encoding: str = "utf-8",
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.options = options
        self._out = out
        self._err = err
        self._encoding = encoding
        self._transport = transport
        self._sleep = sleep
        self._policy = RetryPolicy(max_retries=options.max_retries,
                                   idle_timeout_s=options.idle_timeout_s,
                                   sleep=self._async_sleep, jitter=jitter)

    async def _async_sleep(self, seconds: float) -> None:
        if self._sleep is time.sleep:
            await asyncio.sleep(seconds)
        else:
            self._sleep(seconds)

    def backoff(self, attempt: int) -> float:
        """The wait before reconnection ``attempt`` (1, 2, …) at the default retry."""
        return self._policy.backoff(DEFAULT_RETRY_MS, attempt)

    def run(self) -> int:
        """Stream until something ends it; the exit status."""
        try:
            verify = tls_context(self.options)
        except UsageError as error:
            self.notice(f"error: {error}")
            return 2
        return asyncio.run(self._run(verify))

    async def _run(self, verify: object) -> int:
        options = self.options
        async with CallhubClient(options.base_url, api_key=options.api_key,
                                 verify=verify,  # type: ignore[arg-type]
                                 tls_cert=options.tls_cert,
                                 transport=_async_transport(self._transport)) as hub:
            stream = hub.events(
                event_types=options.event_types, session_id=options.session_id,
                dialog_name=options.dialog_name, include_history=options.include_history,
                last_event_id=options.last_event_id, retry=self._policy, listener=self)
            try:
                async for delivery in stream.deliveries():
                    self._handle(delivery)
            except RetriesExhausted as exhausted:
                self.notice(exhausted.message)
                return 1
            except (HubError, NotAHub, UntrustedCertificate, ClientConfigError) as fatal:
                self.notice(self._fatal(fatal))
                return 2
        return 0  # pragma: no cover - the stream never ends by itself

    def _fatal(self, error: Exception) -> str:
        if isinstance(error, Unauthorized | Forbidden):
            if not self.options.api_key:
                return (f"the hub needs an API key ({error.status}: {clean(error.message)}); "
                        "give --api-key or set CALLHUB_API_KEY")
            word = "refused" if isinstance(error, Unauthorized) else \
                "not allowed to read this stream"
            return f"the API key was {word} ({error.status}: {clean(error.message)})"
        if isinstance(error, NotFound):
            return f"{error.url} is not found (404); is --url the hub's base URL?"
        if isinstance(error, HubError):
            return f"the hub answered {error.status} {error.reason}: {clean(error.message)}"
        if isinstance(error, NotAHub):
            return clean(str(error)).replace("is the URL", "is --url")
        return clean(str(error))

    # -- what the stream reports (StreamListener) ------------------------------------

    def connected(self, url: str, resumed_from: str, first: bool) -> None:
        if first:
            self.notice(f"connected to {self.options.stream_url}")
        elif resumed_from:
            self.notice(f"reconnected; resuming after {resumed_from}")
        else:
            self.notice("reconnected (no position yet: events from now on)")

    def retrying(self, reason: str, delay_s: float, failures: int,
                 max_retries: int | None) -> None:
        of = f" of {max_retries}" if max_retries is not None else ""
        count = f" (retry {failures}{of})" if failures else ""
        self.notice(f"{clean(reason)}; reconnecting in {delay_s:.1f}s{count}")

    def _handle(self, delivery: Delivery) -> None:
        item = delivery.item
        if isinstance(item, StreamReset):
            self.notice(_reset_notice(item))
        elif not delivery.data:
            pass  # the seam after history: no event to print
        elif self.options.json:
            self._out.write(delivery.data + b"\n")
        else:
            line = format_event(delivery.data, colour=self.options.colour)
            self._out.write(line.encode(self._encoding, "backslashreplace") + b"\n")
        if delivery.last_of_read:
            self._out.flush()

    def notice(self, text: str) -> None:
        self._err.write(f"callhub tail: {text}\n")
        self._err.flush()


def _reset_notice(reset: StreamReset) -> str:
    detail = f" ({reset.reason})" if reset.reason else ""
    message = f": {reset.message}" if reset.message else ""
    return clean(f"stream_reset{detail}{message}; events between the last one shown and the "
                 "oldest retained one are missing, continuing from there")


def _async_transport(
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
) -> httpx.AsyncBaseTransport | None:
    """A test's synchronous transport (``httpx.MockTransport`` with sync bodies),
    served to the async client."""
    if isinstance(transport, httpx.BaseTransport):
        return _SyncTransport(transport)
    return transport


class _SyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, transport: httpx.BaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = self._transport.handle_request(request)
        body = response.stream
        assert isinstance(body, httpx.SyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_AsyncBody(iter(body)), request=request)


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
