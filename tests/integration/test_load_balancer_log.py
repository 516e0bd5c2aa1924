"""The shipped load balancer never writes a credential to its access log.

A real nginx running deploy/nginx.conf in front of a real ``callhub serve`` with
an API key: a dashboard-like session (the page, REST with a header, event streams
authenticated in the URL as an EventSource must) and every spelling of ``api_key``
and ``token`` the hub reads or masks, then the access log is read whole.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.nginx import Nginx, start_nginx
from tests.support.polling import wait_until
from tests.support.processes import HubProcess, start_hub

KEY = "chk_live_7f3a9c2e5b1d4f60a8c7e9b2d4f6a8c0"
TOKEN = "cst_4e8a1b9c7d2f6e0a3b5c8d1e4f7a0b2c"


@pytest.fixture
def balanced(redis_url: str, tmp_path: Path) -> Iterator[tuple[HubProcess, Nginx]]:
    hub = start_hub(redis_url, env={"CALLHUB_API_KEYS": KEY}, log_dir=tmp_path)
    try:
        nginx = start_nginx(tmp_path / "nginx", [hub.url.removeprefix("http://")])
        try:
            yield hub, nginx
        finally:
            nginx.stop()
    finally:
        hub.stop()


def _access_lines(nginx: Nginx, count: int) -> list[str]:
    """The access log's request lines, once ``count`` of them are written (a
    stream's line is written when it closes)."""
    def written() -> list[str]:
        lines = [line for line in nginx.log().splitlines() if "request_time=" in line]
        return lines if len(lines) >= count else []
    return wait_until(written, what=f"{count} access log lines")


def _open_stream(client: httpx.Client, target: str) -> int:
    """What an EventSource does: GET with Accept: text/event-stream; closed after the head."""
    with client.stream("GET", target, headers={"Accept": "text/event-stream"}) as response:
        return response.status_code


def test_a_dashboard_session_leaves_no_key_or_token_in_the_access_log(
        balanced: tuple[HubProcess, Nginx]) -> None:
    hub, nginx = balanced
    with httpx.Client(base_url=nginx.url, timeout=10) as client:
        assert client.get("/").status_code == 200
        assert client.get("/v1/calls", headers={"X-API-Key": KEY}).status_code == 200
        # The dashboard's two streams, with the key in the URL; the spelling
        # api%5Fkey authenticates too (the hub decodes names before reading them).
        assert _open_stream(client, f"/v1/calls/events?include_history=true&api_key={KEY}") == 200
        assert _open_stream(client, f"/v1/calls/events?api%5Fkey={KEY}&event_types="
                                    "call_started,call_terminated") == 200
        assert _open_stream(client, f"/v1/calls/events?token={TOKEN}&include_history=true") \
            in (200, 400, 401)
        # Spellings the hub would not take but a careless client may send anyway.
        for target in (f"/v1/calls/events?API_KEY={KEY}",
                       f"/v1/calls/events?%61pi%5fKEY={KEY}&x=1",
                       f"/v1/calls/events?Token={TOKEN}",
                       f"/v1/calls/events?%54oken={TOKEN}",
                       f"/v1/calls/events?+api_key+={KEY}",
                       f"/v1/calls/events?api_key={KEY}&token={TOKEN}&api_key={KEY}",
                       f"/v1/calls?page_size=5&api_key={KEY}&api_key={KEY}&token={TOKEN}"
                       f"&api_key={KEY}"):
            _open_stream(client, target)
    # A request line nginx cannot parse is answered 400 by nginx itself.
    with socket.create_connection(("127.0.0.1", int(nginx.url.rsplit(":", 1)[1]))) as raw:
        raw.sendall(f"GET /v1/calls/events?api_key={KEY} HTTP/1.1 junk\r\n\r\n".encode())
        raw.settimeout(10)
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
    lines = _access_lines(nginx, 13)
    log = nginx.log()
    assert KEY not in log and TOKEN not in log
    assert KEY[4:20] not in log and TOKEN[4:20] not in log  # not even a piece of either
    # The request lines are still there, with what is not a secret.
    assert any('"GET /v1/calls/events?include_history=true&api_key=*** HTTP/1.1" 200' in line
               for line in lines), lines
    assert any('"GET /v1/calls/events?api%5Fkey=***&event_types=call_started,call_terminated '
               'HTTP/1.1" 200' in line for line in lines), lines
    assert any('"GET /v1/calls/events?token=***&include_history=true HTTP/1.1"' in line
               for line in lines), lines
    assert any('"GET /v1/calls/events?%61pi%5fKEY=***&x=1 HTTP/1.1"' in line for line in lines)
    assert any("?api_key=***&token=***&api_key=*** HTTP/1.1" in line for line in lines)
    # Four credentials are more than the masks count: the whole query goes.
    assert any('"GET /v1/calls?*** HTTP/1.1"' in line for line in lines), lines
    assert KEY not in hub.output()  # and the hub's own log agrees
