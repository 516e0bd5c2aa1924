"""Browser stream tokens: ``POST /v1/stream-tokens`` and the ``?token=`` of the event stream.

A browser's ``EventSource`` cannot send headers, so a key would have to go in
the URL, where proxies and browser history keep it. Instead the page asks for a
short-lived token with its key in a header, and opens the stream with
``?token=``. The token is sealed with the server secret (``callhub.tokens``:
authenticated and encrypted, so the key's name and scope cannot be read from a
URL in a log) and carries the SHA-256 of the key that asked, the dialogs and
session id it is narrowed to, and when it expires. It opens event streams only:
every other route ignores it, so a leaked token is at worst a few minutes of one
stream's events within its key's scope. A token dies with its key: a key
removed from the configuration makes its tokens a 401 at once.

Without a secret (only allowed with no API keys: nothing is scoped) tokens are
sealed with a random per-process key; they then open streams only on the
replica that issued them, which is all a demo needs.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from callhub.events import check_dialog_name, check_session_id
from callhub.tokens import InvalidToken, Keyring, current_keyring, seal, unseal
from hub.api.auth import ApiKeys, Principal
from hub.api.replica import replica_of
from hub.api.request_body import read_body
from hub.api.responses import json_response
from hub.errors import BadParameter, Unauthorized

PATH = "/v1/stream-tokens"
TOKEN_PARAMETER = "token"
MAX_TTL_S = 3600  # the most a request (or CALLHUB_STREAM_TOKEN_TTL) can grant
_KIND = b"callhub-stream-token"
_VERSION = 1
_fallback = Keyring(secrets.token_urlsafe(32))


class StreamTokenRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a stream token may open: at most the key's scope, optionally narrowed."""

    ttl_seconds: Annotated[int, msgspec.Meta(
        ge=1, le=MAX_TTL_S, description="How long the token opens streams (default: the "
        "deployment's CALLHUB_STREAM_TOKEN_TTL, 300 unless set).")] | None = None
    dialogs: Annotated[list[str], msgspec.Meta(
        min_length=1, max_length=256,
        description="Only these dialogs' calls (within the key's scope).")] | None = None
    session_id: Annotated[str, msgspec.Meta(
        description="Only this call's events.")] | None = None


class StreamToken(msgspec.Struct, frozen=True):
    token: Annotated[str, msgspec.Meta(
        description="Opaque; give it as ?token= to GET /v1/calls/events (and nothing else).")]
    expires_at: Annotated[str, msgspec.Meta(description="ISO 8601, UTC.")]
    expires_in: Annotated[int, msgspec.Meta(description="Seconds from now.")]


class _Grant(msgspec.Struct, frozen=True, array_like=True):
    key_sha256: bytes
    dialogs: list[str] | None
    session_id: str | None
    expires_ms: int


class StreamGrant(msgspec.Struct, frozen=True):
    """What a valid token lets its bearer open."""

    principal: Principal
    session_id: str | None


def _keyring() -> Keyring:
    return current_keyring() or _fallback


async def create_stream_token(request: Request) -> Response:
    replica = replica_of(request)
    principal, digest = replica.keys.identify(request)
    asked = (await read_body(request, StreamTokenRequest)
             if request.headers.get("content-length", "0") != "0"
             or "transfer-encoding" in request.headers else StreamTokenRequest())
    dialogs = _narrowed(principal, asked.dialogs)
    if asked.session_id is not None:
        try:
            check_session_id(asked.session_id)
        except ValueError as error:
            raise BadParameter(f"session_id: {error}", param="session_id") from None
    ttl_s = asked.ttl_seconds or replica.settings.stream_token_ttl_ms // 1000
    expires_ms = int(time.time() * 1000) + ttl_s * 1000
    token = seal(_KIND, _VERSION, _Grant(digest, dialogs, asked.session_id, expires_ms),
                 keyring=_keyring())
    return json_response(StreamToken(token, _iso(expires_ms), ttl_s))


def _narrowed(principal: Principal, dialogs: list[str] | None) -> list[str] | None:
    if dialogs is None:
        return None
    for dialog in dialogs:
        try:
            check_dialog_name(dialog)
        except ValueError as error:
            raise BadParameter(f"dialogs: {error}", param="dialogs") from None
        if principal.scope is not None and dialog not in principal.scope:
            raise BadParameter(f"dialogs: {dialog!r} is outside this key's scope",
                               param="dialogs")
    return sorted(set(dialogs))


def redeem(keys: ApiKeys, text: str) -> StreamGrant:
    """The grant of a stream token; ``Unauthorized`` if it is forged, expired or
    its key is gone. The scope is the key's current one, narrowed by the token."""
    try:
        grant = unseal(_KIND, _VERSION, text, _Grant, keyring=_keyring())
    except InvalidToken:
        raise Unauthorized("the stream token is not valid (tampered with, or not issued "
                           "by this deployment)") from None
    if grant.expires_ms <= int(time.time() * 1000):
        raise Unauthorized("the stream token has expired: ask POST /v1/stream-tokens "
                           "for a new one")
    principal = keys.by_digest(grant.key_sha256)
    if principal is None:
        raise Unauthorized("the stream token's API key is no longer configured")
    if grant.dialogs is not None:
        allowed = frozenset(grant.dialogs)
        scope = allowed if principal.scope is None else allowed & principal.scope
        if not scope:
            raise Unauthorized("the stream token's dialogs are no longer in its key's scope")
        principal = msgspec.structs.replace(principal, scope=scope)
    return StreamGrant(principal, grant.session_id)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))
