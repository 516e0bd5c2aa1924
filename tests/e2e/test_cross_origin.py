"""An open hub (no keys) is readable by this machine's pages only: a real Chromium,
a page of another origin refused, one served from localhost allowed."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.polling import wait_until
from tests.support.processes import free_port, start_hub, stop_process

PAGE = """<!doctype html><title>probe</title><script>
fetch("HUB/v1/calls").then(r => r.json())
  .then(j => console.log("READ OK " + j.total_count), () => console.log("READ REFUSED"));
const source = new EventSource("HUB/v1/calls/events");
source.onopen = () => console.log("STREAM OPEN");
source.onerror = () => { console.log("STREAM REFUSED"); source.close(); };
</script>"""


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The same folder served on two origins: 127.0.0.2 (another site, as far as the
    browser knows) and localhost."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    servers = {name: http.server.ThreadingHTTPServer((address, free_port()), handler)
               for name, address in (("foreign", "127.0.0.2"), ("local", "127.0.0.1"))}
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"foreign": f"http://127.0.0.2:{servers['foreign'].server_address[1]}",
           "local": f"http://localhost:{servers['local'].server_address[1]}"}
    for server in servers.values():
        server.shutdown()


def _console_of(page_url: str, tmp_path: Path, name: str, expect: tuple[str, str]) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed (make setup installs it)")
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        chromium = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / name}", "--enable-logging=stderr",
             "--v=0", "--remote-debugging-port=0", page_url],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: all(word in log.read_text(errors="replace") for word in expect),
                   timeout=30, interval=0.1, what=f"the {name} page to report {expect}")
        return log.read_text(errors="replace")
    finally:
        stop_process(chromium)  # type: ignore[arg-type]


def test_a_foreign_page_cannot_read_an_open_hub_and_a_local_one_can(
        redis_url: str, pages: dict[str, str], tmp_path: Path) -> None:
    hub = start_hub(redis_url)
    try:
        (tmp_path / "index.html").write_text(PAGE.replace("HUB", hub.url))
        foreign = _console_of(f"{pages['foreign']}/index.html", tmp_path, "foreign",
                              ("READ ", "STREAM "))
        assert "READ REFUSED" in foreign and "STREAM REFUSED" in foreign
        assert "READ OK" not in foreign and "STREAM OPEN" not in foreign
        local = _console_of(f"{pages['local']}/index.html", tmp_path, "local",
                            ("READ ", "STREAM "))
        assert "READ OK 0" in local and "STREAM OPEN" in local
    finally:
        hub.stop()
