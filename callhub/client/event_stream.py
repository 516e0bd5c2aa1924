"""``CallhubClient.events()``: the hub's event stream as typed events, resumed exactly.

It keeps the stream's position, as a browser's EventSource does, and
reconnects with it in ``Last-Event-ID`` whenever the connection drops, the
server ends the stream (a replica restarting or shedding a slow client), a
retryable status comes back (502/503/504…, honouring ``Retry-After``) or
nothing, not even a ping, arrives for ``idle_timeout_s``: the hub then sends
every matching event after that cursor exactly once, on whichever replica
answers. Pings and the post-history mark carry cursors too, so a quiet filter
still resumes from a recent position.

Reconnects wait the stream's ``retry:`` (3 s if it never said), doubling per
failed attempt up to 30 s, with up to 20 % jitter added (``callhub.backoff``),
so that the consumers of a restarted replica do not all return in one burst.
Answers a retry cannot fix raise at once (``callhub.client.errors``).

History (``include_history``) frames carry no cursor, by the hub's design: a
reconnect before the history is over replays it, and this stream drops the
events it already yielded (by call and ``seq``), so each still comes once.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias

import httpx
import msgspec

from callhub.backoff import Backoff
from callhub.client.cursor_store import CursorStore
from callhub.client.errors import (
    CallhubError,
    HubError,
    NotAHub,
    RetriesExhausted,
    UntrustedCertificate,
    error_for_status,
)
from callhub.client.models import HistoryEnd, StreamReset, UnknownEvent, _Envelope
from callhub.client.sse_parser import SseComment, SseMark, SseParser
from callhub.events import AnyEvent, decode_event
from callhub.trusted_events import decode_trusted_event

EVENTS_PATH: Final = "/v1/calls/events"
DEFAULT_RETRY_MS: Final = 3000
MAX_BACKOFF_S: Final = 30.0
MAX_RETRY_AFTER_S: Final = 300.0  # a Retry-After beyond this is a misconfiguration
JITTER: Final = 0.2
CONNECT_TIMEOUT_S: Final = 10.0
RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})

StreamItem: TypeAlias = AnyEvent | UnknownEvent | StreamReset | HistoryEnd


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 µs per event
class Delivery:
    """One item of the stream with what came with it: the cursor after it ("" for a
    history event) and the bytes of its ``data:`` (the event JSON exactly as sent)."""

    item: StreamItem
    cursor: str
    data: bytes
    last_of_read: bool  # nothing more is buffered: a good moment to flush output


class StreamListener(Protocol):
    """What a stream tells an observer (``callhub tail`` prints these)."""

    def connected(self, url: str, resumed_from: str, first: bool) -> None: ...

    def retrying(self, reason: str, delay_s: float, failures: int,
                 max_retries: int | None) -> None: ...


class _QuietListener:
    def connected(self, url: str, resumed_from: str, first: bool) -> None:
        pass

    def retrying(self, reason: str, delay_s: float, failures: int,
                 max_retries: int | None) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    """How the stream retries: ``max_retries`` failures in a row (None: for ever),
    ``idle_timeout_s`` of silence before reconnecting (None: wait for ever);
    ``sleep`` and ``jitter`` are seams for tests."""

    max_retries: int | None = None
    idle_timeout_s: float | None = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[], float] = random.random

    def backoff(self, retry_ms: int, attempt: int) -> float:
        """The wait before reconnection ``attempt``: the stream's retry (a floor), doubled."""
        base = retry_ms / 1000
        return Backoff(base, max(MAX_BACKOFF_S, base), jitter=(1.0, 1.0 + JITTER),
                       rand=self.jitter).delay(attempt)


