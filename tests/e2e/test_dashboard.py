"""The dashboard at ``/`` in a real headless Chromium, against a `callhub serve`
process, a real redis-server and a stream of realistic calls committed by
``CallPublisher`` in the background while the page watches.

The screenshot of the last state goes to ``tests/artifacts/dashboard.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import random
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import redis
import redis.asyncio as aioredis
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from callhub.events import (
    ActionExecuted,
    CallStarted,
    CallTerminated,
    DtmfReceived,
    Error,
    Event,
    HookResult,
    Segment,
    SpeechFinal,
    SpeechPartial,
    StateTransition,
    TtsCompleted,
    TtsStarted,
    decode_event,
)
from callhub.settings import Settings
from callhub.transcript import build_transcript
from tests.support.browser import screenshot, script_errors, set_viewport, wait_for
from tests.support.paths import ARTIFACTS
from tests.support.processes import HubProcess, free_port, start_demo, start_hub
from workers.commit.publisher import CallPublisher

API_KEY = "chk_dashboard-test-key"
HOSTILE = '<img src=x onerror="window.__injected=1">'
# The page's one time format: HH:MM:SS, the date before it when not today.
CLOCK = re.compile(r"(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d")

# ---------------------------------------------------------------------------
# The traffic: calls that talk, press keys, call hooks and hang up.

Step = tuple[type[Event], dict[str, Any]]

CONVERSATIONS = {
    "helpdesk": {
        "number": "+18001234567",
        "greeting": "Welcome to the help desk. How can I help you today?",
        "first": "I need a password reset",
        "intent": "password_reset",
        "second": "yes please send the link",
    },
    "billing": {
        "number": "+18005550100",
        "greeting": "Billing, how can I help?",
        # markup and quotes in event text must reach the page as text, not HTML
        "first": 'my invoice says <b>$0</b> & "paid"',
        "intent": "invoice_question",
        "second": "no that is all thanks",
    },
}
NAMES = ("Jane", "Ravi", "Ana", "Tom")


def speech(text: str, rng: random.Random) -> list[Step]:
    words = text.split()
    steps: list[Step] = [
        (SpeechPartial, {"transcript": " ".join(words[:n]), "confidence": 0.6,
                         "language": "en", "duration_ms": 200 * n})
        for n in range(1, len(words), 2)
    ]
    segments = [Segment(text=w, start_ms=300 * i, end_ms=300 * i + 250,
                        confidence=round(rng.uniform(0.85, 0.99), 2))
                for i, w in enumerate(words)]
    steps.append((SpeechFinal, {"transcript": text, "confidence": round(rng.uniform(0.88, 0.97), 2),
                                "language": "en", "duration_ms": 300 * len(words),
                                "segments": segments}))
    return steps


def prompt(utterance: str, text: str, state: str) -> list[Step]:
    return [(TtsStarted, {"utterance_id": utterance, "text": text, "voice": "en-US-1",
                          "state": state}),
            (TtsCompleted, {"utterance_id": utterance, "duration_ms": 40 * len(text)})]


def scenario(dialog: str, rng: random.Random) -> list[Step]:
    talk = CONVERSATIONS[dialog]
    name = rng.choice(NAMES)

    def move(a: str, b: str, trigger: str) -> Step:
        return (StateTransition, {"from_state": a, "to_state": b, "trigger_event": trigger,
                                  "dialog_name": dialog})

    steps: list[Step] = [
        (CallStarted, {"caller_id": f"+1555{rng.randrange(10**7):07d}",
                       "called_number": talk["number"], "dialog_name": dialog,
                       "sip_headers": {"X-Tenant": "acme"}}),
        move("start", "greeting", "call_started"),
        *prompt("u1", talk["greeting"], "greeting"),
        *speech(talk["first"], rng),
        move("greeting", "collect_info", "speech_final"),
        (ActionExecuted, {"action": "set_variable", "state": "collect_info",
                          "variables": {"intent": talk["intent"]}}),
        *prompt("u2", "Please key in your account number.", "collect_info"),
        *[(DtmfReceived, {"digit": d, "duration_ms": 110}) for d in f"{rng.randrange(10**4):04d}"],
        (HookResult, {"hook_name": "lookup_account", "state": "collect_info", "status_code": 200,
                      "duration_ms": rng.randrange(40, 160), "variables": {"customer_name": name}}),
    ]
    if dialog == "billing":
        steps += [(ActionExecuted, {"action": "hold", "state": "collect_info"}),
                  (ActionExecuted, {"action": "resume", "state": "collect_info"})]
    steps += [
        *prompt("u3", f"Thanks {name}. Anything else?", "collect_info"),
        *speech(talk["second"], rng),
        move("collect_info", "goodbye", "speech_final"),
        *prompt("u4", "Goodbye!", "goodbye"),
        (CallTerminated, {"reason": "normal", "duration_seconds": 4, "state_transitions": 3,
                          "final_state": "goodbye"}),
    ]
    return steps


@dataclass
class Traffic:
    """Calls committed with CallPublisher from a thread with its own event loop.

    ``lines`` concurrent callers each place one call after another, alternating
    dialogs; every committed event is remembered per session for the checks.
    """

    redis_url: str
    lines: int = 4
    gap_s: tuple[float, float] = (0.06, 0.14)
    log_retention_ms: int = Settings().log_retention_ms
    committed: dict[str, list[Event]] = field(default_factory=dict)
    dialog_of: dict[str, str] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    end_entry: dict[str, str] = field(default_factory=dict)  # the log entry of each call's end
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._error is not None:
            raise AssertionError(f"the traffic generator failed: {self._error!r}")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # surfaced by stop()
            self._error = error

    async def _main(self) -> None:
        client = aioredis.Redis.from_url(self.redis_url)
        settings = Settings(redis_url=self.redis_url, log_retention_ms=self.log_retention_ms)
        publisher = CallPublisher(client, settings)
        run = uuid.uuid4().hex[:6]
        try:
            await asyncio.gather(*(self._line(publisher, run, n) for n in range(self.lines)))
        finally:
            await client.aclose()

    async def _line(self, publisher: CallPublisher, run: str, line: int) -> None:
        rng = random.Random(f"{run}-{line}")
        number = 0
        while not self._stop.is_set():
            number += 1
            dialog = ("helpdesk", "billing")[(line + number) % 2]
            session_id = f"{dialog[:4]}-{run}-{line}{number:03d}"
            with self._lock:
                self.dialog_of[session_id] = dialog
                self.committed[session_id] = []
            for seq, (kind, fields) in enumerate(scenario(dialog, rng), start=1):
                if self._stop.is_set():
                    return
                event = kind(event_id=f"evt-{uuid.uuid4().hex[:16]}", session_id=session_id,
                             timestamp=datetime.now(UTC), seq=seq, **fields)
                outcome = await publisher.commit(event)
                assert outcome.status == "committed", outcome
                with self._lock:
                    self.committed[session_id].append(event)
                    if isinstance(event, CallTerminated):
                        self.ended.add(session_id)
                        self.end_entry[session_id] = str(outcome.entry_id)
                await asyncio.sleep(rng.uniform(*self.gap_s))

    # -- what the checks read ------------------------------------------------

    def active(self) -> set[str]:
        with self._lock:
            return {s for s, events in self.committed.items() if events and s not in self.ended}

    def events_of(self, session_id: str) -> list[Event]:
        with self._lock:
            return list(self.committed.get(session_id, []))

    def sessions_of(self, dialog: str) -> set[str]:
        with self._lock:
            return {s for s, d in self.dialog_of.items() if d == dialog}

    def is_ended(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self.ended


@contextlib.contextmanager
def traffic(redis_url: str, **options: Any) -> Iterator[Traffic]:
    source = Traffic(redis_url, **options)
    source.start()
    try:
        yield source
    finally:
        source.stop()


@contextlib.contextmanager
def unavailable(port: int) -> Iterator[list[str]]:
    """A stand-in on the hub's port answering every request 503; yields the paths asked."""
    asked: list[str] = []

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = b'{"error":{"code":"unavailable","message":"no replica is up"}}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_on(redis_url: str, port: int, env: dict[str, str] | None = None) -> HubProcess:
    """`callhub serve` on a port of our choosing (a restart must come back on it)."""
    return start_hub(redis_url, env=env, port=port)


