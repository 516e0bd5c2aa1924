"""A real webhook receiver for the forwarder's tests: Starlette on uvicorn, on
127.0.0.1 on a free port, in a thread of its own (so a test may block, poll
Redis or run subprocesses while it answers).

Every request is verified with the ``standardwebhooks`` package, as a user's
backend would verify it; one that fails is answered 400 and recorded in
``bad_signatures``, which the tests assert stays empty. Each accepted request
is recorded (webhook-id, session, seq, the status answered); ``answer`` picks
the status (and headers) per request, so a test can play an outage.

A slow or stuck receiver: ``delay_s`` holds every request that long before
answering; ``hold()`` keeps every request from then on unanswered (each is
listed in ``waiting()``) until ``release()``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.polling import wait_until
from tests.support.processes import free_port


@dataclass(frozen=True)
class Received:
    webhook_id: str
    session_id: str
    seq: int
    status: int
    body: bytes
    headers: dict[str, str]


Answer = Callable[[Received], tuple[int, dict[str, str]]]


def always_ok(_: Received) -> tuple[int, dict[str, str]]:
    return 200, {}


@dataclass
class Receiver:
    secret: str
    answer: Answer = always_ok
    requests: list[Received] = field(default_factory=list)  # every verified request
    bad_signatures: list[str] = field(default_factory=list)
    url: str = ""
    delay_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _gate: asyncio.Event | None = None  # set while requests are held
    _loop: asyncio.AbstractEventLoop | None = None  # the server's, once a request came
    _waiting: list[Received] = field(default_factory=list)

    def delivered(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def hold(self) -> None:
        """Answer nothing from now on, until ``release()``."""
        with self._lock:
            if self._gate is None:
                self._gate = asyncio.Event()

    def release(self) -> None:
        """Answer the requests held, and the next ones at once."""
        with self._lock:
            gate, self._gate = self._gate, None
            loop = self._loop
        if gate is not None:
            if loop is not None:
                loop.call_soon_threadsafe(gate.set)
            else:
                gate.set()  # no request came: nobody waits on it

    def waiting(self) -> list[Received]:
        """The requests held now, unanswered (verified; status 0)."""
        with self._lock:
            return list(self._waiting)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            Webhook(self.secret).verify(body, headers, json_parse=False)
        except WebhookVerificationError as error:
            with self._lock:
                self.bad_signatures.append(f"{headers.get('webhook-id')}: {error}")
            return Response(status_code=400)
        probe = Received(headers["webhook-id"], headers["callhub-session-id"],
                         int(headers["callhub-seq"]), 0, body, headers)
        with self._lock:
            self._loop = asyncio.get_running_loop()
            gate = self._gate
            if gate is not None:
                self._waiting.append(probe)
        if gate is not None:
            try:
                await gate.wait()
            finally:
                with self._lock:
                    self._waiting.remove(probe)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status, extra = self.answer(probe)
        with self._lock:
            self.requests.append(Received(probe.webhook_id, probe.session_id, probe.seq, status,
                                          body, headers))
        return Response(status_code=status, headers=extra)


@contextmanager
def receiving(secret: str, answer: Answer = always_ok) -> Iterator[Receiver]:
    """A receiver served on 127.0.0.1 until the block ends."""
    receiver = Receiver(secret, answer)
    app = Starlette(routes=[Route("/hook", receiver._handle, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="the webhook receiver to listen")
        receiver.url = f"http://127.0.0.1:{port}/hook"
        yield receiver
    finally:
        receiver.release()  # a held request would keep the server from stopping
        server.should_exit = True
        thread.join(timeout=10)
