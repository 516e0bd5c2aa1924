"""Sealed cursors and tokens at the API, with a server secret: a forged or
mutated one is a 400 naming its parameter (a stream token: a 401), never a 500,
and a genuine one still works."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import httpx
import msgspec
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from callhub.cursor import Cursor
from callhub.settings import Settings
from hub.store.call_store import PagePosition, encode_page_token
from tests.support.hubs import serving
from tests.support.processes import free_port

KEY = {"X-API-Key": "k-1"}


def _keyed(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, api_keys="k-1",
                                   secret="sealed-tokens-test-secret-0123456789")


def _mutated(token: str, at: int, flip: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[at % len(raw)] ^= flip
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@hypothesis_settings(max_examples=20, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(0, 200), flip=st.integers(1, 255), ms=st.integers(0, 2**48),
       seq=st.integers(0, 2**20))
async def test_mutated_cursors_and_tokens_are_refused_with_a_4xx(
    settings: Settings, at: int, flip: int, ms: int, seq: int
) -> None:
    async with serving(_keyed(settings)) as live, httpx.AsyncClient(timeout=10) as client:
        cursor = Cursor(tuple((ms, seq) for _ in range(settings.shards))).encode()
        async with client.stream("GET", f"{live.url}/v1/calls/events", headers={
                **KEY, "Last-Event-ID": _mutated(cursor, at, flip)}) as answer:
            assert answer.status_code == 400
            assert msgspec.json.decode(await answer.aread())["error"]["param"] == "Last-Event-ID"
        async with client.stream("GET", f"{live.url}/v1/calls/events",
                                 headers={**KEY, "Last-Event-ID": cursor}) as answer:
            assert answer.status_code == 200  # the genuine one (forged positions included)

        page = encode_page_token(PagePosition(dialog="", start_ms=ms, session_id="s-1"))
        listing = await client.get(f"{live.url}/v1/calls", headers=KEY,
                                   params={"page_token": _mutated(page, at, flip)})
        assert listing.status_code == 400
        assert listing.json()["error"]["param"] == "page_token"
        assert (await client.get(f"{live.url}/v1/calls", headers=KEY,
                                 params={"page_token": page})).status_code == 200

        token = (await client.post(f"{live.url}/v1/stream-tokens", headers=KEY)).json()["token"]
        refused = await client.get(f"{live.url}/v1/calls/events",
                                   params={"token": _mutated(token, at, flip)})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"


def _serve(redis_url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
    return subprocess.run(
        [sys.executable, "-m", "callhub.cli", "serve", "--port", str(free_port()),
         "--redis-url", redis_url], capture_output=True, text=True, timeout=30,
        env={**clean, **env})


def test_a_replica_with_keys_and_no_secret_refuses_to_start(redis_url: str) -> None:
    result = _serve(redis_url, {"CALLHUB_API_KEYS": "a-key-of-the-operator"})
    assert result.returncode == 2
    assert "CALLHUB_SECRET is required when API keys are configured" in result.stderr
    short = _serve(redis_url, {"CALLHUB_API_KEYS": "k", "CALLHUB_SECRET": "too-short-s3cret"})
    assert short.returncode == 2
    assert "CALLHUB_SECRET must be at least 32 characters" in short.stderr
    assert "too-short-s3cret" not in short.stderr  # a secret is never printed
    lone = _serve(redis_url, {"CALLHUB_SECRET_PREVIOUS": "x" * 40})
    assert lone.returncode == 2
    assert "CALLHUB_SECRET_PREVIOUS is set without CALLHUB_SECRET" in lone.stderr


def test_settings_never_show_the_secret() -> None:
    shown = repr(Settings(secret="s" * 40, secret_previous="p" * 40))
    assert "s" * 40 not in shown and "p" * 40 not in shown