# ---------------------------------------------------------------------------
# Reading the page (one script call per read, so no element goes stale mid-read)


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str,
         timeout: float = 30) -> Any:
    return wait_for(driver, condition, what, timeout)


def js(driver: WebDriver, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def connection_state(driver: WebDriver) -> str:
    return str(js(driver, "return document.getElementById('connection-state').dataset.state"))


def rows(driver: WebDriver) -> list[dict[str, str]]:
    result: list[dict[str, str]] = js(driver, """
        return [...document.querySelectorAll('#calls-body tr')].map(r => ({
          session_id: r.dataset.sessionId, dialog: r.dataset.dialog, status: r.dataset.status,
          caller: r.querySelector('.caller').textContent, hidden: r.hidden,
          state: r.querySelector('.state .name').textContent,
          duration: r.querySelector('.duration').textContent}));""")
    return result


def transcript(driver: WebDriver) -> list[tuple[str, str]]:
    lines: list[list[str]] = js(driver, """
        return [...document.querySelectorAll('#transcript .line')].map(l =>
          [l.dataset.kind, l.querySelector('.text').textContent]);""")
    return [(kind, text) for kind, text in lines]


def state_path(driver: WebDriver) -> list[str]:
    return list(js(driver, "return [...document.querySelectorAll('#state-path li')]"
                           ".map(li => li.dataset.state)"))


def feed_rows(driver: WebDriver) -> list[dict[str, str]]:
    result: list[dict[str, str]] = js(driver, """
        return [...document.querySelectorAll('#feed .row:not(.control)')].map(r => ({
          type: r.dataset.type, session_id: r.dataset.sessionId, dialog: r.dataset.dialog}));""")
    return result


def click(driver: WebDriver, css: str) -> None:
    """Click ``css`` once it is on the page (a row may be a moment behind its event)."""
    def clicked(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait(driver, clicked, f"{css} to click")


def expected_transcript(events: list[Event]) -> list[tuple[str, str]]:
    """What the page shows: prompts, keys, and speech, where each partial rewrites the
    open partial line and a final replaces it (a partial never finalised stays)."""
    lines: list[tuple[str, str]] = []
    open_partial: int | None = None
    for event in events:
        if isinstance(event, SpeechPartial | SpeechFinal):
            line = (("partial", f"{event.transcript} …") if isinstance(event, SpeechPartial)
                    else ("final", event.transcript))
            if open_partial is None:
                lines.append(line)
                at = len(lines) - 1
            else:
                lines[open_partial] = line
                at = open_partial
            open_partial = at if isinstance(event, SpeechPartial) else None
        elif isinstance(event, TtsStarted):
            lines.append(("tts", event.text))
        elif isinstance(event, DtmfReceived):
            lines.append(("dtmf", f"pressed {event.digit}"))
    return lines


def expected_path(events: list[Event]) -> list[str]:
    moves = [e for e in events if isinstance(e, StateTransition)]
    first = [moves[0].from_state] if moves and moves[0].from_state else []
    return [*first, *(m.to_state for m in moves)]


def follow_to_the_end(driver: WebDriver, source: Traffic, session_id: str,
                      timeout: float = 20) -> None:
    """The selected call's transcript and state path, once it ended, are exactly its events."""
    wait(driver, lambda d: source.is_ended(session_id), f"{session_id} to end", timeout)
    shows_exactly(driver, session_id, source.events_of(session_id), timeout)


def shows_exactly(driver: WebDriver, session_id: str, events: list[Event],
                  timeout: float = 20) -> None:
    want = expected_transcript(events)

    def complete(d: WebDriver) -> bool:
        shown = [(k, t) for k, t in transcript(d) if k in ("final", "tts", "dtmf", "partial")]
        return shown == want and state_path(d) == expected_path(events)

    try:
        wait(driver, complete, f"the transcript of {session_id}", timeout)
    except Exception:
        print("shown:", transcript(driver), state_path(driver))
        print("want: ", want, expected_path(events))
        raise


def save_screenshot(driver: WebDriver, name: str = "dashboard.png") -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    print(f"dashboard screenshot: {path}")
    return path


# ---------------------------------------------------------------------------


def test_dashboard_follows_live_calls(browser: WebDriver, redis_url: str,
                                      tmp_path: Path) -> None:
    port = free_port()
    hub = serve_on(redis_url, port)
    try:
        with traffic(redis_url) as source:
            wait(browser, lambda d: len(source.active()) >= 3, "the first calls")
            browser.get(f"{hub.url}/")
            assert browser.title == "callhub"
            wait(browser, lambda d: connection_state(d) == "live", "the stream to be live")

            # The active list: the calls that are running, with dialog, state, duration.
            wait(browser, lambda d: len([r for r in rows(d) if r["status"] != "terminated"]) >= 3,
                 "active calls in the list")
            wait(browser, lambda d: {r["session_id"] for r in rows(d)
                                     if r["status"] != "terminated"} == source.active(),
                 "the list to hold exactly the active calls")
            for row in rows(browser):
                assert row["dialog"] == source.dialog_of[row["session_id"]]
                assert re.fullmatch(r"\d+:\d\d", row["duration"]), row

            # Select a billing call: its transcript, prompts and state path follow it live;
            # its text (with markup in it) arrives as text.
            def newest_billing(d: WebDriver) -> str | None:
                return next((r["session_id"] for r in rows(d) if r["dialog"] == "billing"
                             and r["status"] != "terminated"
                             and not source.is_ended(r["session_id"])), None)

            chosen = wait(browser, newest_billing, "an active billing call")
            click(browser, f'#calls-body tr[data-session-id="{chosen}"]')
            assert js(browser, "return document.getElementById('call-panel')"
                               ".dataset.sessionId") == chosen
            follow_to_the_end(browser, source, chosen)
            finals = [t for k, t in transcript(browser) if k == "final"]
            assert CONVERSATIONS["billing"]["first"] in finals, finals
            assert js(browser, "return document.querySelectorAll('#transcript b').length") == 0

            # The feed's filters reconnect its stream with the spec's query parameters.
            click(browser, "#types-none")
            click(browser, "#type-dtmf_received")
            click(browser, "#feed-apply")
            wait(browser, lambda d: len(feed_rows(d)) >= 6, "DTMF events in the feed")
            ids = js(browser, "return [...document.querySelectorAll('#feed .row')]"
                              ".map(r => r.dataset.eventId)")
            assert len(ids) == len(set(ids)), "an event shown twice in the feed"
            assert {r["type"] for r in feed_rows(browser)} == {"dtmf_received"}
            url = js(browser, "return document.getElementById('feed').dataset.url")
            assert "event_types=dtmf_received" in url and "include_history=true" in url, url

            # A filter the hub refuses (400) is reported with the hub's reason.
            click(browser, "#types-all")
            dialog_filter = browser.find_element(By.ID, "filter-dialog")
            dialog_filter.send_keys("no such/dialog")
            click(browser, "#feed-apply")
            notice = browser.find_element(By.ID, "notice")
            wait(browser, lambda d: "dialog_name" in notice.text, "the refused filter's reason")
            assert "not valid" in notice.text
            dialog_filter.clear()
            dialog_filter.send_keys("helpdesk")
            click(browser, "#feed-apply")
            wait(browser, lambda d: len({r["type"] for r in feed_rows(d)}) >= 4,
                 "helpdesk events of several types in the feed")
            helpdesk = source.sessions_of("helpdesk")
            assert all(r["session_id"] in helpdesk for r in feed_rows(browser)), feed_rows(browser)
            url = js(browser, "return document.getElementById('feed').dataset.url")
            assert "dialog_name=helpdesk" in url and "event_types" not in url, url

            # Paused, the feed stands still and counts what waits; resumed, it catches up.
            click(browser, "#feed-pause")
            shown = js(browser, "return document.querySelector('#feed .row').dataset.eventId")
            wait(browser, lambda d: "waiting" in js(d, "return document.getElementById("
                                                       "'feed-count').textContent"),
                 "events waiting behind the pause")
            assert js(browser, "return document.querySelector('#feed .row')"
                               ".dataset.eventId") == shown
            click(browser, "#feed-pause")
            wait(browser, lambda d: js(d, "return document.querySelector('#feed .row')"
                                          ".dataset.eventId") != shown, "the feed to go on")

            # A dropped connection: the hub goes away mid-call; for a while a stand-in on its
            # port answers 503 (as a load balancer with no replica would), so the browser's
            # own retry fails and the page recreates its EventSource with last_event_id;
            # then the hub is back on the same port. The page says so and misses nothing.
            chosen = wait(browser, newest_billing, "another active billing call")
            click(browser, f'#calls-body tr[data-session-id="{chosen}"]')
            hub.stop()
            with unavailable(port) as asked:
                wait(browser, lambda d: connection_state(d) == "reconnecting", "reconnecting")
                # A banner says the page is not live, and durations stand still meanwhile.
                banner = browser.find_element(By.ID, "stream-banner")
                assert banner.is_displayed() and "Not live" in banner.text, banner.text
                assert js(browser, "return document.body.dataset.live") == "false"
                frozen = {r["session_id"]: r["duration"] for r in rows(browser)}
                screenshot(browser, tmp_path, "dashboard-not-live.png")
                wait(browser, lambda d: any(
                    "/v1/calls/events?" in path and "last_event_id=" in path
                    and "include_history" not in path for path in asked),
                    "a recreated EventSource resuming with last_event_id")
                wait(browser, lambda d: source.is_ended(chosen), f"{chosen} to end", 20)
                assert connection_state(browser) == "reconnecting"
                assert banner.is_displayed()
                still = {r["session_id"]: r["duration"] for r in rows(browser)
                         if r["session_id"] in frozen}  # (ended rows leave as they would)
                assert still and still == {s: frozen[s] for s in still}
            hub = serve_on(redis_url, port)
            wait(browser, lambda d: connection_state(d) == "live", "live again", 20)
            assert not browser.find_element(By.ID, "stream-banner").is_displayed()
            follow_to_the_end(browser, source, chosen)
            wait(browser, lambda d: js(d, "return document.getElementById('feed-state')"
                                          ".dataset.state") == "live", "the feed live again")

            # The chart has samples, and events/s shows the traffic (replayed events included).
            assert int(js(browser, "return document.getElementById('chart').dataset.samples")) > 0
            wait(browser, lambda d: float(d.find_element(By.ID, "event-rate").text) > 0,
                 "events/s above 0")
            save_screenshot(browser)
            screenshot(browser, tmp_path, "dashboard-live.png")
        assert script_errors(browser) == []
    finally:
        hub.stop()


def test_dashboard_asks_for_an_api_key(browser: WebDriver, redis_url: str) -> None:
    hub = start_hub(redis_url, env={"CALLHUB_API_KEYS": API_KEY})
    try:
        with traffic(redis_url) as source:
            wait(browser, lambda d: len(source.active()) >= 2, "the first calls")
            browser.get(f"{hub.url}/")

            message = browser.find_element(By.ID, "auth-message")
            wait(browser, lambda d: message.is_displayed(), "the API key message")
            assert "requires an API key" in message.text
            assert connection_state(browser) == "unauthorized"
            assert rows(browser) == []

            key = browser.find_element(By.ID, "api-key")
            key.send_keys("chk_wrong")
            click(browser, "#api-key-save")
            wait(browser, lambda d: "refused" in message.text, "the refused-key message")
            assert connection_state(browser) == "unauthorized"

            key.clear()
            key.send_keys(API_KEY)
            click(browser, "#api-key-save")
            wait(browser, lambda d: connection_state(d) == "live", "the stream to be live")
            assert not message.is_displayed()
            wait(browser, lambda d: len(rows(d)) >= 2, "calls in the list")
            wait(browser, lambda d: len(feed_rows(d)) >= 5, "events in the feed")
            assert js(browser, "return sessionStorage.getItem('callhub.apiKey')") == API_KEY

            # The key lives in sessionStorage: a reload keeps working without asking.
            browser.refresh()
            wait(browser, lambda d: connection_state(d) == "live", "live after a reload")
            wait(browser, lambda d: len(rows(d)) >= 2, "calls after a reload")
            assert not browser.find_element(By.ID, "auth-message").is_displayed()
        assert API_KEY not in hub.output()  # the api_key query parameter is masked in the log
        streams = [line for line in hub.output().splitlines() if "/v1/calls/events" in line]
        assert streams and all("token=" in line and "api_key" not in line for line in streams), \
            streams  # the EventSource opens with a stream token, not the key
        assert script_errors(browser) == []
    finally:
        hub.stop()


def test_dashboard_gets_a_new_stream_token_when_the_hub_refuses_its_old_one(
    browser: WebDriver, redis_url: str
) -> None:
    """The hub comes back with another secret: the page's stream token (401) and its
    cursor (400) are refused; it asks for a new token with its key and starts over,
    live again without asking the user for anything."""
    port = free_port()
    env = {"CALLHUB_API_KEYS": API_KEY, "CALLHUB_SECRET": "the-first-secret-0123456789abcdefgh"}
    hub = start_hub(redis_url, env=env, port=port)
    try:
        with traffic(redis_url) as source:
            wait(browser, lambda d: len(source.active()) >= 2, "the first calls")
            browser.get(f"{hub.url}/")
            js(browser, f"sessionStorage.setItem('callhub.apiKey', {API_KEY!r})")
            browser.refresh()
            wait(browser, lambda d: connection_state(d) == "live", "the stream to be live")
            hub.stop()
            wait(browser, lambda d: connection_state(d) == "reconnecting", "reconnecting")
            env["CALLHUB_SECRET"] = "the-other-secret-0123456789abcdefgh"
            hub = start_hub(redis_url, env=env, port=port)
            wait(browser, lambda d: connection_state(d) == "live", "live again", 20)
            assert not browser.find_element(By.ID, "auth-message").is_displayed()
            wait(browser, lambda d: len(rows(d)) >= 2, "calls in the list again")
        streams = [line for line in hub.output().splitlines() if "/v1/calls/events" in line]
        # both refusals happened: the old token (401), then the old cursor (400)
        assert {line.rsplit(" ", 1)[-1] for line in streams} >= {"401", "400"}, streams
        assert script_errors(browser) == []
    finally:
        hub.stop()


def test_dashboard_reloads_the_calls_after_a_stream_reset(
    browser: WebDriver, redis_url: str, sync_redis: redis.Redis
) -> None:
    """The page's cursor outlives the log (retention 1 s, the hub away for longer):
    the stream says stream_reset, and the page reads the call list again, so calls
    whose end fell out of the log leave the list and the list is the truth again."""
    log = Settings().keyspace.log(0)
    node_entries = str(sync_redis.config_get("stream-node-max-entries")["stream-node-max-entries"])
    sync_redis.config_set("stream-node-max-entries", 4)  # MINID ~ trims in small steps
    port = free_port()
    hub = serve_on(redis_url, port)
    try:
        with traffic(redis_url, log_retention_ms=1000) as source:
            wait(browser, lambda d: len(source.active()) >= 3, "the first calls")
            browser.get(f"{hub.url}/")
            wait(browser, lambda d: connection_state(d) == "live", "the stream to be live")
            wait(browser, lambda d: len(rows(d)) >= 3, "calls in the list")
            hub.stop()
            wait(browser, lambda d: connection_state(d) == "reconnecting", "reconnecting")
            # Every call the page knew has ended, and the log holds neither the page's
            # position nor those ends: only a reload of the list can tell the page.
            known = {r["session_id"] for r in rows(browser)}
            seen_last = stream_id(sync_redis.xinfo_stream(log)["last-generated-id"])

            def forgotten(d: WebDriver) -> bool:
                with source._lock:
                    ends = [source.end_entry.get(s) for s in known]
                if None in ends:
                    return False
                oldest = stream_id(sync_redis.xinfo_stream(log)["first-entry"][0])
                return oldest > max(seen_last, *(stream_id(str(e)) for e in ends))

            wait(browser, forgotten, "the page's position and its calls' ends to leave the log",
                 25)
            hub = serve_on(redis_url, port)
            wait(browser, lambda d: connection_state(d) == "live", "live again", 20)
            wait(browser, lambda d: js(d, "return [...document.querySelectorAll("
                                          "'#feed .row.control')].map(r => r.textContent)"
                                          ".join()").count("call list was reloaded") == 1,
                 "the stream_reset notice")
            wait(browser, lambda d: {r["session_id"] for r in rows(d)
                                     if r["status"] != "terminated"} == source.active(),
                 "the list to hold exactly the active calls")
        assert script_errors(browser) == []
    finally:
        hub.stop()
        sync_redis.config_set("stream-node-max-entries", node_entries)


def stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


def test_dashboard_against_the_demo(browser: WebDriver) -> None:
    """The README's first command, `callhub demo` (embedded Redis, simulated worker with
    dialogs, barge-in, silence, hang-ups, hooks), as the whole back end: the list is
    the demo's active set, and a followed call's transcript and state path are exactly
    the events its Redis holds for it."""
    keys = Settings().keyspace
    demo = start_demo("--rate", "4", "--speed", "10", "--seed", "11")
    embedded = re.search(r"embedded in-memory Redis \((redis://[^;]+);", demo.output())
    assert embedded, demo.output()
    store = redis.Redis.from_url(embedded.group(1))
    try:
        browser.get(f"{demo.url}/")
        wait(browser, lambda d: connection_state(d) == "live", "the stream to be live")

        def active_in_redis() -> set[str]:
            members = cast(list[bytes], store.zrange(keys.active(0), 0, -1))
            return {m.decode() for m in members}

        wait(browser, lambda d: len(active_in_redis()) >= 3, "simulated calls",
             timeout=20)
        wait(browser, lambda d: {r["session_id"] for r in rows(d)
                                 if r["status"] != "terminated"} == active_in_redis(),
             "the list to hold exactly the active calls")

        def status(session_id: str) -> bytes | None:
            return cast(bytes | None, store.hget(keys.call(session_id), "status"))

        # the oldest active call (the list is newest first), so the wait for its end is short
        chosen = wait(browser, lambda d: next(
            (r["session_id"] for r in reversed(rows(d)) if status(r["session_id"]) == b"active"),
            None), "an active call")
        click(browser, f'#calls-body tr[data-session-id="{chosen}"]')
        wait(browser, lambda d: len(transcript(d)) >= 2, f"{chosen}'s transcript lines")
        wait(browser, lambda d: status(chosen) == b"terminated", f"{chosen} to end", 30)
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]],
                       store.xrange(keys.call_events(chosen)))
        events: list[Event] = [decode_event(fields[b"data"]) for _, fields in entries]
        assert isinstance(events[-1], CallTerminated)
        shows_exactly(browser, chosen, events)
        save_screenshot(browser, "dashboard-demo.png")
        assert script_errors(browser) == []
        demo.process.send_signal(signal.SIGINT)
        assert demo.process.wait(timeout=15) == 0
    finally:
        store.close()
        demo.stop()


