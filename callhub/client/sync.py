"""``callhub.client.sync``: the client without async, for scripts and notebooks.

The async client runs on an event loop in a thread of its own, so this works
where a loop is already running (a Jupyter notebook) as well as where none is::

    from callhub.client.sync import CallhubClient

    with CallhubClient("http://127.0.0.1:8080") as hub:
        for call in hub.list_calls(dialog_name="helpdesk"):
            print(call.session_id, call.current_state)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from callhub.call_summary import CallSummary
from callhub.client import hub_client
from callhub.client.event_stream import EventStream, StreamItem
from callhub.client.models import Call, CallPage, ExportedCall
from callhub.events import AnyEvent
from callhub.transcript import Transcript

T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="callhub-client",
                                        daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self.run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None and self.loop.is_running():  # not after close()
                self.run(closer())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


async def _next(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


class SyncEventStream:
    """``EventStream`` without async: iterate it; ``ack()`` checkpoints."""

    def __init__(self, stream: EventStream, loop: _LoopThread) -> None:
        self._stream = stream
        self._loop = loop

    @property
    def cursor(self) -> str:
        return self._stream.cursor

    def __iter__(self) -> Iterator[StreamItem]:
        return self._loop.iterate(aiter(self._stream))

    def ack(self) -> None:
        self._loop.run(self._stream.ack())


class CallhubClient:
    """The same methods as ``callhub.client.CallhubClient``, returning plain values."""

    def __init__(self, url: str, **options: Any) -> None:
        self._loop = _LoopThread()
        try:
            self._client = self._loop.run(_make(url, options))
        except BaseException:
            self._loop.stop()
            raise

    def __enter__(self) -> CallhubClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self._client.aclose())
        self._loop.stop()

    def events(self, **options: Any) -> SyncEventStream:
        return SyncEventStream(self._client.events(**options), self._loop)

    def get_call(self, session_id: str) -> Call:
        return self._loop.run(self._client.get_call(session_id))

    def list_call_pages(self, **filters: Any) -> Iterator[CallPage]:
        return self._loop.iterate(self._client.list_call_pages(**filters))

    def list_calls(self, **filters: Any) -> Iterator[Call]:
        return self._loop.iterate(self._client.list_calls(**filters))

    def call_events(self, session_id: str, **options: Any) -> Iterator[AnyEvent]:
        return self._loop.iterate(self._client.call_events(session_id, **options))

    def export(self, **options: Any) -> Iterator[ExportedCall]:
        return self._loop.iterate(self._client.export(**options))

    def transcript(self, session_id: str) -> Transcript:
        return self._loop.run(self._client.transcript(session_id))

    def summary(self, session_id: str) -> CallSummary:
        return self._loop.run(self._client.summary(session_id))


async def _make(url: str, options: dict[str, Any]) -> hub_client.CallhubClient:
    """The async client, made on the loop that will use it."""
    return hub_client.CallhubClient(url, **options)
