"""Webhook destinations and delivery headers (the kernel's part of webhooks)."""

from __future__ import annotations

import pytest

from callhub.webhooks import (
    InvalidDestination,
    SigningSecret,
    Subscription,
    check_destination,
    delivery_headers,
    is_subscription_id,
    message_id,
    new_subscription_id,
)

STRICT = {"allow_http": False, "allow_private": False}
OPEN = {"allow_http": True, "allow_private": True}


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "https://", "not a url",
    "http://example.com/hook", "https://user:pw@example.com/", "https://127.0.0.1/hook",
    "https://localhost:8443/hook", "https://10.1.2.3/", "https://[::1]/", "https://169.254.169.254/",
    "https://192.168.0.1/", "https://0.0.0.0/", "https://example.com:99999/",
    "https://" + "a" * 3000 + ".example/",
])
async def test_strict_destinations_refuse(url: str) -> None:
    with pytest.raises(InvalidDestination):
        await check_destination(url, **STRICT)


async def test_the_operator_may_allow_http_and_private_destinations() -> None:
    assert await check_destination("http://127.0.0.1:8080/hook", **OPEN)
    assert await check_destination("https://[::1]:9/x", **OPEN)
    with pytest.raises(InvalidDestination):
        await check_destination("ftp://127.0.0.1/", **OPEN)


async def test_a_public_address_is_allowed() -> None:
    assert await check_destination("https://93.184.215.14/hook", **STRICT)


def test_ids() -> None:
    made = {new_subscription_id() for _ in range(100)}
    assert len(made) == 100 and all(is_subscription_id(i) for i in made)
    for bad in ("", "wh_", "x_abc", "wh_a/b", "wh_" + "a" * 65, "wh_a b"):
        assert not is_subscription_id(bad)
    assert message_id("wh_a", "17-3") == "msg_wh_a_17-3"


def test_cloudevents_headers_only_when_asked() -> None:
    plain = Subscription(id="wh_a", name="a", url="https://x.example",
                         secrets=[SigningSecret("whsec_" + "A" * 32)])
    kwargs = {"message": "msg_wh_a_1-0", "body": b"{}", "event_type": "dtmf",
              "session_id": "call-1", "seq": "3", "cursor": "CUR",
              "event_time": "2026-01-01T00:00:00Z", "now_s": 1_700_000_000}
    names = dict(delivery_headers(plain, **kwargs))  # type: ignore[arg-type]
    assert not any(n.startswith("ce-") for n in names)
    assert names["callhub-cursor"] == "CUR" and names["callhub-seq"] == "3"
    assert names["webhook-timestamp"] == "1700000000"
    cloud = msgspec_replace(plain, cloudevents=True)
    ce = dict(delivery_headers(cloud, **kwargs))  # type: ignore[arg-type]
    assert ce["ce-specversion"] == "1.0" and ce["ce-id"] == "msg_wh_a_1-0"
    assert ce["ce-type"].endswith(".dtmf") and ce["ce-subject"] == "call-1"
    assert ce["ce-time"] == "2026-01-01T00:00:00Z"


def msgspec_replace(subscription: Subscription, **changes: object) -> Subscription:
    import msgspec

    return msgspec.structs.replace(subscription, **changes)


def test_a_subscription_filters_like_the_event_stream_and_keeps_its_scope() -> None:
    sub = Subscription(id="wh_a", name="a", url="https://x.example", secrets=[],
                       event_types=["dtmf"], scope=["billing"])
    f = sub.event_filter()
    assert f.matches(b"dtmf", b"call-1", b"billing")
    assert not f.matches(b"dtmf", b"call-1", b"helpdesk")  # outside the creating key's scope
    assert not f.matches(b"call_started", b"call-1", b"billing")
