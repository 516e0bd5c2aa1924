"""Signatures per Standard Webhooks, checked by an independent implementation
(the ``standardwebhooks`` package) rather than by re-deriving our own formula."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from callhub.signing import InvalidSecret, new_secret, secret_key, sign, signature_header
from callhub.webhooks import SigningSecret, Subscription, delivery_headers, message_id

bodies = st.text(max_size=1024).map(str.encode)  # JSON bodies: UTF-8, as the library reads them
ids = st.from_regex(r"msg_[A-Za-z0-9_-]{1,40}", fullmatch=True)


def headers_for(secret: str, msg: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {"webhook-id": msg, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header([secret_key(secret)], msg, timestamp, body)}


@given(bodies, ids)
def test_the_reference_library_accepts_our_signatures(body: bytes, msg: str) -> None:
    secret = new_secret()
    now = int(time.time())
    Webhook(secret).verify(body, headers_for(secret, msg, body, now), json_parse=False)


@given(st.text(max_size=512), ids, st.integers(min_value=0, max_value=512))
def test_a_tampered_body_is_rejected(text: str, msg: str, where: int) -> None:
    secret = new_secret()
    headers = headers_for(secret, msg, text.encode(), int(time.time()))
    tampered = text[:where] + ("y" if text[where:where + 1] == "x" else "x") + text[where + 1:]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered.encode(), headers, json_parse=False)


def test_a_stale_timestamp_is_rejected() -> None:
    secret = new_secret()
    stale = int(time.time()) - 10 * 60
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{}", headers_for(secret, "msg_x", b"{}", stale), json_parse=False)


def test_another_secret_is_rejected() -> None:
    now = int(time.time())
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(b"{}", headers_for(new_secret(), "msg_x", b"{}", now),
                                     json_parse=False)


def test_during_a_rotation_both_secrets_verify() -> None:
    old, new = new_secret(), new_secret()
    subscription = Subscription(id="wh_a", name="a", url="https://example.com/hook",
                                secrets=[SigningSecret(new), SigningSecret(old, expires_ms=2_000)])
    body = b'{"type":"dtmf"}'
    msg = message_id("wh_a", "1-0")
    headers = dict(delivery_headers(subscription, message=msg, body=body, event_type="dtmf",
                                    session_id="call-1", seq="2", cursor="c", now_s=1))
    assert headers["webhook-signature"].count("v1,") == 2
    # the reference library checks the timestamp against its clock: sign at now
    now = int(time.time())
    fresh = dict(delivery_headers(subscription, message=msg, body=body, event_type="dtmf",
                                  session_id="call-1", seq="2", cursor="c", now_s=now))
    assert fresh["webhook-signature"].count("v1,") == 1  # the old one's grace (2 s) is over
    in_grace = Subscription(id="wh_a", name="a", url="https://example.com/hook",
                            secrets=[SigningSecret(new),
                                     SigningSecret(old, expires_ms=(now + 60) * 1000)])
    both = dict(delivery_headers(in_grace, message=msg, body=body, event_type="dtmf",
                                 session_id="call-1", seq="2", cursor="c", now_s=now))
    for secret in (old, new):
        Webhook(secret).verify(body, both, json_parse=False)


def test_secrets_are_whsec_and_never_in_a_repr() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 24
    assert secret not in repr(SigningSecret(secret))
    assert secret not in repr(Subscription(id="wh_a", name="a", url="https://x.example",
                                           secrets=[SigningSecret(secret)]))
    for bad in ("", "whsec_", "whsec_!!!", "sk_abc", "whsec_abc"):
        with pytest.raises(InvalidSecret) as caught:
            secret_key(bad)
        assert not bad or bad not in str(caught.value)


def test_a_signature_is_v1_and_base64_of_32_bytes() -> None:
    import base64
    signature = sign(b"k", "msg_1", 1, b"{}")
    scheme, _, value = signature.partition(",")
    assert scheme == "v1" and len(base64.b64decode(value)) == 32
