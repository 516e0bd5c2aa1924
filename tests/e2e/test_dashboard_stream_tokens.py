"""The dashboard keeps its streams through stream tokens that run out: a real
headless Chromium against `callhub serve` with API keys and 3-second tokens
(``CALLHUB_STREAM_TOKEN_TTL``), and a real redis-server.

Events are committed before the first token expires, after several renewals,
and while the hub is down for longer than a token lives (the reconnect must not
reuse the dead token). The page must show every event exactly once, and every
EventSource it made must have been handed each event at most once — the
renewals resume from the last id seen, they do not replay — with no 401 in the
hub's log.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from selenium.webdriver.chrome.webdriver import WebDriver

from callhub.events import CallStarted, CallTerminated, DtmfReceived, Event, StateTransition
from callhub.settings import Settings
from tests.support.browser import script_errors, wait_for
from tests.support.processes import HubProcess, free_port, start_hub
from workers.commit.publisher import CallPublisher

API_KEY = "chk_stream-token-renewal-key"
TTL_S = 3
# Every EventSource the page makes, and the id of each event each one dispatched:
# installed before the page's own script runs (DevTools scripts are not subject
# to the page's Content-Security-Policy).
RECORDER = """
(() => {
  const Native = window.EventSource;
  const made = window.__sources = [];
  let delivered = 0;
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      this.__record = { url: String(url), ids: [], deliveredBefore: delivered };
      made.push(this.__record);
    }
    addEventListener(type, listener, options) {
      const record = this.__record;
      super.addEventListener(type, (event) => {
        if (typeof event.data === "string") {
          try { record.ids.push(JSON.parse(event.data).event_id || ""); delivered += 1; }
          catch { /* not JSON */ }
        }
        listener(event);
      }, options);
    }
  };
  const states = window.__states = [];
  new MutationObserver(() => {
    const node = document.getElementById("connection-state");
    if (node && states[states.length - 1] !== node.dataset.state) states.push(node.dataset.state);
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
})();
"""


class Calls:
    """Events of a few calls, committed with CallPublisher when the test says."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.committed: dict[str, list[Event]] = {}
        self._run = uuid.uuid4().hex[:6]

    def commit(self, session_id: str, steps: list[tuple[type[Event], dict[str, Any]]]) -> None:
        asyncio.run(self._commit(f"{session_id}-{self._run}", steps))

    async def _commit(self, session_id: str, steps: list[tuple[type[Event], dict[str, Any]]]
                      ) -> None:
        client = aioredis.Redis.from_url(self.redis_url)
        publisher = CallPublisher(client, Settings(redis_url=self.redis_url))
        events = self.committed.setdefault(session_id, [])
        try:
            for kind, fields in steps:
                event = kind(event_id=f"evt-{uuid.uuid4().hex[:16]}", session_id=session_id,
                             timestamp=datetime.now(UTC), seq=len(events) + 1, **fields)
                outcome = await publisher.commit(event)
                assert outcome.status == "committed", outcome
                events.append(event)
        finally:
            await client.aclose()

    def ids(self) -> set[str]:
        return {e.event_id for events in self.committed.values() for e in events}


def started(dialog: str) -> list[tuple[type[Event], dict[str, Any]]]:
    return [(CallStarted, {"caller_id": "+15550001111", "called_number": "+18001234567",
                           "dialog_name": dialog}),
            (StateTransition, {"from_state": "start", "to_state": "menu",
                               "trigger_event": "call_started", "dialog_name": dialog})]


def keys(digits: str) -> list[tuple[type[Event], dict[str, Any]]]:
    return [(DtmfReceived, {"digit": d, "duration_ms": 100}) for d in digits]


ENDED: list[tuple[type[Event], dict[str, Any]]] = [
    (CallTerminated, {"reason": "normal", "duration_seconds": 9, "state_transitions": 1,
                      "final_state": "menu"})]


def event_type(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


def feed(driver: WebDriver) -> list[tuple[str, str]]:
    """(session id, type) of each feed row, oldest first."""
    rows: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('#feed .row:not(.control)')]"
        ".map(r => [r.dataset.sessionId, r.dataset.type]).reverse()")
    return [(session, kind) for session, kind in rows]


def shows_every_event(calls: Calls) -> Any:
    def check(driver: WebDriver) -> bool:
        shown = feed(driver)
        return all([(s, k) for s, k in shown if s == session]
                   == [(session, event_type(e)) for e in events]
                   for session, events in calls.committed.items())
    return check


