"""What every benchmark here needs: a private redis-server, free ports, percentiles.

Servers a benchmark starts listen on 127.0.0.1 and are stopped by PID.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import IO

import redis


class BenchError(Exception):
    """The benchmark cannot run or its result cannot be trusted; the message says why."""


# ---------------------------------------------------------------------------
# A private redis-server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalRedis:
    """A throw-away ``redis-server`` without persistence, stopped by its PID."""

    def __init__(self, executable: str) -> None:
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, ready_within_s: float = 10.0, attempts: int = 3) -> None:
        for _ in range(attempts):
            self.port = free_port()  # another process may take it first: then retry
            # Closed in stop(): it lives as long as the server does.
            self._log = tempfile.TemporaryFile()  # noqa: SIM115
            self._process = subprocess.Popen(
                [
                    self._executable,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready(ready_within_s):
                return
            log = self._read_log()
            self.stop()
            if "Address already in use" not in log:
                raise BenchError(f"redis-server did not become ready:\n{log}")
        raise BenchError(f"redis-server found no free port in {attempts} attempts")

    def _wait_ready(self, within_s: float) -> bool:
        """Poll PING until it answers; False if the server exits or the deadline passes."""
        assert self._process is not None
        deadline = time.monotonic() + within_s
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                time.sleep(0.02)  # the poll interval, bounded by the deadline above
            return False
        finally:
            client.close()

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM to this PID only
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]
