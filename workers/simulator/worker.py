"""SimulatedWorker: many simulated calls in one asyncio process.

The library core of ``callhub worker --simulate`` and of ``callhub demo``: no
signal handling, no output. ``dialogs`` default to the bundled ones
(``workers/simulator/dialogs``: helpdesk, billing_menu). Start it, read its ``stats`` (or
``describe()``) whenever you like, ``stop()`` it::

    worker = SimulatedWorker(redis, settings, rate=2, speed=1, seed=7)  # bundled dialogs
    task = asyncio.create_task(worker.run())
    ...
    worker.stop()          # no new calls; active calls end (system_hangup) promptly
    stats = await task

Calls arrive as a Poisson process of ``rate`` calls per (real) second, up to
``calls`` of them (``None``: until stopped). Each call gets its own
``random.Random`` drawn in order from ``Random(seed)`` (``seed`` None: a random
one, kept in ``worker.seed``), which picks its dialog, caller number and
behaviour: a run with the same seed makes the same calls, whatever the timing.
``speed`` scales dialog time (``workers.dialog.clock``).

Every event goes through one ``CommitQueue`` (group commit) into
``CallPublisher``, so seq, validation and idempotency are the publisher's.
The dialogs' ``/path`` hooks go to ``hook_base_url``, or, when it is None, to
the simulated back office this worker starts on 127.0.0.1 for the run.

INTEGRATION POINT (leases and reaper, DESIGN I7): ``leases`` is told of every
call this worker holds (``hold`` once its ``call_started`` is stored,
``release`` when it is over) -- a ``workers.commit.leases.LeaseKeeper`` fits -- and
``companions`` are long-running loops (``run``/``stop``: the ``LeaseKeeper``,
a ``workers.commit.reaper.Reaper``) started with the worker and stopped after its last
call has ended. ``worker_command.lease_companions`` builds both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import httpx
import msgspec

from callhub.connections import RedisClient
from callhub.plurals import counted
from callhub.settings import Settings
from workers.commit.commit_queue import CommitQueue
from workers.commit.publisher import COMMIT_SCRIPT, CallPublisher, PublisherUnavailable
from workers.dialog.clock import DialogClock, Pace
from workers.dialog.hooks import HookClient
from workers.dialog.runtime import CallContext, CallSummary, DialogCall
from workers.dialog.spec import Dialog
from workers.metrics import WorkerMetrics
from workers.simulator.back_office import serve_locally, simulated_back_office
from workers.simulator.bundled_dialogs import bundled_dialogs
from workers.simulator.callers import CallerProfile, RandomCaller, SimulatedChannel

log = logging.getLogger("callhub.worker")


class CallLeases(Protocol):
    """Keeps the leases of the calls a worker holds (``workers.commit.leases.LeaseKeeper``)."""

    def hold(self, session_id: str) -> None: ...

    def release(self, session_id: str) -> None: ...


class Companion(Protocol):
    """A loop that runs beside the calls (lease renewal, a reaper)."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class WorkerStats(msgspec.Struct):
    """What the worker has done so far (read it any time; it is live)."""

    started: int = 0  # calls whose call_started was stored
    active: int = 0  # calls running now
    done: int = 0  # calls over (cleanly or not)
    events: int = 0  # events stored
    errors: int = 0  # calls this worker could not end (no call_terminated of its own)
    error_reasons: dict[str, int] = {}  # why, in a few words each
    reasons: dict[str, int] = {}  # call_terminated reasons

    def describe_errors(self) -> str:
        """``0 errors``, or ``3 errors (most: redis unreachable, 2)``: the count and
        its most common reason, so a status line says what is going wrong."""
        text = counted(self.errors, "error")
        if self.error_reasons:
            reason, times = max(self.error_reasons.items(), key=lambda item: item[1])
            text += f" (most: {reason}, {times})" if len(self.error_reasons) > 1 \
                else f" ({reason})"
        return text
    event_types: dict[str, int] = {}  # events stored, by type