def state(driver: WebDriver) -> str:
    return str(driver.execute_script(
        "return document.getElementById('connection-state').dataset.state"))


def stream_requests(*hubs: HubProcess) -> list[str]:
    return [line for hub in hubs for line in hub.output().splitlines()
            if "/v1/calls/events" in line]


def token_requests(*hubs: HubProcess) -> int:
    return sum(line.count("POST /v1/stream-tokens") for hub in hubs
               for line in hub.output().splitlines())


def test_the_dashboard_renews_its_stream_tokens_without_losing_or_repeating_an_event(
    browser: WebDriver, redis_url: str
) -> None:
    env = {"CALLHUB_API_KEYS": API_KEY, "CALLHUB_SECRET": "stream-token-renewal-secret-0123456789",
           "CALLHUB_STREAM_TOKEN_TTL": str(TTL_S)}
    port = free_port()
    first = start_hub(redis_url, env=env, port=port)
    hubs = [first]
    calls = Calls(redis_url)
    try:
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",  # type: ignore[no-untyped-call]
                                {"source": RECORDER})
        browser.get(f"{first.url}/")
        browser.execute_script(f"sessionStorage.setItem('callhub.apiKey', {API_KEY!r})")
        browser.refresh()
        wait_for(browser, lambda d: state(d) == "live", "the stream to be live")

        # Before the first token runs out.
        first_batch = len(started("helpdesk") + keys("12"))
        calls.commit("help", started("helpdesk") + keys("12"))
        wait_for(browser, shows_every_event(calls), "the first events in the feed")

        # Two renewals of each of the two streams later, every first token is long dead.
        asked = token_requests(first)
        wait_for(browser, lambda d: token_requests(first) >= asked + 4, "the tokens renewed",
                 timeout=4 * TTL_S + 20)
        calls.commit("help", keys("345"))
        calls.commit("bill", started("billing"))
        wait_for(browser, shows_every_event(calls), "the events after the renewals")

        # Down for longer than a token lives: the page's token is dead when the hub is back.
        first.stop()
        down_at = time.monotonic()
        wait_for(browser, lambda d: state(d) == "reconnecting", "the page to see the hub gone")
        calls.commit("help", keys("6") + ENDED)
        calls.commit("bill", keys("78"))
        wait_for(browser, lambda d: time.monotonic() > down_at + TTL_S + 1,
                 "the page's token to have run out")
        hubs.append(start_hub(redis_url, env=env, port=port))
        wait_for(browser, lambda d: state(d) == "live", "live again", timeout=30)
        wait_for(browser, shows_every_event(calls), "the events committed while the hub was down")
        calls.commit("bill", ENDED)
        wait_for(browser, shows_every_event(calls), "the last event")

        # No reconnect was made with a dead token, and the key never went into a URL.
        lines = stream_requests(*hubs)
        assert [line for line in lines if line.endswith(" 401")] == [], lines
        assert API_KEY not in "".join(hub.output() for hub in hubs)

        # Each source (main and feed alike) got each event at most once, and the two
        # streams between them every event exactly twice: resumed, never replayed.
        sources: list[dict[str, Any]] = browser.execute_script("return window.__sources")
        # Renewed, not reused: at least the two first streams, the four renewals
        # waited for above and the two reconnects after the outage (more renewals
        # happen only if the later steps take longer than a token's life).
        assert len(sources) >= 2 + 4 + 2, [s["url"] for s in sources]
        for source in sources:
            repeated = [i for i, n in Counter(source["ids"]).items() if n > 1]
            assert repeated == [], source["url"]
        delivered = Counter(i for source in sources for i in source["ids"])
        assert {i: n for i, n in delivered.items() if i in calls.ids() and n != 2} == {}
        # The first connect of each stream asks for history; once both streams have
        # seen an event, every later one resumes after the last event seen, with a
        # fresh token and no key.
        urls = [s["url"] for s in sources]
        assert all("include_history=true" in u for u in urls[:2]), urls
        assert all("token=" in u and "api_key" not in u for u in urls), urls
        resumed = [s["url"] for s in sources if s["deliveredBefore"] >= 2 * first_batch]
        assert len(resumed) >= 4 + 2 and all(
            "last_event_id=" in u and "include_history" not in u for u in resumed), urls

        # A renewal swaps sources between two events: the page never showed it as a drop.
        states: list[str] = browser.execute_script("return window.__states")
        assert states.count("reconnecting") <= 2, states  # the outage only (its back-off)
        assert script_errors(browser) == []
    finally:
        for hub in hubs:
            hub.stop()
