"""The loop behind ``callhub tail``: follow a hub's event stream, resume when it drops.

A tail is a client of the hub's HTTP API and nothing else (it never talks to
Redis), so it works through load balancers and against any replica. It keeps
the stream's last event id, as a browser's EventSource does, and reconnects
with it in ``Last-Event-ID`` whenever the connection drops, the server ends
the stream (a replica restarting or shedding a slow client) or nothing, not
even a ping, arrives for ``idle_timeout_s``: the hub then sends every matching
event after that cursor exactly once, on whichever replica answers.

Reconnects wait the stream's ``retry:`` (3 s if it never said), doubling per
failed attempt up to 30 s, with up to 20 % jitter added so that many tails of
a restarted replica do not return in one burst; a 503's ``Retry-After`` can
only lengthen the wait. Errors a retry cannot fix (a refused key, a bad filter,
a URL that is not a hub) end the tail with status 2 and the hub's own message.

Interrupting it (Ctrl-C) is the normal way to stop it; ``callhub/cli/tail.py``
turns that into status 0.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Final, TextIO
from urllib.parse import urlsplit

import httpx
import msgspec

from callhub.backoff import Backoff
from callhub.client.sse_parser import SseComment, SseEvent, SseParser
from callhub.client.tail_format import clean, format_event

EVENTS_PATH: Final = "/v1/calls/events"
DEFAULT_RETRY_MS: Final = 3000
MAX_BACKOFF_S: Final = 30.0
MAX_RETRY_AFTER_S: Final = 300.0  # a Retry-After beyond this is a misconfiguration
JITTER: Final = 0.2
CONNECT_TIMEOUT_S: Final = 10.0
RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


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
    def stream_url(self) -> str:
        """The event stream under the hub's base URL (which may carry a path prefix)."""
        base = self.url.rstrip("/")
        return base if base.endswith(EVENTS_PATH) else base + EVENTS_PATH

    def params(self) -> dict[str, str]:
        params = {"event_types": self.event_types, "session_id": self.session_id,
                  "dialog_name": self.dialog_name}
        if self.include_history:
            params["include_history"] = "true"
        return {name: value for name, value in params.items() if value}


def check_url(url: str) -> str:
    """``url`` if it can name a hub, else a UsageError saying why."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        raise UsageError(f"--url {url!r} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise UsageError(f"--url {url!r}: give the hub's base URL, without ? or #")
    return url


def tls_context(options: TailOptions) -> ssl.SSLContext | bool:
    """The TLS settings for ``--tls-ca``/``--tls-cert``/``--tls-key``; UsageError if unusable."""
    if options.tls_key and not options.tls_cert:
        raise UsageError("--tls-key needs --tls-cert")
    if not (options.tls_ca or options.tls_cert):
        return True  # httpx's default trust (certifi, or SSL_CERT_FILE / SSL_CERT_DIR)
    try:
        context = (ssl.create_default_context(cafile=options.tls_ca) if options.tls_ca
                   else httpx.create_ssl_context())
        if options.tls_cert:
            context.load_cert_chain(options.tls_cert, options.tls_key or None)
    except (OSError, ssl.SSLError) as error:
        raise UsageError(f"cannot use the TLS files given: {error}") from None
    return context


def _untrusted(error: BaseException) -> str | None:
    """Why the hub's certificate failed verification, if that is what ``error`` is.

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


class _ErrorDetail(msgspec.Struct):
    message: str = ""


class _ErrorBody(msgspec.Struct):
    """The hub's JSON error body (``{"error": {"code", "message", "param"}}``)."""

    error: _ErrorDetail


