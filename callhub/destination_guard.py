"""The HTTP client of webhook deliveries, whose every connection is checked where it goes.

``check_destination`` checks a URL's addresses when a subscription is set (and
the test ping checks again), but an HTTP client resolves the host name anew
when it connects: a host that answered a public address to the check may
answer 127.0.0.1 or 169.254.169.254 a moment later (DNS rebinding), and the
POST would reach the network the hub runs in. So both senders of webhooks
resolve the host themselves through ``checked_addresses``, which applies
``callhub.webhooks.is_allowed_address`` (the rule check_destination applies)
to every address the host has, and connect to a checked address, never to the
name, which would be resolved once more: the forwarder's own HTTP client
(``workers.forward.connection_pool``) calls it directly, and the replica's test
ping (``hub.api.webhook_ping``, over httpx) through ``GuardedBackend``, an
httpcore network backend. Every new connection is
checked; a kept-alive one is reused as it is (its address was checked when it
was made).

TLS is unchanged: httpcore gives ``start_tls`` the URL's host name as
``server_hostname``, apart from the host it connected to, so SNI and the
certificate's name check use the host name, not the address.

Wiring it into httpx. httpcore's network backends are public API
(``httpcore.AsyncConnectionPool(network_backend=...)``, "custom DNS handling"
is their documented use), but httpx (0.27 to 0.29) has no argument to give
``httpx.AsyncHTTPTransport`` one (encode/httpx#3749 proposes it). The two ways
left: a transport of our own over an httpcore pool, which would copy httpx's
request, response and exception mapping (private functions of httpx), or an
``httpx.AsyncHTTPTransport`` whose pool is replaced by one built with the
backend. ``guarded_transport`` does the latter: it sets ``_pool``, a private
attribute but the transport's pool under that name since httpx 0.18, builds
the pool with the options httpx would give it (the same ssl context, through
the public ``httpx.create_ssl_context``, and limits), and checks the attribute
is there, so that a change in httpx fails at construction instead of quietly
dropping the guard (and tests/unit/callhub/test_destination_guard.py fails if
the guard is not on the connection path). Once httpx takes a network backend,
only ``guarded_transport`` changes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Final

import httpcore
import httpx

from callhub.webhooks import Address, InvalidDestination, is_allowed_address, resolve_addresses

REFUSED: Final = ("the destination resolves to a private, loopback or reserved address "
                  "(CALLHUB_WEBHOOK_ALLOW_PRIVATE)")
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)

Resolver = Callable[[str, int], Awaitable[Sequence[Address]]]


class DestinationRefused(httpcore.ConnectError):
    """A connection the address rule refused. httpx raises it as an
    ``httpx.ConnectError`` with the same message, this as its ``__cause__``."""


class DestinationUnresolved(httpcore.ConnectError):
    """The destination's host name has no address (at connect time)."""


async def checked_addresses(host: str, port: int, *, allow_private: bool,
                            resolve: Resolver = resolve_addresses) -> list[Address]:
    """The addresses to connect to for ``host``, each one allowed by the webhook
    address rule: the one resolver path and the one rule of every webhook
    connection (this module's httpx backend and the forwarder's own client).
    Every address the host has must be allowed, as ``check_destination`` wants;
    ``DestinationRefused`` or ``DestinationUnresolved`` otherwise."""
    try:
        addresses = list(await resolve(host, port))
    except InvalidDestination:
        addresses = []
    if not addresses:
        raise DestinationUnresolved("the destination's host name does not resolve")
    if not all(is_allowed_address(a, allow_private=allow_private) for a in addresses):
        raise DestinationRefused(REFUSED)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses ``is_allowed_address`` allows, and to the
    address it checked. ``resolve`` and ``backend`` are the host name lookup
    and the network below (asyncio's resolver, httpcore's AnyIO backend)."""

    def __init__(self, *, allow_private: bool, resolve: Resolver = resolve_addresses,
                 backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._allow_private = allow_private
        self._resolve = resolve
        self._backend = backend if backend is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                addresses = await checked_addresses(host, port, allow_private=self._allow_private,
                                                    resolve=self._resolve)
        except TimeoutError:
            raise httpcore.ConnectTimeout("resolving the destination's host name timed out") \
                from None
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:  # the resolver's order; the next one if one fails
            left = None if deadline is None else max(deadline - loop.time(), 0.0)
            try:
                return await self._backend.connect_tcp(
                    str(address), port, timeout=left, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are delivered over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def guarded_transport(
    *, allow_private: bool, limits: httpx.Limits = DEFAULT_LIMITS,
    verify: ssl.SSLContext | bool = True, resolve: Resolver = resolve_addresses,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go through ``GuardedBackend``
    (no proxies, no environment: ``trust_env`` off, as the webhook clients were)."""
    transport = httpx.AsyncHTTPTransport(verify=verify, trust_env=False, limits=limits)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("this httpx keeps no httpcore pool in AsyncHTTPTransport._pool: "
                           "callhub.destination_guard cannot guard its connections")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(allow_private=allow_private, resolve=resolve))
    return transport


USER_AGENT: Final = "callhub-webhooks/1"


def guarded_client(
    *, timeout_s: float, allow_private: bool, limits: httpx.Limits = DEFAULT_LIMITS,
    headers: Mapping[str, str] | None = None, verify: ssl.SSLContext | bool = True,
    resolve: Resolver = resolve_addresses,
) -> httpx.AsyncClient:
    """The client a webhook is POSTed with: guarded connections, redirects not
    followed (a redirect could point anywhere), no proxies from the environment,
    and one ``user-agent`` for a delivery and a test ping alike."""
    return httpx.AsyncClient(
        transport=guarded_transport(allow_private=allow_private, limits=limits, verify=verify,
                                    resolve=resolve),
        timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False,
        headers={"user-agent": USER_AGENT, **(headers or {})})
