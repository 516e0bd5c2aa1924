"""Browser stream tokens, against a real hub: they open the event stream within
their key's scope, narrowed as asked, and nothing else; expired, tampered or
foreign ones are a 401 with the JSON error."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from callhub.settings import Settings
from callhub.tokens import Keyring, seal
from hub.api.auth import hash_key
from tests.support.hubs import serving
from tests.support.keys import write_keys_file
from tests.support.polling import async_wait_until
from tests.support.sse import EventStreamReader, subscribe
from tests.support.strategies import call_started
from workers.commit.publisher import CallPublisher

SECRET = "stream-token-test-secret-0123456789abcdef"


@pytest.fixture
def keyed(settings: Settings, tmp_path: Path) -> Settings:
    path = write_keys_file(tmp_path / "keys.toml", helpdesk_dialogs=("helpdesk", "support"))
    return msgspec.structs.replace(settings, api_keys_file=str(path), secret=SECRET)


async def _token(client: httpx.AsyncClient, url: str, key: str, **body: object) -> str:
    answer = await client.post(f"{url}/v1/stream-tokens", headers={"X-API-Key": key},
                               json=body or None)
    assert answer.status_code == 200, answer.text
    assert answer.json()["expires_in"] == body.get("ttl_seconds", 300)
    assert "no-store" in answer.headers["cache-control"]  # a credential: never cached
    token: str = answer.json()["token"]
    return token


def _started(stream: EventStreamReader) -> set[str]:
    return {msgspec.json.decode(e.data or b"")["session_id"] for e in stream.events
            if e.event == "call_started"}


async def test_a_token_opens_the_stream_in_its_keys_scope_narrowed_as_asked(
    keyed: Settings, aredis: aioredis.Redis
) -> None:
    async with serving(keyed) as live, httpx.AsyncClient(timeout=10) as client:
        whole = await _token(client, live.url, "helpdesk-key")
        assert b"helpdesk" not in base64.urlsafe_b64decode(whole + "==")
        narrow = await _token(client, live.url, "helpdesk-key", dialogs=["support"])
        events = f"{live.url}/v1/calls/events"
        async with subscribe(events, params={"token": whole}) as scoped, \
                subscribe(events, params={"token": narrow}) as narrowed:
            assert scoped.response.status_code == narrowed.response.status_code == 200
            await CallPublisher(aredis, keyed).commit_many(
                [call_started(f"{d}-1", dialog=d) for d in ("billing", "support", "helpdesk")]
                + [call_started("last-support", dialog="support")])
            await async_wait_until(lambda: "last-support" in _started(scoped)
                                   and "last-support" in _started(narrowed),
                                   what="the last call on both token streams")
            assert _started(scoped) == {"support-1", "helpdesk-1", "last-support"}
            assert _started(narrowed) == {"support-1", "last-support"}


async def test_a_token_cannot_widen_its_keys_scope_nor_open_rest(keyed: Settings) -> None:
    async with serving(keyed) as live, httpx.AsyncClient(timeout=10) as client:
        outside = await client.post(f"{live.url}/v1/stream-tokens",
                                    headers={"X-API-Key": "helpdesk-key"},
                                    json={"dialogs": ["billing"]})
        assert outside.status_code == 400
        assert outside.json()["error"]["param"] == "dialogs"
        too_long = await client.post(f"{live.url}/v1/stream-tokens",
                                     headers={"X-API-Key": "ops-key"}, json={"ttl_seconds": 3601})
        assert too_long.status_code == 400
        assert (await client.post(f"{live.url}/v1/stream-tokens")).status_code == 401
        token = await _token(client, live.url, "ops-key")
        for path in ("/v1/calls", "/v1/calls/x-1", "/v1/webhooks"):
            rest = await client.get(f"{live.url}{path}", params={"token": token})
            assert rest.status_code in (400, 401), (path, rest.status_code)
            assert rest.json()["error"]["code"] in ("unauthorized", "invalid_parameter")


async def test_a_session_token_streams_only_that_call(
    keyed: Settings, aredis: aioredis.Redis
) -> None:
    async with serving(keyed) as live, httpx.AsyncClient(timeout=10) as client:
        token = await _token(client, live.url, "ops-key", session_id="helpdesk-1")
        other = await client.get(f"{live.url}/v1/calls/events",
                                 params={"token": token, "session_id": "billing-1"})
        assert other.status_code == 400
        async with subscribe(f"{live.url}/v1/calls/events", params={"token": token}) as stream:
            assert stream.response.status_code == 200
            await CallPublisher(aredis, keyed).commit_many(
                [call_started("billing-1", dialog="billing"), call_started("helpdesk-1")])
            await async_wait_until(lambda: any(e.event == "call_started" for e in stream.events),
                                   what="the token's call on its stream")
            assert _started(stream) == {"helpdesk-1"}


async def test_expired_tampered_and_foreign_tokens_are_a_401(keyed: Settings) -> None:
    async with serving(keyed) as live, httpx.AsyncClient(timeout=10) as client:
        events = f"{live.url}/v1/calls/events"
        issued = time.time()
        token = await _token(client, live.url, "ops-key", ttl_seconds=1)
        flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        foreign = seal(b"callhub-stream-token", 1, [bytes.fromhex(hash_key("ops-key")), None, None,
                                                    int(time.time() * 1000) + 60_000],
                       keyring=Keyring("another-deployment-secret-0123456789"))
        for bad in (flipped, foreign, "not-a-token"):
            answer = await client.get(events, params={"token": bad})
            assert answer.status_code == 401, bad
            assert answer.json()["error"]["code"] == "unauthorized"
        both = await client.get(events, params={"token": token},
                                headers={"X-API-Key": "ops-key"})
        assert both.status_code == 400

        await async_wait_until(lambda: time.time() > issued + 1.01, timeout=5,
                               what="the token's second to pass")
        late = await client.get(events, params={"token": token})
        assert late.status_code == 401
        assert "expired" in late.json()["error"]["message"]


async def test_without_a_lifetime_asked_a_token_lives_as_long_as_the_deployment_says(
    keyed: Settings,
) -> None:
    """``CALLHUB_STREAM_TOKEN_TTL`` is the default (the dashboard never asks for one);
    a request may still ask for any lifetime up to the fixed hour, not beyond."""
    short = msgspec.structs.replace(keyed, stream_token_ttl_ms=7000)
    async with serving(short) as live, httpx.AsyncClient(timeout=10) as client:
        for body in (None, {}):
            answer = await client.post(f"{live.url}/v1/stream-tokens",
                                       headers={"X-API-Key": "ops-key"}, json=body)
            assert answer.status_code == 200 and answer.json()["expires_in"] == 7, answer.text
        asked = await client.post(f"{live.url}/v1/stream-tokens", headers={"X-API-Key": "ops-key"},
                                  json={"ttl_seconds": 3600})
        assert asked.json()["expires_in"] == 3600
        beyond = await client.post(f"{live.url}/v1/stream-tokens",
                                   headers={"X-API-Key": "ops-key"}, json={"ttl_seconds": 3601})
        assert beyond.status_code == 400 and beyond.json()["error"]["param"] == "ttl_seconds"


async def test_a_token_outlives_a_restart_and_a_rotation_but_not_another_secret(
    keyed: Settings,
) -> None:
    async with serving(keyed) as live, httpx.AsyncClient(timeout=10) as client:
        token = await _token(client, live.url, "helpdesk-key")
    rotated = msgspec.structs.replace(keyed, secret="a-brand-new-secret-0123456789abcdefgh",
                                      secret_previous=SECRET)
    async with serving(rotated) as live, \
            subscribe(f"{live.url}/v1/calls/events", params={"token": token}) as stream:
        assert stream.response.status_code == 200
    other = msgspec.structs.replace(keyed, secret="a-brand-new-secret-0123456789abcdefgh")
    async with serving(other) as live, httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{live.url}/v1/calls/events", params={"token": token})
        assert answer.status_code == 401


async def test_a_token_dies_with_its_key(keyed: Settings, tmp_path: Path) -> None:
    async with serving(keyed) as live, httpx.AsyncClient(timeout=10) as client:
        token = await _token(client, live.url, "helpdesk-key")
    fewer = tmp_path / "fewer.toml"
    fewer.write_text(f'[[keys]]\nname = "ops"\nsha256 = "{hash_key("ops-key")}"\n')
    revoked = msgspec.structs.replace(keyed, api_keys_file=str(fewer))
    async with serving(revoked) as live, httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{live.url}/v1/calls/events", params={"token": token})
        assert answer.status_code == 401
        assert "no longer configured" in answer.json()["error"]["message"]