def called_number(dialog: Dialog) -> str:
    """The number callers dial to reach ``dialog`` (stable per dialog name)."""
    return f"+1800{zlib.crc32(dialog.name.encode()) % 10_000_000:07d}"


class SimulatedWorker:
    """Runs simulated calls through dialogs, committing every event to Redis."""

    def __init__(
        self,
        redis: RedisClient,
        settings: Settings,
        dialogs: Sequence[Dialog] | None = None,
        *,
        rate: float = 1.0,
        calls: int | None = None,
        speed: float = 1.0,
        seed: int | None = None,
        hook_base_url: str | None = None,
        profile: CallerProfile | None = None,
        session_prefix: str | None = None,
        leases: CallLeases | None = None,
        companions: Sequence[Companion] = (),
        stop_grace_s: float = 10.0,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        dialogs = bundled_dialogs() if dialogs is None else dialogs
        if not dialogs:
            raise ValueError("a worker needs at least one dialog")
        if not rate > 0:
            raise ValueError(f"rate must be more than 0, got {rate}")
        self._redis = redis
        self._settings = settings
        self._dialogs = list(dialogs)
        self._rate = rate
        self._calls = calls
        self.seed = random.SystemRandom().randrange(2**32) if seed is None else seed
        self._seeds = random.Random(self.seed)
        self._arrivals = random.Random(self._seeds.getrandbits(64))
        self._hook_base_url = hook_base_url
        self._profile = profile
        self._prefix = session_prefix or f"sim-{uuid.uuid4().hex[:10]}"
        self._leases = leases
        self._companions = list(companions)
        self._stop_grace_s = stop_grace_s
        self._metrics = metrics
        self._stopping = asyncio.Event()
        self._pace = Pace(speed, self._stopping)
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: set[str] = set()
        self._queue: CommitQueue | None = None
        self._stats = WorkerStats()
        self._reasons: Counter[str] = Counter()
        self._error_reasons: Counter[str] = Counter()

    @property
    def stats(self) -> WorkerStats:
        stats = self._stats
        if self._queue is not None:
            stats.events = self._queue.stored_total
            stats.event_types = dict(self._queue.stored)
        stats.reasons = dict(self._reasons)
        stats.error_reasons = dict(self._error_reasons)
        return stats

    def describe(self) -> str:
        """One line for a status display: calls, events, errors."""
        stats = self.stats
        stopping = " (stopping)" if self.stopping else ""
        return (f"calls: {stats.active} active, {stats.done} done · "
                f"{counted(stats.events, 'event')} · {stats.describe_errors()}{stopping}")

    @property
    def held_calls(self) -> frozenset[str]:
        """Session ids of the calls this worker is running now."""
        return frozenset(self._held)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Take no new calls and end the active ones (``system_hangup``) promptly."""
        self._stopping.set()

    async def run(self) -> WorkerStats:
        """Run calls until ``calls`` have ended or ``stop()``; the final stats."""
        # Load the commit script before the first EVALSHA: a NOSCRIPT reply costs
        # a round trip on Redis, and fakeredis's TcpFakeServer (the demo's
        # embedded Redis) drops the connection after one.
        await self._redis.script_load(COMMIT_SCRIPT)
        publisher = CallPublisher(self._redis, self._settings, metrics=self._metrics)
        queue = self._queue = CommitQueue(publisher)
        flusher = asyncio.create_task(queue.run(), name="callhub-commit-queue")
        companions = [asyncio.create_task(c.run()) for c in self._companions]
        try:
            async with contextlib.AsyncExitStack() as stack:
                base_url = self._hook_base_url
                if base_url is None and self._uses_relative_hooks():
                    base_url = await stack.enter_async_context(
                        serve_locally(simulated_back_office(slow_s=self._slowest_hook_s() + 1))
                    )
                http = await stack.enter_async_context(httpx.AsyncClient(
                    limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)))
                hooks = HookClient(http, base_url)
                await self._admit_calls(queue, hooks)
                await self._finish_calls()
        finally:
            for companion in self._companions:
                companion.stop()
            await asyncio.gather(*companions, return_exceptions=True)
            queue.close()
            await flusher
        return self.stats

    def _uses_relative_hooks(self) -> bool:
        return any(h.url.startswith("/") for d in self._dialogs for h in d.hooks.values())

    def _slowest_hook_s(self) -> float:
        timeouts = [h.timeout_s for d in self._dialogs for h in d.hooks.values()]
        return max((self._pace.real_timeout(t) for t in timeouts), default=1.0)

    async def _admit_calls(self, queue: CommitQueue, hooks: HookClient) -> None:
        # Arrivals are scheduled on absolute times, so a busy event loop delays
        # calls but does not lower the rate: late arrivals start at once.
        loop = asyncio.get_running_loop()
        arrival = loop.time()
        number = 0
        while not self._stopping.is_set() and (self._calls is None or number < self._calls):
            number += 1
            self._start_call(number, queue, hooks)
            if self._calls is not None and number >= self._calls:
                break
            arrival += self._arrivals.expovariate(self._rate)
            delay = arrival - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            else:
                await asyncio.sleep(0)

    def _start_call(self, number: int, queue: CommitQueue, hooks: HookClient) -> None:
        rng = random.Random(self._seeds.getrandbits(64))
        dialog = rng.choice(self._dialogs)
        caller_id = f"+1{rng.randint(2, 9)}{rng.randrange(10**9):09d}"
        context = CallContext(
            session_id=f"{self._prefix}-{number:06d}",
            caller_id=caller_id,
            called_number=called_number(dialog),
            sip_headers={"X-Call-Simulator": "callhub"},
        )
        max_duration_s = min(dialog.max_duration_s, self._settings.max_call_ms / 1000)
        clock = DialogClock(self._pace, max_duration_s)
        channel = SimulatedChannel(RandomCaller(rng, dialog, self._profile), rng, clock)
        call = DialogCall(dialog, context, channel, queue, hooks, clock,
                          on_started=self._hold)
        task = asyncio.create_task(self._run_call(call), name=f"call {context.session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _hold(self, session_id: str) -> None:
        self._held.add(session_id)
        self._stats.started += 1
        if self._leases is not None:
            self._leases.hold(session_id)

    async def _run_call(self, call: DialogCall) -> None:
        session_id = call.context.session_id
        self._stats.active += 1
        summary: CallSummary | None = None
        failure = "ended without its call_terminated"
        try:
            summary = await call.run()
        except PublisherUnavailable as error:
            failure = "redis unreachable"
            log.warning("call %s abandoned, Redis is unreachable: %s", session_id, error)
        except Exception as error:
            failure = f"{type(error).__name__} (see the log)"
            log.exception("call %s failed", session_id)
        finally:
            self._stats.active -= 1
            self._stats.done += 1
            self._held.discard(session_id)
            if self._leases is not None:
                self._leases.release(session_id)
        if summary is None or summary.reason is None:
            if summary is not None and summary.problem:
                failure = summary.problem.partition(":")[0]  # e.g. "call_terminated refused"
            self._stats.errors += 1
            self._error_reasons[failure] += 1
        else:
            self._reasons[summary.reason] += 1

    async def _finish_calls(self) -> None:
        """Wait for every call to end; once stopping, for at most the stop grace."""
        stopped = asyncio.create_task(self._stopping.wait())
        try:
            while self._tasks and not self._stopping.is_set():
                await asyncio.wait({*self._tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if self._tasks:
                _, late = await asyncio.wait(set(self._tasks), timeout=self._stop_grace_s)
                for task in late:  # a last resort: calls stuck past the grace period
                    log.warning("%s did not end within %.0fs of the stop; cancelling",
                                task.get_name(), self._stop_grace_s)
                    task.cancel()
                if late:
                    await asyncio.wait(late, timeout=5)
        finally:
            stopped.cancel()
