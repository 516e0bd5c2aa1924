"""``CallhubClient``: the hub's HTTP API for Python integrations (async, typed).

It speaks only HTTP (works through any load balancer, with API keys, TLS and
client certificates) and hands back the kernel's own Structs: the events the
workers commit, the transcript and summary the hub computes, and the Get Call
object (``callhub.client.models``)::

    async with CallhubClient("https://hub.example", api_key=key) as hub:
        async for event in hub.events(event_types=["speech_final"], dialog_name="helpdesk"):
            match event:
                case SpeechFinal(session_id=sid, transcript=text): print(sid, text)

REST reads are retried (with the shared ``Backoff``) when no answer came or a
retryable status did (502/503/504: a replica restarting behind the balancer),
up to ``rest_retries`` times; every other error answer raises at once as its
typed exception (``callhub.client.errors``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import msgspec

from callhub.backoff import Backoff
from callhub.call_summary import CallSummary
from callhub.client.cursor_store import CursorStore
from callhub.client.errors import (
    ClientConfigError,
    HubUnavailable,
    HubUnreachable,
    NotAHub,
    NotFound,
    UntrustedCertificate,
)
from callhub.client.event_stream import (
    CONNECT_TIMEOUT_S,
    EVENTS_PATH,
    RETRYABLE_STATUS,
    EventStream,
    RetryPolicy,
    StreamListener,
    hub_error,
    retry_after,
    untrusted_reason,
)
from callhub.client.models import (
    Call,
    CallEventsPage,
    CallPage,
    ExportedCall,
    ExportPage,
    StreamReset,
)
from callhub.events import AnyEvent
from callhub.transcript import Transcript

READ_TIMEOUT_S: Final = 30.0
REST_RETRIES: Final = 4
T = TypeVar("T")


def check_base_url(url: str) -> str:
    """``url`` without a trailing slash if it can name a hub, else ClientConfigError."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        raise ClientConfigError(f"{url!r} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientConfigError(f"{url!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ClientConfigError(f"{url!r}: give the hub's base URL, without ? or #")
    return url.rstrip("/")


def tls_context(tls_ca: str = "", tls_cert: str = "",
                tls_key: str = "") -> ssl.SSLContext | bool:
    """TLS settings: a CA bundle that signs the hub's certificate, a client
    certificate (PEM, may hold its key) for a hub that requires one."""
    if tls_key and not tls_cert:
        raise ClientConfigError("--tls-key needs --tls-cert")
    if not (tls_ca or tls_cert):
        return True  # httpx's default trust (certifi, or SSL_CERT_FILE / SSL_CERT_DIR)
    try:
        context = (ssl.create_default_context(cafile=tls_ca) if tls_ca
                   else httpx.create_ssl_context())
        if tls_cert:
            context.load_cert_chain(tls_cert, tls_key or None)
    except (OSError, ssl.SSLError) as error:
        raise ClientConfigError(f"cannot use the TLS files given: {error}") from None
    return context


def _types(event_types: str | Iterable[str] | None) -> str:
    if event_types is None:
        return ""
    names = [event_types] if isinstance(event_types, str) else list(event_types)
    # Checked by the hub (a BadRequest naming the type), the one place that knows them.
    return ",".join(name.strip() for name in names if name.strip())


def _time(value: datetime | str | None) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if value.utcoffset() is None:
        raise ClientConfigError(f"{value!r} has no time zone; give an aware datetime")
    return value.isoformat()


class CallhubClient:
    """One hub, one connection pool. Use it as ``async with``, or ``aclose()`` it.

    ``transport`` (an httpx transport) is a seam for tests; ``rest_sleep``
    the wait between REST retries.
    """

    def __init__(
        self, url: str, *, api_key: str = "", tls_ca: str = "", tls_cert: str = "",
        tls_key: str = "", verify: ssl.SSLContext | bool | None = None,
        timeout_s: float = READ_TIMEOUT_S, rest_retries: int = REST_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        rest_sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.url = check_base_url(url)
        self._verify = verify if verify is not None else tls_context(tls_ca, tls_cert, tls_key)
        self._client_cert = bool(tls_cert)
        headers = {"User-Agent": "callhub-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, transport=transport, verify=self._verify,
            timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=timeout_s), follow_redirects=True)
        self._rest_retries = rest_retries
        self._rest_sleep = rest_sleep
        self._decoders: dict[Any, msgspec.json.Decoder[Any]] = {}

    async def __aenter__(self) -> CallhubClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the event stream ---------------------------------------------------------

    def events(
        self, *, event_types: str | Iterable[str] | None = None, session_id: str = "",
        dialog_name: str = "", include_history: bool = False, last_event_id: str = "",
        cursor_store: CursorStore | None = None, checkpoint_every: int | None = None,
        on_reset: Callable[[StreamReset], object] | None = None,
        max_retries: int | None = None, idle_timeout_s: float | None = 60.0,
        retry: RetryPolicy | None = None, listener: StreamListener | None = None,
        validate: bool = True,
    ) -> EventStream:
        """The matching events as they happen (and first the history, if asked).

        Starts after ``last_event_id`` if given, else after the cursor in
        ``cursor_store``, else from now. Yields the kernel's event Structs,
        ``UnknownEvent`` for one this client cannot decode, ``StreamReset``
        when the cursor was older than the hub's retention, ``HistoryEnd`` at
        the seam between history and live events. ``validate=False`` skips the
        Structs' Python-level checks, which the hub made at commit (decoding
        costs a third; see ``event_stream.decode_item``).
        """
        params = {"event_types": _types(event_types), "session_id": session_id,
                  "dialog_name": dialog_name}
        if include_history:
            params["include_history"] = "true"
        policy = retry or RetryPolicy(max_retries=max_retries, idle_timeout_s=idle_timeout_s)
        return EventStream(
            self._http, self.url + EVENTS_PATH,
            {name: value for name, value in params.items() if value},
            last_event_id=last_event_id.strip(), cursor_store=cursor_store,
            checkpoint_every=checkpoint_every, on_reset=on_reset, retry=policy,
            listener=listener, hub_url=self.url, client_cert=self._client_cert,
            validate=validate)

    # -- REST ---------------------------------------------------------------------

    async def get_call(self, session_id: str) -> Call:
        """Get Call: the call (with its summary once it has ended)."""
        return await self._get(f"/v1/calls/{_segment(session_id)}", Call)

    async def list_call_pages(
        self, *, dialog_name: str = "", status: str = "", ended_after: datetime | str | None = None,
        ended_before: datetime | str | None = None, caller_id: str = "", page_size: int = 100,
    ) -> AsyncIterator[CallPage]:
        """List Calls page by page (the keyset tokens handled). Without ``status``
        the hub lists active calls; ``terminated`` (newest first) and ``all``
        list ended calls too, ``ended_after``/``ended_before`` bound their end."""
        params = {"dialog_name": dialog_name, "status": status,
                  "ended_after": _time(ended_after), "ended_before": _time(ended_before),
                  "caller_id": caller_id, "page_size": str(page_size)}
        params = {name: value for name, value in params.items() if value}
        while True:
            page = await self._get("/v1/calls", CallPage, params)
            yield page
            if not page.next_page_token:
                return
            params["page_token"] = page.next_page_token

    async def list_calls(self, **filters: Any) -> AsyncIterator[Call]:
        """Every call List Calls has for these filters (see ``list_call_pages``)."""
        async for page in self.list_call_pages(**filters):
            for call in page.calls:
                yield call

    async def export_pages(self, *, with_transcript: bool = False, concurrency: int = 8,
                           **filters: Any) -> AsyncIterator[ExportPage]:
        """List Calls page by page, each call with its summary (and transcript if
        asked): ``concurrency`` reads in flight, the page's order kept. A call that
        expired between its page and these reads comes as listed."""
        limit = asyncio.Semaphore(concurrency)

        async def exported(call: Call) -> ExportedCall:
            async with limit:
                fields = msgspec.structs.asdict(call)
                try:
                    if fields["summary"] is None:
                        fields["summary"] = await self.summary(call.session_id)
                    if with_transcript:
                        fields["transcript"] = await self.transcript(call.session_id)
                except NotFound:
                    pass
                return ExportedCall(**fields)

        async for page in self.list_call_pages(**filters):
            calls = await asyncio.gather(*(exported(call) for call in page.calls))
            yield ExportPage(list(calls), page.total_count)

    async def export(self, *, with_transcript: bool = False,
                     **filters: Any) -> AsyncIterator[ExportedCall]:
        """Every listed call as ``callhub export`` writes it (see ``export_pages``)."""
        async for page in self.export_pages(with_transcript=with_transcript, **filters):
            for call in page.calls:
                yield call

    async def call_events(self, session_id: str, *,
                          event_types: str | Iterable[str] | None = None,
                          page_size: int = 100) -> AsyncIterator[AnyEvent]:
        """A call's stored events in commit order, every page."""
        async for page in self.call_event_pages(session_id, event_types=event_types,
                                                page_size=page_size):
            for event in page.events:
                yield event

    async def call_event_pages(self, session_id: str, *,
                               event_types: str | Iterable[str] | None = None,
                               page_size: int = 100) -> AsyncIterator[CallEventsPage]:
        """A call's stored events page by page; the last page's ``cursor`` goes on live."""
        params = {"page_size": str(page_size)}
        types = _types(event_types)
        if types:
            params["event_types"] = types
        path = f"/v1/calls/{_segment(session_id)}/events"
        while True:
            page = await self._get(path, CallEventsPage, params)
            yield page
            if not page.has_more:
                return
            params["after"] = page.next_after

    async def transcript(self, session_id: str) -> Transcript:
        """The call's conversation as turns (``callhub.transcript``)."""
        return await self._get(f"/v1/calls/{_segment(session_id)}/transcript", Transcript)

    async def summary(self, session_id: str) -> CallSummary:
        """The call's summary (``callhub.call_summary``), of an active call too."""
        return await self._get(f"/v1/calls/{_segment(session_id)}/summary", CallSummary)

    async def _get(self, path: str, kind: type[T], params: dict[str, str] | None = None) -> T:
        response = await self._request(path, params or {})
        decoder = self._decoders.get(kind)
        if decoder is None:
            decoder = self._decoders[kind] = msgspec.json.Decoder(kind)
        try:
            decoded: T = decoder.decode(response.content)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise NotAHub(f"{response.url} did not answer as a hub does ({error}); "
                          "is the URL the hub's base URL?") from None
        return decoded

    async def _request(self, path: str, params: dict[str, str]) -> httpx.Response:
        """GET with retries on no answer and on retryable statuses."""
        backoff = Backoff(0.2, 5.0)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.get(path, params=params)
            except httpx.TooManyRedirects as error:
                raise NotAHub(f"{self.url}{path}: {error}") from None
            except httpx.RequestError as error:
                untrusted = untrusted_reason(error)
                if untrusted is not None:
                    raise UntrustedCertificate(untrusted) from None
                if attempt > self._rest_retries:
                    raise HubUnreachable(f"cannot reach {self.url}: "
                                         f"{error or type(error).__name__}") from None
                await self._pause(backoff.next_delay())
                continue
            if response.status_code == 200:
                return response
            if response.status_code in RETRYABLE_STATUS and attempt <= self._rest_retries:
                await self._pause(max(backoff.next_delay(), retry_after(response)))
                continue
            answer = hub_error(response)
            if response.status_code in RETRYABLE_STATUS:
                raise HubUnavailable(answer.status, answer.message, code=answer.code,
                                     url=answer.url, reason=answer.reason)
            if response.status_code == 404 and answer.code != "not_found":
                raise NotAHub(f"{response.url} is not found (404); "
                              "is the URL the hub's base URL?")
            raise answer

    async def _pause(self, seconds: float) -> None:
        await (self._rest_sleep or asyncio.sleep)(seconds)


def _segment(session_id: str) -> str:
    """A session id as one path segment (the hub answers a bad one with a 400)."""
    return quote(session_id, safe="")


__all__: Sequence[str] = ["CallhubClient", "check_base_url", "tls_context"]
