"""The tail's connection loop against scripted answers (httpx.MockTransport, no sleeping).

Each test scripts what the "hub" answers to each connection attempt and checks
what the tail printed, what it sent back (Last-Event-ID, key, filters) and
how long it chose to wait.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from callhub.cli.tail import add_arguments, tail_options
from callhub.client.tail_client import Tail, TailOptions, UsageError, check_url
from hub.stream import frames as sse

URL = "http://hub.test"
STREAM = {"content-type": "text/event-stream"}
EVENT_1 = b'{"type":"dtmf_received","event_id":"e1","session_id":"call-1","timestamp":"2025-06-14T18:30:00Z","seq":2,"digit":"5","duration_ms":120}'  # noqa: E501
EVENT_2 = b'{"type":"dtmf_received","event_id":"e2","session_id":"call-1","timestamp":"2025-06-14T18:30:01Z","seq":3,"digit":"6","duration_ms":90}'  # noqa: E501

Answer = Callable[[httpx.Request], httpx.Response]


class Stop(Exception):
    """Raised by the fake sleep when the script has run out: ends the loop."""


def stream(*chunks: bytes, then: Exception | None = None) -> Answer:
    """A 200 event stream of ``chunks``, ended cleanly or by ``then``."""
    def body() -> Iterator[bytes]:
        yield from chunks
        if then is not None:
            raise then

    return lambda request: httpx.Response(200, headers=STREAM, content=body())


def error(status: int, message: str = "", headers: dict[str, str] | None = None) -> Answer:
    body = {"error": {"code": "x", "message": message, "param": None}}
    return lambda request: httpx.Response(status, json=body, headers=headers)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


@dataclass
class Run:
    status: int
    out: bytes
    err: str
    requests: list[httpx.Request]
    sleeps: list[float] = field(default_factory=list)

    @property
    def notices(self) -> list[str]:
        return self.err.splitlines()


def tail(*script: Answer, **options: object) -> Run:
    """Run a tail against ``script`` (one answer per connection attempt)."""
    answers = list(script)
    requests: list[httpx.Request] = []
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return answers.pop(0)(request)

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if not answers:
            raise Stop

    out, err = io.BytesIO(), io.StringIO()
    runner = Tail(TailOptions(url=URL, **options),  # type: ignore[arg-type]
                  out, err, transport=httpx.MockTransport(handler), sleep=sleep,
                  jitter=lambda: 0.0)
    try:
        status = runner.run()
    except Stop:
        status = -1
    return Run(status, out.getvalue(), err.getvalue(), requests, sleeps)


def frame(cursor: str, data: bytes, kind: bytes = b"dtmf_received") -> bytes:
    return sse.event_frame(cursor, kind, data)


def test_json_prints_each_events_data_exactly_and_nothing_else() -> None:
    run = tail(stream(sse.RETRY, frame("c1", EVENT_1), sse.PING, frame("c2", EVENT_2)),
               json=True)
    assert run.out == EVENT_1 + b"\n" + EVENT_2 + b"\n"


def test_lines_are_formatted_and_the_request_carries_filters_and_key() -> None:
    run = tail(stream(frame("c1", EVENT_1)), event_types="dtmf_received", session_id="call-1",
               dialog_name="helpdesk", include_history=True, api_key="k3y")
    assert run.out == b"18:30:00.000 dtmf_received    call-1         digit 5 (120 ms)\n"
    request = run.requests[0]
    assert request.url.path == "/v1/calls/events"
    assert dict(request.url.params) == {"event_types": "dtmf_received", "session_id": "call-1",
                                        "dialog_name": "helpdesk", "include_history": "true"}
    assert request.headers["authorization"] == "Bearer k3y"
    assert "last-event-id" not in request.headers


def test_a_dropped_connection_resumes_from_the_last_cursor_after_the_streams_retry() -> None:
    run = tail(
        stream(b"retry: 1500\n\n", frame("c1", EVENT_1), then=httpx.ReadError("reset")),
        stream(frame("c2", EVENT_2)),
        json=True,
    )
    assert run.out == EVENT_1 + b"\n" + EVENT_2 + b"\n"
    assert run.requests[1].headers["last-event-id"] == "c1"
    assert run.sleeps[0] == 1.5
    assert run.notices[1] == ("callhub tail: connection lost: reset; reconnecting in 1.5s "
                              "(retry 1)")
    assert run.notices[2] == "callhub tail: reconnected; resuming after c1"


def test_a_ping_moves_the_cursor_too() -> None:
    run = tail(stream(frame("c1", EVENT_1), sse.ping("c7")), stream())
    assert run.requests[1].headers["last-event-id"] == "c7"


def test_the_server_ending_the_stream_is_not_a_failure() -> None:
    run = tail(stream(frame("c1", EVENT_1)), stream(), stream(), max_retries=0)
    assert run.status == -1  # still going: clean ends never count against --max-retries
    assert "the hub ended the stream; reconnecting in 3.0s" in run.err
    assert run.sleeps == [3.0, 3.0, 3.0]


def test_an_unreachable_hub_is_retried_with_doubling_waits_up_to_a_cap() -> None:
    run = tail(*[refused] * 8)
    assert run.sleeps == [3.0, 6.0, 12.0, 24.0, 30.0, 30.0, 30.0, 30.0]
    assert run.notices[0] == ("callhub tail: cannot reach http://hub.test: [Errno 111] "
                              "Connection refused; reconnecting in 3.0s (retry 1)")


def test_jitter_only_lengthens_the_wait() -> None:
    runner = Tail(TailOptions(url=URL), io.BytesIO(), io.StringIO(), jitter=lambda: 1.0)
    assert runner.backoff(1) == pytest.approx(3.6)
    assert runner.backoff(10) == pytest.approx(36.0)


def test_max_retries_bounds_consecutive_failures_then_exits_1() -> None:
    run = tail(refused, refused, refused, max_retries=2)
    assert run.status == 1
    assert len(run.requests) == 3 and len(run.sleeps) == 2
    assert run.notices[-1].startswith("callhub tail: giving up after 2 retries: cannot reach")


def test_a_successful_connection_resets_the_count() -> None:
    run = tail(refused, stream(frame("c1", EVENT_1), then=httpx.ReadError("x")), refused,
               refused, max_retries=2)
    assert run.status == 1
    assert run.sleeps == [3.0, 3.0, 6.0]


def test_503_is_retried_no_sooner_than_retry_after() -> None:
    run = tail(error(503, "the event store is unreachable; retry", {"Retry-After": "10"}),
               stream())
    assert run.sleeps[0] == 10.0
    assert "the hub answered 503 Service Unavailable: the event store is unreachable" in run.err


def test_an_idle_stream_is_reconnected() -> None:
    run = tail(stream(frame("c1", EVENT_1), then=httpx.ReadTimeout("timed out")), stream(),
               idle_timeout_s=45.0)
    assert "nothing from the hub for 45s; reconnecting" in run.err
    assert run.requests[1].headers["last-event-id"] == "c1"


def test_stream_reset_is_a_notice_not_an_event() -> None:
    reset = sse.stream_reset_frame(sse.StreamReset("cursor_expired", "c0", "too old"))
    run = tail(stream(reset, frame("c1", EVENT_1)), json=True)
    assert run.out == EVENT_1 + b"\n"
    assert "callhub tail: stream_reset (cursor_expired): too old; events between" in run.err


@pytest.mark.parametrize(("answer", "key", "words"), [
    (error(401, "an API key is required"), "",
     "the hub needs an API key (401: an API key is required); give --api-key or set "
     "CALLHUB_API_KEY"),
    (error(401, "the API key is not valid"), "bad",
     "the API key was refused (401: the API key is not valid)"),
    (lambda r: httpx.Response(403, text="Forbidden"), "k",
     "the API key was not allowed to read this stream (403: Forbidden)"),
    (error(400, "unknown event type 'dtfm'; valid types: call_started, ..."), "",
     "the hub answered 400 Bad Request: unknown event type 'dtfm'; valid types: "
     "call_started, ..."),
    (lambda r: httpx.Response(404, text="<html>nope</html>"), "",
     "http://hub.test/v1/calls/events is not found (404); is --url the hub's base URL?"),
    (lambda r: httpx.Response(200, text="<html>", headers={"content-type": "text/html"}), "",
     "http://hub.test/v1/calls/events is not an event stream (Content-Type text/html); is "
     "--url the hub's base URL?"),
])
def test_answers_no_retry_can_change_exit_2_with_the_hubs_words(
    answer: Answer, key: str, words: str
) -> None:
    run = tail(answer, api_key=key)
    assert (run.status, run.notices, run.sleeps) == (2, [f"callhub tail: {words}"], [])


def test_a_starting_cursor_is_sent_from_the_first_connection() -> None:
    run = tail(stream(), last_event_id="c42")
    assert run.requests[0].headers["last-event-id"] == "c42"


def options(*argv: str, environ: dict[str, str] | None = None) -> TailOptions:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return tail_options(parser.parse_args(argv), environ or {}, colour=True)


def test_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    assert options().url == "http://127.0.0.1:8080"
    assert options().api_key == ""
    env = {"CALLHUB_URL": "https://hub.example:8443/callhub", "CALLHUB_API_KEY": "envkey"}
    from_env = options(environ=env)
    assert (from_env.url, from_env.api_key) == ("https://hub.example:8443/callhub", "envkey")
    assert from_env.stream_url == "https://hub.example:8443/callhub/v1/calls/events"
    flagged = options("--url", "http://h:1/", "--api-key", "flag", environ=env)
    assert (flagged.url, flagged.api_key) == ("http://h:1/", "flag")
    assert flagged.stream_url == "http://h:1/v1/calls/events"


def test_json_never_colours_and_an_idle_timeout_of_0_waits_for_ever() -> None:
    assert options().colour and not options("--json").colour
    assert options("--idle-timeout", "0").idle_timeout_s is None
    assert options("--max-retries", "3").max_retries == 3


@pytest.mark.parametrize("url", ["ftp://hub", "hub:8080", "http://", "http://h:99999",
                                 "http://h/?x=1"])
def test_urls_that_cannot_name_a_hub_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError, match="--url"):
        check_url(url)


@pytest.mark.parametrize("argv", [["--max-retries", "-1"], ["--max-retries", "x"],
                                  ["--idle-timeout", "-5"]])
def test_bad_numbers_are_argument_errors(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    assert exit_.value.code == 2


def test_a_connection_cut_mid_stream_reads_plainly() -> None:
    cut = httpx.RemoteProtocolError("peer closed connection without sending complete message body")
    run = tail(stream(frame("c1", EVENT_1), then=cut), stream())
    assert run.notices[1].startswith(
        "callhub tail: connection lost: the hub went away mid-stream; reconnecting in 3.0s")


def test_a_hub_closing_before_answering_is_retried_with_a_hint_on_https() -> None:
    def closed(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    err = io.StringIO()
    runner = Tail(TailOptions(url="https://hub.test", max_retries=0), io.BytesIO(), err,
                  transport=httpx.MockTransport(closed))
    assert runner.run() == 1
    assert ("giving up after 0 retries: the hub closed the connection without answering "
            "(a hub that requires client certificates does that: see --tls-cert)"
            ) in err.getvalue()


@pytest.mark.parametrize(("tls", "words"), [
    ({"tls_key": "key.pem"}, "--tls-key needs --tls-cert"),
    ({"tls_ca": "/nonexistent/ca.pem"}, "cannot use the TLS files given"),
    ({"tls_cert": "/nonexistent/cert.pem"}, "cannot use the TLS files given"),
])
def test_unusable_tls_files_exit_2_before_connecting(tls: dict[str, str], words: str) -> None:
    run = tail(**tls)
    assert run.status == 2 and run.requests == []
    assert words in run.err



def test_an_absurd_retry_after_is_capped() -> None:
    run = tail(error(503, "busy", {"Retry-After": "86400"}), stream())
    assert run.sleeps[0] == 300.0