class _Retry(Exception):
    """The attempt failed in a way a later attempt may not: why, and the least wait."""

    def __init__(self, reason: str, at_least_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.at_least_s = at_least_s


class EventStream:
    """An async iterator of typed events (``async for event in stream``).

    ``cursor`` is the position after the last item yielded; ``ack()`` saves it
    to the cursor store. ``deliveries()`` iterates the same stream with each
    item's cursor and bytes.
    """

    def __init__(
        self, http: httpx.AsyncClient, url: str, params: dict[str, str], *,
        last_event_id: str = "", cursor_store: CursorStore | None = None,
        checkpoint_every: int | None = None,
        on_reset: Callable[[StreamReset], object] | None = None,
        retry: RetryPolicy | None = None, listener: StreamListener | None = None,
        hub_url: str = "", client_cert: bool = False, validate: bool = True,
    ) -> None:
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        if checkpoint_every is not None and cursor_store is None:
            raise ValueError("checkpoint_every needs a cursor_store")
        self._http = http
        self.url = url
        self._hub_url = (hub_url or url).rstrip("/")
        self._client_cert = client_cert
        self._validate = validate
        self._params = params
        self._history = params.get("include_history") == "true"
        self.position = last_event_id  # what the next connection resumes from
        self.cursor = last_event_id  # the position after the last item yielded
        self._explicit_start = bool(last_event_id)
        self._store = cursor_store
        self._every = checkpoint_every
        self._on_reset = on_reset
        self.retry = retry or RetryPolicy()
        self._listener = listener or _QuietListener()
        self.retry_ms = DEFAULT_RETRY_MS
        self.failures = 0  # attempts in a row that did not get a stream
        self._connected_before = False
        self._saved: str | None = None
        self._handled = 0  # items handled since the last checkpoint
        self._acked_last = True
        self._history_seen: dict[str, int] = {}  # session -> highest seq yielded in history
        self._started = False
        self._items: AsyncGenerator[Delivery, None] | None = None

    # -- iteration ----------------------------------------------------------------

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamItem:
        if self._items is None:
            self._items = self.deliveries()
        delivery = await anext(self._items)
        return delivery.item

    async def aclose(self) -> None:
        """Close the connection now (leaving ``async for`` early leaves that to the
        garbage collector); ``async with stream:`` does it too."""
        if self._items is not None:
            await self._items.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def deliveries(self) -> AsyncGenerator[Delivery, None]:
        """Every item with its cursor and bytes, until a fatal error or ``max_retries``.

        One generator, the response opened and closed by hand: nested async
        generators (or ``async with`` inside one) left to the collector when a
        consumer stops early can be finalized all at once at shutdown, and fail.
        """
        if self._started:
            raise RuntimeError("an EventStream is iterated once; call events() again")
        self._started = True
        if not self._explicit_start and self._store is not None:
            self.position = self.cursor = self._saved = (await self._store.load()) or ""
        limit = self.retry.max_retries
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._open()
                parser = SseParser(self.position, marks=True)
                in_history = self._history and not self.position
                async for chunk in response.aiter_bytes():
                    items = parser.feed(chunk)
                    if parser.retry_ms is not None:
                        self.retry_ms = parser.retry_ms
                    last = len(items) - 1
                    for index, item in enumerate(items):
                        if isinstance(item, SseComment):
                            continue
                        if isinstance(item, SseMark):
                            await self._moved(item.last_event_id)
                            if not in_history:
                                continue
                            in_history = False
                            self._history_seen.clear()
                            delivery = Delivery(HistoryEnd(item.last_event_id),
                                                item.last_event_id, b"", index == last)
                        elif item.type == "stream_reset":
                            reset = _decode_reset(item.data)
                            self.position = item.last_event_id
                            if self._on_reset is not None:
                                self._on_reset(reset)
                            delivery = Delivery(reset, item.last_event_id, item.data,
                                                index == last)
                        else:
                            event = decode_item(item.data, validate=self._validate)
                            if in_history and self._seen_in_history(event):
                                continue
                            self.position = item.last_event_id
                            delivery = Delivery(event, item.last_event_id, item.data,
                                                index == last)
                        self.cursor = delivery.cursor or self.cursor
                        self._acked_last = False
                        yield delivery
                        if self._every is not None:
                            await self._handled_one()
                reason, at_least = "the hub ended the stream", 0.0
            except _Retry as retry:
                reason, at_least = retry.reason, retry.at_least_s
                self.failures += 1
            except httpx.RequestError as error:
                reason, at_least = self._failure(error, answered=response is not None), 0.0
                self.failures += 1
            finally:
                if response is not None:
                    await response.aclose()
            if limit is not None and self.failures > limit:
                raise RetriesExhausted(reason, limit)
            delay = max(self.retry.backoff(self.retry_ms, max(self.failures, 1)), at_least)
            self._listener.retrying(reason, delay, self.failures, limit)
            await self.retry.sleep(delay)

    async def ack(self) -> None:
        """Checkpoint: the last item yielded is handled; save the cursor after it."""
        self._acked_last = True
        await self._save(self.cursor)

    async def _handled_one(self) -> None:
        """The consumer asked for the next item: the last one is handled."""
        if self._every is None:
            return
        self._handled += 1
        if self._handled >= self._every:
            self._acked_last = True
            await self._save(self.cursor)

    async def _moved(self, cursor: str) -> None:
        """A cursor-only mark (a ping, the end of history): nothing to handle, so the
        store follows it if everything yielded is handled (with ``checkpoint_every``
        it is: the consumer asked for more) or acked."""
        self.position = self.cursor = cursor
        if self._store is not None and (self._every is not None or self._acked_last):
            await self._save(cursor)

    async def _save(self, cursor: str) -> None:
        self._handled = 0
        if self._store is None or not cursor or cursor == self._saved:
            return
        await self._store.save(cursor)
        self._saved = cursor

    # -- one connection -----------------------------------------------------------

    async def _open(self) -> httpx.Response:
        """A connection's response, once it is known to be an event stream."""
        headers = {"Last-Event-ID": self.position} if self.position else {}
        timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=self.retry.idle_timeout_s)
        request = self._http.build_request("GET", self.url, params=self._params,
                                           headers=headers, timeout=timeout)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.RequestError as error:
            raise _Retry(self._failure(error, answered=False)) from None
        try:
            await self._check(response)
        except BaseException:
            await response.aclose()
            raise
        self.failures = 0
        self._listener.connected(self.url, self.position, not self._connected_before)
        self._connected_before = True
        return response

    def _failure(self, error: httpx.RequestError, *, answered: bool) -> str:
        """Why a connection failed, if a retry may fix it; raises if not."""
        if isinstance(error, httpx.ReadTimeout):
            return f"nothing from the hub for {self.retry.idle_timeout_s:g}s"
        if isinstance(error, httpx.TooManyRedirects):
            raise NotAHub(f"{self.url}: {error}") from None
        untrusted = untrusted_reason(error)
        if untrusted is not None:
            raise UntrustedCertificate(untrusted) from None
        return self._describe(error, answered)

    def _seen_in_history(self, event: StreamItem) -> bool:
        """History replayed after a reconnect: drop what was yielded before."""
        if isinstance(event, UnknownEvent | StreamReset | HistoryEnd):
            return False
        seen = self._history_seen.get(event.session_id, 0)
        if event.seq <= seen:
            return True
        self._history_seen[event.session_id] = event.seq
        return False

    def _describe(self, error: httpx.RequestError, answered: bool) -> str:
        what = str(error) or type(error).__name__
        base = self._hub_url
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
            return f"cannot reach {base}: {what}"
        if isinstance(error, httpx.RemoteProtocolError):
            if answered:
                return "connection lost: the hub went away mid-stream"
            hint = ""
            if base.startswith("https:") and not self._client_cert:
                hint = " (a hub that requires client certificates does that: see --tls-cert)"
            return f"the hub closed the connection without answering{hint}"
        return f"connection lost: {what}"

    async def _check(self, response: httpx.Response) -> None:
        """Raise unless ``response`` is an event stream."""
        status = response.status_code
        if status == 200:
            content_type = response.headers.get("content-type", "")
            if content_type.split(";")[0].strip() != "text/event-stream":
                raise NotAHub(f"{response.url} is not an event stream "
                              f"(Content-Type {content_type or 'missing'}); "
                              "is the URL the hub's base URL?")
            return
        await response.aread()
        error = hub_error(response)
        if status in RETRYABLE_STATUS:
            raise _Retry(f"the hub answered {status} {response.reason_phrase}: {error.message}",
                         retry_after(response))
        raise error


