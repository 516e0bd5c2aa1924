"""QuietServer: uvicorn's Server, woken once a second instead of ten times.

uvicorn's main loop sleeps 0.1 s at a time to notice a stop request and, every
tenth wake-up, to refresh the ``Date`` header. On a replica that is otherwise
idle that is most of what it does: 0.2% of a core with no streams open, the
whole of its idle CPU (docs/performance.md). This loop sleeps until the next
whole second (the ``Date`` header is refreshed exactly as often, at the second
it changes) and is woken at once by a stop request, so a stop is noticed
sooner than before, not later.

``callhub serve`` runs it through ``uvicorn.run`` (``serving_quietly``), so
every worker process and uvicorn's own set-up are unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from collections.abc import Iterator
from types import FrameType

import uvicorn

# The module, not ``uvicorn.main`` (the package's name for its click command).
_UVICORN_MAIN = importlib.import_module("uvicorn.main")
# uvicorn's on_tick refreshes the Date header when the counter is a multiple of this.
_TICKS_PER_SECOND = 10
_COUNTER_WRAP = 864_000  # as uvicorn's own loop


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class QuietServer(uvicorn.Server):
    _loop: asyncio.AbstractEventLoop | None = None
    _waiter: asyncio.Future[None] | None = None

    async def main_loop(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(1.0 - time.time() % 1.0, _wake, waiter)
            if self.should_exit:  # asked to stop before the waiter existed
                _wake(waiter)
            await waiter
            timer.cancel()
            counter = (counter + _TICKS_PER_SECOND) % _COUNTER_WRAP
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        loop, waiter = self._loop, self._waiter
        if loop is not None and waiter is not None:
            # A signal handler: wake the loop through its own thread-safe path.
            loop.call_soon_threadsafe(_wake, waiter)


@contextlib.contextmanager
def serving_quietly() -> Iterator[None]:
    """``uvicorn.run`` inside this block serves with ``QuietServer``.

    ``uvicorn.run`` builds its Server itself, from the name in its module;
    this process's ``callhub serve`` is the only caller, and the name is put
    back on the way out.
    """
    previous = getattr(_UVICORN_MAIN, "Server")  # noqa: B009 (typed as a module: no Server)
    setattr(_UVICORN_MAIN, "Server", QuietServer)  # noqa: B010
    try:
        yield
    finally:
        setattr(_UVICORN_MAIN, "Server", previous)  # noqa: B010
