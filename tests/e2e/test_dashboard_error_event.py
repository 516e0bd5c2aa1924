"""A call's ``error`` event is a call event, not a dropped connection, whichever
name the stream gives it on the wire: ``event: call_error`` (the hub's name for
it) or ``event: error`` (older hubs), which EventSource also dispatches to the
handlers of connection failures.

The page runs in a real headless Chromium against a stand-in for the hub on
127.0.0.1 that serves the dashboard and a stream carrying both frames, so both
wire names are exercised whatever the hub of the day sends; the stand-in counts
every stream request the page makes.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from hub.api.dashboard import content_security_policy, dashboard_html
from tests.support.browser import screenshot, script_errors, wait_for
from tests.support.processes import free_port

SESSION = "err-call-1"
OLD_NAME = "recogniser timed out (sent as event: error)"
NEW_NAME = "recogniser timed out (sent as event: call_error)"


def event(seq: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"evt-{SESSION}-{seq}", "type": kind, "session_id": SESSION, "seq": seq,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"), **fields}


FIRST = [
    ("call_started", event(1, "call_started", caller_id="+15550001111",
                           called_number="+18001234567", dialog_name="helpdesk")),
    ("state_transition", event(2, "state_transition", from_state="start", to_state="greeting",
                               trigger_event="call_started", dialog_name="helpdesk")),
    ("error", event(3, "error", code="asr_timeout", message=OLD_NAME, component="asr")),
    ("tts_started", event(4, "tts_started", utterance_id="u1", text="Sorry, say that again?",
                          voice="en-US-1", state="greeting")),
    ("call_error", event(5, "error", code="asr_timeout", message=NEW_NAME, component="asr")),
]
SECOND = [
    ("speech_final", event(6, "speech_final", transcript="I need a password reset",
                           confidence=0.94, language="en", duration_ms=900)),
]


@dataclass
class StandIn:
    """What the stand-in hub saw, and the switch that lets the second batch go."""

    url: str
    stream_requests: list[str] = field(default_factory=list)
    first: threading.Event = field(default_factory=threading.Event)
    second: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def stand_in_hub() -> Iterator[StandIn]:
    port = free_port()
    state = StandIn(f"http://127.0.0.1:{port}")

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/":
                self.reply(200, dashboard_html(), "text/html; charset=utf-8",
                           {"Content-Security-Policy": content_security_policy()})
            elif path == "/v1/calls/events":
                state.stream_requests.append(self.path)
                self.stream()
            elif path == "/v1/calls" and "status=" in query:  # a hub without ended calls
                self.json(400, {"error": {"code": "invalid_parameter", "param": "status",
                                          "message": "unknown query parameter 'status'"}})
            elif path == "/v1/calls":
                self.json(200, {"calls": [], "next_page_token": "", "total_count": 0})
            else:
                self.json(404, {"error": {"code": "not_found", "message": "not here"}})

        def stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            batches = [(state.first, FIRST), (state.second, SECOND)]
            frame_id = 0
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the page left
                while not state.stop.is_set():
                    if batches and batches[0][0].is_set():
                        for name, data in batches.pop(0)[1]:
                            frame_id += 1
                            self.wfile.write(f"id: {frame_id}\nevent: {name}\n"
                                             f"data: {json.dumps(data)}\n\n".encode())
                    else:
                        self.wfile.write(b": ping\n\n")
                    self.wfile.flush()
                    state.stop.wait(0.2)

        def json(self, status: int, body: dict[str, Any]) -> None:
            self.reply(status, json.dumps(body).encode(), "application/json", {})

        def reply(self, status: int, body: bytes, media: str, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hub)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def feed(driver: WebDriver) -> list[tuple[str, str]]:
    rows: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('#feed .row:not(.control)')]"
        ".map(r => [r.dataset.type, r.querySelector('.summary').textContent])")
    return [(kind, text) for kind, text in rows]


def test_a_call_error_event_under_either_wire_name_is_a_call_event(
    browser: WebDriver, tmp_path: Path
) -> None:
    with stand_in_hub() as hub:
        browser.get(f"{hub.url}/")
        wait_for(browser, lambda d: d.execute_script(
            "return document.getElementById('connection-state').dataset.state === 'live'"
            " && document.getElementById('feed-state').dataset.state === 'live'"),
            "both streams live")
        # every state either indicator takes from now on
        browser.execute_script("""
            window.__states = [];
            for (const id of ['connection-state', 'feed-state']) {
              new MutationObserver(() => window.__states.push(
                id + ':' + document.getElementById(id).dataset.state))
                .observe(document.getElementById(id), {attributes: true});
            }""")
        assert len(hub.stream_requests) == 2  # the main stream and the feed's

        hub.first.set()
        wait_for(browser, lambda d: len(feed(d)) == len(FIRST), "the first events in the feed")
        errors = [text for kind, text in feed(browser) if kind == "error"]
        assert len(errors) == 2 and any(OLD_NAME in t for t in errors) \
            and any(NEW_NAME in t for t in errors), errors

        # The call and its transcript have both errors; the page never left "live".
        row = f'#calls-body tr[data-session-id="{SESSION}"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row),
                 "the call's row")[0].click()
        lines = wait_for(browser, lambda d: [t for k, t in d.execute_script(
            "return [...document.querySelectorAll('#transcript .line')]"
            ".map(l => [l.dataset.kind, l.querySelector('.text').textContent])") if k == "error"],
            "the errors in the transcript")
        assert any(OLD_NAME in t for t in lines) and any(NEW_NAME in t for t in lines), lines

        # What comes after the errors arrives on the same two connections (a page that
        # took an error for a failure would have probed and reopened by now).
        hub.second.set()
        wait_for(browser, lambda d: len(feed(d)) == len(FIRST) + len(SECOND), "the later event")
        assert len(hub.stream_requests) == 2, hub.stream_requests
        assert browser.execute_script("return window.__states") == []
        assert not browser.find_element(By.ID, "stream-banner").is_displayed()
        assert browser.execute_script("return document.body.dataset.live") == "true"
        screenshot(browser, tmp_path, "dashboard-error-events.png")
        # the stand-in lists no ended calls: the recent view says so
        browser.find_element(By.ID, "tab-recent").click()
        note = browser.find_element(By.ID, "recent-note")
        assert browser.find_element(By.ID, "recent-view").get_attribute("data-state") \
            == "unsupported"
        assert "not available" in note.text and "status" in note.text, note.text
    assert script_errors(browser) == []