def decode_item(data: bytes, *, validate: bool = True) -> AnyEvent | UnknownEvent:
    """An event's JSON as its typed Struct, or an ``UnknownEvent`` (never raises).

    ``validate=False`` decodes as the hub decodes what it already checked
    (``callhub.trusted_events``: no patterns, no ``__post_init__`` checks; every
    JSON type and ``Literal`` still checked), for a consumer that trusts its hub.
    """
    try:
        if validate:
            return decode_event(data)
        event: AnyEvent = decode_trusted_event(data)  # type: ignore[assignment]
        return event
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        try:
            envelope = msgspec.json.decode(data, type=_Envelope)
        except (msgspec.DecodeError, msgspec.ValidationError):
            envelope = _Envelope()
        return UnknownEvent(envelope.type, envelope.session_id, data, str(error))


def _decode_reset(data: bytes) -> StreamReset:
    try:
        return msgspec.json.decode(data, type=StreamReset)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return StreamReset()


class _ErrorDetail(msgspec.Struct):
    message: str = ""
    code: str = ""
    param: str | None = None


class _ErrorBody(msgspec.Struct):
    """The hub's JSON error body (``{"error": {"code", "message", "param"}}``)."""

    error: _ErrorDetail


def hub_error(response: httpx.Response) -> HubError:
    """The typed error for an error answer, with the hub's message (or the start of
    whatever a proxy answered)."""
    try:
        detail = msgspec.json.decode(response.content, type=_ErrorBody).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        detail = _ErrorDetail(message=response.text.strip()[:200])
    return error_for_status(response.status_code, detail.message or "(no message)",
                            code=detail.code, param=detail.param, url=str(response.url),
                            reason=response.reason_phrase)


def retry_after(response: httpx.Response) -> float:
    """A Retry-After in seconds (0 if absent or an HTTP date), capped."""
    value = response.headers.get("retry-after", "").strip()
    return min(float(value), MAX_RETRY_AFTER_S) if value.isdigit() else 0.0


def untrusted_reason(error: BaseException) -> str | None:
    """Why TLS with the hub cannot work, if that is what ``error`` is: its
    certificate failed verification, or it answers plain HTTP.

    Retrying cannot fix it. (A hub refusing *our* certificate is not as clear:
    under TLS 1.3 it just closes the connection, which is retried with a hint.)
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (f"the hub's certificate is not trusted ({cause.verify_message}); "
                    "give --tls-ca")
        if isinstance(cause, ssl.SSLError) and cause.reason == "WRONG_VERSION_NUMBER":
            return ("the hub answers plain HTTP, not TLS: use an http:// URL "
                    "(or serve the hub with --tls-cert)")
        cause = cause.__cause__ or cause.__context__
    return None


__all__ = ["CallhubError", "Delivery", "EventStream", "RetryPolicy", "StreamItem",
           "StreamListener"]