# ---------------------------------------------------------------------------
# Layout, counts, charts, search, links, hostile text, and ended calls


def commit_odd_call(redis_url: str) -> tuple[str, list[Event]]:
    """One call with markup in every text it has (caller, speech, prompt, error, a
    variable), a barge-in and a call error; left active. Its session id and events."""
    session_id = f"odd-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC) - timedelta(seconds=6)
    steps: list[Step] = [
        (CallStarted, {"caller_id": HOSTILE, "called_number": "+18001234567",
                       "dialog_name": "helpdesk"}),
        (StateTransition, {"from_state": "start", "to_state": "greeting",
                           "trigger_event": "call_started", "dialog_name": "helpdesk"}),
        (TtsStarted, {"utterance_id": "u1", "text": "Hello <b>there</b>", "voice": "en-US-1",
                      "state": "greeting"}),
        (SpeechFinal, {"transcript": HOSTILE, "confidence": 0.9, "language": "en",
                       "duration_ms": 400}),
        (TtsCompleted, {"utterance_id": "u1", "duration_ms": 1200, "interrupted": True}),
        (Error, {"code": "asr_glitch", "message": HOSTILE, "component": "asr"}),
        (TtsStarted, {"utterance_id": "u2", "text": "Sorry?", "voice": "en-US-1",
                      "state": "greeting"}),
        (HookResult, {"hook_name": "lookup_account", "state": "greeting", "status_code": 200,
                      "duration_ms": 80, "variables": {"customer_name": HOSTILE}}),
    ]
    events = [kind(event_id=f"evt-{uuid.uuid4().hex[:16]}", session_id=session_id,
                   timestamp=start + timedelta(milliseconds=700 * n), seq=n, **fields)
              for n, (kind, fields) in enumerate(steps, start=1)]

    async def commit() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            publisher = CallPublisher(client, Settings(redis_url=redis_url))
            for event in events:
                assert (await publisher.commit(event)).status == "committed"
        finally:
            await client.aclose()

    asyncio.run(commit())
    return session_id, events