class _Fatal(Exception):
    """An answer no retry will change: message and exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _Retry(Exception):
    """The attempt failed in a way a later attempt may not: why, and the least wait."""

    def __init__(self, reason: str, at_least_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.at_least_s = at_least_s


class Tail:
    """Follows one stream until interrupted, a fatal answer, or ``max_retries``.

    ``transport``, ``sleep`` and ``jitter`` are seams for the unit tests.
    """

    def __init__(
        self, options: TailOptions, out: BinaryIO, err: TextIO, *, encoding: str = "utf-8",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.options = options
        self._out = out
        self._err = err
        self._encoding = encoding
        self._transport = transport
        self._sleep = sleep
        self._jitter = jitter
        self.last_event_id = options.last_event_id
        self.retry_ms = DEFAULT_RETRY_MS
        self.failures = 0  # attempts in a row that did not get a stream
        self._connected_before = False

    def run(self) -> int:
        """Stream until something ends it; the exit status."""
        timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=self.options.idle_timeout_s)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        limit = self.options.max_retries
        try:
            verify = tls_context(self.options)
        except UsageError as error:
            self.notice(f"error: {error}")
            return 2
        with httpx.Client(timeout=timeout, headers=headers, transport=self._transport,
                          verify=verify, follow_redirects=True) as client:
            while True:
                try:
                    self._stream(client)
                    reason, at_least = "the hub ended the stream", 0.0
                except _Fatal as fatal:
                    self.notice(fatal.message)
                    return fatal.status
                except _Retry as retry:
                    reason, at_least = retry.reason, retry.at_least_s
                    self.failures += 1
                if limit is not None and self.failures > limit:
                    noun = "retry" if limit == 1 else "retries"
                    self.notice(f"giving up after {limit} {noun}: {reason}")
                    return 1
                delay = max(self.backoff(max(self.failures, 1)), at_least)
                of = f" of {limit}" if limit is not None else ""
                count = f" (retry {self.failures}{of})" if self.failures else ""
                self.notice(f"{reason}; reconnecting in {delay:.1f}s{count}")
                self._sleep(delay)

    def backoff(self, attempt: int) -> float:
        """The wait before reconnection ``attempt`` (1, 2, …): the stream's retry, doubled.

        The stream's retry is a floor (the server asked for at least that), so
        the jitter only adds to it.
        """
        base = self.retry_ms / 1000
        return Backoff(base, max(MAX_BACKOFF_S, base), jitter=(1.0, 1.0 + JITTER),
                       rand=self._jitter).delay(attempt)

    def _stream(self, client: httpx.Client) -> None:
        """One connection: returns when the server ends the stream, raises otherwise."""
        request_headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        answered = False
        try:
            with client.stream("GET", self.options.stream_url, params=self.options.params(),
                               headers=request_headers) as response:
                answered = True
                self._check(response)
                self.failures = 0
                self._announce()
                parser = SseParser(self.last_event_id)
                for chunk in response.iter_bytes():
                    for item in parser.feed(chunk):
                        self._handle(item)
                    self.last_event_id = parser.last_event_id
                    if parser.retry_ms is not None:
                        self.retry_ms = parser.retry_ms
                    self._out.flush()
        except httpx.ReadTimeout:
            raise _Retry(f"nothing from the hub for {self.options.idle_timeout_s:g}s") from None
        except httpx.TooManyRedirects as error:
            raise _Fatal(f"{self.options.stream_url}: {error}") from None
        except httpx.RequestError as error:
            untrusted = _untrusted(error)
            if untrusted is not None:
                raise _Fatal(untrusted) from None
            raise _Retry(self._describe(error, answered)) from None

    def _describe(self, error: httpx.RequestError, answered: bool) -> str:
        what = str(error) or type(error).__name__
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
            return f"cannot reach {self.options.url}: {what}"
        if isinstance(error, httpx.RemoteProtocolError):
            if answered:
                return "connection lost: the hub went away mid-stream"
            hint = ""
            if self.options.url.startswith("https:") and not self.options.tls_cert:
                hint = " (a hub that requires client certificates does that: see --tls-cert)"
            return f"the hub closed the connection without answering{hint}"
        return f"connection lost: {what}"

    def _check(self, response: httpx.Response) -> None:
        """Raise unless ``response`` is an event stream."""
        status = response.status_code
        if status == 200:
            content_type = response.headers.get("content-type", "")
            if content_type.split(";")[0].strip() != "text/event-stream":
                raise _Fatal(f"{response.url} is not an event stream "
                             f"(Content-Type {content_type or 'missing'}); "
                             "is --url the hub's base URL?")
            return
        response.read()
        message = _server_message(response)
        if status in RETRYABLE_STATUS:
            raise _Retry(f"the hub answered {status} {response.reason_phrase}: {message}",
                         _retry_after(response))
        if status in (401, 403):
            if not self.options.api_key:
                raise _Fatal(f"the hub needs an API key ({status}: {message}); give "
                             "--api-key or set CALLHUB_API_KEY")
            word = "refused" if status == 401 else "not allowed to read this stream"
            raise _Fatal(f"the API key was {word} ({status}: {message})")
        if status == 404:
            raise _Fatal(f"{response.url} is not found (404); is --url the hub's base URL?")
        raise _Fatal(f"the hub answered {status} {response.reason_phrase}: {message}")

    def _announce(self) -> None:
        if not self._connected_before:
            self._connected_before = True
            self.notice(f"connected to {self.options.stream_url}")
        elif self.last_event_id:
            self.notice(f"reconnected; resuming after {self.last_event_id}")
        else:
            self.notice("reconnected (no position yet: events from now on)")

    def _handle(self, item: SseEvent | SseComment) -> None:
        if isinstance(item, SseComment):
            return  # pings: liveness only (the read timeout counts them)
        if item.type == "stream_reset":
            self.notice(_reset_notice(item.data))
        elif self.options.json:
            self._out.write(item.data + b"\n")
        else:
            line = format_event(item.data, colour=self.options.colour)
            self._out.write(line.encode(self._encoding, "backslashreplace") + b"\n")

    def notice(self, text: str) -> None:
        self._err.write(f"callhub tail: {text}\n")
        self._err.flush()


class _StreamReset(msgspec.Struct):
    reason: str = ""
    message: str = ""


def _reset_notice(data: bytes) -> str:
    try:
        reset = msgspec.json.decode(data, type=_StreamReset)
    except (msgspec.DecodeError, msgspec.ValidationError):
        reset = _StreamReset()
    detail = f" ({reset.reason})" if reset.reason else ""
    message = f": {reset.message}" if reset.message else ""
    return clean(f"stream_reset{detail}{message}; events between the last one shown and the "
            "oldest retained one are missing, continuing from there")


def _server_message(response: httpx.Response) -> str:
    """The hub's error message, or the start of whatever a proxy answered."""
    try:
        message = msgspec.json.decode(response.content, type=_ErrorBody).error.message
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = response.text.strip()[:200]
    return clean(message) or "(no message)"


def _retry_after(response: httpx.Response) -> float:
    """A 503's Retry-After in seconds (0 if absent or an HTTP date), capped."""
    value = response.headers.get("retry-after", "").strip()
    return min(float(value), MAX_RETRY_AFTER_S) if value.isdigit() else 0.0
