"""Reading the subscriptions: the ``<prefix>:webhooks`` hash, whole, each time.

The hash is small (one JSON per subscription) and the forwarder re-reads it
about once a second, so a new, changed, disabled or deleted subscription
takes effect within that; a value that does not decode is logged and left
alone (the API writes them; a forwarder never guesses at one).
"""

from __future__ import annotations

import logging

import msgspec

from callhub.connections import RedisClient
from callhub.keyspace import Keyspace
from callhub.webhooks import Subscription

log = logging.getLogger("callhub.forward")

_decoder = msgspec.json.Decoder(Subscription)


class StoredSubscription(msgspec.Struct, frozen=True):
    """A subscription and the exact bytes it was stored as (a change is a new value)."""

    raw: bytes
    subscription: Subscription


async def read_subscriptions(
    redis: RedisClient, keyspace: Keyspace
) -> dict[str, StoredSubscription]:
    stored: dict[bytes, bytes] = await redis.hgetall(  # type: ignore[assignment]
        keyspace.webhooks())
    found: dict[str, StoredSubscription] = {}
    for key, raw in stored.items():
        try:
            subscription = _decoder.decode(raw)
        except msgspec.DecodeError as error:
            log.warning("subscription %s is not valid JSON of a subscription: %s",
                        key.decode(errors="replace"), error)
            continue
        found[subscription.id] = StoredSubscription(raw, subscription)
    return found
