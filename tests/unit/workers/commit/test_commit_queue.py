"""The worker's CommitQueue over a publisher the test controls: calls' events
go out in batches, each call gets its own outcome, and a failed batch fails
only the calls that waited on it."""

from __future__ import annotations

import asyncio

import pytest

from callhub import events as ev
from tests.support.strategies import dtmf
from workers.commit.commit_queue import CommitQueue
from workers.commit.publisher import CommitOutcome, PublisherUnavailable


class FlakyPublisher:
    """commit_many fails (Redis gone) for the batches the test says, else stores all."""

    def __init__(self, fail: set[int]) -> None:
        self.fail = fail
        self.batches: list[int] = []

    async def commit_many(self, events: list[ev.Event]) -> list[CommitOutcome]:
        self.batches.append(len(events))
        await asyncio.sleep(0)
        if len(self.batches) in self.fail:
            raise PublisherUnavailable("Redis is unreachable")
        return [CommitOutcome(e, "committed", entry_id="1-0") for e in events]


async def test_the_commit_queue_batches_and_hands_each_call_its_own_outcome() -> None:
    publisher = FlakyPublisher(fail=set())
    queue = CommitQueue(publisher, max_batch=8, pipelines=2)  # type: ignore[arg-type]
    sender = asyncio.create_task(queue.run())
    first = await asyncio.gather(*(queue.commit(dtmf(f"c-{n}", 2)) for n in range(20)))
    assert all(o.status == "committed" for o in first)
    assert max(publisher.batches) == 8 and sum(publisher.batches) == 20
    publisher.fail = {len(publisher.batches) + 1}
    with pytest.raises(PublisherUnavailable):
        await queue.commit(dtmf("c-x", 3))  # the failure reaches the call that waited
    assert (await queue.commit(dtmf("c-y", 3))).status == "committed"  # and the queue goes on
    queue.close()
    await asyncio.wait_for(sender, 5)
    assert queue.stored_total == 21 and queue.stored["dtmf_received"] == 21
