"""CommitQueue: group commit for the many calls of one worker.

Each call commits its events one at a time (the next is built only after the
last is stored), but hundreds of calls run at once. Sending each commit alone
would cost a round trip per event and a pooled connection per waiting call;
the queue instead collects whatever the calls have ready and sends it through
``CallPublisher.commit_many`` as one pipeline (a few pipelines in flight at
once). Per-call order holds because a call never has two events in flight.

The sender loops stop on ``close()`` once the queue is empty: it is never
cancelled in the middle of a Redis command.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque

from callhub.events import Event
from workers.commit.publisher import CallPublisher, CommitOutcome


class CommitQueue:
    """An ``EventSink`` that batches the commits of many concurrent calls."""

    def __init__(
        self, publisher: CallPublisher, *, max_batch: int = 512, pipelines: int = 4
    ) -> None:
        self._publisher = publisher
        self._max_batch = max_batch
        self._pipelines = pipelines
        self._waiting: deque[tuple[Event, asyncio.Future[CommitOutcome]]] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self.stored: Counter[str] = Counter()  # events stored, by type
        self.refused = 0  # events the commit script rejected

    @property
    def stored_total(self) -> int:
        return self.stored.total()

    async def commit(self, event: Event) -> CommitOutcome:
        if self._closed:
            raise RuntimeError("the commit queue is closed")
        future: asyncio.Future[CommitOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        self._wake.set()
        return await future

    def close(self) -> None:
        """Stop once everything queued has been sent."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Send batches until closed and drained, ``pipelines`` of them in flight at once.

        One pipeline at a time would leave the worker idle for every round
        trip; a few in flight keep Redis busy while the calls build their next
        events. Order per call is unaffected: a call has one event in flight.
        """
        await asyncio.gather(*(self._send_batches() for _ in range(self._pipelines)))

    async def _send_batches(self) -> None:
        while True:
            if not self._waiting:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._waiting.popleft()
                     for _ in range(min(self._max_batch, len(self._waiting)))]
            if self._waiting:
                self._wake.set()  # more is ready: another sender can take it now
            try:
                outcomes = await self._publisher.commit_many([event for event, _ in batch])
            except Exception as error:  # PublisherUnavailable, or a bug: no call waits forever
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (event, future), outcome in zip(batch, outcomes, strict=True):
                if outcome.stored:
                    self.stored[type(event).__struct_config__.tag] += 1  # type: ignore[index]
                else:
                    self.refused += 1
                if not future.done():
                    future.set_result(outcome)
