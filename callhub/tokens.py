"""Opaque tokens: page tokens, stream cursors and stream tokens travel through clients as text.

With a server secret (``CALLHUB_SECRET``, installed once at start-up with
``use_secret``) a token is ``base64url(AES-SIV(version byte + length + msgpack
payload + padding))`` under a key derived from the secret, with the token's kind
as associated data: a token is authenticated (a forged or mutated one, or one of
another deployment or another kind, is refused) and unreadable (a dialog-scoped
key cannot read the shard-log positions of a cursor, nor what a page token
holds). The plaintext is padded to a multiple of ``_BLOCK`` so its length says
little about the numbers inside. AES-SIV is deterministic: the same payload
always gives the same token, so there is no nonce to run out of (a stream's
cursors are sealed once per event, forever) and equal positions give equal
cursors, as before.

Rotation: ``use_secret(new, previous)`` seals with ``new`` and opens tokens of
either, so replicas can be moved to a new secret one by one.

Without a secret (only allowed with no API keys: the demo, where nothing is
scoped) a token is ``base64url(version byte + msgpack payload + 8-byte
digest)``, the digest a BLAKE2b keyed by the public kind: it catches corruption
and truncation, and keeps a token of one kind from being accepted as another,
but it is a checksum, not a secret. Such a token presented once a secret is set
is ``LegacyToken``: its issuer cannot be told, so its contents are never used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, TypeVar

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

T = TypeVar("T")
DIGEST = 8
MAX_TOKEN = 8192
MIN_SECRET = 32  # characters of CALLHUB_SECRET (a token_urlsafe(32) is 43)
_BLOCK = 32  # a 1-shard cursor is always one block, whatever its numbers
_TAG = 16


class InvalidToken(ValueError):
    """A token that was not made by this service (or not for this purpose)."""


class LegacyToken(InvalidToken):
    """A well-formed token of the unkeyed format, presented where a secret is set."""


class Keyring:
    """The AES-SIV keys derived from the server secret: the one that seals
    first, then the ones that may still open (a rotation's previous secret)."""

    def __init__(self, secret: str, *previous: str) -> None:
        self._ciphers = [AESSIV(_derive(s)) for s in (secret, *previous) if s]

    def seal(self, kind: bytes, body: bytes) -> bytes:
        padded = len(body).to_bytes(2, "big") + body
        padded += b"\0" * (-len(padded) % _BLOCK)
        return self._ciphers[0].encrypt(padded, [kind])

    def open(self, kind: bytes, raw: bytes) -> bytes | None:
        for cipher in self._ciphers:
            try:
                padded = cipher.decrypt(raw, [kind])
            except InvalidTag:
                continue
            size = int.from_bytes(padded[:2], "big")
            return padded[2:2 + size] if size <= len(padded) - 2 else None
        return None


def _derive(secret: str) -> bytes:
    """A 64-byte AES-SIV key that is for tokens only (the secret may serve others)."""
    master = hashlib.sha256(secret.encode()).digest()
    return hashlib.blake2b(b"callhub token keys v1", key=master, digest_size=64).digest()


_keyring: Keyring | None = None


def use_secret(secret: str | None, previous: str | None = None) -> None:
    """Install the process's secret (``None``: unkeyed tokens). Called once at
    start-up from the settings, by the replica and by the workers that seal cursors."""
    global _keyring
    _keyring = Keyring(secret, previous or "") if secret else None


def current_keyring() -> Keyring | None:
    return _keyring


def _digest(kind: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST, key=kind).digest()


def seal(kind: bytes, version: int, payload: Any, *, keyring: Keyring | None = None) -> str:
    body = bytes([version]) + msgspec.msgpack.encode(payload)
    keys = keyring or _keyring
    raw = keys.seal(kind, body) if keys else body + _digest(kind, body)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unseal(kind: bytes, version: int, text: str, payload_type: type[T], *,
           keyring: Keyring | None = None) -> T:
    """Decode a token of ``kind`` and ``version``; raise ``InvalidToken`` otherwise."""
    if not text or len(text) > MAX_TOKEN or not text.isascii():
        raise InvalidToken("malformed")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not base64url") from None
    keys = keyring or _keyring
    if keys is not None:
        opened = keys.open(kind, raw) if len(raw) >= _TAG + _BLOCK else None
        if opened is None:
            if _checksum_matches(kind, raw):
                raise LegacyToken("issued before this deployment had a secret")
            raise InvalidToken("corrupted or not issued by this service")
        body = opened
    elif _checksum_matches(kind, raw):
        body = raw[:-DIGEST]
    else:
        raise InvalidToken("corrupted or not issued by this service")
    if len(body) < 1:
        raise InvalidToken("corrupted or not issued by this service")
    if body[0] != version:
        raise InvalidToken(f"version {body[0]} is not supported")
    try:
        return msgspec.msgpack.decode(body[1:], type=payload_type)
    except msgspec.DecodeError:
        raise InvalidToken("unreadable payload") from None


def _checksum_matches(kind: bytes, raw: bytes) -> bool:
    body, digest = raw[:-DIGEST], raw[-DIGEST:]
    return len(body) >= 1 and hmac.compare_digest(digest, _digest(kind, body))
