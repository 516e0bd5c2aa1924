"""``callhub serve`` as a person starts it: where to go, and a busy port."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.support.processes import free_port, start_hub


def test_serve_logs_where_the_dashboard_and_the_api_reference_are(redis_url: str) -> None:
    hub = start_hub(redis_url)
    try:
        (said,) = [line for line in hub.output().splitlines() if "callhub.serve" in line]
        assert f"the dashboard is at {hub.url}/," in said
        assert f"the API reference at {hub.url}/docs" in said
        assert "with 1 worker process:" in said
    finally:
        hub.stop()


def test_a_busy_port_is_one_line_and_exit_2_like_the_demo(redis_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "callhub.cli", "serve", "--port", str(port),
             "--redis-url", redis_url], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"callhub serve: port {port} on 127.0.0.1 is in use; choose " \
                            "another with --port\n"
