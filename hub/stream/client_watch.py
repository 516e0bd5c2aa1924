"""Noticing that a stream's client went away, without a task of its own.

An event stream learns of a vanished client only from ASGI ``receive()``
(``http.disconnect``): uvicorn's ``send`` to a closed connection returns
quietly. Waiting on ``receive()`` in a task of its own cost every open stream
a Task, its entry in asyncio's set of all tasks, a copied context and a
parked coroutine, about 1 KB of the ~13 KB an idle stream held
(docs/performance.md). ``ClientWatch`` drives the ``receive()`` awaitable
itself: it steps it up to the future it waits on and steps it again from that
future's done-callback, the way a task would, so an idle stream holds one
small object and a callback. The awaitable protocol used is the plain one
(``__await__``, a yielded future), so any ASGI server works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any

from starlette.types import Receive


class ClientWatch:
    """Calls ``on_left`` once the client has gone (or ``receive`` failed)."""

    __slots__ = ("_on_left", "_receive", "_steps")

    def __init__(self, receive: Receive, on_left: Callable[[], None]) -> None:
        self._receive = receive
        self._on_left = on_left
        self._steps: Generator[Any, None, Any] | None = None
        self._next()

    def _next(self) -> None:
        self._steps = self._receive().__await__()
        self._step(None)

    def _step(self, _: object) -> None:
        steps = self._steps
        if steps is None:
            return
        while True:
            try:
                waiting_on = steps.send(None)
            except StopIteration as done:
                message = done.value
                if message is not None and message.get("type") != "http.disconnect":
                    # Another message (a request body): keep listening.
                    steps = self._steps = self._receive().__await__()
                    continue
                break
            except (Exception, asyncio.CancelledError):  # receive failed: nothing more comes
                break
            if waiting_on is None:  # a bare yield: step again (asyncio.sleep(0))
                continue
            waiting_on._asyncio_future_blocking = False  # as a task does
            waiting_on.add_done_callback(self._step)
            return
        self._steps = None
        self._on_left()

    def cancel(self) -> None:
        """The stream ended first: stop listening (the receive is closed)."""
        steps, self._steps = self._steps, None
        if steps is not None:
            steps.close()
