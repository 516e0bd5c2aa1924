"""DeliveryJournal: what the forwarder writes down for the API to show.

Each attempt goes to the subscription's deliveries stream (best effort) and
each event given up on to its dead-letter stream (both capped, one JSON
record per entry); disabling rewrites the subscription's stored value with
``enabled=False`` and the reason, as a compare-and-set on the one hash
field, so an edit the API made meanwhile is never overwritten by an old copy.
"""

from __future__ import annotations

import logging

import msgspec
from redis.exceptions import RedisError

from callhub.connections import RedisClient
from callhub.keyspace import Keyspace
from callhub.webhooks import (
    COMPARE_AND_SET,
    DEAD_LETTERS_KEPT,
    DELIVERIES_KEPT,
    RECORD_FIELD,
    DeadLetter,
    DeliveryAttempt,
    Subscription,
)

log = logging.getLogger("callhub.forward")

_decoder = msgspec.json.Decoder(Subscription)
_encoder = msgspec.json.Encoder()


class DeliveryJournal:
    def __init__(self, redis: RedisClient, keyspace: Keyspace) -> None:
        self._redis = redis
        self._keys = keyspace
        self._compare_and_set = redis.register_script(COMPARE_AND_SET)

    async def attempted(self, subscription_id: str, attempt: DeliveryAttempt) -> None:
        """Record one attempt, best effort: the deliveries stream is a capped view
        for the API, and an attempt made while Redis is unreachable (a restart, a
        failover) must not stop delivery. Dead letters and disabling raise."""
        try:
            await self._redis.xadd(self._keys.webhook_deliveries(subscription_id),
                                   {RECORD_FIELD: _encoder.encode(attempt)},
                                   maxlen=DELIVERIES_KEPT, approximate=True)
        except (RedisError, OSError) as error:
            log.warning("webhook %s: recording attempt %d at event %s (%s) failed: %s",
                        subscription_id, attempt.attempt, attempt.event_id, attempt.outcome,
                        error)

    async def dead_lettered(self, subscription_id: str, letter: DeadLetter) -> None:
        await self._redis.xadd(self._keys.webhook_dead_letters(subscription_id),
                               {RECORD_FIELD: _encoder.encode(letter)},
                               maxlen=DEAD_LETTERS_KEPT, approximate=True)

    async def disable(self, subscription_id: str, reason: str) -> bool:
        """Mark the subscription disabled; False if it is gone or already disabled."""
        key = self._keys.webhooks()
        for _ in range(10):
            raw: bytes | None = await self._redis.hget(  # type: ignore[assignment]
                key, subscription_id)
            if raw is None:
                return False
            current = _decoder.decode(raw)
            if not current.enabled:
                return False
            changed = msgspec.structs.replace(current, enabled=False, disabled_reason=reason)
            if await self._compare_and_set(keys=[key],
                                           args=[subscription_id, raw, _encoder.encode(changed)]):
                log.warning("webhook subscription %s (%s) disabled: %s", subscription_id,
                            current.name, reason)
                return True
        return False  # pragma: no cover - ten edits in a row raced this one