def record_states(driver: WebDriver) -> None:
    """From now on the page keeps every state its two stream indicators take."""
    js(driver, """
        window.__states = [];
        for (const id of ['connection-state', 'feed-state']) {
          new MutationObserver(() => window.__states.push(
            id + ':' + document.getElementById(id).dataset.state))
            .observe(document.getElementById(id), {attributes: true});
        }""")


def counts(driver: WebDriver) -> dict[str, Any]:
    """Every place the page states how many calls are active, read at one moment."""
    result: dict[str, Any] = js(driver, """
        const text = (id) => document.getElementById(id).textContent;
        const flow = [...document.querySelectorAll('#state-flow .stage')]
          .reduce((n, s) => n + Number(s.dataset.count), 0);
        return {header: text('active-count'), tab: text('calls-total'), chart: text('chart-active'),
                rows: String([...document.querySelectorAll('#calls-body tr')]
                  .filter(r => r.dataset.status !== 'terminated').length),
                flow: String(flow)};""")
    return result


def timeline_marks(driver: WebDriver) -> dict[str, int]:
    marks: dict[str, int] = js(driver, """
        const n = {};
        for (const m of document.querySelectorAll('#timeline [data-kind]'))
          n[m.dataset.kind] = (n[m.dataset.kind] || 0) + 1;
        return n;""")
    return marks


