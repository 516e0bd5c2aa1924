"""Processes a test starts: a free loopback port for them, stopping them by PID,
and ``callhub`` itself (serve, demo) run as a user runs it.

Every process listens on 127.0.0.1 and is stopped through the Popen this test
holds (its PID), never by name: other people's processes share the machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.polling import wait_until

TEST_SECRET = "test-secret-of-at-least-32-characters"


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM this PID, then SIGKILL if it has not gone by the deadline."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class CallhubProcess:
    """A `callhub` process (serve, demo) this test started and stops by PID."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


HubProcess = CallhubProcess
DemoProcess = CallhubProcess


def start_callhub(
    command: Sequence[str], port: int, ready: Callable[[CallhubProcess], object], what: str, *,
    env: dict[str, str] | None = None, scheme: str = "http", log_dir: Path | None = None,
) -> CallhubProcess:
    """``callhub <command>`` with a clean environment, its output in a log file,
    returned once ``ready`` holds (and stopped if it never does)."""
    log = Path(tempfile.mkstemp(prefix=f"callhub-{command[0]}-", suffix=".log", dir=log_dir)[1])
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
    environment.update(env or {})
    if {"CALLHUB_API_KEYS", "CALLHUB_API_KEYS_FILE"} & environment.keys():
        environment.setdefault("CALLHUB_SECRET", TEST_SECRET)  # required with keys
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "callhub.cli", *command],
                                   stdout=out, stderr=subprocess.STDOUT, env=environment)
    started = CallhubProcess(f"{scheme}://127.0.0.1:{port}", process, log)

    def up() -> object:
        if process.poll() is not None:
            raise AssertionError(f"callhub {command[0]} exited: {started.output()}")
        return ready(started)

    try:
        wait_until(up, timeout=20, what=what, interval=0.05)
    except BaseException:
        started.stop()
        raise
    return started


def start_hub(
    redis_url: str, *args: str, env: dict[str, str] | None = None, scheme: str = "http",
    ready: Callable[[str], object] | None = None, log_dir: Path | None = None,
    port: int | None = None,
) -> CallhubProcess:
    """``callhub serve`` on 127.0.0.1 (a free port unless given), once it answers."""
    port = port or free_port()

    def answers(hub: CallhubProcess) -> object:
        if ready is not None:
            return ready(hub.url)
        return httpx.get(f"{hub.url}/healthz", timeout=1).status_code == 200

    return start_callhub(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--redis-url", redis_url, *args],
        port, answers, "callhub serve to answer", env=env, scheme=scheme, log_dir=log_dir)


def start_demo(*args: str, env: dict[str, str] | None = None) -> CallhubProcess:
    """``callhub demo`` on a free port, once it has a live call."""
    port = free_port()

    def has_a_call(demo: CallhubProcess) -> object:
        page = httpx.get(f"{demo.url}/v1/calls", timeout=1).json()
        return page["total_count"] > 0

    return start_callhub(["demo", "--port", str(port), *args], port, has_a_call,
                         "callhub demo to show a live call", env=env)
