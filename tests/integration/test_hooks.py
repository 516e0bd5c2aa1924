"""Dialog hooks over real HTTP: a server this test starts on 127.0.0.1 (and stops)
answers, fails, stalls or talks nonsense; a hook's variables reach the call's
variables in Redis and Get Call."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from callhub import events as ev
from callhub.settings import Settings
from tests.support.paths import DATA
from tests.support.processes import free_port
from workers.commit.publisher import CallPublisher
from workers.dialog.clock import DialogClock, Pace
from workers.dialog.hooks import HookClient, HookFailed, HookRequest, HookSucceeded
from workers.dialog.runtime import CallContext, DialogCall
from workers.dialog.spec import HookSpec, load_dialog
from workers.simulator.back_office import serve_locally
from workers.simulator.callers import ScriptedCaller, SimulatedChannel

REQUEST = HookRequest(hook="lookup", session_id="call-1", dialog_name="helpdesk",
                      state="lookup_account", caller_id="+15551234567",
                      called_number="+18001234567", variables={"intent": "password_reset"})


class BackOffice:
    """A hook server whose answers the test chooses; it records what it was sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    def app(self) -> Starlette:
        async def lookup(request: Request) -> Response:
            self.received.append(msgspec.json.decode(await request.body()))
            return JSONResponse({"variables": {"customer_name": "Jane", "vip": True,
                                               "intent": None}, "extra": "ignored"})

        async def slow(request: Request) -> Response:
            await self.release.wait()
            return JSONResponse({})

        async def broken(request: Request) -> Response:
            return PlainTextResponse("down for maintenance", status_code=503)

        async def garbage(request: Request) -> Response:
            return PlainTextResponse("<html>hello</html>")

        async def nested(request: Request) -> Response:
            return JSONResponse({"variables": {"address": {"city": "Oslo"}}})

        return Starlette(routes=[
            Route(path, handler, methods=["POST"]) for path, handler in (
                ("/lookup", lookup), ("/slow", slow), ("/broken", broken),
                ("/garbage", garbage), ("/nested", nested),
            )
        ])


@pytest.fixture
async def office() -> AsyncIterator[tuple[BackOffice, str]]:
    back_office = BackOffice()
    async with serve_locally(back_office.app()) as url:
        yield back_office, url
        back_office.release.set()  # let a stalled handler finish so the server stops at once


@pytest.fixture
async def hooks(office: tuple[BackOffice, str]) -> AsyncIterator[HookClient]:
    async with httpx.AsyncClient() as http:
        yield HookClient(http, office[1])


async def test_a_hook_that_answers_returns_its_variables(
    office: tuple[BackOffice, str], hooks: HookClient
) -> None:
    outcome = await hooks.call(HookSpec(url="/lookup"), REQUEST, timeout_s=5)
    assert isinstance(outcome, HookSucceeded)
    assert outcome.status_code == 200
    assert outcome.variables == {"customer_name": "Jane", "vip": True, "intent": None}
    assert office[0].received == [msgspec.to_builtins(REQUEST)]


@pytest.mark.parametrize(
    ("path", "kind", "status"),
    [("/broken", "http_status", 503), ("/garbage", "invalid_response", 200),
     ("/nested", "invalid_response", 200), ("/missing", "http_status", 404)],
)
async def test_a_hook_that_fails_says_how(
    hooks: HookClient, path: str, kind: str, status: int
) -> None:
    outcome = await hooks.call(HookSpec(url=path), REQUEST, timeout_s=5)
    assert isinstance(outcome, HookFailed)
    assert (outcome.kind, outcome.status_code) == (kind, status)
    assert outcome.message


async def test_a_hook_that_does_not_answer_in_time_is_a_timeout(hooks: HookClient) -> None:
    outcome = await hooks.call(HookSpec(url="/slow"), REQUEST, timeout_s=0.3)
    assert isinstance(outcome, HookFailed)
    assert outcome.kind == "timeout" and outcome.status_code is None
    assert 250 <= outcome.duration_ms < 5000


async def test_a_hook_nobody_listens_on_is_a_connection_error() -> None:
    async with httpx.AsyncClient() as http:
        outcome = await HookClient(http).call(
            HookSpec(url=f"http://127.0.0.1:{free_port()}/lookup"), REQUEST, timeout_s=5)
    assert isinstance(outcome, HookFailed) and outcome.kind == "connection"


async def run_account_check(
    hooks: HookClient, aredis: aioredis.Redis, settings: Settings, session_id: str
) -> list[ev.AnyEvent]:
    dialog = load_dialog(DATA / "dialogs" / "account_check.toml")
    publisher = CallPublisher(aredis, settings)
    clock = DialogClock(Pace(math.inf), dialog.max_duration_s)
    channel = SimulatedChannel(ScriptedCaller([]), random.Random(1), clock)
    call = DialogCall(dialog, CallContext(session_id, "+15551234567", "+18001234567"),
                      channel, publisher, hooks, clock)
    summary = await call.run()
    assert summary.reason == "normal"
    entries = await aredis.xrange(settings.keyspace.call_events(session_id))
    return [ev.decode_event(fields[b"data"]) for _, fields in entries]


async def test_hook_variables_reach_the_call_through_the_commit(
    hooks: HookClient, aredis: aioredis.Redis, settings: Settings, api: httpx.AsyncClient
) -> None:
    events = await run_account_check(hooks, aredis, settings, "hooked-1")
    result = next(e for e in events if isinstance(e, ev.HookResult))
    assert (result.hook_name, result.state, result.status_code) == ("lookup", "check", 200)
    assert [t.to_state for t in events if isinstance(t, ev.StateTransition)] == ["check",
                                                                                 "known"]
    assert any(isinstance(e, ev.TtsStarted) and e.text == "Hello Jane." for e in events)
    call = (await api.get("/v1/calls/hooked-1")).json()
    # set_variable's intent, then the hook's patch: two new variables, one removed (null).
    assert call["variables"] == {"customer_name": "Jane", "vip": True}
    assert call["status"] == "terminated"


async def test_a_failing_hook_is_a_hook_error_and_takes_the_failure_transition(
    office: tuple[BackOffice, str], aredis: aioredis.Redis, settings: Settings
) -> None:
    async with httpx.AsyncClient() as http:
        broken = HookClient(http, office[1] + "/broken-base")  # every path answers 404
        events = await run_account_check(broken, aredis, settings, "hooked-2")
    error = next(e for e in events if isinstance(e, ev.HookError))
    assert (error.error_kind, error.status_code, error.hook_name) == ("http_status", 404,
                                                                      "lookup")
    assert [t.trigger_event for t in events if isinstance(t, ev.StateTransition)] == [
        "call_started", "hook_error"]