def expected_marks(events: list[Event]) -> dict[str, int]:
    kinds = {SpeechFinal: "speech", DtmfReceived: "dtmf", TtsStarted: "prompt",
             HookResult: "hook", StateTransition: "state"}
    marks: dict[str, int] = {}
    for event in events:
        kind = kinds.get(type(event))
        if kind:
            marks[kind] = marks.get(kind, 0) + 1
        if isinstance(event, TtsCompleted) and event.interrupted:
            marks["barge-in"] = marks.get("barge-in", 0) + 1
        if isinstance(event, ActionExecuted) and event.action == "hold":
            marks["hold"] = marks.get("hold", 0) + 1
    return marks


def turn_latencies(driver: WebDriver) -> list[int]:
    return [int(v) for v in js(driver, "return [...document.querySelectorAll("
                                       "'#turn-latency rect[data-latency-ms]')]"
                                       ".map(r => r.dataset.latencyMs)")]


def expected_latencies(events: list[Event]) -> list[int]:
    return [t.response_latency_ms for t in build_transcript(events).turns
            if t.speaker == "caller" and t.response_latency_ms is not None]


def panel_rects(driver: WebDriver) -> dict[str, dict[str, float]]:
    rects: dict[str, dict[str, float]] = js(driver, """
        const r = (id) => { const b = document.getElementById(id).getBoundingClientRect();
                            return {top: b.top, bottom: b.bottom, left: b.left, right: b.right}; };
        return {call: r('call-panel'), feed: r('feed-panel'), calls: r('calls-panel'),
                charts: r('charts-panel'),
                view: {top: 0, bottom: innerHeight, left: 0, right: innerWidth,
                       scroll: document.documentElement.scrollWidth}};""")
    return rects


