"""ShardDelivery: one subscription's events from one shard log, while it holds the lease.

It reads the log after the stored cursor and hands each matching entry to
its call's queue: one task per call with events waiting sends them one at a
time (an event waits until the previous one was acknowledged or
dead-lettered), while different calls go concurrently, bounded by the
destination's gate. At most ``max_held`` events are held; while that many
wait, the log is not read (and then not before a quarter of them is done).

Entries are held in log order; the cursor stored is the position just before
the oldest one not yet done (or the last read, when none waits), so a
forwarder taking over re-sends exactly what was in flight, with the same
``webhook-id``. It is stored with each lease renewal, through the script
that checks the lease.

The ``webhook-id`` is ``message_id(subscription, "<shard>-<entry id>")``:
entry ids are unique within one shard log only (two shards commit in the
same millisecond), and a receiver deduplicates by the id.

Two ``/redeliver`` requests reach it (``callhub.webhooks``): a rewind to a
cursor, applied once when the delivery begins (the forwarder restarts the
deliveries of a subscription whose rewind changed), and dead letters queued
in the shard's redelivery stream, which it polls: each is sent in its call's
queue like any event, and removed from the stream once done, so a takeover
sends again the ones that were in flight.

A stored cursor the log no longer reaches (retention trimmed what followed
it) is a dead letter naming the lost range, then delivery continues with the
oldest entry kept: nothing is skipped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Final

import msgspec
from prometheus_client import Counter
from redis.exceptions import RedisError

from callhub.backoff import FULL_JITTER, Backoff
from callhub.connections import RedisClient, server_time_ms
from callhub.cursor import Cursor, InvalidCursor
from callhub.event_filter import EventFilter
from callhub.layout import ENTRY_DATA, ENTRY_DIALOG, ENTRY_SEQ, ENTRY_SESSION_ID, ENTRY_TYPE
from callhub.positions import (
    MAX_SEQ,
    format_stream_id,
    parse_stream_id,
    predecessor,
    successor,
)
from callhub.settings import Settings
from callhub.types import Entry, StreamId
from callhub.webhooks import (
    RECORD_FIELD,
    DeadLetter,
    DeliveryAttempt,
    Redelivery,
    delivery_headers,
    message_id,
)
from workers.forward.destination import Destination
from workers.forward.journal import DeliveryJournal
from workers.forward.lease import ShardLease
from workers.forward.metrics import ForwardMetrics
from workers.forward.retry_policy import RetryPolicy
from workers.forward.sender import AttemptResult, WebhookSender

log = logging.getLogger("callhub.forward")

MAX_HELD: Final = 1000
READ_COUNT: Final = 200
READ_BLOCK_MS: Final = 500
FRESHEN_INTERVAL_S: Final = 1.0
REDELIVERY_POLL_S: Final = 0.5


class _Timestamp(msgspec.Struct):
    timestamp: str = ""


_timestamp = msgspec.json.Decoder(_Timestamp)
_redelivery = msgspec.json.Decoder(Redelivery)

# An event in its call's queue: the log entry, and the redelivery request it
# answers (None: read from the log after the cursor).
_Queued = tuple[Entry, bytes | None, StreamId]


def _now_ms() -> int:
    return int(time.time() * 1000)


class ShardDelivery:
    def __init__(
        self, redis: RedisClient, settings: Settings, destination: Destination, shard: int,
        lease: ShardLease, *, sender: WebhookSender, journal: DeliveryJournal,
        policy: RetryPolicy, metrics: ForwardMetrics, max_held: int = MAX_HELD,
        stop_grace_s: float = 3.0,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self.destination = destination
        self.shard = shard
        self._lease = lease
        self._sender = sender
        self._journal = journal
        self._policy = policy
        self._metrics = metrics
        self._max_held = max_held
        self._stop_grace_s = stop_grace_s
        self._log_key = settings.keyspace.log(shard)
        self._redeliveries_key = settings.keyspace.webhook_redeliveries(shard, destination.id)
        self._filter_for = destination.subscription
        self._filter: EventFilter = destination.subscription.event_filter()
        self._position: StreamId = (0, 0)  # the last entry read (or known to be passed)
        self._pending: dict[StreamId, None] = {}  # matching entries not yet done, log order
        self._calls: dict[bytes, deque[_Queued]] = {}
        self._redelivering: set[bytes] = set()  # redelivery requests in the call queues
        self._call_tasks: set[asyncio.Task[None]] = set()
        self._space = asyncio.Event()
        # Full, the log is read again once this much room is free, not at every
        # event done: one XREAD per delivery was a fifth of a backlog's CPU.
        self._read_at = max(1, min(READ_COUNT, max_held // 4))
        self._halt = asyncio.Event()
        self._finished = asyncio.Event()  # halted and in-flight requests done: the lease goes
        self._lost = False  # the lease was lost: touch nothing of the successor's
        self.deleted = False  # the lease went with the subscription (API delete)
        self._last_freshen = 0.0
        # The metrics' children, looked up once (labels() takes a lock and a dict
        # lookup each time, per attempt at thousands a second); the in-flight
        # gauge reads the destination's count when scraped.
        metrics.in_flight.labels(destination.id).set_function(lambda: destination.in_flight)
        self._outcomes: dict[str, Counter] = {}
        self.delivered = 0
        self.dead_letters = 0

    # -- control -----------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading, finish (or after the grace, abandon) what is in flight."""
        self._halt.set()

    async def _pause(self, seconds: float, until: asyncio.Event | None = None) -> None:
        """Wait ``seconds``, or less if delivery halts (or ``until`` is set). The
        loops check the halt rather than rely on being cancelled: a Redis client
        caught mid-command by a cancellation may answer it with a connection
        error instead, and the loop would go on."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for((until or self._halt).wait(), seconds)

    @property
    def stopping(self) -> bool:
        return self._halt.is_set()

    @property
    def lost(self) -> bool:
        return self._lost

    def cursor(self) -> StreamId:
        """Everything up to here is done."""
        if self._pending:
            return predecessor(next(iter(self._pending)))
        return self._position

    async def run(self) -> None:
        sid = self.destination.id
        try:
            self._position = await self._begin()
            readers = [asyncio.create_task(self._read()),
                       asyncio.create_task(self._read_redeliveries())]
            keeper = asyncio.create_task(self._keep())
            await self._halt.wait()
            for reader in readers:
                reader.cancel()
            if not self._lost and self._call_tasks:
                await asyncio.wait(self._call_tasks, timeout=self._stop_grace_s)
            self._finished.set()
            for task in (*self._call_tasks, keeper):
                task.cancel()
            await asyncio.gather(*readers, keeper, *self._call_tasks, return_exceptions=True)
        except Exception:
            log.exception("delivery of %s, shard %d, failed; it will be taken up again",
                          sid, self.shard)
        finally:
            with contextlib.suppress(KeyError):
                self._metrics.lag.remove(sid, str(self.shard))
            if not self._lost:
                with contextlib.suppress(RedisError, OSError):
                    await self._lease.release(format_stream_id(self.cursor()))

    # -- the start: the cursor, or where a new subscription begins ----------------

    async def _begin(self) -> StreamId:
        stored = await self._lease.stored_cursor()
        subscription = self.destination.subscription
        if stored is None:
            # A subscription's first delivery: the events committed since it
            # was created (or, without a creation time, from now on).
            if subscription.created_ms:
                position = predecessor((subscription.created_ms, 0))
            else:
                last: list[Entry] = await self._redis.xrevrange(  # type: ignore[assignment]
                    self._log_key, "+", "-", count=1)
                position = parse_stream_id(last[0][0]) if last else (0, 0)
            await self._lease.renew(format_stream_id(position))
            return position
        position = parse_stream_id(stored)
        first: list[Entry] = await self._redis.xrange(  # type: ignore[assignment]
            self._log_key, "-", "+", count=1)
        if first:
            first_id = parse_stream_id(first[0][0])
            horizon = await server_time_ms(self._redis, self._log_key) - \
                self._settings.log_retention_ms
            # Something followed the cursor and is gone: the first entry kept is
            # not the cursor's successor, the cursor is old enough that
            # retention could have trimmed after it (a recent cursor cannot
            # have lost anything: trimming keeps the retention window), and
            # the log did lose entries.
            if successor(position) < first_id and (
                    self._settings.log_retention_ms == 0 or position[0] < horizon) and \
                    await self._trimmed():
                await self._gap(position, first_id)
                position = predecessor(first_id)
                await self._lease.renew(format_stream_id(position))
        return await self._rewound(position, first[0][0] if first else None)

    async def _trimmed(self) -> bool:
        """Whether the log ever lost an entry: a log that kept every entry
        added has no gap, however old the cursor before its first entry."""
        info: dict[str, object] = await self._redis.xinfo_stream(self._log_key)
        added, length = info.get("entries-added"), info.get("length")
        return not isinstance(added, int) or not isinstance(length, int) or added > length

    async def _rewound(self, position: StreamId, first_kept: bytes | None) -> StreamId:
        """The position after the subscription's rewind, if this shard has not
        applied it yet: back to the rewind's cursor (never forward), or to the
        oldest entry kept when the cursor is older than that."""
        rewind = self.destination.subscription.rewind
        if rewind is None or await self._lease.rewound() >= rewind.generation:
            return position
        try:
            target = Cursor.decode(rewind.cursor, self._settings.shards).positions[self.shard]
        except InvalidCursor as error:
            log.warning("webhook %s, shard %d: rewind %d not applied: %s",
                        self.destination.id, self.shard, rewind.generation, error)
            target = None
        if target is not None and target < position:
            floor = predecessor(parse_stream_id(first_kept)) if first_kept else target
            position = max(target, floor)
            await self._lease.renew(format_stream_id(position))
            log.info("webhook %s, shard %d: delivering again from %s", self.destination.id,
                     self.shard, format_stream_id(position))
        await self._lease.mark_rewound(rewind.generation)
        return position

    async def _gap(self, position: StreamId, first_kept: StreamId) -> None:
        await self._gap_at(successor(position), "retention_gap: the log no longer holds the "
                           "events after the cursor (trimmed by CALLHUB_LOG_RETENTION before "
                           "they were delivered)", until=predecessor(first_kept))

    async def _gap_at(self, lost_from: StreamId, reason: str, *,
                      until: StreamId | None = None) -> None:
        """A dead letter for events the log no longer holds: ``lost_from`` up to
        ``until`` (the one event, if None)."""
        letter = DeadLetter(
            event_id=format_stream_id(lost_from), shard=self.shard, at_ms=_now_ms(),
            lost_until=format_stream_id(until or lost_from), reason=reason)
        await self._journal.dead_lettered(self.destination.id, letter)
        self._metrics.dead_letters.labels(self.destination.id, "retention_gap").inc()
        self.dead_letters += 1
        log.warning("webhook %s, shard %d: events %s..%s were trimmed before delivery; "
                    "dead-lettered", self.destination.id, self.shard,
                    letter.event_id, letter.lost_until)

    # -- reading -----------------------------------------------------------------

    async def _read(self) -> None:
        retry = Backoff(0.1, 5.0, jitter=FULL_JITTER)
        while not self._halt.is_set():
            space = self._max_held - len(self._pending)
            if space < self._read_at:
                self._space.clear()
                await self._space.wait()
                continue
            try:
                reply: list[tuple[bytes, list[Entry]]] = await self._redis.xread(  # type: ignore[assignment]
                    {self._log_key: format_stream_id(self._position)},
                    count=min(space, READ_COUNT), block=READ_BLOCK_MS)
                if not reply:
                    await self._freshen()
                    continue
            except (RedisError, OSError) as error:
                log.warning("webhook %s, shard %d: reading the log failed, retrying: %s",
                            self.destination.id, self.shard, error)
                await self._pause(retry.next_delay())
                continue
            retry.reset()
            for entry in reply[0][1]:
                self._accept(entry)

    async def _freshen(self) -> None:
        """An idle log: move the position up to the Redis clock, so that a cursor
        stays within retention of now and a takeover never mistakes the trimming
        of an old, delivered entry for a gap. Any entry committed after the clock
        was read has an id at or above it."""
        if time.monotonic() - self._last_freshen < FRESHEN_INTERVAL_S:
            return
        self._last_freshen = time.monotonic()
        now = await server_time_ms(self._redis, self._log_key)
        last: list[Entry] = await self._redis.xrevrange(  # type: ignore[assignment]
            self._log_key, "+", "-", count=1)
        if last and parse_stream_id(last[0][0]) > self._position:
            return  # entries arrived meanwhile: the next read takes them
        fresh = (now - 1, MAX_SEQ)
        if fresh > self._position:
            self._position = fresh

    def _accept(self, entry: Entry) -> None:
        position = parse_stream_id(entry[0])
        self._position = position
        if self._matches(entry):
            self._pending[position] = None
            self._enqueue(entry, None, position)

    def _matches(self, entry: Entry) -> bool:
        subscription = self.destination.subscription
        if subscription is not self._filter_for:  # edited: its new filters from here on
            self._filter_for = subscription
            self._filter = subscription.event_filter()
        fields = entry[1]
        return self._filter.matches(fields.get(ENTRY_TYPE, b""),
                                    fields.get(ENTRY_SESSION_ID, b""),
                                    fields.get(ENTRY_DIALOG, b""))

    def _enqueue(self, entry: Entry, request: bytes | None, position: StreamId) -> None:
        session = entry[1].get(ENTRY_SESSION_ID, b"")
        queue = self._calls.get(session)
        if queue is not None:
            queue.append((entry, request, position))
            return
        self._calls[session] = deque([(entry, request, position)])
        task = asyncio.create_task(self._deliver_call(session))
        self._call_tasks.add(task)
        task.add_done_callback(self._call_tasks.discard)

    async def _read_redeliveries(self) -> None:
        """Dead letters queued again (``/redeliver``), oldest request first, as
        the subscription is now: an event its filters no longer match, or that
        the log no longer holds, is settled without a delivery."""
        while not self._halt.is_set():
            try:
                await self._take_redeliveries()
            except (RedisError, OSError) as error:
                log.warning("webhook %s, shard %d: reading the redeliveries failed: %s",
                            self.destination.id, self.shard, error)
            await self._pause(REDELIVERY_POLL_S)

    async def _take_redeliveries(self) -> None:
        space = self._max_held - len(self._redelivering)
        if space <= 0:
            return
        requests: list[Entry] = await self._redis.xrange(  # type: ignore[assignment]
            self._redeliveries_key, "-", "+", count=space + len(self._redelivering))
        for request_id, fields in requests:
            if request_id in self._redelivering:
                continue
            try:
                event_id = _redelivery.decode(fields[RECORD_FIELD]).event_id
                found: list[Entry] = await self._redis.xrange(  # type: ignore[assignment]
                    self._log_key, event_id, event_id)
            except (KeyError, msgspec.DecodeError, RedisError) as error:
                log.warning("webhook %s, shard %d: dropping an unreadable redelivery %s: %s",
                            self.destination.id, self.shard, request_id.decode(), error)
                await self._redis.xdel(self._redeliveries_key, request_id)
                continue
            if not found:
                await self._gap_at(parse_stream_id(event_id),
                                   "retention_gap: the log no longer holds the event "
                                   "asked to be redelivered")
            if not found or not self._matches(found[0]):
                await self._redis.xdel(self._redeliveries_key, request_id)
                continue
            self._redelivering.add(request_id)
            self._enqueue(found[0], request_id, parse_stream_id(found[0][0]))

    # -- delivering --------------------------------------------------------------

    async def _deliver_call(self, session: bytes) -> None:
        queue = self._calls[session]
        try:
            while queue:
                entry, request, position = queue[0]
                if not await self._deliver(entry, position):
                    return  # halted: the entry stays pending, below the cursor
                queue.popleft()
                if request is None:
                    del self._pending[position]
                    if self._max_held - len(self._pending) >= self._read_at:
                        self._space.set()
                else:
                    await self._redis.xdel(self._redeliveries_key, request)
                    self._redelivering.discard(request)
        except Exception:
            log.exception("webhook %s, shard %d: delivering failed", self.destination.id,
                          self.shard)
            self._halt.set()
        finally:
            if not queue:
                self._calls.pop(session, None)

    async def _deliver(self, entry: Entry, position: StreamId) -> bool:
        """Deliver one event until it is acknowledged (True) or dead-lettered (True),
        or delivery halts (False: the event stays undelivered)."""
        entry_id, fields = entry
        text_id = entry_id.decode()
        sid = self.destination.id
        event_type = fields.get(ENTRY_TYPE, b"").decode()
        session_id = fields.get(ENTRY_SESSION_ID, b"").decode()
        body = fields.get(ENTRY_DATA, b"")
        cursor = Cursor.at(self._settings.shards, self.shard, position).encode()
        destination = self.destination
        message = message_id(sid, f"{self.shard}-{text_id}")
        seq = fields.get(ENTRY_SEQ, b"").decode()
        first_ms = _now_ms()
        attempt = 0
        while not self._halt.is_set():
            attempt += 1
            subscription = self.destination.subscription
            event_time = _timestamp.decode(body).timestamp if subscription.cloudevents else ""
            now_s = int(time.time())
            headers = delivery_headers(
                subscription, message=message, body=body, event_type=event_type,
                session_id=session_id, seq=seq, cursor=cursor, event_time=event_time,
                now_s=now_s, keys=self.destination.signing_keys(now_s))
            async with destination.gate:
                if self._halt.is_set():
                    return False
                destination.in_flight += 1
                try:
                    result = await self._sender.send(subscription.url, body, headers)
                finally:
                    destination.in_flight -= 1
            now = _now_ms()
            self._metrics.latency.observe(result.latency_ms / 1000)

            def record(outcome: str, next_retry_ms: int = 0, result: AttemptResult = result,
                       attempt: int = attempt, now: int = now) -> DeliveryAttempt:
                self._outcome(outcome).inc()
                return DeliveryAttempt(
                    event_id=text_id, event_type=event_type, session_id=session_id,
                    attempt=attempt, status_code=result.status_code,
                    latency_ms=result.latency_ms, outcome=outcome,  # type: ignore[arg-type]
                    at_ms=now, error=result.error, next_retry_ms=next_retry_ms,
                    shard=self.shard)

            if result.delivered:
                self.destination.last_delivered_ms = now
                self.delivered += 1
                self._journal.attempted(sid, record("delivered"))
                return True
            if result.status_code == 410:
                self._journal.attempted(sid, record("disabled"))
                await self._disable("gone", "the receiver answered 410 Gone")
                return False
            delay_s = self._policy.delay_s(attempt, result)
            retry_at = now + int(delay_s * 1000)
            if self._policy.gives_up(first_ms, retry_at):
                self._journal.attempted(sid, record("dead_lettered"))
                await self._dead_letter(text_id, event_type, session_id, attempt, result)
                if self.destination.last_delivered_ms < first_ms:
                    await self._disable("failing", "every delivery failed for the whole "
                                        "retry window (CALLHUB_WEBHOOK_RETRY_WINDOW)")
                return True
            self._journal.attempted(sid, record("retrying", retry_at))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._halt.wait(), delay_s)
        return False

    def _outcome(self, outcome: str) -> Counter:
        counter = self._outcomes.get(outcome)
        if counter is None:
            counter = self._outcomes[outcome] = self._metrics.deliveries.labels(
                self.destination.id, outcome)
        return counter

    async def _dead_letter(self, event_id: str, event_type: str, session_id: str,
                           attempts: int, result: AttemptResult) -> None:
        letter = DeadLetter(
            event_id=event_id, shard=self.shard, at_ms=_now_ms(), event_type=event_type,
            session_id=session_id, attempts=attempts, last_status_code=result.status_code,
            reason=f"retry_window: not delivered within the retry window "
                   f"({result.error or 'failed'})")
        await self._journal.dead_lettered(self.destination.id, letter)
        self._metrics.dead_letters.labels(self.destination.id, "retry_window").inc()
        self.dead_letters += 1

    async def _disable(self, reason: str, text: str) -> None:
        self.destination.disabled = True
        if await self._journal.disable(self.destination.id, text):
            self._metrics.disabled.labels(reason).inc()
        self._halt.set()

    # -- the lease and the cursor ------------------------------------------------

    async def _still_subscribed(self) -> bool:
        """Whether the subscription is still stored: the API deletes its leases with
        it, so a lease gone may be a deletion rather than a successor."""
        try:
            return bool(await self._redis.hexists(self._settings.keyspace.webhooks(),
                                                  self.destination.id))
        except (RedisError, OSError):
            return True

    async def _keep(self) -> None:
        """Renew the lease and store the cursor, a few times a second; a lease
        found taken halts this delivery at once (its successor owns the cursor)."""
        interval = min(0.25, self._lease.lease_ms / 3000)
        while not self._finished.is_set():
            await self._pause(interval, self._finished)
            if self._finished.is_set():
                return
            try:
                ours = await self._lease.renew(format_stream_id(self.cursor()))
            except (RedisError, OSError) as error:
                log.warning("webhook %s, shard %d: renewing the lease failed: %s",
                            self.destination.id, self.shard, error)
                continue
            if not ours:
                self._lost = True
                if not await self._still_subscribed():
                    self.deleted = True
                    log.info("webhook %s, shard %d: the subscription was deleted; delivery "
                             "stops", self.destination.id, self.shard)
                    self._halt.set()
                    return
                log.warning("webhook %s, shard %d: lease lost; another forwarder delivers "
                            "it now", self.destination.id, self.shard)
                self._halt.set()
                return
            oldest = next(iter(self._pending), None)
            lag = max(0.0, (_now_ms() - oldest[0]) / 1000) if oldest else 0.0
            self._metrics.lag.labels(self.destination.id, str(self.shard)).set(lag)
