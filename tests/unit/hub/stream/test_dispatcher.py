"""The dispatcher: routing by index, one chunk per subscriber per batch, groups,
overflow, and nothing left behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from callhub.cursor import Cursor
from callhub.event_filter import EventFilter
from hub.stream import dispatcher as dispatcher_module
from hub.stream.dispatcher import DUTY_WINDOW_S, Dispatcher
from hub.stream.subscriber import CLOSED_OVERFLOW, Subscriber
from tests.support.polling import async_wait_until


def entry(n: int, sid: str, dialog: str = "helpdesk", kind: str = "dtmf_received") -> tuple:
    data = b'{"n":%d}' % n
    return (f"{n}-0".encode(), {b"type": kind.encode(), b"session_id": sid.encode(),
                                b"dialog": dialog.encode(), b"seq": b"1", b"data": data})


def subscriber(max_bytes: int = 1 << 20, **filters: object) -> Subscriber:
    return Subscriber(EventFilter(**filters), max_bytes=max_bytes)  # type: ignore[arg-type]


def test_each_subscriber_gets_its_matching_frames_as_one_chunk_per_batch() -> None:
    dispatcher = Dispatcher(1)
    everyone, one_call, billing = subscriber(), subscriber(session_id="a"), subscriber(
        dialog_name="billing")
    typed = subscriber(event_types=frozenset({b"call_started"}))
    for s in (everyone, one_call, billing, typed):
        dispatcher.add(s)
    dispatcher.dispatch(0, [entry(1, "a"), entry(2, "b", "billing"), entry(3, "a"),
                            entry(4, "c", kind="call_started")])
    assert everyone.take().count(b"event: ") == 4
    assert one_call.take().count(b"data: ") == 2
    assert billing.take().count(b'{"n":2}') == 1
    assert typed.take().count(b"event: call_started") == 1
    assert everyone.take() == b""  # one chunk held everything
    assert dispatcher.deliveries == 8
    assert dispatcher.positions == [(4, 0)]


def test_subscribers_with_the_same_filter_share_one_chunk() -> None:
    dispatcher = Dispatcher(1)
    members = [subscriber(dialog_name="helpdesk") for _ in range(3)]
    for s in members:
        dispatcher.add(s)
    dispatcher.dispatch(0, [entry(1, "a"), entry(2, "b")])
    chunks = [s.take() for s in members]
    assert chunks[0] is chunks[1] is chunks[2]


def test_a_scoped_subscriber_sees_only_its_dialogs() -> None:
    dispatcher = Dispatcher(1)
    scoped = subscriber(scope=frozenset({"helpdesk"}))
    dispatcher.add(scoped)
    dispatcher.dispatch(0, [entry(1, "a", "billing"), entry(2, "b", "helpdesk")])
    chunk = scoped.take()
    assert b'{"n":2}' in chunk and b'{"n":1}' not in chunk


def test_an_overflowing_subscriber_is_closed_and_the_others_go_on() -> None:
    dispatcher = Dispatcher(1)
    small, big = subscriber(max_bytes=100), subscriber()
    dispatcher.add(small)
    dispatcher.add(big)
    dispatcher.dispatch(0, [entry(n, "a") for n in range(1, 20)])
    assert small.closed == CLOSED_OVERFLOW and small.take() == b""
    assert big.take().count(b"event: ") == 19


def test_removing_subscribers_leaves_no_index_entry() -> None:
    dispatcher = Dispatcher(2)
    subs = [subscriber(session_id="a"), subscriber(dialog_name="x"), subscriber(),
            subscriber(scope=frozenset({"x", "y"})), subscriber(session_id="a")]
    for s in subs:
        dispatcher.add(s)
    assert dispatcher.count == 5
    for s in subs:
        dispatcher.remove(s)
        dispatcher.remove(s)  # twice is harmless
    assert dispatcher.count == 0
    assert dispatcher._groups == {}
    assert all(not buckets for buckets in dispatcher._index.values())


async def test_a_resume_waits_until_the_readers_reach_its_cursor() -> None:
    """A cursor from a replica whose readers were ahead: the wait ends when this
    replica's readers pass it, so no live event between the two reaches the
    client again."""
    dispatcher = Dispatcher(1)
    dispatcher.start_at(0, (1, 0))
    dispatcher.dispatch(0, [entry(2, "a")])
    ahead = Cursor(((4, 0),))
    assert dispatcher.has_reached(Cursor(((2, 0),)))
    assert not dispatcher.has_reached(ahead)

    waiting = asyncio.ensure_future(dispatcher.reach(ahead, timeout_s=5))
    await asyncio.sleep(0)
    dispatcher.dispatch(0, [entry(3, "a")])
    await asyncio.sleep(0)
    assert not waiting.done()
    dispatcher.dispatch(0, [entry(4, "a"), entry(5, "a")])
    assert await waiting is True
    assert dispatcher.cursor().positions[0] == (5, 0)


async def test_a_cursor_the_readers_never_reach_gives_up_at_the_deadline() -> None:
    dispatcher = Dispatcher(2)
    dispatcher.start_at(0, (1, 0))
    dispatcher.start_at(1, (1, 0))
    assert await dispatcher.reach(Cursor(((9, 0), None)), timeout_s=0.05) is False
    assert await dispatcher.reach(Cursor((None, (1, 0))), timeout_s=0.05) is True


class CountingSubscriber(Subscriber):
    """A subscriber that keeps each chunk it is handed."""

    __slots__ = ("pushed",)

    def __init__(self, stream_filter: EventFilter, *, max_bytes: int) -> None:
        super().__init__(stream_filter, max_bytes=max_bytes)
        self.pushed: list[bytes] = []

    def push(self, chunk: bytes) -> None:
        self.pushed.append(chunk)


async def test_batches_of_several_shards_in_one_loop_turn_go_out_as_one_chunk() -> None:
    dispatcher = Dispatcher(3)
    for shard in range(3):
        dispatcher.start_at(shard, (1, 0))
    everyone, one_call = CountingSubscriber(EventFilter(), max_bytes=1 << 20), \
        subscriber(session_id="b")
    dispatcher.add(everyone)
    dispatcher.add(one_call)
    loop = asyncio.get_running_loop()
    pushed = everyone.pushed
    dispatcher.dispatch_soon(0, [entry(2, "a")], loop)
    dispatcher.dispatch_soon(1, [entry(3, "b"), entry(4, "b")], loop)
    dispatcher.dispatch_soon(2, [entry(5, "c")], loop)
    assert pushed == [] and dispatcher.cursor().positions == ((1, 0),) * 3
    await asyncio.sleep(0)  # the end of the turn
    assert len(pushed) == 1 and pushed[0].count(b"event: ") == 4
    assert one_call.take().count(b"event: ") == 2
    assert dispatcher.cursor().positions == ((2, 0), (4, 0), (5, 0))
    assert dispatcher.deliveries == 6


async def test_a_subscriber_joining_before_the_flush_gets_only_what_follows() -> None:
    """The I4 seam with a flush due: frames routed before the subscriber joined
    go to the others, and the cursor it joins at is past them."""
    dispatcher = Dispatcher(2)
    dispatcher.start_at(0, (1, 0))
    dispatcher.start_at(1, (1, 0))
    early, late = subscriber(), subscriber()
    dispatcher.add(early)
    loop = asyncio.get_running_loop()
    dispatcher.dispatch_soon(0, [entry(2, "a")], loop)
    joined = dispatcher.add(late)
    assert joined.positions == ((2, 0), (1, 0))
    dispatcher.dispatch_soon(1, [entry(3, "b")], loop)
    await asyncio.sleep(0)
    assert early.take().count(b"event: ") == 2
    assert late.take().count(b"event: ") == 1


class SlowSubscriber(CountingSubscriber):
    """Takes ``cost_s`` per push: what a replica writing to many clients spends
    (30 ms: more than a quarter of the 100 ms the busy share is taken over)."""

    cost_s = 0.03

    def push(self, chunk: bytes) -> None:
        time.sleep(self.cost_s)
        super().push(chunk)


def lingering(linger_s: float, cost_s: float = SlowSubscriber.cost_s,
              ) -> tuple[Dispatcher, CountingSubscriber]:
    dispatcher = Dispatcher(1, linger_s=linger_s)
    dispatcher.start_at(0, (1, 0))
    slow = SlowSubscriber(EventFilter(), max_bytes=1 << 20)
    slow.cost_s = cost_s
    dispatcher.add(slow)
    return dispatcher, slow


async def test_an_idle_replica_writes_a_lone_event_at_the_end_of_the_turn() -> None:
    dispatcher, slow = lingering(0.05)
    dispatcher.dispatch_soon(0, [entry(2, "a")], asyncio.get_running_loop())
    await asyncio.sleep(0)
    assert len(slow.pushed) == 1 and dispatcher.lingered == 0


async def test_a_busy_replica_lets_the_next_events_gather_into_one_chunk() -> None:
    """Hand-overs took over a quarter of the last 100 ms: the next one waits
    the linger, and what arrives meanwhile joins it."""
    dispatcher, slow = lingering(0.05)
    loop = asyncio.get_running_loop()
    dispatcher.dispatch_soon(0, [entry(2, "a")], loop)
    await asyncio.sleep(0)
    assert len(slow.pushed) == 1
    dispatcher.dispatch_soon(0, [entry(3, "a")], loop)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    dispatcher.dispatch_soon(0, [entry(4, "a")], loop)
    assert len(slow.pushed) == 1 and dispatcher.cursor().positions == ((2, 0),)
    await async_wait_until(lambda: len(slow.pushed) == 2, what="the lingered hand-over")
    assert slow.pushed[1].count(b"event: ") == 2
    assert dispatcher.cursor().positions == ((4, 0),)
    assert dispatcher.lingered == 1


async def test_events_close_together_on_a_lightly_loaded_replica_go_out_at_once() -> None:
    """A 5 ms hand-over followed at once by the next event is not a busy
    replica (a share of 5% of its time), however short the gap."""
    await each_goes_out_in_its_own_turn(*lingering(0.05, cost_s=0.005), events=3)


async def each_goes_out_in_its_own_turn(dispatcher: Dispatcher, slow: CountingSubscriber, *,
                                        events: int) -> None:
    loop = asyncio.get_running_loop()
    for n in range(2, 2 + events):
        dispatcher.dispatch_soon(0, [entry(n, "a")], loop)
        await asyncio.sleep(0)
        assert len(slow.pushed) == n - 1
    assert dispatcher.lingered == 0


def busy_then_lingering() -> tuple[Dispatcher, CountingSubscriber]:
    """A slow hand-over of entry 2, then entry 3 routed and left to linger."""
    dispatcher, slow = lingering(0.05)
    loop = asyncio.get_running_loop()
    dispatcher.dispatch(0, [entry(2, "a")])
    dispatcher.dispatch_soon(0, [entry(3, "a")], loop)
    assert len(slow.pushed) == 1 and dispatcher.lingered == 1
    return dispatcher, slow


class _TenWindowsLater:
    """The clock the dispatcher reads, ten busy-share windows on: a quiet spell
    without waiting one out."""

    @staticmethod
    def perf_counter() -> float:
        return time.perf_counter() + 10 * DUTY_WINDOW_S


async def test_a_replica_that_was_busy_writes_at_once_again_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dispatcher, slow = busy_then_lingering()
    loop = asyncio.get_running_loop()
    await async_wait_until(lambda: len(slow.pushed) == 2, what="the lingered hand-over")
    # Quiet for ten windows: the busy share decays below half the threshold.
    monkeypatch.setattr(dispatcher_module, "time", _TenWindowsLater)
    dispatcher.dispatch_soon(0, [entry(4, "a")], loop)
    await asyncio.sleep(0)
    assert len(slow.pushed) == 3 and dispatcher.lingered == 1


async def test_no_linger_when_it_is_set_to_zero() -> None:
    await each_goes_out_in_its_own_turn(*lingering(0.0), events=2)


async def test_a_subscriber_joining_during_a_linger_gets_only_what_follows() -> None:
    """The I4 seam holds with a lingering hand-over: joining hands it over now."""
    dispatcher, slow = busy_then_lingering()
    loop = asyncio.get_running_loop()
    late = subscriber()
    assert dispatcher.add(late).positions == ((3, 0),)
    assert len(slow.pushed) == 2
    dispatcher.dispatch_soon(0, [entry(4, "a")], loop)
    await async_wait_until(lambda: len(slow.pushed) == 3, what="the next hand-over")
    assert late.take().count(b"event: ") == 1
