"""What every benchmark here needs: a private redis-server, free ports, percentiles,
CPU and memory readings of a process, py-spy profile summaries.

Servers a benchmark starts listen on 127.0.0.1 and are stopped by PID.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


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
    """A throw-away ``redis-server`` without persistence, stopped by its PID.

    It runs in a directory of its own, removed when it stops: a replica's sync
    or a cluster's nodes.conf never lands in the working tree.
    """

    def __init__(self, executable: str, extra_args: Sequence[str] = ()) -> None:
        self._executable = executable
        self._directory = tempfile.TemporaryDirectory(prefix="callhub-bench-redis-")
        self._extra_args = ["--dir", self._directory.name, *extra_args]
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs (for /proc readings), else None."""
        return self._process.pid if self._process is not None else None

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
                    *self._extra_args,
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


class LocalRedisCluster:
    """A throw-away Redis Cluster: ``masters`` (and ``replicas`` each) redis-servers
    with cluster mode on, joined by ``redis-cli --cluster create``."""

    def __init__(self, executable: str, masters: int = 3, replicas: int = 0) -> None:
        self.nodes: list[LocalRedis] = []
        self._executable = executable
        self._count = masters * (1 + replicas)
        self._replicas = replicas

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for _ in range(self._count):
            # The bus port defaults to port + 10000 (past 65535 for most free ports).
            node = LocalRedis(self._executable, [
                "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                "--cluster-config-file", "nodes.conf", "--cluster-port", str(free_port())])
            node.start()
            self.nodes.append(node)
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(self._replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False)
        if created.returncode != 0:
            raise BenchError(f"redis-cli --cluster create failed: {created.stdout[-1000:]}")
        deadline = time.monotonic() + 30
        while not self._ready():
            if time.monotonic() > deadline:
                raise BenchError("the cluster did not become ready in 30 s")
            time.sleep(0.1)

    def _ready(self) -> bool:
        for node in self.nodes:
            with redis.Redis(host="127.0.0.1", port=node.port) as client:
                info = client.cluster("INFO")
                if info.get("cluster_state") != "ok" or \
                        int(info.get("cluster_known_nodes", 0)) != self._count:
                    return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class Server:
    """A server process started for the benchmark, stopped by its PID."""

    def __init__(self, name: str, command: list[str], port: int, *,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=ROOT,
                                         env=dict(env) if env is not None else None)

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    def log_tail(self, size: int = 2000) -> str:
        """The last ``size`` characters the process wrote (stdout and stderr)."""
        if self._log.closed:
            return ""
        # pread: the child shares the file offset; moving it would misplace its writes.
        fd = self._log.fileno()
        end = os.fstat(fd).st_size
        start = max(0, end - 4 * size)
        return os.pread(fd, end - start, start).decode(errors="replace")[-size:]

    def wait_ready(self, path: str, within_s: float = 20.0) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                if httpx.get(self.url + path, timeout=1).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # poll interval, bounded by the deadline
        raise BenchError(f"{self.name} did not start:\n{self.log_tail()}")

    def stop(self, *, keep_log: Path | None = None) -> None:
        """SIGTERM (SIGKILL after 10 s); ``keep_log``: append all it wrote to that file."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if not self._log.closed:
            if keep_log is not None:
                self._log.seek(0)
                with keep_log.open("ab") as out:
                    shutil.copyfileobj(self._log, out)
            self._log.close()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


# ---------------------------------------------------------------------------
# /proc readings and profiles


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kb(pid: int, name: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def summarize_profile(path: Path, top: int = 12,
                      packages: Sequence[str] = ("hub/", "workers/")) -> list[str]:
    """The hottest frames of a py-spy raw (collapsed) profile: by own time, own
    time by top-level package (or module), and the share of samples under each
    frame of ``packages`` (inclusive)."""
    own: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")[1:]]  # no thread
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        where = re.search(r"\(([^)]*)\)$", frames[-1])
        by_package[where.group(1).split("/")[0] if where else frames[-1]] += count
        for frame in set(frames):
            if any(package in frame for package in packages):
                inclusive[frame] += count
    if not total:
        return ["(no samples)"]
    lines = [f"{total:,} samples; own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("own time by package:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_package.most_common(top)]
    lines.append(f"inclusive time, frames of {', '.join(packages)}:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return lines
