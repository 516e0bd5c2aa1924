"""The forwarder's HTTP/1.1 client against a scripted server on 127.0.0.1: keep-alive
reuse, a stale connection retried once, Connection: close, the body limit, TLS
names, and what an attempt comes to (through ``WebhookSender``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from callhub.webhooks import Address
from tests.support.pki import server_context, trusting
from tests.support.scripted_http import Answer, scripted_server
from workers.forward.connection_pool import ConnectionPool, parse_target, request_bytes
from workers.forward.sender import WebhookSender

OK = Answer()
CLOSE = Answer((b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",))


async def loopback(host: str, port: int) -> Sequence[Address]:
    """Any name resolves to 127.0.0.1 (allowed: allow_private)."""
    return [ipaddress.ip_address("127.0.0.1")]


def pool(**kwargs: object) -> ConnectionPool:
    return ConnectionPool(allow_private=True, body_limit=1024, **kwargs)  # type: ignore[arg-type]


async def test_a_kept_alive_connection_carries_request_after_request() -> None:
    async with scripted_server(lambda n: OK) as server:
        client = pool()
        url = f"http://127.0.0.1:{server.port}/hook?a=1"
        answers = [await client.post(url, b'{"n":%d}' % n, [("webhook-id", f"m{n}")])
                   for n in range(3)]
        await client.aclose()
    assert [a.status for a in answers] == [204, 204, 204]
    assert server.connections == 1 and client.opened == 1
    first = server.requests[0]
    assert (first.method, first.target, first.body) == ("POST", "/hook?a=1", b'{"n":0}')
    assert first.headers == {"host": f"127.0.0.1:{server.port}",
                             "user-agent": "callhub-webhooks/1", "webhook-id": "m0",
                             "content-length": "7"}


async def test_connection_close_is_a_new_connection_for_the_next_request() -> None:
    async with scripted_server(lambda n: CLOSE) as server:
        client = pool()
        for _ in range(3):
            assert (await client.post(f"http://127.0.0.1:{server.port}/", b"{}", [])).status \
                == 200
        await client.aclose()
    assert server.connections == 3


@pytest.mark.parametrize("how", ["closed after answering", "closed without answering"])
async def test_a_connection_the_receiver_closed_is_retried_once_on_a_fresh_one(
    how: str,
) -> None:
    """Kept alive on this side, closed on the receiver's (its idle timeout): no byte
    of an answer came, so the request goes once more on a new connection."""
    def script(n: int) -> Answer:
        if how == "closed after answering":
            return Answer(close_after=n == 0)
        return Answer(close_before=n == 1)

    async with scripted_server(script) as server:
        client = pool()
        url = f"http://127.0.0.1:{server.port}/"
        first = await client.post(url, b"1", [])
        second = await client.post(url, b"2", [])
        await client.aclose()
    assert (first.status, second.status) == (204, 204)
    assert server.connections == 2
    assert [r.body for r in server.requests][-1] == b"2"


async def test_a_fresh_connection_closed_without_an_answer_is_a_failed_attempt() -> None:
    async with scripted_server(lambda n: Answer(close_before=True)) as server:
        sender = WebhookSender(5, allow_private=True)
        result = await sender.send(f"http://127.0.0.1:{server.port}/", b"{}", [])
        await sender.aclose()
    assert (result.status_code, server.connections) == (0, 1)
    assert result.error.startswith("RemoteProtocolError: the receiver closed the connection")


async def test_after_a_byte_of_the_answer_a_close_is_not_retried() -> None:
    partial = Answer((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab",), close_after=True)
    async with scripted_server(lambda n: OK if n == 0 else partial) as server:
        sender = WebhookSender(5, allow_private=True)
        url = f"http://127.0.0.1:{server.port}/"
        results = [await sender.send(url, b"{}", []) for _ in range(2)]
        await sender.aclose()
    assert [r.status_code for r in results] == [204, 0]
    assert len(server.requests) == 2 and server.connections == 1


async def test_a_body_past_the_limit_costs_the_connection_not_the_status() -> None:
    big = Answer((b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"x" * 100_000))
    async with scripted_server(lambda n: big) as server:
        client = pool()
        url = f"http://127.0.0.1:{server.port}/"
        statuses = [(await client.post(url, b"{}", [])).status for _ in range(2)]
        await client.aclose()
    assert statuses == [200, 200] and server.connections == 2


async def test_a_chunked_answer_split_across_writes_keeps_the_connection() -> None:
    pieces = (b"HTTP/1.1 202 Accepted\r\nTransfer-", b"Encoding: chunked\r\n\r\n3\r\nab",
              b"c\r\n0\r\n\r\n")
    async with scripted_server(lambda n: Answer(pieces)) as server:
        client = pool()
        url = f"http://127.0.0.1:{server.port}/"
        statuses = [(await client.post(url, b"{}", [])).status for _ in range(3)]
        await client.aclose()
    assert statuses == [202, 202, 202] and server.connections == 1


async def test_an_idle_connection_past_its_time_is_not_reused() -> None:
    async with scripted_server(lambda n: OK) as server:
        client = pool(idle_s=0.0)
        for _ in range(2):
            await client.post(f"http://127.0.0.1:{server.port}/", b"{}", [])
        await client.aclose()
    assert server.connections == 2


async def test_a_redirect_is_a_failed_attempt_and_not_followed() -> None:
    moved = Answer((b"HTTP/1.1 301 Moved\r\nLocation: http://169.254.169.254/\r\n"
                    b"Content-Length: 0\r\n\r\n",))
    async with scripted_server(lambda n: moved) as server:
        sender = WebhookSender(5, allow_private=True)
        result = await sender.send(f"http://127.0.0.1:{server.port}/", b"{}", [])
        await sender.aclose()
    assert (result.status_code, result.delivered, result.error) == (301, False, "HTTP 301")
    assert len(server.requests) == 1


async def test_retry_after_of_a_429_reaches_the_result() -> None:
    busy = Answer((b"HTTP/1.1 429 Slow Down\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",))
    async with scripted_server(lambda n: busy) as server:
        sender = WebhookSender(5, allow_private=True)
        result = await sender.send(f"http://127.0.0.1:{server.port}/", b"{}", [])
        await sender.aclose()
    assert (result.status_code, result.retry_after_s, result.error) == (429, 7.0, "HTTP 429")


async def test_one_attempt_is_bounded_by_the_timeout_and_its_connection_dropped() -> None:
    async with scripted_server(lambda n: Answer(delay_s=5) if n == 0 else OK) as server:
        sender = WebhookSender(0.2, allow_private=True)
        url = f"http://127.0.0.1:{server.port}/"
        slow = await sender.send(url, b"{}", [])
        fast = await sender.send(url, b"{}", [])
        await sender.aclose()
    assert slow.status_code == 0 and slow.error.startswith("timed out")
    assert slow.latency_ms < 1000
    assert fast.status_code == 204 and server.connections == 2


async def test_nothing_listening_is_a_connect_error() -> None:
    async with scripted_server(lambda n: OK) as server:
        port = server.port
    sender = WebhookSender(5, allow_private=True)
    result = await sender.send(f"http://127.0.0.1:{port}/", b"{}", [])
    await sender.aclose()
    assert result.status_code == 0 and result.error.startswith("ConnectError: ")


@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\rb", "a\0b"])
async def test_a_header_value_with_a_line_break_is_never_sent(value: str) -> None:
    async with scripted_server(lambda n: OK) as server:
        sender = WebhookSender(5, allow_private=True)
        result = await sender.send(f"http://127.0.0.1:{server.port}/", b"{}",
                                   [("callhub-session-id", value)])
        await sender.aclose()
    assert result.status_code == 0 and result.error.startswith("ValueError: ")
    assert server.connections == 0


@given(host=st.sampled_from(["example.test", "10.0.0.1", "[2001:db8::1]", "EXAMPLE.test"]),
       port=st.one_of(st.none(), st.integers(1, 65535)),
       path=st.sampled_from(["", "/", "/a/b", "/hook;x"]),
       query=st.sampled_from(["", "t=1", "a=%20&b"]),
       scheme=st.sampled_from(["http", "https", "HTTPS"]))
def test_a_url_comes_to_its_origin_and_request_line(
    host: str, port: int | None, path: str, query: str, scheme: str,
) -> None:
    url = f"{scheme}://{host}{f':{port}' if port else ''}{path}{'?' + query if query else ''}"
    target = parse_target(url)
    tls = scheme.lower() == "https"
    default = 443 if tls else 80
    name = host.strip("[]").lower()
    assert target.origin == (scheme.lower(), name, port or default)
    assert target.tls == tls
    head = request_bytes(target, b"body", [("a", "b")]).decode()
    line, host_line = head.split("\r\n")[:2]
    assert line == f"POST {path or '/'}{'?' + query if query else ''} HTTP/1.1"
    literal = f"[{name}]" if ":" in name else name
    assert host_line == f"host: {literal}" + ("" if (port or default) == default else f":{port}")
    assert head.endswith("content-length: 4\r\n\r\nbody")


@pytest.mark.parametrize("url", ["ftp://example.test/", "http:///nohost", "example.test"])
def test_what_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_target(url)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_verifies_the_urls_host_name_not_the_address_connected_to(
    ca: trustme.CA,
) -> None:
    names: list[str | None] = []
    context = server_context(ca, "rebind.test")
    context.sni_callback = lambda _, name, __: names.append(name)  # type: ignore[assignment]
    async with scripted_server(lambda n: OK, ssl_context=context) as server:
        sender = WebhookSender(5, allow_private=True, ssl_context=trusting(ca),
                               resolve=loopback)
        url = f"https://rebind.test:{server.port}/hook"
        results = [await sender.send(url, b"{}", []) for _ in range(2)]
        await sender.aclose()
    assert [r.status_code for r in results] == [204, 204]
    assert names == ["rebind.test"] and server.connections == 1
    assert server.requests[0].headers["host"] == f"rebind.test:{server.port}"


async def test_tls_refuses_a_certificate_for_another_name(ca: trustme.CA) -> None:
    async with scripted_server(lambda n: OK, ssl_context=server_context(ca, "other.test")) \
            as server:
        sender = WebhookSender(5, allow_private=True, ssl_context=trusting(ca),
                               resolve=loopback)
        result = await sender.send(f"https://rebind.test:{server.port}/", b"{}", [])
        await sender.aclose()
    assert result.status_code == 0 and result.error.startswith("ConnectError: ")
    assert "certificate" in result.error
    assert server.requests == []


async def test_tls_by_default_trusts_only_the_system_store(ca: trustme.CA) -> None:
    async with scripted_server(lambda n: OK, ssl_context=server_context(ca, "rebind.test")) \
            as server:
        sender = WebhookSender(5, allow_private=True, resolve=loopback)
        result = await sender.send(f"https://rebind.test:{server.port}/", b"{}", [])
        await sender.aclose()
    assert result.status_code == 0 and "certificate verify failed" in result.error


@pytest.mark.parametrize("answer", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1",
                                    "::ffff:127.0.0.1"])
async def test_a_host_resolving_to_a_private_address_is_never_connected_to(answer: str) -> None:
    """The pool's connections go through the one address rule (checked_addresses):
    a private answer is refused unless private destinations are allowed."""
    async def resolve(host: str, port: int) -> Sequence[Address]:
        return [ipaddress.ip_address(answer)]

    async with scripted_server(lambda n: OK) as server:
        sender = WebhookSender(5, allow_private=False, resolve=resolve)
        result = await sender.send(f"http://rebind.test:{server.port}/", b"{}", [])
        await sender.aclose()
    assert result.status_code == 0 and result.error.startswith("ConnectError: ")
    assert "private" in result.error
    assert server.connections == 0
