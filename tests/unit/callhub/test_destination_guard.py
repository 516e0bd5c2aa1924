"""The connect-time guard of webhook connections (``callhub.destination_guard``):
what the resolver answers at connect time is checked, and connected to."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Iterable, Sequence

import httpcore
import httpx
import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from callhub.destination_guard import (
    REFUSED,
    DestinationRefused,
    GuardedBackend,
    guarded_client,
)
from callhub.webhooks import (
    Address,
    InvalidDestination,
    check_destination,
    is_allowed_address,
)
from tests.support.local_http import answer_info, local_http_server
from tests.support.pki import server_context, trusting

PRIVATE = ["127.0.0.1", "127.8.9.10", "::1", "10.0.0.7", "172.16.5.4", "192.168.1.1",
           "169.254.169.254", "fe80::1", "fc00::1", "100.64.0.1", "0.0.0.0", "240.0.0.1",
           "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::"]


class Answering:
    """A resolver answering the same addresses for any name; counts its lookups."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = [ipaddress.ip_address(a) for a in addresses]
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[Address]:
        self.asked.append(host)
        return self.addresses


class Recording(httpcore.AsyncNetworkBackend):
    """A network that connects nowhere: it records what it was asked to connect
    to, and fails the addresses in ``failing``."""

    def __init__(self, failing: Iterable[str] = ()) -> None:
        self.connected: list[tuple[str, int]] = []
        self.failing = set(failing)

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        if host in self.failing:
            raise httpcore.ConnectError("refused")
        return httpcore.AsyncNetworkStream()


@pytest.mark.parametrize("address", PRIVATE)
async def test_a_private_answer_is_refused_at_connect_unless_private_is_allowed(
    address: str,
) -> None:
    network = Recording()
    strict = GuardedBackend(allow_private=False, resolve=Answering(address), backend=network)
    with pytest.raises(DestinationRefused, match="private"):
        await strict.connect_tcp("rebind.test", 443, timeout=5)
    assert network.connected == []
    allowing = GuardedBackend(allow_private=True, resolve=Answering(address), backend=network)
    await allowing.connect_tcp("rebind.test", 443, timeout=5)
    assert network.connected == [(str(ipaddress.ip_address(address)), 443)]


async def test_the_checked_address_is_the_one_connected_to_never_the_name() -> None:
    network = Recording()
    backend = GuardedBackend(allow_private=False, resolve=Answering("93.184.215.14"),
                             backend=network)
    await backend.connect_tcp("example.test", 8443, timeout=5)
    assert network.connected == [("93.184.215.14", 8443)]


async def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    """As check_destination: every address the host has must be allowed."""
    network = Recording()
    backend = GuardedBackend(allow_private=False, backend=network,
                             resolve=Answering("93.184.215.14", "127.0.0.1"))
    with pytest.raises(DestinationRefused):
        await backend.connect_tcp("mixed.test", 443, timeout=5)
    assert network.connected == []


