"""``callhub serve``: run API replicas with uvicorn, optionally with (m)TLS.

Each uvicorn worker process builds its own app from the environment (the
factory ``hub.app:create_app_from_environment``), so flags given here are
handed down as ``CALLHUB_*`` variables before uvicorn starts.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass

import uvicorn

from callhub.cli.listening import base_url
from callhub.plurals import counted
from hub.api.log_format import configure_logging
from hub.http_protocol import IMPORT_PATH as HTTP_PROTOCOL
from hub.quiet_server import serving_quietly


@dataclass(frozen=True)
class TlsOptions:
    certfile: str | None = None
    keyfile: str | None = None
    ca_certs: str | None = None
    require_client_cert: bool = False

    def problem(self) -> str | None:
        """Why these options cannot start a server, if they cannot."""
        if self.keyfile and not self.certfile:
            return "--tls-key needs --tls-cert"
        if (self.ca_certs or self.require_client_cert) and not self.certfile:
            return "client certificates need TLS: give --tls-cert and --tls-key"
        if self.require_client_cert and not self.ca_certs:
            return "--require-client-cert needs --tls-ca (the CA that signs client certificates)"
        for path in (self.certfile, self.keyfile, self.ca_certs):
            if path and not os.path.isfile(path):
                return f"{path} does not exist"
        return None


def serve(
    host: str, port: int, workers: int, tls: TlsOptions, overrides: dict[str, str],
    *, access_log: bool = True, max_connections: int = 0, log_format: str = "json",
) -> None:
    """``max_connections`` caps each worker process's connections (0: no cap);
    heads are held to ``hub.http_protocol``'s limits."""
    os.environ.update(overrides)
    # The main process logs like the replicas (uvicorn's own lines included), and
    # says first where a person goes: the dashboard and the API reference.
    configure_logging(log_format)
    base = base_url(host, port, tls=tls.certfile is not None)
    logging.getLogger("callhub.serve").info(
        "serving on %s with %s: the dashboard is at %s/, the API reference at %s/docs",
        base, counted(workers, "worker process", "worker processes"), base, base)
    with serving_quietly():  # an idle replica wakes once a second, not ten times
        uvicorn.run(
            "hub.app:create_app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            ssl_certfile=tls.certfile,
            ssl_keyfile=tls.keyfile,
            ssl_ca_certs=tls.ca_certs,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE,
            proxy_headers=False,
            http=HTTP_PROTOCOL,
            limit_concurrency=max_connections or None,
            server_header=False,
            timeout_graceful_shutdown=5,
            log_config=None,
            access_log=access_log,
        )
