"""deploy/nginx.conf as the tests run it: rendered, then a real nginx as the test user.

The file is a template with ``${LB_*}`` placeholders (see its header); docker
compose fills them with the nginx image's envsubst, the tests with ``render``.
Both substitute only the names they are given, so nginx's own ``$variables``
stay as they are.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.paths import ROOT
from tests.support.polling import wait_until
from tests.support.processes import free_port, stop_process

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NGINX = "/usr/sbin/nginx"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(text: str) -> set[str]:
    """The ``${NAME}`` placeholders of a template."""
    return set(_PLACEHOLDER.findall(text))


def render(text: str, values: Mapping[str, str]) -> str:
    """Substitute every ``${NAME}``; a placeholder without a value is an error."""
    missing = placeholders(text) - set(values)
    if missing:
        raise KeyError(f"no value for {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


UPSTREAM = "callhub_replicas"


def upstream_block(addresses: Sequence[str]) -> str:
    """The ``${LB_UPSTREAMS}`` value for replicas at host:port addresses: one
    upstream block (its idle HTTP/1.1 connections kept for REST requests)."""
    servers = " ".join(f"server {address};" for address in addresses)
    return f"upstream {UPSTREAM} {{ {servers} keepalive 32; }}"


def rlimit_nofile() -> int:
    """``${LB_WORKER_RLIMIT_NOFILE}``: 65,536 where the hard limit allows it, else
    the hard limit (nginx logs an [alert] per worker for more than it may have)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)


def nginx_binary() -> str:
    if not os.access(NGINX, os.X_OK):
        import pytest

        pytest.fail(f"{NGINX} not found: `make setup` installs nginx (Debian package)")
    return NGINX


def write_config(prefix: Path, port: int, replicas: Sequence[str]) -> Path:
    """Render deploy/nginx.conf into ``prefix`` for these replicas and this port."""
    prefix.mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(render(NGINX_CONF.read_text(), {
        "LB_PORT": f"127.0.0.1:{port}",
        # Replicas are addresses: nothing is resolved, the resolver never asked.
        "LB_RESOLVER": "127.0.0.1",
        "LB_UPSTREAMS": upstream_block(replicas),
        "LB_UPSTREAM": UPSTREAM,
        "LB_WORKER_RLIMIT_NOFILE": str(rlimit_nofile()),
    }))
    return config


def nginx_command(prefix: Path, config: Path, *extra: str) -> list[str]:
    """nginx as the test user: prefix, pid and startup log in ``prefix``, in the foreground."""
    directives = f"daemon off; pid {prefix / 'nginx.pid'};"
    if os.geteuid() == 0:
        directives += " user root;"  # workers would otherwise drop to nobody
    return [nginx_binary(), "-p", f"{prefix}/", "-c", str(config), "-e", "stderr",
            "-g", directives, *extra]


@dataclass
class Nginx:
    """An nginx this test started (stopped by PID: SIGTERM is nginx's fast shutdown)."""

    url: str
    process: subprocess.Popen[bytes]
    prefix: Path

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        path = self.prefix / "nginx.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alerts(self) -> list[str]:
        """The log's [alert] and [emerg] lines (a file limit set too high logs one per worker)."""
        return [line for line in self.log().splitlines() if "[alert]" in line or "[emerg]" in line]


def start_nginx(prefix: Path, replicas: Sequence[str], port: int | None = None) -> Nginx:
    """A real nginx on 127.0.0.1 running deploy/nginx.conf in front of ``replicas``.

    Its error log (stderr) and access log (stdout) go to ``prefix``/nginx.log.
    """
    port = port or free_port()
    config = write_config(prefix, port, replicas)
    with (prefix / "nginx.log").open("ab") as log:
        process = subprocess.Popen(nginx_command(prefix, config), stdout=log,
                                   stderr=subprocess.STDOUT)
    nginx = Nginx(f"http://127.0.0.1:{port}", process, prefix)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited ({process.returncode}): {nginx.log()}")
        with httpx.Client(timeout=1) as client:
            client.get(f"{nginx.url}/healthz")  # any answer: nginx is listening
        return True

    try:
        wait_until(up, timeout=10, what="nginx to listen", interval=0.05)
    except BaseException:
        nginx.stop()
        raise
    return nginx


def check_config(prefix: Path, replicas: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on the rendered file (nothing starts)."""
    config = write_config(prefix, free_port(), replicas)
    return subprocess.run(nginx_command(prefix, config, "-t"), capture_output=True, text=True,
                          timeout=30, check=False)


def remove(prefix: Path) -> None:
    shutil.rmtree(prefix, ignore_errors=True)
