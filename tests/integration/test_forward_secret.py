"""``callhub forward`` and ``CALLHUB_SECRET``: the same rule as ``callhub serve``,
on the same settings. With API keys configured and no secret it refuses to
start (exit 2, one line naming the variable, no traceback); with the secret,
or on an open deployment (no keys), it starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from callhub.settings import Settings
from tests.support.forwarding import forward_process, forwarder_started
from tests.support.polling import wait_until
from tests.support.redis_servers import engine_env

SECRET = "forward-secret-test-0123456789abcdefgh"


def _forward(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callhub.cli", "forward"], capture_output=True,
                          text=True, timeout=30, env=env)


@pytest.mark.parametrize("keys", [{"CALLHUB_API_KEYS": "an-operator-key"},
                                  {"CALLHUB_API_KEYS_FILE": "/nonexistent/keys.toml"}])
def test_with_api_keys_and_no_secret_forward_refuses_to_start(
    redis_url: str, settings: Settings, callhub_env: dict[str, str], keys: dict[str, str]
) -> None:
    env = {**callhub_env, **engine_env(settings), "CALLHUB_REDIS_URL": redis_url, **keys}
    result = _forward(env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("callhub forward: CALLHUB_SECRET is required when API keys "
                                    "are configured"), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "an-operator-key" not in result.stderr
    assert result.stdout == ""


def test_a_short_secret_is_refused_without_being_shown(
    redis_url: str, callhub_env: dict[str, str]
) -> None:
    result = _forward({**callhub_env, "CALLHUB_REDIS_URL": redis_url,
                       "CALLHUB_API_KEYS": "k", "CALLHUB_SECRET": "too-short-s3cret"})
    assert result.returncode == 2
    assert "CALLHUB_SECRET must be at least 32 characters" in result.stderr
    assert "too-short-s3cret" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("secret", [{"CALLHUB_SECRET": SECRET}, {}], ids=["keys+secret", "open"])
def test_with_the_secret_or_without_keys_forward_starts(
    redis_url: str, settings: Settings, callhub_env: dict[str, str], secret: dict[str, str]
) -> None:
    keys = {"CALLHUB_API_KEYS": "an-operator-key"} if secret else {}
    env = {**callhub_env, **engine_env(settings), "CALLHUB_REDIS_URL": redis_url, **keys, **secret}
    process, log = forward_process(env)
    try:
        wait_until(lambda: forwarder_started(log) or process.poll() is not None, timeout=20,
                   what="callhub forward to start")
        assert process.poll() is None, Path(log).read_text()
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert SECRET not in Path(log).read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        Path(log).unlink(missing_ok=True)
