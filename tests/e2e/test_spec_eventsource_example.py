"""The spec's JavaScript EventSource example, verbatim (host and port aside), in
a real headless Chromium, on a page served from another origin, across a call's
``error`` event (sent as ``event: call_error``: hub/stream/frames.py)."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.polling import wait_until
from tests.support.processes import HubProcess, free_port, start_hub, stop_process
from tests.support.spec_examples import SPEC_EVENTS

SPEC_EXAMPLE = """
const params = new URLSearchParams({
  event_types: "call_started,speech_final,call_terminated",
});
const source = new EventSource(`http://localhost:8080/v1/calls/events?${params}`);

source.addEventListener("call_started", (e) => {
  const data = JSON.parse(e.data);
  console.log(`Call started: ${data.session_id} from ${data.caller_id}`);
});

source.addEventListener("speech_final", (e) => {
  const data = JSON.parse(e.data);
  console.log(`[${data.session_id}] ${data.transcript} (${Math.round(data.confidence * 100)}%)`);
});

source.addEventListener("call_terminated", (e) => {
  const data = JSON.parse(e.data);
  console.log(`Call ended: ${data.session_id} (${data.reason}, ${data.duration_seconds}s)`);
});

source.onerror = (err) => {
  console.error("SSE connection error:", err);
  source.close();
};
"""


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static file server on another port: another origin than the hub."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def call_lines(session_id: str, *, error: bool) -> bytes:
    """The spec's three example events as ``session_id``'s call, with an ``error``
    event (the spec's last type) before its end if asked."""
    events = [json.loads(line) for line in SPEC_EVENTS.read_bytes().splitlines()]
    if error:
        events.insert(2, {"event_id": "evt-err", "type": "error", "timestamp":
                          "2025-06-14T18:30:05Z", "code": "asr_timeout",
                          "message": "no transcript in 10 s", "component": "asr"})
    for seq, event in enumerate(events, 1):
        event.update(session_id=session_id, seq=seq, event_id=f"{session_id}-{seq}")
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


def publish(redis_url: str, lines: bytes) -> None:
    published = subprocess.run(
        [sys.executable, "-m", "callhub.cli", "publish", "--redis-url", redis_url],
        input=lines, capture_output=True, timeout=60, check=False)
    assert published.returncode == 0, published.stderr


def console_lines(session_id: str) -> list[str]:
    """What the example logs for one of ``call_lines``'s calls."""
    return [f'"Call started: {session_id} from +15551234567"',
            f'"[{session_id}] I need a password reset (94%)"',
            f'"Call ended: {session_id} (normal, 135s)"']


@pytest.mark.parametrize("as_written", [True, False], ids=["as-written", "all-event-types"])
def test_the_spec_javascript_example_keeps_receiving_across_a_call_error_in_chromium(
    redis_url: str, page_server: tuple[Path, str], tmp_path: Path, as_written: bool
) -> None:
    """The example as written (its filter leaves ``error`` out), and the way
    dashboards and loggers use it, following every type: a call's ``error``
    event must not reach ``source.onerror``, which closes the stream for good."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed (make setup installs it)")
    hub: HubProcess = start_hub(redis_url)
    folder, origin = page_server
    script = SPEC_EXAMPLE.replace("http://localhost:8080", hub.url)
    if not as_written:
        script = script.replace('event_types: "call_started,speech_final,call_terminated",', "")
        assert "event_types" not in script
    (folder / "index.html").write_text(f"<!doctype html><title>spec</title><script>{script}"
                                       "</script>")
    log = tmp_path / "chromium.log"
    with log.open("wb") as out:
        chromium = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0", "--remote-debugging-port=0",
             f"{origin}/index.html"],
            stdout=out, stderr=subprocess.STDOUT,
        )

    def logged(lines: list[str]) -> bool:
        return all(line in log.read_text(errors="replace") for line in lines)

    try:
        wait_until(lambda: "GET /v1/calls/events" in hub.output(), timeout=30,
                   what="the page's EventSource to connect", interval=0.1)
        publish(redis_url, call_lines("call-abc-123", error=True))
        wait_until(lambda: logged(console_lines("call-abc-123")), timeout=30,
                   what="the first call's three console lines", interval=0.1)
        # After the call error: the same stream, still open, hears the next call.
        publish(redis_url, call_lines("call-def-456", error=False))
        wait_until(lambda: logged(console_lines("call-def-456")), timeout=30,
                   what="the next call's lines, after the error event", interval=0.1)
        assert "SSE connection error" not in log.read_text(errors="replace")
        assert hub.output().count("GET /v1/calls/events") == 1  # never reconnected
    finally:
        stop_process(chromium)  # type: ignore[arg-type]
        hub.stop()
