"""A compose project the tests bring up on their own engine, and its timed steps.

Works with Compose v2 (``docker compose``) and v1 (``docker-compose``, Debian's
1.29): only commands and flags both have are used (``up -d``, ``--scale``,
``--no-deps``, ``ps -q``, ``logs --no-color``, ``restart``, ``stop``, ``down -v``).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.docker_engine import DockerEngine, compose_command, say


@dataclass
class Steps:
    """Every step timed and printed as it ends; ``table`` prints them all."""

    rows: list[tuple[str, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        say(f"{name} ...")
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            self.rows.append((name, elapsed))
            say(f"{name}: {elapsed:.1f} s")

    def table(self, title: str) -> str:
        width = max(len(name) for name, _ in self.rows)
        lines = [title, f"{'step':<{width}}  seconds"]
        lines += [f"{name:<{width}}  {seconds:7.1f}" for name, seconds in self.rows]
        lines.append(f"{'total':<{width}}  {sum(s for _, s in self.rows):7.1f}")
        return "\n".join(lines)


@dataclass
class ComposeStack:
    """One compose project (its own name) on a test engine."""

    engine: DockerEngine
    files: Sequence[Path]
    project: str
    variables: dict[str, str]
    command: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.command = self.command or compose_command(self.engine)

    def run(self, *args: str, timeout: float = 300) -> str:
        argv = [*self.command, "-p", self.project]
        for file in self.files:
            argv += ["-f", str(file)]
        result = subprocess.run([*argv, *args], capture_output=True, text=True,
                                env={**self.engine.env(), **self.variables},
                                cwd=self.files[0].parent, timeout=timeout, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(self.command)} {' '.join(args)} failed "
                                 f"({result.returncode}): {result.stderr[-3000:]}")
        return result.stdout

    def containers(self, service: str) -> list[str]:
        """The ids of the service's containers, running or not."""
        return self.run("ps", "-q", service, timeout=60).split()

    def running(self, service: str) -> list[str]:
        return [c for c in self.containers(service) if self.inspect(c, "{{.State.Running}}")
                == "true"]

    def inspect(self, container: str, template: str) -> str:
        return self.engine.docker("inspect", "--format", template, container).stdout.strip()

    def address(self, container: str) -> str:
        """The container's address on the project's network."""
        return self.inspect(container,
                            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}").split()[0]

    def logs(self, service: str) -> str:
        return self.run("logs", "--no-color", service, timeout=60)

    def down(self) -> None:
        self.run("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180)


def answers(url: str, path: str = "/healthz") -> bool:
    """The stack answers 200 on ``path`` (through its load balancer)."""
    return httpx.get(f"{url}{path}", timeout=3).status_code == 200
