"""Starting an ASGI ``send`` where the data is, and finishing it in the stream's task.

The dispatcher hands a live subscriber its chunk while the stream's task is
parked waiting for one. Waking that task to write costs a future, a scheduled
callback and a task step per delivery, and the write then happens one loop
turn later; at 1,000 subscribers these were a large part of the replica's CPU
and of the steady-state latency (``bench/fanout.py``). So the dispatcher
starts the write itself: ``start_send`` runs ``send(message)`` up to its first
suspension. With uvicorn a body write to a client that keeps up never
suspends (the bytes go to the socket at once), and that is the end of it. A
send that has to wait (the server's flow control: the client is slow) is
returned as a ``PendingSend``, which the stream's task awaits to finish it,
under the write watchdog like every write; an error is raised there too. The
dispatcher therefore never waits on a client (I5).

The awaitable protocol used is the plain one (``__await__``, ``send``,
``throw``), so any ASGI server works: one whose send always suspends simply
has every write finished in the stream's task, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any

from starlette.types import Message, Send


class PendingSend:
    """The rest of a send that could not finish at once; await it in the stream's task."""

    __slots__ = ("_error", "_steps", "_waiting_on")

    def __init__(self, steps: Generator[Any, None, Any] | None, waiting_on: Any,
                 error: Exception | None = None) -> None:
        self._steps = steps
        self._waiting_on = waiting_on
        self._error = error

    def __await__(self) -> Generator[Any, None, None]:
        if self._error is not None:
            raise self._error
        steps, waiting_on = self._steps, self._waiting_on
        assert steps is not None
        while True:
            try:
                # What the send waits on goes to the task awaiting us, which
                # resumes us when it is done, or throws its cancellation in.
                yield waiting_on
            except BaseException as error:  # a cancel, or close(): passed on into the send
                try:
                    waiting_on = steps.throw(error)
                except StopIteration:
                    return
                continue
            try:
                waiting_on = steps.send(None)
            except StopIteration:
                return


def start_send(send: Send, message: Message) -> PendingSend | None:
    """Run ``send(message)`` as far as it goes without waiting.

    None if it finished; otherwise what is left of it (or the error it raised),
    to be awaited by the task that owns the stream.
    """
    awaitable: Awaitable[None] = send(message)
    steps = awaitable.__await__()
    try:
        waiting_on = steps.send(None)
    except StopIteration:
        return None
    except Exception as error:  # the stream's task raises it, not the dispatcher
        return PendingSend(None, None, error)
    return PendingSend(steps, waiting_on)