def fresh_page(driver: WebDriver, url: str) -> None:
    """Load ``url`` as a new page (from the same page, a new hash would only scroll)."""
    driver.get("about:blank")
    driver.get(url)


def selected(driver: WebDriver) -> str:
    return str(js(driver, "return document.getElementById('call-panel').dataset.sessionId"))


def test_dashboard_on_a_laptop_and_at_400_px(browser: WebDriver, redis_url: str,
                                             tmp_path: Path) -> None:
    """1366×768: the call panel and the feed side by side, above the fold; the counts
    agree; the charts draw what the calls do; a call has a URL and can be searched
    for; markup in event text stays text; a call error leaves the stream open. Then
    the same page at 400 px wide: nothing cut off, still usable."""
    hub = start_hub(redis_url)
    try:
        with traffic(redis_url) as source:
            wait(browser, lambda d: len(source.active()) >= 3, "the first calls")
            # Only the page's own script may run (by its hash): no injected handler could.
            policy = httpx.get(f"{hub.url}/", timeout=10).headers["Content-Security-Policy"]
            assert "script-src 'sha256-" in policy and "unsafe" not in policy.split(";")[1]
            set_viewport(browser, 1366, 768)
            browser.get(f"{hub.url}/")
            wait(browser, lambda d: connection_state(d) == "live", "the stream to be live")
            record_states(browser)

            # Markup in a caller id, speech, an error and a variable is shown as text, and
            # the call's error event (event: call_error on the wire) is just an event.
            odd, odd_events = commit_odd_call(redis_url)
            wait(browser, lambda d: any(r["session_id"] == odd for r in rows(d)), "the odd call")
            assert next(r for r in rows(browser) if r["session_id"] == odd)["caller"] == HOSTILE
            wait(browser, lambda d: any(r["type"] == "error" and r["session_id"] == odd
                                        for r in feed_rows(d)), "the call error in the feed")
            click(browser, f'#calls-body tr[data-session-id="{odd}"]')
            assert browser.current_url.endswith(f"#call={odd}")
            wait(browser, lambda d: timeline_marks(d) == expected_marks(odd_events),
                 "the odd call's timeline (speech, prompts, a barge-in, a hook, a state)")
            wait(browser, lambda d: "customer_name=\"<img src=x onerror=" in js(
                d, "return document.querySelector('#call-details [data-field=variables]')"
                   ".textContent"), "the variable as text (a JSON string)")
            texts = [t for _, t in transcript(browser)]
            assert HOSTILE in texts and any(HOSTILE in t for t in texts if t != HOSTILE), texts
            assert js(browser, "return document.querySelectorAll('img, #transcript b, #feed b,"
                               " #calls-body b, #call-details b').length") == 0
            assert js(browser, "return window.__injected === undefined")
            wait(browser, lambda d: turn_latencies(d) == expected_latencies(odd_events),
                 "the odd call's response latency per turn")

            # Both the call panel and the feed fit on the screen, side by side.
            rects = panel_rects(browser)
            view = rects["view"]
            for name in ("call", "feed", "calls"):
                rect = rects[name]
                assert rect["top"] >= 0 and rect["bottom"] <= view["bottom"], (name, rect)
                assert rect["left"] >= 0 and rect["right"] <= view["right"], (name, rect)
                assert rect["right"] - rect["left"] >= 300, (name, rect)
            assert view["scroll"] <= view["right"]
            wait(browser, lambda d: len(feed_rows(d)) >= 10, "events in the feed")
            screenshot(browser, tmp_path, "dashboard-1366x768.png")

            # One count of active calls, wherever it is shown, and it moves with the calls.
            wait(browser, lambda d: len(set(counts(d).values())) == 1, "the counts to agree")
            first = counts(browser)["header"]

            def agreed_and_moved(d: WebDriver) -> bool:
                shown = set(counts(d).values())
                return len(shown) == 1 and shown != {first}

            wait(browser, agreed_and_moved, "the agreed count to move")

            # The charts: calls in each state per dialog, outcomes as calls end, latency.
            wait(browser, lambda d: js(d, "return document.querySelector("
                                          "'#state-flow .flow[data-dialog=billing] .stage')"
                                          " !== null"), "the billing dialog's states")
            ended_now = len(source.ended)
            wait(browser, lambda d: len(source.ended) >= ended_now + 2, "two more calls to end")
            wait(browser, lambda d: int(js(d, "return document.getElementById('outcomes')"
                                              ".dataset.total")) >= 2, "outcomes drawn")
            legend = dict(js(browser, "return [...document.querySelectorAll("
                                      "'#outcomes-legend [data-reason]')]"
                                      ".map(i => [i.dataset.reason, Number(i.dataset.count)])"))
            total = int(js(browser, "return document.getElementById('outcomes').dataset.total"))
            assert legend["normal"] == total, legend  # every call here ends normally
            hist = wait(browser, lambda d: js(d, "const h = document.getElementById("
                                                 "'latency-hist').dataset; return Number("
                                                 "h.count) > 3 ? h : null"), "latencies")
            assert 0 <= int(hist["p50"]) <= int(hist["p95"]) < 5000, hist
            chart_view = js(browser, "document.getElementById('charts-panel').scrollIntoView();"
                                     "return true")
            assert chart_view
            screenshot(browser, tmp_path, "dashboard-charts.png")
            js(browser, "window.scrollTo(0, 0)")

            # Every time on the page is in the one format.
            times = js(browser, "return [...document.querySelectorAll('time')]"
                                ".map(t => t.textContent)")
            assert times and all(CLOCK.fullmatch(t) for t in times), \
                [t for t in times if not CLOCK.fullmatch(t)]

            # Search by caller: the list narrows to the match, Enter opens it.
            target = wait(browser, lambda d: next(
                (r for r in rows(d) if r["status"] != "terminated" and r["session_id"] != odd
                 and not source.is_ended(r["session_id"])), None), "a call to search for")
            search = browser.find_element(By.ID, "search")
            search.send_keys(target["caller"][-7:])
            visible = wait(browser, lambda d: [r["session_id"] for r in rows(d)
                                               if not r["hidden"]] or None, "the search result")
            assert target["session_id"] in visible and odd not in visible, visible
            search.send_keys("\n")
            if len(visible) == 1:
                wait(browser, lambda d: selected(d) == target["session_id"], "the match opened")
            search.clear()
            search.send_keys(odd + "\n")
            wait(browser, lambda d: selected(d) == odd, "the session id opened")
            search.clear()
            search.send_keys("\n")
            wait(browser, lambda d: all(not r["hidden"] for r in rows(d)), "the whole list")

            # A call's URL opens it in a fresh page.
            fresh_page(browser, f"{hub.url}/#call={odd}")
            wait(browser, lambda d: connection_state(d) == "live", "live after the link")
            wait(browser, lambda d: selected(d) == odd and HOSTILE in [t for _, t in
                                                                      transcript(d)],
                 "the linked call")
            record_states(browser)

            # 400 px wide: one column, nothing wider than the screen, rows still open calls.
            set_viewport(browser, 400, 860)
            wait(browser, lambda d: panel_rects(d)["view"]["scroll"] <= 400,
                 "no horizontal overflow at 400 px")
            rects = panel_rects(browser)
            for name in ("calls", "call", "feed", "charts"):
                assert rects[name]["left"] >= 0 and rects[name]["right"] <= 400, (name, rects)
            assert rects["calls"]["bottom"] <= rects["call"]["top"] <= rects["feed"]["top"]
            other = wait(browser, lambda d: next(
                (r["session_id"] for r in rows(d) if r["status"] != "terminated"
                 and r["session_id"] != odd), None), "another call")
            click(browser, f'#calls-body tr[data-session-id="{other}"]')
            wait(browser, lambda d: selected(d) == other, "a call opened at 400 px")
            screenshot(browser, tmp_path, "dashboard-400px.png")
            assert js(browser, "return window.__states") == [], "a stream was reopened"
        assert script_errors(browser) == []
    finally:
        hub.stop()


