"""Webhook subscriptions in Redis: the replica's side of the forwarder's contract.

What the records are is the kernel's (``callhub.webhooks``); this is how the
replicas keep them, so that a forwarder reading at any moment sees either a
whole subscription or none:

- a subscription is one field of the ``webhooks`` hash; the forwarder acts
  only on what is there, so it is written last on create (after every shard's
  cursor) and removed first on delete (before the cursors, leases and streams);
- every change is a compare-and-set of that one field (a script over one key,
  so it runs on a cluster too): a PATCH never overwrites a concurrent change,
  such as the forwarder disabling a subscription its receiver answered 410 to;
- per-shard keys live in their shard's hash slot, so they are written and
  deleted one by one: no transaction spans slots on a cluster.

Scopes are enforced here, where a subscription is found: one outside the
caller's dialogs is "not found", as a call outside them is.

A subscription's delivery status (``statuses``) is read from what the
forwarders leave: the cursors against the logs, and the newest delivery
attempts. It costs two pipelined round trips for any number of subscriptions,
and a bounded read for each (subscription, shard) and each subscription.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

import msgspec

from callhub.connections import RedisClient, server_time_ms
from callhub.cursor import Cursor, format_stream_id, parse_stream_id
from callhub.keyspace import Keyspace
from callhub.positions import predecessor, successor
from callhub.signing import new_secret
from callhub.types import StreamId
from callhub.webhooks import (
    COMPARE_AND_SET,
    RECORD_FIELD,
    DeadLetter,
    DeliveryAttempt,
    Redelivery,
    Rewind,
    SigningSecret,
    Subscription,
)
from hub.errors import NotFound
from hub.store.call_store import Scope

log = logging.getLogger("callhub.webhooks")

T = TypeVar("T")

# A subscription holds the current secret and at most so many rotated ones
# still in their grace: rotating in a loop must not grow every signature header.
SECRETS_KEPT = 5
# A stream entry id as Redis takes one (each part below 2**64).
_ENTRY_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")
# Changes racing on one subscription retry the compare-and-set at most so often.
_CAS_ATTEMPTS = 16


# The status looks for the last delivery and the last error among so many of
# the newest attempts (the deliveries stream keeps about DELIVERIES_KEPT).
STATUS_LOOKBACK = 100

_subscription = msgspec.json.Decoder(Subscription)
_attempt = msgspec.json.Decoder(DeliveryAttempt)
_dead_letter = msgspec.json.Decoder(DeadLetter)
_encoder = msgspec.json.Encoder()


class WebhookStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How delivery of a subscription is going, as the forwarders left it."""

    lag_ms: Annotated[int, msgspec.Meta(ge=0, description=(
        "Age (ms, by the replica's clock) of the oldest log entry after the "
        "subscription's cursor in any shard; 0 exactly when every shard is caught up "
        "(an entry behind counts at least 1). It "
        "counts entries whatever the subscription's filters (the cursor moves past "
        "the ones that do not match as the forwarder reads them), and it grows while "
        "the subscription is disabled or no forwarder runs. A forwarder stores its "
        "cursor a few times a second, so a busy log shows a fraction of a second "
        "even when delivery keeps up."))]
    last_delivered_ms: Annotated[int, msgspec.Meta(ge=0, description=(
        f"When the newest acknowledged delivery among the last {STATUS_LOOKBACK} "
        "attempts was made (ms since the epoch); 0: none of them"))]
    last_error: Annotated[str, msgspec.Meta(description=(
        f"Why the newest failed attempt among the last {STATUS_LOOKBACK} failed "
        '(e.g. "HTTP 503", "timed out: ..."); empty: none of them failed. It may be '
        "older than last_delivered_ms: delivery recovered since"))]
    last_error_ms: Annotated[int, msgspec.Meta(ge=0, description=(
        "When that failed attempt was made (ms since the epoch); 0: none"))]


class Conflict(RuntimeError):
    """A subscription changed under every attempt to change it (never expected)."""


def visible(subscription: Subscription, scope: Scope) -> bool:
    """A scoped key sees a subscription only if its scope lies within the key's dialogs."""
    if scope is None:
        return True
    return subscription.scope is not None and set(subscription.scope) <= scope


