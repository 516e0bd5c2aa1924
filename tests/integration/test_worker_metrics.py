"""A worker's /metrics: commits by outcome, voice latencies and hook durations,
scraped from a running ``callhub worker --metrics-port`` (real redis-server)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx

from tests.support.metrics import samples
from tests.support.polling import wait_until
from tests.support.processes import free_port, stop_process


def test_a_running_worker_serves_its_metrics(
    redis_url: str, callhub_env: dict[str, str]
) -> None:
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "callhub.cli", "worker", "--simulate", "--redis-url", redis_url,
         "--rate", "20", "--speed", "20", "--seed", "3", "--metrics-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=callhub_env)
    try:
        scrape: dict[str, float] = {}

        def enough() -> bool:
            nonlocal scrape
            scrape = samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text)
            return (scrape.get('callhub_worker_commits_total{outcome="committed"}', 0) > 200
                    and scrape.get("callhub_worker_response_latency_seconds_count{}", 0) > 5
                    and any(k.startswith("callhub_worker_hook_duration_seconds_count")
                            for k in scrape))

        wait_until(enough, timeout=30, what="commits, responses and hooks in /metrics",
                 interval=0.2)
        assert scrape.get('callhub_worker_commits_total{outcome="rejected"}', 0) == 0
        p50_bucket = [v for k, v in scrape.items()
                      if re.match(r'callhub_worker_response_latency_seconds_bucket\{le="5.0"\}', k)]
        assert p50_bucket and p50_bucket[0] > 0  # responses took seconds, not minutes
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        stop_process(worker)


def test_a_busy_metrics_port_is_a_clear_error(redis_url: str, callhub_env: dict[str, str]
                                              ) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "callhub.cli", "worker", "--simulate", "--redis-url", redis_url,
             "--metrics-port", str(taken)],
            capture_output=True, text=True, env=callhub_env, timeout=30, check=False)
    assert done.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in done.stderr
    assert "Traceback" not in done.stderr