def recent_rows(driver: WebDriver) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = js(driver, """
        return [...document.querySelectorAll('#recent-body tr')].map(r => ({
          session_id: r.dataset.sessionId, reason: r.dataset.reason, dialog: r.dataset.dialog,
          caller: r.dataset.caller, end_ms: Number(r.dataset.endMs), hidden: r.hidden}));""")
    return result


def record_transcript(events: list[Event]) -> list[tuple[str, str]]:
    """An ended call's transcript as the page shows it: the hub's turns."""
    kinds = {("caller", "speech"): "final", ("caller", "dtmf"): "dtmf", ("agent", "speech"): "tts"}
    return [(kinds[(t.speaker, t.kind)], f"pressed {t.text}" if t.kind == "dtmf" else t.text)
            for t in build_transcript(events).turns]


def test_dashboard_recent_calls_and_an_ended_calls_record(
    browser: WebDriver, redis_url: str, tmp_path: Path
) -> None:
    """The recent view lists ended calls (reason, duration, dialog), newest first; an
    ended call opened by its URL shows its record: the hub's transcript with the
    response latency of each caller turn as bars, its state path and timeline."""
    hub = start_hub(redis_url)
    try:
        with traffic(redis_url) as source:
            wait(browser, lambda d: len(source.ended) >= 3, "calls that ended before the page")
            with source._lock:
                before = set(source.ended)
            browser.get(f"{hub.url}/")
            wait(browser, lambda d: connection_state(d) == "live", "the stream to be live")
            click(browser, "#tab-recent")
            state = wait(browser, lambda d: js(d, "const s = document.getElementById("
                                                  "'recent-view').dataset.state; return s ==="
                                                  " 'loading' || s === 'idle' ? null : s"),
                         "the recent view")
            # The calls that ended before the page opened are listed (the hub's list;
            # tests/e2e/test_dashboard_error_event.py has a hub without one).
            assert state == "shown", state
            listed = {r["session_id"] for r in recent_rows(browser)}
            assert before <= listed, before - listed
            with source._lock:
                ended_so_far = set(source.ended)
            wait(browser, lambda d: len(source.ended - ended_so_far) >= 2, "calls to end now")
            wait(browser, lambda d: (source.ended - ended_so_far)
                 <= {r["session_id"] for r in recent_rows(d)}, "the calls just ended, listed")
            shown = recent_rows(browser)
            assert [r["end_ms"] for r in shown] == sorted((r["end_ms"] for r in shown),
                                                          reverse=True), "newest first"
            for row in shown:
                assert row["reason"] == "normal" and row["dialog"] == source.dialog_of.get(
                    row["session_id"], row["dialog"]), row
            durations = js(browser, "return [...document.querySelectorAll("
                                    "'#recent-body td.duration')].map(c => c.textContent)")
            assert all(re.fullmatch(r"\d+:\d\d", d) for d in durations), durations
            screenshot(browser, tmp_path, "dashboard-recent.png")

            # An ended call, opened by its URL in a fresh page: its record.
            ended = sorted(source.ended - ended_so_far)[0]
            events = source.events_of(ended)
            fresh_page(browser, f"{hub.url}/#call={ended}")
            wait(browser, lambda d: js(d, "return document.getElementById('call-panel')"
                                          ".dataset.source") == "record", "the call's record")
            assert selected(browser) == ended
            want = record_transcript(events)
            wait(browser, lambda d: transcript(d) == want, "the record's transcript")
            assert turn_latencies(browser) == expected_latencies(events)
            assert len(turn_latencies(browser)) >= 2
            assert state_path(browser) == expected_path(events)
            assert timeline_marks(browser) == expected_marks(events)
            details = dict(js(browser, "return [...document.querySelectorAll("
                                       "'#call-details dd')].map(d => [d.dataset.field,"
                                       " d.textContent])"))
            assert details["status"] == "terminated (normal)", details
            assert CLOCK.fullmatch(details["ended"]) and "p50" in details["latency"], details
            screenshot(browser, tmp_path, "dashboard-record.png")

            # A caller's number and Enter: that caller's ended calls, as the hub finds them.
            caller = next(e.caller_id for e in events if isinstance(e, CallStarted))
            search = browser.find_element(By.ID, "search")
            search.send_keys(caller + "\n")
            wait(browser, lambda d: js(d, "return document.getElementById('recent-view')"
                                          ".dataset.state") == "shown"
                 and ended in {r["session_id"] for r in recent_rows(d)}, "the caller's calls")
            assert {r["caller"] for r in recent_rows(browser)} == {caller}
            assert all(not r["hidden"] for r in recent_rows(browser))
            search.clear()

            # Searching for it by session id opens it too; an unknown one says so.
            search.send_keys("no-such-call-4711\n")
            wait(browser, lambda d: js(d, "return document.getElementById('call-panel')"
                                          ".dataset.source") == "missing", "the unknown call")
            assert "No call" in browser.find_element(By.ID, "call-message").text
        assert script_errors(browser) == []
    finally:
        hub.stop()
