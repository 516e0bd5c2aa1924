"""DeliveryJournal: what the forwarder writes down for the API to show.

Each attempt goes to the subscription's deliveries stream (best effort) and
each event given up on to its dead-letter stream (both capped, one JSON
record per entry); disabling rewrites the subscription's stored value with
``enabled=False`` and the reason, as a compare-and-set on the one hash
field, so an edit the API made meanwhile is never overwritten by an old copy.

Attempts are queued and written in batches, one script call per subscription
every ``FLUSH_S`` (or sooner once ``BATCH`` wait): one XADD round trip per
attempt was about a third of the forwarder's CPU at thousands of deliveries a
second, and a pipeline of them still a sixth.
The deliveries view lags by at most that; a batch Redis refuses is logged
once and dropped (as a single attempt was). The attempts of a subscription
found deleted are not written any more (``forget``), and ``discard`` removes
what a POST in flight during the deletion wrote after the API had removed it,
so a deleted subscription's streams do not come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

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

# KEYS: a deliveries stream. ARGV: entries kept (about), the record field, the
# records. One script call per subscription and batch: a pipeline of XADDs
# cost redis-py a command to pack and a reply to parse per attempt.
APPEND: Final = """
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[2], ARGV[i])
end
return #ARGV - 2
"""

FLUSH_S: Final = 0.05
BATCH: Final = 512
FORGOTTEN_KEPT: Final = 10_000


class DeliveryJournal:
    def __init__(self, redis: RedisClient, keyspace: Keyspace, *,
                 flush_s: float = FLUSH_S) -> None:
        self._redis = redis
        self._keys = keyspace
        self._compare_and_set = redis.register_script(COMPARE_AND_SET)
        self._append = redis.register_script(APPEND)
        self._flush_s = flush_s
        self._queued: list[tuple[str, bytes]] = []
        self._waiting = asyncio.Event()
        self._forgotten: dict[str, None] = {}
        self._closed = False
        self._writing = asyncio.Lock()  # a discard waits for a batch being written

    def attempted(self, subscription_id: str, attempt: DeliveryAttempt) -> None:
        """Queue one attempt for the deliveries stream, best effort: it is a capped
        view for the API, and an attempt made while Redis is unreachable (a
        restart, a failover) must not stop delivery. Dead letters and disabling
        are written at once and raise."""
        if subscription_id in self._forgotten:
            return
        self._queued.append((subscription_id, _encoder.encode(attempt)))
        if len(self._queued) == 1 or len(self._queued) >= BATCH:
            self._waiting.set()

    async def run(self) -> None:
        """Write the queued attempts until ``close``; then what is left."""
        while not self._closed:
            await self._waiting.wait()
            self._waiting.clear()
            if not self._closed and len(self._queued) < BATCH:
                # Gather a batch: woken early by a full one, or by close.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._waiting.wait(), self._flush_s)
            await self.flush()
        await self.flush()

    def close(self) -> None:
        self._closed = True
        self._waiting.set()

    async def flush(self) -> None:
        batch, self._queued = self._queued, []
        batch = [(sid, record) for sid, record in batch if sid not in self._forgotten]
        if not batch:
            return
        try:
            async with self._writing:
                # A subscription deleted meanwhile (the forwarder sees it at its
                # next refresh) gets no stream back.
                by_subscription: dict[str, list[bytes]] = {}
                for sid, record in batch:
                    by_subscription.setdefault(sid, []).append(record)
                sids = list(by_subscription)
                stored = await self._redis.hmget(self._keys.webhooks(), sids)
                for sid, value in zip(sids, stored, strict=True):
                    if value is None:
                        self.forget(sid)
                for sid, records in by_subscription.items():
                    if sid in self._forgotten:
                        continue
                    await self._append(keys=[self._keys.webhook_deliveries(sid)],
                                       args=[DELIVERIES_KEPT, RECORD_FIELD, *records])
        except (RedisError, OSError) as error:
            log.warning("recording %d delivery attempts failed (the deliveries view misses "
                        "them): %s", len(batch), error)

    def forget(self, subscription_id: str) -> None:
        """The subscription is deleted: its attempts are not written from now on."""
        self._forgotten[subscription_id] = None
        if len(self._forgotten) > FORGOTTEN_KEPT:
            del self._forgotten[next(iter(self._forgotten))]

    async def discard(self, subscription_id: str) -> None:
        """Remove a deleted subscription's deliveries and dead letters again, once
        its last POST here has ended (one in flight during the deletion wrote
        after the API removed them)."""
        async with self._writing:
            for key in (self._keys.webhook_deliveries(subscription_id),
                        self._keys.webhook_dead_letters(subscription_id)):
                await self._redis.delete(key)  # one by one: two slots on a cluster

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