def rotated(secrets: list[SigningSecret], new: str, now_ms: int,
            grace_ms: int) -> list[SigningSecret]:
    """``new`` current; the current one signing ``grace_ms`` more; expired ones gone."""
    kept = [SigningSecret(s.secret, now_ms + grace_ms) if s.expires_ms == 0 else s
            for s in secrets if s.expires_ms == 0 or s.expires_ms > now_ms]
    kept.sort(key=lambda s: s.expires_ms, reverse=True)
    return [SigningSecret(new), *kept[:SECRETS_KEPT - 1]]


class SubscriptionStore:
    """Create, read, change and delete subscriptions; read their delivery records."""

    def __init__(self, redis: RedisClient, keyspace: Keyspace) -> None:
        self._redis = redis
        self._keys = keyspace
        self._hash = keyspace.webhooks()
        self._compare_and_set = redis.register_script(COMPARE_AND_SET)

    async def log_ends(self) -> list[StreamId]:
        """Each shard log's "now": its last entry id, or for an empty log the
        position just before the Redis clock's now (any entry committed later
        has an id above it, and a cursor on the clock is never mistaken for one
        that retention left behind)."""
        ends: list[StreamId] = []
        for shard in range(self._keys.shards):
            key = self._keys.log(shard)
            last: list[tuple[bytes, object]] = await self._redis.xrevrange(  # type: ignore[assignment]
                key, "+", "-", count=1)
            ends.append(parse_stream_id(last[0][0]) if last else
                        predecessor((await server_time_ms(self._redis, key), 0)))
        return ends

    async def create(self, subscription: Subscription, start: Cursor | None) -> Subscription:
        """Store ``subscription`` delivering after ``start`` (None: now) in every shard.

        The cursors go first and the hash field last: until it is there the
        forwarder ignores the cursors, and if writing stops half-way the
        cursors left behind are removed (best effort) and nothing is visible.
        """
        ends = await self.log_ends()
        positions = start.positions if start is not None else (None,) * self._keys.shards
        id_ = subscription.id
        try:
            for shard, position in enumerate(positions):
                await self._redis.set(self._keys.webhook_cursor(shard, id_),
                                      format_stream_id(position or ends[shard]))
            if not await self._redis.hsetnx(self._hash, id_, _encoder.encode(subscription)):
                raise Conflict("a new subscription id is already taken")
        except BaseException:
            await self._remove_shard_keys(id_)
            raise
        return subscription

    async def visible_to(self, scope: Scope) -> list[Subscription]:
        """Every subscription the scope sees, oldest first (they are few)."""
        stored: dict[bytes, bytes] = await self._redis.hgetall(self._hash)  # type: ignore[assignment]
        found = []
        for id_, raw in stored.items():
            subscription = _decoded(id_, raw)
            if subscription is not None and visible(subscription, scope):
                found.append(subscription)
        found.sort(key=lambda s: (s.created_ms, s.id))
        return found

    async def get(self, id_: str, scope: Scope) -> Subscription:
        return (await self._read(id_, scope))[0]

    async def update(self, id_: str, scope: Scope,
                     change: Callable[[Subscription], Subscription]) -> Subscription:
        """Apply ``change`` to the stored subscription, atomically: if it changed
        meanwhile, ``change`` runs again on what is stored now. ``change`` may
        raise (a BadParameter): nothing is written then."""
        for _ in range(_CAS_ATTEMPTS):
            current, raw = await self._read(id_, scope)
            changed = change(current)
            if changed == current:
                return current
            if await self._compare_and_set(keys=[self._hash],
                                           args=[id_, raw, _encoder.encode(changed)]):
                return changed
        raise Conflict(f"subscription {id_} kept changing")

    async def rotate_secret(self, id_: str, scope: Scope, now_ms: int,
                            grace_ms: int) -> tuple[Subscription, str]:
        """A new current secret; the previous one keeps signing for ``grace_ms``."""
        secret = new_secret()
        subscription = await self.update(id_, scope, lambda s: msgspec.structs.replace(
            s, secrets=rotated(s.secrets, secret, now_ms, grace_ms)))
        return subscription, secret

    async def delete(self, id_: str, scope: Scope) -> None:
        """Remove the hash field first (the forwarder stops), then every other key."""
        await self._read(id_, scope)
        if not await self._redis.hdel(self._hash, id_):
            raise _not_found(id_)
        await self._remove_shard_keys(id_)
        for key in (self._keys.webhook_deliveries(id_), self._keys.webhook_dead_letters(id_)):
            await self._redis.delete(key)

    async def deliveries(self, id_: str, scope: Scope, limit: int) -> list[DeliveryAttempt]:
        await self._read(id_, scope)
        records = await self._records(self._keys.webhook_deliveries(id_), limit, _attempt.decode)
        return [attempt for _, attempt in records]

    async def dead_letters(self, id_: str, scope: Scope,
                           limit: int) -> list[tuple[str, DeadLetter]]:
        """The newest ``limit`` dead letters, each with its id (what ``/redeliver`` takes)."""
        await self._read(id_, scope)
        return await self._records(self._keys.webhook_dead_letters(id_), limit,
                                   _dead_letter.decode)

    async def redeliver_dead_letters(self, id_: str, scope: Scope, letter_ids: list[str] | None,
                                     now_ms: int) -> tuple[int, list[str]]:
        """Queue dead letters (``letter_ids``; None: all of them) to be sent again.

        Each one is queued in its shard (``webhook_redeliveries``) before it
        leaves the dead letters, so a stop half-way can at worst queue one
        twice (a duplicate, same ``webhook-id``), never lose one. A retention
        gap's letter names events that are gone: it stays, and its id is
        answered as not redeliverable, as is an id that is no dead letter.
        Answers how many were queued, and the ids that were not.
        """
        await self._read(id_, scope)
        key = self._keys.webhook_dead_letters(id_)
        refused: list[str] = []
        found: list[tuple[bytes, dict[bytes, bytes]]] = []
        if letter_ids is None:
            found = await self._redis.xrange(key, "-", "+")  # type: ignore[assignment]
        for letter_id in dict.fromkeys(letter_ids or ()):
            one: list[tuple[bytes, dict[bytes, bytes]]] = (
                await self._redis.xrange(key, letter_id, letter_id)  # type: ignore[assignment]
                if _ENTRY_ID.fullmatch(letter_id) else [])
            if one:
                found += one
            else:
                refused.append(letter_id)
        queued = 0
        for entry_id, fields in found:
            try:
                letter = _dead_letter.decode(fields[RECORD_FIELD])
            except (KeyError, msgspec.DecodeError):
                refused.append(entry_id.decode())
                continue
            if letter.lost_until or not 0 <= letter.shard < self._keys.shards:
                refused.append(entry_id.decode())
                continue
            request = Redelivery(event_id=letter.event_id, requested_ms=now_ms)
            await self._redis.xadd(self._keys.webhook_redeliveries(letter.shard, id_),
                                   {RECORD_FIELD: _encoder.encode(request)})
            await self._redis.xdel(key, entry_id)
            queued += 1
        return queued, refused

    async def rewind(self, id_: str, scope: Scope, cursor: Cursor, now_ms: int) -> Rewind:
        """Deliver again everything after ``cursor`` (in each shard it names)."""
        text = cursor.encode()

        def change(stored: Subscription) -> Subscription:
            generation = stored.rewind.generation + 1 if stored.rewind is not None else 1
            return msgspec.structs.replace(
                stored, rewind=Rewind(generation=generation, cursor=text, at_ms=now_ms))

        rewind = (await self.update(id_, scope, change)).rewind
        assert rewind is not None
        return rewind

    async def statuses(self, subscriptions: Sequence[Subscription],
                       now_ms: int) -> list[WebhookStatus]:
        """The delivery status of each of ``subscriptions``, in their order.

        Two round trips, each one pipeline (non-transactional, so on a cluster
        its commands go to the nodes of their slots): every (subscription,
        shard) cursor and each deliveries stream's newest STATUS_LOOKBACK
        attempts; then each shard log's first entry after its cursor (count 1).
        The caller bounds the cost by the number of subscriptions it asks for.
        """
        if not subscriptions:
            return []
        shards = range(self._keys.shards)
        pipe = self._redis.pipeline(transaction=False)
        for subscription in subscriptions:
            for shard in shards:
                pipe.get(self._keys.webhook_cursor(shard, subscription.id))
            pipe.xrevrange(self._keys.webhook_deliveries(subscription.id), "+", "-",
                           count=STATUS_LOOKBACK)
        replies = iter(await pipe.execute())
        cursors: list[list[StreamId | None]] = []
        attempts: list[list[tuple[bytes, dict[bytes, bytes]]]] = []
        for subscription in subscriptions:
            cursors.append([_delivered_up_to(subscription, next(replies)) for _ in shards])
            attempts.append(next(replies))

        pipe = self._redis.pipeline(transaction=False)
        asked: list[tuple[int, int]] = []  # (subscription index, shard) of each XRANGE
        for index, positions in enumerate(cursors):
            for shard, position in enumerate(positions):
                if position is not None:
                    pipe.xrange(self._keys.log(shard), format_stream_id(successor(position)),
                                "+", count=1)
                    asked.append((index, shard))
        oldest: list[int | None] = [None] * len(subscriptions)
        for (index, _), entries in zip(asked, await pipe.execute() if asked else [],
                                       strict=True):
            if entries:
                ms = parse_stream_id(entries[0][0])[0]
                current = oldest[index]
                oldest[index] = ms if current is None else min(current, ms)
        return [_status(behind, entries, now_ms)
                for behind, entries in zip(oldest, attempts, strict=True)]

    async def _read(self, id_: str, scope: Scope) -> tuple[Subscription, bytes]:
        raw: bytes | None = await self._redis.hget(self._hash, id_)  # type: ignore[assignment]
        subscription = _decoded(id_.encode(), raw) if raw is not None else None
        if raw is None or subscription is None or not visible(subscription, scope):
            raise _not_found(id_)
        return subscription, raw

    async def _remove_shard_keys(self, id_: str) -> None:
        for shard in range(self._keys.shards):  # each in its own slot: one by one
            await self._redis.delete(self._keys.webhook_cursor(shard, id_),
                                     self._keys.webhook_lease(shard, id_),
                                     self._keys.webhook_redeliveries(shard, id_),
                                     self._keys.webhook_rewound(shard, id_))

    async def _records(self, key: str, limit: int,
                       decode: Callable[[bytes], T]) -> list[tuple[str, T]]:
        """The newest ``limit`` records of a stream the forwarder writes, newest
        first, each with its entry id."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self._redis.xrevrange(  # type: ignore[assignment]
            key, "+", "-", count=limit)
        records = []
        for entry_id, fields in entries:
            try:
                records.append((entry_id.decode(), decode(fields[RECORD_FIELD])))
            except (KeyError, msgspec.DecodeError):
                log.warning("skipping an unreadable record %s in %s", entry_id.decode(), key)
        return records


def _delivered_up_to(subscription: Subscription, raw: bytes | None) -> StreamId | None:
    """A shard's stored cursor; without one, where the forwarder will begin (just
    before the creation time), or None where it begins at the log's end."""
    if raw is not None:
        try:
            return parse_stream_id(raw)
        except ValueError:
            log.warning("webhook %s: an unreadable cursor %r", subscription.id, raw)
            return None
    return predecessor((subscription.created_ms, 0)) if subscription.created_ms else None


