"""The spec's JavaScript EventSource example, verbatim (host and port aside), in
a real headless Chromium, on a page served from another origin."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import DATA
from tests.support.polling import wait_until
from tests.support.processes import HubProcess, free_port, start_hub, stop_process

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


def test_the_spec_javascript_example_works_in_chromium(
    redis_url: str, page_server: tuple[Path, str], tmp_path: Path
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed (make setup installs it)")
    hub: HubProcess = start_hub(redis_url)
    folder, origin = page_server
    script = SPEC_EXAMPLE.replace("http://localhost:8080", hub.url)
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
    try:
        wait_until(lambda: "GET /v1/calls/events?event_types=" in hub.output(), timeout=30,
                 what="the page's EventSource to connect", interval=0.1)
        published = subprocess.run(
            [sys.executable, "-m", "callhub.cli", "publish",
             "--redis-url", redis_url, str(DATA / "spec_events.jsonl")],
            capture_output=True, timeout=60, check=False)
        assert published.returncode == 0, published.stderr
        expected = [
            '"Call started: call-abc-123 from +15551234567"',
            '"[call-abc-123] I need a password reset (94%)"',
            '"Call ended: call-abc-123 (normal, 135s)"',
        ]
        wait_until(lambda: all(line in log.read_text(errors="replace") for line in expected),
                 timeout=30, what="the example's three console lines", interval=0.1)
        assert "SSE connection error" not in log.read_text(errors="replace")
    finally:
        stop_process(chromium)  # type: ignore[arg-type]
        hub.stop()
