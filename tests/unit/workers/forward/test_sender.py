from __future__ import annotations

import pytest

from callhub.destination_guard import REFUSED
from callhub.webhooks import check_destination
from tests.support.local_http import FakeDns, local_http_server
from workers.forward.sender import AttemptResult, WebhookSender, retry_after


def test_retry_after_in_seconds_only() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(" 3 ") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after(None) is None
    assert retry_after("-1") is None


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