def _status(oldest_ms: int | None, entries: list[tuple[bytes, dict[bytes, bytes]]],
            now_ms: int) -> WebhookStatus:
    """The status from the age of the oldest entry not yet done and the newest
    attempts (newest first)."""
    delivered: DeliveryAttempt | None = None
    failed: DeliveryAttempt | None = None
    for _, fields in entries:
        try:
            attempt = _attempt.decode(fields[RECORD_FIELD])
        except (KeyError, msgspec.DecodeError):
            continue
        if attempt.outcome == "delivered":
            delivered = delivered or attempt
        else:
            failed = failed or attempt
        if delivered is not None and failed is not None:
            break
    error = ""
    if failed is not None:
        error = failed.error or (f"HTTP {failed.status_code}" if failed.status_code
                                 else failed.outcome)
    return WebhookStatus(
        lag_ms=max(1, now_ms - oldest_ms) if oldest_ms is not None else 0,
        last_delivered_ms=delivered.at_ms if delivered is not None else 0,
        last_error=error, last_error_ms=failed.at_ms if failed is not None else 0)


def _decoded(id_: bytes, raw: bytes) -> Subscription | None:
    try:
        return _subscription.decode(raw)
    except msgspec.DecodeError:
        log.warning("skipping an unreadable subscription %s", id_.decode(errors="replace"))
        return None


def _not_found(id_: str) -> NotFound:
    return NotFound(f"webhook subscription {id_} does not exist", param="id")

