"""Webhook subscriptions stored straight into Redis, as the API would store them
(the forwarder's tests do not depend on the API side)."""

from __future__ import annotations

import time

import msgspec
import redis

from callhub.keyspace import Keyspace
from callhub.signing import new_secret
from callhub.webhooks import SigningSecret, Subscription, new_subscription_id

_decoder = msgspec.json.Decoder(Subscription)


def store_subscription(
    client: redis.Redis, url: str, *, keyspace: Keyspace | None = None, secret: str | None = None,
    **fields: object,
) -> Subscription:
    """A new enabled subscription to ``url``, created now, in the webhooks hash."""
    keyspace = keyspace or Keyspace()
    subscription = Subscription(
        id=new_subscription_id(), name="test", url=url,
        secrets=[SigningSecret(secret or new_secret())],
        created_ms=int(time.time() * 1000), **fields)  # type: ignore[arg-type]
    client.hset(keyspace.webhooks(), subscription.id, msgspec.json.encode(subscription))
    return subscription


def stored_subscription(client: redis.Redis, subscription_id: str,
                        keyspace: Keyspace | None = None) -> Subscription | None:
    raw = client.hget((keyspace or Keyspace()).webhooks(), subscription_id)
    return _decoder.decode(raw) if raw is not None else None  # type: ignore[arg-type]
