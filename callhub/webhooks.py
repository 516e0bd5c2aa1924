"""Webhooks: what a subscription is, where it may point, and what a delivery carries.

The replicas manage subscriptions (``hub.api.webhooks``) and the forwarders
deliver them (``workers.forward``); both read and write the same records in
Redis (keys in ``callhub.keyspace``), so the records and the wire format of a
delivery are defined here, once, beneath both:

- ``Subscription``: one destination with its filters, scope and signing secrets;
- ``DeliveryAttempt`` and ``DeadLetter``: what the forwarder records and the API
  shows (``/deliveries``, ``/dead-letters``);
- ``check_destination``: the URLs a subscription may have (https; http and
  private or loopback addresses only where the operator allows them), by
  ``is_allowed_address``, the one rule of the addresses a webhook may reach
  (``callhub.destination_guard`` applies it again to every connection made);
- ``delivery_headers``: the Standard Webhooks headers, callhub's own, and the
  optional CloudEvents binary-mode ones.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets as _random
import socket
import time
from collections.abc import Sequence
from typing import Annotated, Final, Literal, TypeAlias
from urllib.parse import urlsplit

import msgspec

from callhub.event_filter import EventFilter
from callhub.signing import secret_key, signature_header

ID_PREFIX: Final = "wh_"
ID_PATTERN: Final = r"^wh_[A-Za-z0-9_-]{1,64}$"
NAME_MAX: Final = 200
URL_MAX: Final = 2048
TEST_EVENT_TYPE: Final = "webhook_test"
CLOUDEVENTS_TYPE_PREFIX: Final = "com.voicetyped.callhub."

# The deliveries and dead-letter streams: each entry one field, RECORD_FIELD,
# holding a DeliveryAttempt / DeadLetter as JSON; trimmed to about so many.
RECORD_FIELD: Final = b"record"
DELIVERIES_KEPT: Final = 1000
DEAD_LETTERS_KEPT: Final = 10_000

_ID = re.compile(ID_PATTERN)

# Every change to a stored subscription, by a replica (PATCH, rotate, rewind)
# or a forwarder (disable), is this compare-and-set of its one hash field, so
# neither overwrites what the other wrote meanwhile. KEYS: the webhooks hash.
# ARGV: id, the value read, the value to write. Answers 1 if it was written.
COMPARE_AND_SET: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

SubscriptionId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidDestination(ValueError):
    """A URL a subscription may not deliver to; the message says why."""


class SigningSecret(msgspec.Struct, frozen=True):
    """One signing secret; ``expires_ms`` 0 is the current one, else the end of
    a rotation's grace period, after which it no longer signs."""

    secret: str
    expires_ms: int = 0

    def __repr__(self) -> str:  # a secret never reaches a log line
        return f"SigningSecret(expires_ms={self.expires_ms})"


class Rewind(msgspec.Struct, frozen=True, kw_only=True):
    """A ``/redeliver`` from a cursor: every shard's delivery goes back to the
    cursor's position (never forward: a later position changes nothing).

    ``generation`` counts the rewinds of a subscription; the forwarder holding
    a shard applies each one once (it stores the last one applied, beside the
    cursor), so a rewind reaches the shards no forwarder holds when it is made.
    """

    generation: int
    cursor: str  # a stream cursor (``callhub.cursor``), for this deployment's shards
    at_ms: int


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook subscription as stored (``<prefix>:webhooks``, one JSON per id).

    ``scope`` is the dialogs of the key that created it (None: every dialog):
    no later change can widen it, so no key routes calls out of the hub that
    it could not read itself.
    """

    id: str
    name: str
    url: str
    secrets: list[SigningSecret]
    event_types: list[str] | None = None
    dialog_name: str = ""
    session_id: str = ""
    scope: list[str] | None = None
    enabled: bool = True
    disabled_reason: str = ""
    cloudevents: bool = False
    created_ms: int = 0
    rewind: Rewind | None = None

    def __repr__(self) -> str:
        return f"Subscription(id={self.id!r}, name={self.name!r})"

    def event_filter(self) -> EventFilter:
        return EventFilter(
            event_types=frozenset(t.encode() for t in self.event_types)
            if self.event_types is not None else None,
            session_id=self.session_id, dialog_name=self.dialog_name,
            scope=frozenset(self.scope) if self.scope is not None else None)

    def signing_keys(self, now_ms: int) -> list[bytes]:
        """The keys that sign now: the current secret and any still in their grace."""
        return [secret_key(s.secret) for s in self.secrets
                if s.expires_ms == 0 or s.expires_ms > now_ms]


def new_subscription_id() -> str:
    return ID_PREFIX + _random.token_urlsafe(12)


def is_subscription_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


def message_id(subscription_id: str, entry_id: str) -> str:
    """``webhook-id``: the same for an event and a subscription on every attempt
    and redelivery, so a receiver deduplicates by it. ``entry_id`` is the
    forwarder's ``<shard>-<entry id>``: entry ids are unique only within one
    shard's log (two shards commit in the same millisecond)."""
    return f"msg_{subscription_id}_{entry_id}"


class DeliveryAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """One POST to a subscription's URL, as ``/deliveries`` lists it."""

    event_id: str  # the entry id (the event's position in its shard log)
    event_type: str
    session_id: str
    attempt: int  # 1 for the first try
    status_code: int  # 0: no answer (refused, timed out, reset)
    latency_ms: float
    outcome: Literal["delivered", "retrying", "dead_lettered", "disabled"]
    at_ms: int
    error: str = ""
    next_retry_ms: int = 0  # when the next attempt is due (outcome retrying)
    shard: int = 0  # the log ``event_id`` is in (entry ids are unique per shard only)


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """An event given up on (its retry window ran out, or the log no longer
    had it): kept for ``/dead-letters`` and ``/redeliver``, never skipped silently."""

    event_id: str  # an entry id, or for a gap the first position lost
    shard: int
    reason: str
    at_ms: int
    event_type: str = ""
    session_id: str = ""
    attempts: int = 0
    last_status_code: int = 0
    lost_until: str = ""  # a retention gap: positions event_id..lost_until are gone


class Redelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter queued to be sent again (``/redeliver``): the forwarder
    holding its shard sends the event as the subscription is now (URL, secrets,
    filters), in order with the call's other events, and removes the request
    once it is delivered or dead-lettered again."""

    event_id: str  # the entry id in the shard's log
    requested_ms: int


async def check_destination(url: str, *, allow_http: bool, allow_private: bool) -> str:
    """``url`` if a subscription may deliver to it, else ``InvalidDestination``.

    Private, loopback, link-local and other non-global addresses are refused
    unless ``allow_private`` (a hub must not become a way into the network it
    runs in); a host name is resolved and every address it has is checked.
    """
    if len(url) > URL_MAX:
        raise InvalidDestination(f"the URL is longer than {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidDestination("the URL cannot be parsed") from None
    if parts.scheme not in ("https", "http"):
        raise InvalidDestination("the URL must be https:// (or http:// where allowed)")
    if parts.scheme == "http" and not allow_http:
        raise InvalidDestination("plain http:// destinations are not allowed here "
                                 "(CALLHUB_WEBHOOK_ALLOW_HTTP)")
    if not parts.hostname:
        raise InvalidDestination("the URL has no host")
    if parts.username or parts.password:
        raise InvalidDestination("the URL must not carry credentials")
    if not allow_private:
        for address in await resolve_addresses(parts.hostname, port or 443):
            if not is_allowed_address(address, allow_private=allow_private):
                raise InvalidDestination(
                    "the URL points at a private, loopback or reserved address "
                    "(CALLHUB_WEBHOOK_ALLOW_PRIVATE)")
    return url


def is_allowed_address(address: Address, *, allow_private: bool) -> bool:
    """Whether a webhook may reach ``address``: a global one, or any where the
    operator allows private ones. The one rule, applied when a URL is set
    (every address its host has) and at every connection a delivery makes
    (``callhub.destination_guard``: the address actually connected to)."""
    return allow_private or address.is_global


async def resolve_addresses(host: str, port: int) -> list[Address]:
    """The addresses of ``host`` (itself, if it is one), in the resolver's order,
    each once; ``InvalidDestination`` if it does not resolve. An IPv6 address
    keeps its scope (``fe80::1%eth0``), so it can be connected to as it is."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise InvalidDestination("the URL's host name does not resolve") from None
    addresses = dict.fromkeys(ipaddress.ip_address(str(info[4][0])) for info in infos)
    if not addresses:
        raise InvalidDestination("the URL's host name does not resolve")
    return list(addresses)


def delivery_headers(
    subscription: Subscription, *, message: str, body: bytes, event_type: str,
    session_id: str, seq: str, cursor: str, event_time: str = "",
    now_s: int | None = None, keys: Sequence[bytes] | None = None,
) -> list[tuple[str, str]]:
    """Every header of one delivery POST (a retry is signed anew: its timestamp
    is the attempt's, as the spec's replay window wants)."""
    timestamp = int(time.time()) if now_s is None else now_s
    if keys is None:
        keys = subscription.signing_keys(timestamp * 1000)
    headers = [
        ("content-type", "application/json"),
        ("webhook-id", message),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-signature", signature_header(keys, message, timestamp, body)),
        ("callhub-event-type", event_type),
        ("callhub-session-id", session_id),
        ("callhub-seq", seq),
        ("callhub-cursor", cursor),
    ]
    if subscription.cloudevents:
        headers += [
            ("ce-specversion", "1.0"),
            ("ce-id", message),
            ("ce-source", f"/callhub/webhooks/{subscription.id}"),
            ("ce-type", CLOUDEVENTS_TYPE_PREFIX + event_type),
            ("ce-subject", session_id),
        ]
        if event_time:
            headers.append(("ce-time", event_time))
    return headers
