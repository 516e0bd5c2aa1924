"""Certificates made on the spot (trustme): a CA, a server certificate for
127.0.0.1, a client certificate from that CA, and one from a CA nobody trusts;
and in-memory TLS contexts: a server's for a name, a client's trusting a CA."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def make_pki(folder: Path) -> dict[str, Path]:
    """PEM files in ``folder``: ca, server, server_key, client (key and chain),
    stranger (a client certificate from another CA), stranger_ca."""
    ca, stranger_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("integration@callhub.test")
    stranger = stranger_ca.issue_cert("intruder@callhub.test")
    paths = {name: folder / f"{name}.pem" for name in
             ("ca", "server", "server_key", "client", "stranger", "stranger_ca")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    stranger_ca.cert_pem.write_to_path(str(paths["stranger_ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    stranger.private_key_and_cert_chain_pem.write_to_path(str(paths["stranger"]))
    return paths


def server_context(ca: trustme.CA, name: str) -> ssl.SSLContext:
    """A TLS server context with ``ca``'s certificate for ``name``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A TLS client context that trusts ``ca``."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
