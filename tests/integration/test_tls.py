"""TLS and mutual TLS on a real `callhub serve`, with certificates made here."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support.processes import start_hub


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A CA, a server certificate for 127.0.0.1, a client certificate from the
    same CA, and a client certificate from a CA the server does not trust."""
    folder = tmp_path_factory.mktemp("pki")
    ca, stranger_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("dashboard@callhub.test")
    stranger = stranger_ca.issue_cert("intruder@callhub.test")
    paths = {name: folder / f"{name}.pem" for name in
             ("ca", "server", "server_key", "client", "stranger")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    stranger.private_key_and_cert_chain_pem.write_to_path(str(paths["stranger"]))
    yield paths


def tls_client(pki: dict[str, Path], cert: str | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert:
        context.load_cert_chain(str(pki[cert]))
    return httpx.Client(verify=context, timeout=5)


def ready_with(pki: dict[str, Path], cert: str | None) -> object:
    def check(url: str) -> bool:
        with tls_client(pki, cert) as client:
            return client.get(f"{url}/healthz").status_code == 200
    return check


def test_https_serves_the_api(redis_url: str, pki: dict[str, Path]) -> None:
    hub = start_hub(redis_url, "--tls-cert", str(pki["server"]), "--tls-key",
                    str(pki["server_key"]), scheme="https", ready=ready_with(pki, None))
    try:
        with tls_client(pki, None) as client:
            assert client.get(f"{hub.url}/v1/calls").status_code == 200
    finally:
        hub.stop()


def test_mtls_admits_only_clients_with_a_certificate_from_the_ca(
    redis_url: str, pki: dict[str, Path]
) -> None:
    hub = start_hub(
        redis_url, "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]),
        "--tls-ca", str(pki["ca"]), "--require-client-cert",
        scheme="https", ready=ready_with(pki, "client"),
    )
    try:
        with tls_client(pki, "client") as client:
            answer = client.get(f"{hub.url}/v1/calls")
            assert answer.status_code == 200
            assert answer.json()["total_count"] == 0
        for cert in (None, "stranger"):
            with tls_client(pki, cert) as client, pytest.raises(httpx.TransportError):
                client.get(f"{hub.url}/v1/calls")
    finally:
        hub.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--require-client-cert"], "client certificates need TLS"),
        (["--tls-key", "k.pem"], "--tls-key needs --tls-cert"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem"], "does not exist"),
    ],
)
def test_bad_tls_options_are_a_message_and_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "callhub.cli", "serve", *args],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
