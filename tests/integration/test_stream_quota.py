"""Open event streams are capped per key and per client address, with a 429 that says which."""

from __future__ import annotations

import contextlib

import httpx
import msgspec
import pytest

from callhub.settings import Settings, SettingsError, load_settings
from tests.support.hubs import serving
from tests.support.polling import async_wait_until
from tests.support.processes import start_hub
from tests.support.sse import subscribe


def _capped(settings: Settings, **caps: object) -> Settings:
    return msgspec.structs.replace(settings, **caps)


async def _open(url: str, count: int, stack: contextlib.AsyncExitStack, client: httpx.AsyncClient,
                headers: dict[str, str]) -> None:
    for _ in range(count):
        stream = await stack.enter_async_context(
            subscribe(f"{url}/v1/calls/events", headers=headers, client=client))
        assert stream.response.status_code == 200


async def test_a_key_over_its_cap_gets_a_429_and_a_closed_stream_frees_its_place(
        settings: Settings) -> None:
    keyed = _capped(settings, api_keys="key-a,key-b", max_streams_per_key=3,
                    max_streams_per_client=0)
    async with serving(keyed) as live, httpx.AsyncClient(timeout=10) as client:
        a, b = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
        async with contextlib.AsyncExitStack() as stack:
            await _open(live.url, 3, stack, client, a)
            over = await client.get(f"{live.url}/v1/calls/events", headers=a)
            assert over.status_code == 429
            assert over.headers["retry-after"] == "5"
            error = over.json()["error"]
            assert error["code"] == "too_many_streams"
            assert "CALLHUB_MAX_STREAMS_PER_KEY" in error["message"]
            assert "key-a" not in error["message"]
            await _open(live.url, 3, stack, client, b)  # another key has its own count
        # Every stream closed: the key may open again once the replica saw them go.
        async def reopened() -> bool:
            async with subscribe(f"{live.url}/v1/calls/events", headers=a,
                                 client=client) as stream:
                return stream.response.status_code == 200
        await async_wait_until(reopened, what="a closed stream's place to be free again")


async def test_a_client_address_over_its_cap_gets_a_429(redis_url: str) -> None:
    """Through ``callhub serve`` (the in-process server would apply uvicorn's own
    proxy-header handling first)."""
    hub = start_hub(redis_url, env={"CALLHUB_MAX_STREAMS_PER_CLIENT": "2",
                                    "CALLHUB_TRUSTED_PROXIES": ""})
    try:
        async with httpx.AsyncClient(timeout=10) as client, \
                contextlib.AsyncExitStack() as stack:
            # X-Forwarded-For from a peer that is not a trusted proxy counts for nothing.
            await _open(hub.url, 2, stack, client, {"X-Forwarded-For": "203.0.113.9"})
            over = await client.get(f"{hub.url}/v1/calls/events",
                                    headers={"X-Forwarded-For": "198.51.100.1"})
            assert over.status_code == 429
            assert "CALLHUB_MAX_STREAMS_PER_CLIENT" in over.json()["error"]["message"]
    finally:
        hub.stop()


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_cap(
        redis_url: str) -> None:
    hub = start_hub(redis_url, env={"CALLHUB_MAX_STREAMS_PER_CLIENT": "1"})  # loopback trusted
    try:
        async with httpx.AsyncClient(timeout=10) as client, \
                contextlib.AsyncExitStack() as stack:
            for address in ("203.0.113.9", "203.0.113.10", "2001:db8::1"):
                await _open(hub.url, 1, stack, client,
                            {"X-Forwarded-For": f"10.9.9.9, {address}"})
            again = await client.get(f"{hub.url}/v1/calls/events",
                                     headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.9"})
            assert again.status_code == 429  # the proxy's own (last) address is what counts
    finally:
        hub.stop()


@pytest.mark.parametrize(("variable", "value"), [
    ("CALLHUB_MAX_STREAMS_PER_KEY", "-1"), ("CALLHUB_MAX_STREAMS_PER_CLIENT", "many"),
    ("CALLHUB_TRUSTED_PROXIES", "10.0.0.0/33"), ("CALLHUB_TRUSTED_PROXIES", "nginx")])
def test_bad_caps_and_proxies_fail_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})
