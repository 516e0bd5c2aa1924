"""Checking a port before a server starts, and the URL a person opens (callhub/cli/listening.py)."""

from __future__ import annotations

import socket

from callhub.cli.listening import base_url, port_problem


def test_a_port_in_use_is_named_and_a_free_one_is_no_problem() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_problem("127.0.0.1", port) == (
            f"port {port} on 127.0.0.1 is in use; choose another with --port")
    assert port_problem("127.0.0.1", port) is None  # let go: free again


def test_an_address_that_is_not_this_machines_says_why() -> None:
    problem = port_problem("192.0.2.1", 8080)  # TEST-NET-1: never a local address
    assert problem is not None and problem.startswith("cannot listen on 192.0.2.1:8080: ")


def test_the_url_is_one_a_browser_on_this_machine_opens() -> None:
    assert base_url("0.0.0.0", 8080) == "http://127.0.0.1:8080"
    assert base_url("::", 8080, tls=True) == "https://127.0.0.1:8080"
    assert base_url("::1", 9090) == "http://[::1]:9090"
    assert base_url("hub.internal", 80) == "http://hub.internal:80"
