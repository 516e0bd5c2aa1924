"""Opaque tokens: page tokens and stream cursors travel through clients as text.

A token is ``base64url(version byte + msgpack payload + 8-byte digest)``. The
digest (BLAKE2b, keyed per kind) catches corruption and truncation, and keeps a
token of one kind from being accepted as another. It is not a secret: a token
names a position, never a permission; scopes are checked on every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")
DIGEST = 8
MAX_TOKEN = 8192


class InvalidToken(ValueError):
    """A token that was not made by this service (or not for this purpose)."""


def _digest(kind: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST, key=kind).digest()


def seal(kind: bytes, version: int, payload: Any) -> str:
    body = bytes([version]) + msgspec.msgpack.encode(payload)
    return base64.urlsafe_b64encode(body + _digest(kind, body)).rstrip(b"=").decode()


def unseal(kind: bytes, version: int, text: str, payload_type: type[T]) -> T:
    """Decode a token of ``kind`` and ``version``; raise ``InvalidToken`` otherwise."""
    if not text or len(text) > MAX_TOKEN or not text.isascii():
        raise InvalidToken("malformed")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not base64url") from None
    body, digest = raw[:-DIGEST], raw[-DIGEST:]
    if len(body) < 1 or not hmac.compare_digest(digest, _digest(kind, body)):
        raise InvalidToken("corrupted or not issued by this service")
    if body[0] != version:
        raise InvalidToken(f"version {body[0]} is not supported")
    try:
        return msgspec.msgpack.decode(body[1:], type=payload_type)
    except msgspec.DecodeError:
        raise InvalidToken("unreadable payload") from None
