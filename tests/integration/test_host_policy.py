"""Which Host names a replica answers, and which origins may read it, by default and set."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from callhub.settings import Settings
from tests.support.hubs import serving


def _with(settings: Settings, **values: object) -> Settings:
    return msgspec.structs.replace(settings, **values)


async def test_an_open_hub_answers_only_loopback_names(settings: Settings) -> None:
    async with serving(settings) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as api:
        for path in ("/v1/calls", "/v1/calls/events", "/", "/openapi.json", "/v1/webhooks"):
            refused = await api.get(path, headers={"Host": "attacker.example:8080"})
            assert refused.status_code == 400, path
            error = refused.json()["error"]
            assert error["param"] == "Host" and "CALLHUB_ALLOWED_HOSTS" in error["message"]
            assert refused.headers["x-content-type-options"] == "nosniff"
        for host in ("localhost:8080", "127.0.0.1", "[::1]:9", "LOCALHOST"):
            assert (await api.get("/v1/calls", headers={"Host": host})).status_code == 200, host
        for path in ("/healthz", "/metrics"):  # health checks call a replica by its address
            answer = await api.get(path, headers={"Host": "10.0.3.7:8000"})
            assert answer.status_code == 200, path


async def test_with_keys_or_a_setting_other_names_are_answered(settings: Settings) -> None:
    async with serving(_with(settings, api_keys="k-1")) as live, \
            httpx.AsyncClient(base_url=live.url, timeout=10) as api:
        answer = await api.get("/v1/calls", headers={"Host": "hub.example", "X-API-Key": "k-1"})
        assert answer.status_code == 200
    async with serving(_with(settings, allowed_hosts="hub.example, hub.internal")) as live, \
            httpx.AsyncClient(base_url=live.url, timeout=10) as api:
        assert (await api.get("/v1/calls", headers={"Host": "hub.internal:80"})).status_code == 200
        assert (await api.get("/v1/calls", headers={"Host": "localhost"})).status_code == 400


@pytest.mark.parametrize(("keys", "setting", "origin", "allowed"), [
    (None, None, "http://localhost:3000", "http://localhost:3000"),
    (None, None, "http://127.0.0.1:5173", "http://127.0.0.1:5173"),
    (None, None, "https://evil.example", None),
    (None, None, "http://localhost.evil.example", None),
    ("k-1", None, "https://evil.example", "*"),
    (None, "*", "https://evil.example", "*"),
    (None, "https://app.example", "https://app.example", "https://app.example"),
    (None, "https://app.example", "http://localhost:3000", None),
])
async def test_cors_follows_the_keys_unless_set(
        settings: Settings, keys: str | None, setting: str | None, origin: str,
        allowed: str | None) -> None:
    configured = _with(settings, api_keys=keys, cors_origins=setting)
    headers = {"Origin": origin, **({"X-API-Key": keys} if keys else {})}
    async with serving(configured) as live, \
            httpx.AsyncClient(base_url=live.url, timeout=10) as api:
        rest = await api.get("/v1/calls", headers=headers)
        stream_refused = await api.get("/v1/calls/events", params={"event_types": "bogus"},
                                       headers=headers)
        for answer in (rest, stream_refused):
            assert answer.headers.get("access-control-allow-origin") == allowed
