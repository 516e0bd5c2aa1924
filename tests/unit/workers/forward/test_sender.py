from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.destination_guard import REFUSED
from callhub.webhooks import check_destination
from tests.support.local_http import FakeDns, local_http_server
from workers.forward.sender import AttemptResult, WebhookSender, retry_after

NOW = datetime(2025, 6, 14, 18, 30, tzinfo=UTC)


def test_retry_after_in_seconds() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(" 3 ") == 3.0
    assert retry_after("0") == 0.0
    assert retry_after(None) is None
    assert retry_after("-1") is None
    assert retry_after("1.5") is None
    assert retry_after("") is None


def test_retry_after_as_an_http_date_is_the_seconds_until_it() -> None:
    assert retry_after("Sat, 14 Jun 2025 18:31:30 GMT", now=NOW) == 90.0
    # RFC 9110's obsolete forms, asctime (GMT without saying so) and RFC 850.
    assert retry_after("Sat Jun 14 18:30:05 2025", now=NOW) == 5.0
    assert retry_after("Saturday, 14-Jun-25 18:30:10 GMT", now=NOW) == 10.0


def test_retry_after_a_date_in_the_past_is_at_once() -> None:
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW) == 0.0
    assert retry_after("Sat, 14 Jun 2025 18:30:00 GMT", now=NOW) == 0.0


def test_retry_after_garbage_is_none() -> None:
    for garbage in ("soon", "Mon, 32 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 99999 07:28:00 GMT",
                    "²", "١٢", "12s", "1e3", "inf", "nan", "Wed, 21 Oct 2015"):
        assert retry_after(garbage, now=NOW) is None, garbage


def test_retry_after_a_date_is_counted_from_the_clock_by_default() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    seconds = retry_after(format_datetime(soon, usegmt=True))
    assert seconds is not None and 25 <= seconds <= 30


moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))


@given(st.text() | st.binary().map(lambda b: b.decode("latin-1")))
def test_retry_after_never_raises_and_never_goes_negative(value: str) -> None:
    seconds = retry_after(value, now=NOW)
    assert seconds is None or (seconds >= 0 and not math.isnan(seconds))


@given(moments, moments)
def test_retry_after_reads_back_any_http_date(when: datetime, now: datetime) -> None:
    expected = max(0.0, (when - now).total_seconds())
    assert retry_after(format_datetime(when, usegmt=True), now=now) == expected
    assert retry_after(f"  {format_datetime(when, usegmt=True)} ", now=now) == expected


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["", " ", "\t"]))
def test_retry_after_reads_back_any_delay_seconds(seconds: int, space: str) -> None:
    assert retry_after(f"{space}{seconds}{space}", now=NOW) == float(seconds)


def test_only_2xx_is_delivered() -> None:
    assert AttemptResult(204, 1.0).delivered
    assert not AttemptResult(301, 1.0).delivered
    assert not AttemptResult(0, 1.0, error="timed out").delivered


async def test_a_host_rebinding_to_loopback_after_the_check_is_not_posted_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Public when the URL is checked, 127.0.0.1 when the sender connects: refused,
    a failed attempt, nothing reaches the server on 127.0.0.1."""
    async with local_http_server() as server:
        url = f"http://rebind.test:{server.port}/hook"
        dns = FakeDns("rebind.test", "93.184.215.14", "127.0.0.1").install(monkeypatch)
        assert await check_destination(url, allow_http=True, allow_private=False) == url
        sender = WebhookSender(5, allow_private=False)
        try:
            result = await sender.send(url, b"{}", [("content-type", "application/json")])
        finally:
            await sender.aclose()
        assert dns.lookups == 2
        assert (result.status_code, result.delivered) == (0, False)
        assert result.error == f"ConnectError: {REFUSED}"
        assert server.connections == 0


async def test_with_private_allowed_the_sender_delivers_to_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with local_http_server() as server:
        FakeDns("rebind.test", "127.0.0.1").install(monkeypatch)
        sender = WebhookSender(5, allow_private=True)
        try:
            results = [await sender.send(f"http://rebind.test:{server.port}/hook", b"{}", [])
                       for _ in range(2)]
        finally:
            await sender.aclose()
    assert [r.status_code for r in results] == [204, 204]
    assert server.connections == 1 and len(server.requests) == 2
    assert server.requests[0].headers["user-agent"] == "callhub-webhooks/1"
