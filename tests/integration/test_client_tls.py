"""``callhub.client`` over TLS with a client certificate, against a real
``callhub serve --require-client-cert`` (certificates made by trustme)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from callhub import events as ev
from callhub.client import CallhubClient, HubUnreachable, UntrustedCertificate
from callhub.settings import Settings
from tests.support.pki import make_pki
from tests.support.processes import HubProcess, start_hub
from tests.support.strategies import call_started
from workers.commit.publisher import CallPublisher


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mtls_hub(redis_url: str, pki: dict[str, Path]) -> Iterator[HubProcess]:
    def ready(url: str) -> bool:
        context = ssl.create_default_context(cafile=str(pki["ca"]))
        context.load_cert_chain(str(pki["client"]))
        return httpx.get(f"{url}/healthz", verify=context, timeout=1).status_code == 200

    hub = start_hub(redis_url, "--tls-cert", str(pki["server"]), "--tls-key",
                    str(pki["server_key"]), "--tls-ca", str(pki["ca"]),
                    "--require-client-cert", scheme="https", ready=ready)
    yield hub
    hub.stop()


class Connected:
    """A stream listener that says when the stream is open."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def connected(self, url: str, resumed_from: str, first: bool) -> None:
        self.event.set()

    def retrying(self, reason: str, delay_s: float, failures: int,
                 max_retries: int | None) -> None:
        raise AssertionError(f"the stream failed: {reason}")


async def test_a_client_certificate_opens_rest_and_the_stream(
    mtls_hub: HubProcess, pki: dict[str, Path], aredis: aioredis.Redis, settings: Settings,
) -> None:
    connected = Connected()
    async with CallhubClient(mtls_hub.url, tls_ca=str(pki["ca"]),
                             tls_cert=str(pki["client"])) as hub:
        stream = hub.events(event_types="call_started", listener=connected)

        async def first() -> ev.Event:
            async for item in stream:
                assert isinstance(item, ev.Event)
                return item
            raise AssertionError("the stream ended")

        waiting = asyncio.create_task(first())
        await asyncio.wait_for(connected.event.wait(), 10)
        assert [c async for c in hub.list_calls()] == []
        await CallPublisher(aredis, settings).commit(call_started("tls-1"))
        assert (await asyncio.wait_for(waiting, 10)).session_id == "tls-1"
        await stream.aclose()
        assert (await hub.get_call("tls-1")).status == "active"


async def test_without_the_right_certificates_it_fails_plainly(
    mtls_hub: HubProcess, pki: dict[str, Path],
) -> None:
    async with CallhubClient(mtls_hub.url, tls_ca=str(pki["stranger_ca"])) as hub:
        with pytest.raises(UntrustedCertificate, match="certificate is not trusted"):
            await hub.get_call("x")
    for cert in (None, "stranger"):
        async with CallhubClient(mtls_hub.url, tls_ca=str(pki["ca"]),
                                 tls_cert=str(pki[cert]) if cert else "",
                                 rest_retries=0) as hub:
            with pytest.raises(HubUnreachable):
                await hub.get_call("x")