async def test_an_address_that_fails_gives_way_to_the_next() -> None:
    network = Recording(failing=["2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    backend = GuardedBackend(allow_private=False, backend=network,
                             resolve=Answering("2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                                               "93.184.215.14"))
    await backend.connect_tcp("example.test", 443, timeout=5)
    assert [host for host, _ in network.connected] == [
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "93.184.215.14"]


async def test_a_name_that_does_not_resolve_is_a_connect_error() -> None:
    async def nowhere(host: str, port: int) -> Sequence[Address]:
        raise InvalidDestination("the URL's host name does not resolve")

    backend = GuardedBackend(allow_private=False, resolve=nowhere, backend=Recording())
    with pytest.raises(httpcore.ConnectError, match="does not resolve"):
        await backend.connect_tcp("nowhere.test", 443, timeout=5)


async def test_a_slow_resolver_is_a_connect_timeout() -> None:
    async def slow(host: str, port: int) -> Sequence[Address]:
        await asyncio.sleep(10)
        return []

    backend = GuardedBackend(allow_private=True, resolve=slow, backend=Recording())
    with pytest.raises(httpcore.ConnectTimeout):
        await backend.connect_tcp("slow.test", 443, timeout=0.05)


async def test_a_loopback_answer_reaches_a_real_server_only_when_private_is_allowed() -> None:
    async with local_http_server() as server:
        url = f"http://rebind.test:{server.port}/hook"
        async with guarded_client(timeout_s=5, allow_private=False,
                                  resolve=Answering("127.0.0.1")) as client:
            with pytest.raises(httpx.ConnectError) as refused:
                await client.post(url, content=b"{}")
        assert str(refused.value) == REFUSED
        assert isinstance(refused.value.__cause__, DestinationRefused)
        assert server.connections == 0 and server.requests == []

        async with guarded_client(timeout_s=5, allow_private=True,
                                  resolve=Answering("127.0.0.1")) as client:
            answer = await client.post(url, content=b'{"a":1}')
        assert answer.status_code == 204
        assert server.connections == 1
        [request] = server.requests
        assert (request.method, request.target, request.body) == ("POST", "/hook", b'{"a":1}')
        assert request.headers["host"] == f"rebind.test:{server.port}"


@pytest.mark.parametrize("close_each", [False, True])
async def test_every_new_connection_is_resolved_and_checked_a_kept_alive_one_reused(
    close_each: bool,
) -> None:
    resolver = Answering("127.0.0.1")
    async with local_http_server(close_each=close_each) as server, \
            guarded_client(timeout_s=5, allow_private=True, resolve=resolver) as client:
        for _ in range(3):
            answer = await client.post(f"http://rebind.test:{server.port}/", content=b"{}")
            assert answer.status_code == 204
    connections = 3 if close_each else 1
    assert server.connections == connections
    assert resolver.asked == ["rebind.test"] * connections


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_sends_and_verifies_the_host_name_not_the_address_connected_to(
    ca: trustme.CA,
) -> None:
    async with local_http_server(server_context(ca, "rebind.test")) as server, \
            guarded_client(timeout_s=5, allow_private=True, verify=trusting(ca),
                           resolve=Answering("127.0.0.1")) as client:
        answer = await client.post(f"https://rebind.test:{server.port}/hook", content=b"{}")
    assert answer.status_code == 204
    assert server.sni_names == ["rebind.test"]


async def test_tls_refuses_a_certificate_for_another_name(ca: trustme.CA) -> None:
    async with local_http_server(server_context(ca, "other.test")) as server, \
            guarded_client(timeout_s=5, allow_private=True, verify=trusting(ca),
                           resolve=Answering("127.0.0.1")) as client:
        with pytest.raises(httpx.ConnectError, match="certificate"):
            await client.post(f"https://rebind.test:{server.port}/hook", content=b"{}")
    assert server.requests == []


async def rules_agree(address: Address, allow_private: bool) -> None:
    """check_destination (for the address itself and for a name resolving to it)
    and the guard at connect time accept ``address`` alike: as is_allowed_address."""
    expected = is_allowed_address(address, allow_private=allow_private)
    literal = f"[{address}]" if address.version == 6 else str(address)
    for url in (f"https://{literal}/hook", "https://rebind.test/hook"):
        try:
            await check_destination(url, allow_http=False, allow_private=allow_private)
            accepted = True
        except InvalidDestination:
            accepted = False
        assert accepted == expected, url
    network = Recording()
    with contextlib.suppress(DestinationRefused):
        await GuardedBackend(allow_private=allow_private, backend=network) \
            .connect_tcp("rebind.test", 443, timeout=5)
    assert (network.connected == [(str(address), 443)]) == expected


@given(address=st.ip_addresses(), allow_private=st.booleans())
def test_the_connect_time_rule_and_check_destination_agree(
    address: Address, allow_private: bool,
) -> None:
    async def getaddrinfo(host: object, port: object, *_: object,
                          **__: object) -> list[tuple[object, ...]]:
        assert host == "rebind.test"
        return [answer_info(str(address), int(str(port)))]

    with asyncio.Runner() as runner:
        runner.get_loop().getaddrinfo = getaddrinfo  # type: ignore[method-assign,assignment]
        runner.run(rules_agree(address, allow_private))
