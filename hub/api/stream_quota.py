"""StreamQuota: how many event streams one key, and one client address, may hold open.

A stream costs its replica memory and a socket for as long as the client
likes; without a cap one key (or one address) can open thousands. The counts
are per replica, in memory, like a load balancer's connection limit: a replica
knows its own streams exactly and needs no shared state for it. A key is
counted by its name (keys that share a name share a cap); with no keys at all
only the address cap applies.

The client address is the connection's peer, unless the peer is a trusted
proxy (``CALLHUB_TRUSTED_PROXIES``, loopback by default): then it is the last
address of ``X-Forwarded-For``, the one that proxy added. Behind a load balancer
that is not on the same host, trust it, or every client counts as the balancer.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable

from starlette.types import Scope

from hub.errors import TooManyStreams

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class StreamQuota:
    def __init__(self, per_key: int, per_client: int, trusted_proxies: str) -> None:
        self._per_key = per_key
        self._per_client = per_client
        parts = [p.strip() for p in trusted_proxies.split(",") if p.strip()]
        self._trust_any = "*" in parts
        self._trusted: list[_Network] = [ipaddress.ip_network(p, strict=False)
                                         for p in parts if p != "*"]
        self._keys: Counter[str] = Counter()
        self._clients: Counter[str] = Counter()

    def open(self, scope: Scope, key_name: str | None) -> Callable[[], None]:
        """Count one more stream, or raise ``TooManyStreams``; returns its release."""
        client = self.client_address(scope)
        if self._per_key and key_name is not None and self._keys[key_name] >= self._per_key:
            raise TooManyStreams(f"this API key already holds {self._per_key} open event "
                                 "streams on this replica (CALLHUB_MAX_STREAMS_PER_KEY)")
        if self._per_client and self._clients[client] >= self._per_client:
            raise TooManyStreams(f"this client already holds {self._per_client} open event "
                                 "streams on this replica (CALLHUB_MAX_STREAMS_PER_CLIENT)")
        if key_name is not None:
            self._keys[key_name] += 1
        self._clients[client] += 1

        def release() -> None:
            if key_name is not None:
                _decrement(self._keys, key_name)
            _decrement(self._clients, client)

        return release

    def client_address(self, scope: Scope) -> str:
        peer = (scope.get("client") or ("", 0))[0]
        if not self._is_trusted(peer):
            return str(peer)
        forwarded = [value for name, value in scope["headers"] if name == b"x-forwarded-for"]
        if not forwarded:
            return str(peer)
        last = forwarded[-1].decode("latin-1").rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return str(peer)  # not an address: count the proxy, never a made-up name

    def _is_trusted(self, peer: str) -> bool:
        if self._trust_any:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)


def _decrement(counts: Counter[str], name: str) -> None:
    counts[name] -= 1
    if counts[name] <= 0:
        del counts[name]  # an address seen once is not kept for ever
