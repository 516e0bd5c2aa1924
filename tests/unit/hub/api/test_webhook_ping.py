"""The test ping connects only where the address rule allows, at connect time too."""

from __future__ import annotations

import pytest

from callhub.destination_guard import REFUSED
from callhub.settings import Settings
from callhub.signing import new_secret
from callhub.webhooks import SigningSecret, Subscription
from hub.api.webhook_ping import ping
from tests.support.local_http import FakeDns, local_http_server


def subscription(url: str) -> Subscription:
    return Subscription(id="wh_ping", name="ping", url=url,
                        secrets=[SigningSecret(new_secret())])


def settings(*, allow_private: bool) -> Settings:
    return Settings(webhook_allow_http=True, webhook_allow_private=allow_private,
                    webhook_timeout_ms=5000)


async def test_a_ping_to_a_host_rebinding_to_loopback_is_refused_at_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with local_http_server() as server:
        dns = FakeDns("rebind.test", "93.184.215.14", "127.0.0.1").install(monkeypatch)
        result = await ping(subscription(f"http://rebind.test:{server.port}/hook"),
                            settings(allow_private=False))
        assert dns.lookups == 2  # the check saw the public address, the connection loopback
        assert (result.status_code, result.error) == (0, REFUSED)
        assert server.connections == 0


async def test_with_private_allowed_a_ping_reaches_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with local_http_server() as server:
        FakeDns("rebind.test", "127.0.0.1").install(monkeypatch)
        result = await ping(subscription(f"http://rebind.test:{server.port}/hook"),
                            settings(allow_private=True))
    assert (result.status_code, result.error) == (204, "")
    [request] = server.requests
    assert request.headers["callhub-event-type"] == "webhook_test"
    assert request.headers["user-agent"] == "callhub-webhooks/1"  # as a delivery is sent
