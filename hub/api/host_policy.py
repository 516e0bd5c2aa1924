"""HostPolicy: which ``Host`` names a replica answers (``CALLHUB_ALLOWED_HOSTS``).

A hub with no API keys answers anyone who reaches it. With DNS rebinding, a web
page on another site can make the user's browser reach it under the attacker's
own name (``attacker.example`` resolving to 127.0.0.1), beyond any CORS rule.
The answer is to serve only the names the replica is known by: unset, with no
keys, those are the loopback names (``localhost``, ``127.0.0.1``, ``[::1]``, any
port), which is what the demo and a local setup use; with keys, any name (a load
balancer's), since a request needs a key anyway. ``/healthz``, ``/readyz`` and
``/metrics`` are answered under any name: health checks and scrapers call a
replica by its address, and these hold no call data.
"""

from __future__ import annotations

from typing import Final

from starlette.types import Scope

from hub.errors import BadParameter

LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.1", "[::1]")
ANY_HOST_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})


class HostPolicy:
    def __init__(self, setting: str | None, *, keys_enabled: bool) -> None:
        if setting is None:
            setting = "*" if keys_enabled else ",".join(LOOPBACK_HOSTS)
        names = {n.strip().lower() for n in setting.split(",") if n.strip()}
        self._any = "*" in names
        self._names = frozenset(names)

    def check(self, scope: Scope) -> None:
        """Raise ``BadParameter`` (a 400 naming ``Host``) for a name not served."""
        if self._any or scope["path"] in ANY_HOST_PATHS:
            return
        host = next((value for name, value in scope["headers"] if name == b"host"), b"")
        name = _without_port(host.decode("latin-1").strip().lower())
        if name not in self._names:
            raise BadParameter(
                f"this replica does not serve the host name {name[:64]!r}; the names it "
                "serves are set by CALLHUB_ALLOWED_HOSTS", param="Host")


def _without_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8080
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host
