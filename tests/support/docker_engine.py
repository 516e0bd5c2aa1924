"""A Docker engine of the tests' own: dockerd with private data and exec roots.

The compose tests need a real engine. They start one with its own socket and
directories (so they touch no engine the machine may run), keep its data root
between runs under /var/lib/callhub-compose (images and build cache survive:
a rerun builds nothing that did not change), and stop it by PID on every exit
path. dockerd changes the machine's network settings as it starts (iptables
chains and NAT, IP forwarding, a docker0 bridge); those are read before and put
back after.

Images the compose files name are built from Debian's packages when no
registry can be reached (deploy/offline-images/build, its tarball cached).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.polling import wait_until

STATE = Path(os.environ.get("CALLHUB_COMPOSE_STATE", "/var/lib/callhub-compose"))
RUN = Path("/run/callhub-compose")  # short: unix socket paths have a length limit
OFFLINE_IMAGES = ROOT / "deploy" / "offline-images" / "build"
# The images the compose files name, and what builds each where none can be pulled.
BASE_IMAGES = ("python:3.11-slim", "redis:7", "nginx:1.27")


def say(message: str) -> None:
    """Progress, as it happens (the compose tests run with -s in CI)."""
    print(f"[compose] {message}", flush=True)


class EngineUnavailable(Exception):
    """What this machine lacks to run a Docker engine (named)."""


def _run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False,
                          timeout=120, **kwargs)  # type: ignore[call-overload]


@dataclass
class NetworkSettings:
    """What dockerd changes: iptables (v4 and v6), IP forwarding, links."""

    iptables: dict[str, str] = field(default_factory=dict)
    ip_forward: str = ""
    links: set[str] = field(default_factory=set)

    @classmethod
    def read(cls) -> NetworkSettings:
        settings = cls()
        for tool in ("iptables", "ip6tables"):
            if shutil.which(f"{tool}-save"):
                settings.iptables[tool] = _run([f"{tool}-save"]).stdout
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        settings.ip_forward = forward.read_text().strip() if forward.exists() else ""
        settings.links = set(os.listdir("/sys/class/net"))
        return settings

    def restore(self) -> None:
        """Put back what was read: rules, forwarding; remove links that were not there."""
        for link in set(os.listdir("/sys/class/net")) - self.links:
            _run(["ip", "link", "delete", link])
        for tool, saved in self.iptables.items():
            if saved.strip():
                _run([f"{tool}-restore"], input=saved)
                continue
            for table in ("filter", "nat"):  # none were set: empty them again
                _run([tool, "-t", table, "-F"])
                _run([tool, "-t", table, "-X"])
            for chain in ("INPUT", "FORWARD", "OUTPUT"):
                _run([tool, "-P", chain, "ACCEPT"])
        if self.ip_forward:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward + "\n")


@dataclass
class DockerEngine:
    """A running dockerd of the tests (``stop`` ends it and restores the network)."""

    process: subprocess.Popen[bytes]
    network: NetworkSettings
    log_path: Path
    socket: Path = RUN / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        """The environment for docker and compose commands against this engine."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, timeout: float = 120, check: bool = True,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], capture_output=True, text=True,
                                env=self.env(), timeout=timeout, check=False, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # stops its containers, then exits
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.network.restore()


def _check_machine() -> None:
    if os.geteuid() != 0:
        raise EngineUnavailable("a Docker engine needs root (CI runs as root)")
    for tool in ("dockerd", "docker", "debootstrap"):
        if shutil.which(tool) is None:
            raise EngineUnavailable(f"{tool} not found: `make setup` installs docker.io and "
                                    "debootstrap (Debian packages)")


def start_engine() -> DockerEngine:
    """dockerd on its own socket and roots; waits until it answers."""
    _check_machine()
    STATE.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    network = NetworkSettings.read()
    log_path = STATE / "dockerd.log"
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            ["dockerd", "--data-root", str(STATE / "docker"), "--exec-root", str(RUN / "exec"),
             "--host", f"unix://{RUN / 'docker.sock'}", "--pidfile", str(RUN / "dockerd.pid")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine = DockerEngine(process, network, log_path)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"dockerd exited ({process.returncode}): {engine.log()[-3000:]}")
        return engine.docker("version", "--format", "{{.Server.Version}}", check=False,
                             timeout=10).returncode == 0

    try:
        wait_until(answers, timeout=60, what="dockerd to answer", interval=0.2)
    except BaseException:
        engine.stop()
        raise
    version = engine.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    say(f"dockerd {version} up in {time.monotonic() - started:.1f} s ({engine.host}, "
        f"data root {STATE / 'docker'})")
    return engine


def compose_command(engine: DockerEngine) -> list[str]:
    """Compose v2 (``docker compose``) where the machine has it, else v1 (``docker-compose``)."""
    if engine.docker("compose", "version", check=False, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise EngineUnavailable("neither `docker compose` nor `docker-compose` is installed")


def ensure_base_images(engine: DockerEngine) -> None:
    """The images the compose files name: present, pulled, or built from Debian's packages."""
    missing = [image for image in BASE_IMAGES
               if engine.docker("image", "inspect", image, check=False).returncode != 0]
    if not missing:
        say(f"base images present: {', '.join(BASE_IMAGES)}")
        return
    pulled = engine.docker("pull", missing[0], check=False, timeout=60)
    if pulled.returncode == 0:
        for image in missing[1:]:
            engine.docker("pull", image, timeout=600)
        say(f"pulled {', '.join(missing)}")
        return
    reason = (pulled.stderr.strip().splitlines() or ["no answer"])[-1]
    say(f"cannot pull {missing[0]} ({reason}): building "
        "stand-ins from Debian packages (deploy/offline-images/build)")
    process = subprocess.Popen([str(OFFLINE_IMAGES)], env=engine.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
    if process.wait(timeout=900) != 0:
        raise AssertionError(f"deploy/offline-images/build failed ({process.returncode})")
