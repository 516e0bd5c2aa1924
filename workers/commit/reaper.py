"""Reaper: no call stays active forever (DESIGN I7).

A worker holds a lease on each call it handles (renewed by its commits and its
``LeaseKeeper``). When a worker dies, its leases run out; any worker's reaper
finds those calls and commits their ``call_terminated`` with reason ``error``.
A call that has lasted longer than the maximum duration is ended with reason
``timeout``, whoever holds it. Its age counts from its ``call_started``'s
timestamp, or, when that is implausibly far from the commit (a backfill, a
wrong clock: ``callhub/commit_time.py``), from when Redis committed it
(the id of the call's first stream entry).

Exactly once, with any number of reapers: the reaper commits the end as the
call's next ``seq`` through the ordinary commit script. Two reapers racing on
one call commit the same seq; the script stores the first and answers the
second ``duplicate``. A worker that commits in the meantime takes that seq
first: the reaper's end is then a duplicate of the worker's event (not stored)
and the renewed lease keeps the call alive at the next sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import msgspec
from redis.exceptions import RedisError

from callhub.commit_time import MAX_CLOCK_SKEW_MS, entry_ms, start_ms
from callhub.connections import RedisClient, server_time_ms
from callhub.events import CallTerminated
from callhub.layout import (
    CALL_CURRENT_STATE,
    CALL_SEQ,
    CALL_START_MS,
    CALL_STATE_TRANSITIONS,
    CALL_STATUS,
    STATUS_TERMINATED,
)
from callhub.settings import Settings
from workers.commit.publisher import CallPublisher, PublisherUnavailable
from workers.metrics import WorkerMetrics

log = logging.getLogger("callhub.reaper")

_CALL_FIELDS = (CALL_SEQ, CALL_STATUS, CALL_START_MS, CALL_STATE_TRANSITIONS, CALL_CURRENT_STATE)


class ReapTally(msgspec.Struct):
    """What one sweep (or a reaper's whole run) ended."""

    expired: int = 0  # leases that ran out: ended with reason error
    timed_out: int = 0  # calls past the maximum duration: ended with reason timeout

    def add(self, other: ReapTally) -> None:
        self.expired += other.expired
        self.timed_out += other.timed_out


class _Skip(msgspec.Struct):
    """How many calls of a shard's active index one sweep has passed over so far:
    dated (too far back, too far ahead) as overlong, but not by their commit."""

    past: int = 0
    ahead: int = 0


class Reaper:
    """Sweeps every shard for calls to end, every ``interval_s`` until stopped."""

    def __init__(
        self,
        redis: RedisClient,
        publisher: CallPublisher,
        settings: Settings,
        *,
        interval_s: float | None = None,
        batch: int = 256,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._redis = redis
        self._publisher = publisher
        self._keys = settings.keyspace
        self._max_call_ms = settings.max_call_ms
        # A sweep every half lease: a dead worker's calls end within 1.5 leases.
        self._interval_s = interval_s if interval_s is not None else settings.lease_ms / 2000
        self._batch = batch
        self._stopped = asyncio.Event()
        self.total = ReapTally()
        self._metrics = metrics

    async def sweep(self) -> ReapTally:
        """One pass over every shard; what it ended."""
        tally = ReapTally()
        for shard in range(self._keys.shards):
            # A full batch means there may be more; a batch that ended nothing
            # (every call already taken care of) means stop and let the next
            # sweep look again, rather than spin. Calls whose timestamp looked
            # old (or new) enough but whose commit did not stay where they are
            # in the index: the next batch starts after them.
            skip = _Skip()
            while True:
                found, full, deferred = await self._sweep_shard(shard, tally, skip)
                if not (full and (found or deferred)):
                    break
        self.total.add(tally)
        return tally

    async def run(self) -> None:
        """Sweep until ``stop``; a Redis outage is logged and the next sweep retries."""
        while not self._stopped.is_set():
            try:
                tally = await self.sweep()
                if tally.expired or tally.timed_out:
                    log.info("reaped %d calls with expired leases, %d past the maximum duration",
                             tally.expired, tally.timed_out)
            except (RedisError, PublisherUnavailable) as error:
                log.warning("reaper sweep failed, retrying: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._interval_s)

    def stop(self) -> None:
        self._stopped.set()

    async def _sweep_shard(
        self, shard: int, tally: ReapTally, skip: _Skip
    ) -> tuple[int, bool, int]:
        """Reap one batch of a shard into ``tally``: (calls ended, was the batch
        full, calls deferred: due by their timestamp, not by their commit)."""
        now_ms = await server_time_ms(self._redis, self._keys.leases(shard))
        active = self._keys.active(shard)
        expired = await self._redis.zrangebyscore(
            self._keys.leases(shard), "-inf", now_ms, start=0, num=self._batch)
        # The active index is scored by call_started's timestamp: calls that
        # look overlong, and calls dated implausibly far ahead (their commit
        # time may say they are overlong).
        overlong = await self._redis.zrangebyscore(
            active, "-inf", now_ms - self._max_call_ms, start=skip.past, num=self._batch)
        ahead = await self._redis.zrangebyscore(
            active, f"({now_ms + MAX_CLOCK_SKEW_MS}", "+inf", start=skip.ahead,
            num=self._batch)
        old_ids = {cast(bytes, raw).decode() for raw in overlong}
        ahead_ids = {cast(bytes, raw).decode() for raw in ahead}
        expired_ids = {cast(bytes, raw).decode() for raw in expired}
        candidates = sorted(old_ids | ahead_ids | expired_ids)
        ends, timed_out = await self._ends(candidates, old_ids | ahead_ids, expired_ids, now_ms,
                                           shard)
        deferred_old = len(old_ids - timed_out - expired_ids)
        deferred_ahead = len(ahead_ids - timed_out - expired_ids)
        skip.past += deferred_old
        skip.ahead += deferred_ahead
        ended = 0
        for outcome in await self._publisher.commit_many(ends):
            if outcome.status != "committed":
                continue  # another reaper, or the call's own worker, got there first
            ended += 1
            assert isinstance(outcome.event, CallTerminated)
            if self._metrics is not None:
                self._metrics.reaped.labels(outcome.event.reason).inc()
            if outcome.event.reason == "timeout":
                tally.timed_out += 1
            else:
                tally.expired += 1
        full = self._batch in (len(expired), len(overlong), len(ahead))
        return ended, full, deferred_old + deferred_ahead

    async def _ends(
        self, session_ids: Sequence[str], maybe_overlong: set[str], expired: set[str],
        now_ms: int, shard: int,
    ) -> tuple[list[CallTerminated], set[str]]:
        """The ends to commit (calls whose lease ran out, calls past the maximum
        duration), and which of them are timeouts."""
        if not session_ids:
            return [], set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.hmget(self._keys.call(session_id), _CALL_FIELDS)
                pipe.xrange(self._keys.call_events(session_id), "-", "+", count=1)
            replies = await pipe.execute()
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        ends: list[CallTerminated] = []
        timed_out: set[str] = set()
        stale: list[str] = []
        for session_id, (seq, status, stamped_ms, transitions, state), first in zip(
            session_ids, replies[::2], replies[1::2], strict=True
        ):
            if seq is None or status == STATUS_TERMINATED:
                stale.append(session_id)  # a lease left behind by a call already over
                continue
            committed_ms = entry_ms(first[0][0]) if first else None
            started_ms = start_ms(int(stamped_ms or now_ms), committed_ms)
            overlong = session_id in maybe_overlong and now_ms - started_ms >= self._max_call_ms
            if overlong:
                timed_out.add(session_id)
            elif session_id not in expired:
                continue  # its timestamp says overlong, its commit says not yet
            ends.append(CallTerminated(
                event_id=f"evt-{uuid.uuid4()}",
                session_id=session_id,
                timestamp=now,
                seq=int(seq) + 1,
                reason="timeout" if overlong else "error",
                duration_seconds=max(0, (now_ms - started_ms) // 1000),
                state_transitions=int(transitions or 0),
                final_state=(state or b"").decode(),
            ))
        if stale:
            await self._redis.zrem(self._keys.leases(shard), *stale)
        return ends, timed_out
