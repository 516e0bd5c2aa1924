"""The pipelined Redis link on a fake transport: replies reach their own waiters
in order, one write per loop turn, and every failure (lost connection, garbage,
silence, an error reply) fails exactly the waiters it concerns, never hangs."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.store._resp_link import RedisLink


class FakeTransport:
    """Records writes; ``abort``/``close`` report the loss to the protocol, as asyncio does."""

    def __init__(self, previous: asyncio.BaseProtocol | None = None) -> None:
        self.writes: list[bytes] = []
        self.protocol: asyncio.BaseProtocol | None = previous
        self.closing = False

    def get_protocol(self) -> asyncio.BaseProtocol | None:
        return self.protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        assert not self.closing
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


class PreviousProtocol(asyncio.Protocol):
    lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def bulk(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%b\r\n" % (len(i), i) for i in items)


def make_link(timeout_s: float = 10.0) -> tuple[RedisLink, FakeTransport, list[RedisLink]]:
    lost: list[RedisLink] = []
    link = RedisLink(timeout_s, lost.append)
    transport = FakeTransport(PreviousProtocol())
    link.adopt(transport)  # type: ignore[arg-type]
    return link, transport, lost


async def test_replies_reach_their_waiters_in_order_and_one_write_carries_a_loop_turn() -> None:
    link, transport, _ = make_link()
    futures = [link.hgetall(f"k{n}".encode()) for n in range(3)]
    await asyncio.sleep(0)  # the flush runs
    assert transport.writes == [b"".join(b"*2\r\n$7\r\nHGETALL\r\n$2\r\nk%d\r\n" % n
                                         for n in range(3))]
    replies = bulk(b"n", b"0") + bulk(b"n", b"1", b"x", b"y") + b"*0\r\n"
    link.data_received(replies[:7])  # split anywhere: nothing is answered early
    assert not any(f.done() for f in futures)
    link.data_received(replies[7:])
    assert [await f for f in futures] == [{b"n": b"0"}, {b"n": b"1", b"x": b"y"}, {}]


async def test_a_cancelled_waiter_keeps_its_place() -> None:
    link, _, _ = make_link()
    doomed, kept = link.hgetall(b"a"), link.hgetall(b"b")
    doomed.cancel()
    link.data_received(bulk(b"f", b"a") + bulk(b"f", b"b"))
    assert await kept == {b"f": b"b"}


async def test_an_error_reply_fails_only_its_own_waiter() -> None:
    link, _, lost = make_link()
    wrong, loading, fine = link.hgetall(b"a"), link.hgetall(b"b"), link.hgetall(b"c")
    link.data_received(b"-WRONGTYPE no\r\n-LOADING wait\r\n" + bulk(b"f", b"c"))
    with pytest.raises(ResponseError):
        await wrong
    with pytest.raises(BusyLoadingError):  # a ConnectionError: the API answers 503
        await loading
    assert await fine == {b"f": b"c"}
    assert link.open and not lost


async def test_a_lost_connection_fails_every_waiter_and_tells_redis_py_and_the_owner() -> None:
    link, _, lost = make_link()
    futures = [link.hgetall(b"a"), link.hgetall(b"b")]
    link.data_received(bulk(b"f", b"a"))
    link.connection_lost(ConnectionResetError("reset"))
    assert await futures[0] == {b"f": b"a"}
    with pytest.raises(RedisConnectionError):
        await futures[1]
    assert lost == [link] and not link.open
    with pytest.raises(RedisConnectionError):  # a read after the loss fails at once
        await link.hgetall(b"c")


async def test_redis_py_hears_the_close() -> None:
    previous = PreviousProtocol()
    link = RedisLink(10.0, lambda _: None)
    link.adopt(FakeTransport(previous))  # type: ignore[arg-type]
    link.connection_lost(None)
    assert previous.lost


async def test_garbage_fails_the_link() -> None:
    link, transport, lost = make_link()
    future = link.hgetall(b"a")
    link.data_received(b"?what\r\n")
    with pytest.raises(RedisConnectionError, match="unreadable"):
        await future
    assert transport.closing and lost == [link]


async def test_a_reply_nobody_asked_for_fails_the_link() -> None:
    link, transport, lost = make_link()
    link.data_received(bulk(b"f", b"a"))
    assert transport.closing and lost == [link]


async def test_a_silent_redis_fails_the_waiters_after_the_timeout() -> None:
    link, transport, lost = make_link(timeout_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    future = link.hgetall(b"a")
    with pytest.raises(RedisTimeoutError):
        await asyncio.wait_for(future, 5)  # the bound of this test, not of the link
    assert 0.05 <= loop.time() - started < 2
    assert transport.closing and lost == [link]


async def test_the_timer_follows_the_oldest_command_in_flight() -> None:
    link, _, lost = make_link(timeout_s=0.2)
    loop = asyncio.get_running_loop()
    first = link.hgetall(b"a")
    link.data_received(bulk(b"f", b"a"))
    assert await first == {b"f": b"a"}
    # Answered in time, again and again: never timed out, though the link is
    # older than its timeout.
    deadline = loop.time() + 0.5
    while loop.time() < deadline:
        future = link.hgetall(b"b")
        await asyncio.sleep(0.01)
        link.data_received(bulk(b"f", b"b"))
        assert await future == {b"f": b"b"}
    assert link.open and not lost
