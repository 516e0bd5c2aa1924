"""``callhub publish [--redis-url URL] [FILE|-]``: commit events from JSON Lines.

Good lines commit even when others are bad; every bad line is reported with
its number and reason, and the exit status is 1 if any line failed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import BinaryIO, TextIO

from callhub.cli.status_line import StatusLine
from callhub.connections import connect_client, describe
from callhub.plurals import counted
from callhub.settings import Settings
from workers.commit.event_lines import LineError, NumberedEvent, read_event_lines
from workers.commit.publisher import CallPublisher, PublisherUnavailable

BATCH = 500


class PublishTally:
    def __init__(self) -> None:
        self.lines = 0
        self.committed = 0
        self.duplicate = 0
        self.failed = 0

    def summary(self) -> str:
        return (
            f"{counted(self.lines, 'event')}: {self.committed} committed, "
            f"{self.duplicate} already stored, {self.failed} failed"
        )


async def publish_file(
    settings: Settings,
    source: BinaryIO,
    *,
    retry_for_s: float = 10.0,
    progress_interval_s: float | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Commit every event of ``source``; return the process exit status."""
    client = connect_client(settings)
    # Lines were validated when they were read; the publisher need not again.
    publisher = CallPublisher(client, settings, validate=False, retry_for_s=retry_for_s)
    tally = PublishTally()
    status = StatusLine(err, interval_s=progress_interval_s)
    started = time.monotonic()

    def report(line: int, reason: str) -> None:
        status.clear()
        err.write(f"line {line}: {reason}\n")
        tally.failed += 1

    async def flush(batch: list[NumberedEvent]) -> None:
        outcomes = await publisher.commit_many([item.event for item in batch])
        for item, outcome in zip(batch, outcomes, strict=True):
            if outcome.status == "committed":
                tally.committed += 1
            elif outcome.status == "duplicate":
                tally.duplicate += 1
            else:
                report(item.line, f"{outcome.code}: {outcome.reason}")
        rate = tally.lines / max(time.monotonic() - started, 1e-9)
        status.update(f"publishing: {tally.summary()} ({rate:,.0f} events/s)")

    try:
        batch: list[NumberedEvent] = []
        for item in read_event_lines(_lines(source)):
            tally.lines += 1
            if isinstance(item, LineError):
                report(item.line, item.reason)
                continue
            batch.append(item)
            if len(batch) >= BATCH:
                await flush(batch)
                batch = []
        if batch:
            await flush(batch)
    except PublisherUnavailable as error:
        status.clear()
        where = describe(settings.redis_url)
        err.write(f"callhub publish: cannot reach Redis at {where}: {error}\n")
        err.write(f"callhub publish: stopped after {tally.summary()}\n")
        return 1
    finally:
        await client.aclose()
    status.clear()
    out.write(tally.summary() + "\n")
    return 1 if tally.failed else 0


def _lines(source: BinaryIO) -> Iterable[bytes]:
    yield from source
