"""``callhub tail`` as a user runs it: real tail processes against real hub processes.

Events are committed with ``CallPublisher`` to the test's redis-server; the
tail only ever talks HTTP to a ``callhub serve`` process. Every wait reads the
tail's output against a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import trustme

from callhub import events as ev
from callhub.keyspace import Keyspace
from callhub.settings import Settings
from tests.support.polling import wait_until
from tests.support.processes import HubProcess, free_port, start_hub, stop_process
from tests.support.spec_examples import spec_events
from tests.support.strategies import call_started, dtmf, terminated, transition
from workers.commit.publisher import CallPublisher

DEADLINE = 15.0


class TailProcess:
    """A ``callhub tail`` subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, url: str, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "callhub.cli", "tail", "--url", url, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self.out: list[bytes] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._collect, args=(self.process.stdout, self.out.append),
                             daemon=True),
            threading.Thread(target=self._collect, args=(
                self.process.stderr, lambda line: self.err.append(line.decode())), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(pipe: IO[bytes], add: Callable[[bytes], None]) -> None:
        for line in iter(pipe.readline, b""):
            add(line.rstrip(b"\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)

    def wait_out(self, count: int, what: str = "") -> list[bytes]:
        wait_until(lambda: len(self.out) >= count or self._exited(), timeout=DEADLINE,
                 what=what or f"{count} lines from callhub tail")
        assert len(self.out) >= count, f"tail exited early: {self.stderr}"
        return self.out

    def wait_err(self, text: str, timeout: float = DEADLINE) -> None:
        wait_until(lambda: text in self.stderr or self._exited(), timeout=timeout,
                 what=f"{text!r} on the tail's stderr")
        assert text in self.stderr, f"tail exited early: {self.stderr}"

    def _exited(self) -> bool:
        # The process ended and the readers have drained its pipes.
        if self.process.poll() is None:
            return False
        return not any(reader.is_alive() for reader in self._readers)

    def exit_status(self) -> int:
        status = self.process.wait(timeout=DEADLINE)
        for reader in self._readers:
            reader.join(timeout=DEADLINE)
        return status

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to this PID; the exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.exit_status()

    def stop(self) -> None:
        stop_process(self.process)
        self.exit_status()  # drains the pipes
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


TailFactory = Callable[..., TailProcess]


@pytest.fixture
def run_tail(callhub_env: dict[str, str]) -> Iterator[TailFactory]:
    """Starts tails (``url, *args, env=``) and stops each by PID after the test."""
    started: list[TailProcess] = []

    def start(url: str, *args: str, env: dict[str, str] | None = None) -> TailProcess:
        tail = TailProcess(url, *args, env={**callhub_env, **(env or {})})
        started.append(tail)
        return tail

    yield start
    for tail in started:
        tail.stop()


@pytest.fixture
def hubs() -> Iterator[list[HubProcess]]:
    """The hub processes a test starts (``serve_on``), stopped by PID after it."""
    started: list[HubProcess] = []
    yield started
    for hub in started:
        hub.stop()
        hub.log.unlink(missing_ok=True)


def serve_on(redis_url: str, port: int, hubs: list[HubProcess], *args: str,
             env: dict[str, str] | None = None, client: httpx.Client | None = None,
             ) -> HubProcess:
    """``callhub serve`` on ``port`` (a restart needs the same one), kept in ``hubs``.

    ``args`` go to ``callhub serve``; ``client`` checks it is up (https needs one).
    """
    scheme = "https" if "--tls-cert" in args else "http"
    get = client.get if client is not None else httpx.get
    hub = start_hub(redis_url, "--no-access-log", *args, env=env, scheme=scheme, port=port,
                    ready=lambda url: get(f"{url}/healthz", timeout=1).status_code == 200)
    hubs.append(hub)
    return hub


def commit(redis_url: str, events: Sequence[ev.Event]) -> None:
    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            outcomes = await CallPublisher(client, Settings(redis_url=redis_url)).commit_many(
                events)
            assert all(outcome.stored for outcome in outcomes), outcomes
        finally:
            await client.aclose()

    asyncio.run(go())


def committed_json(sync_redis: redis.Redis) -> list[bytes]:
    """Every event JSON in the shard log, in commit order: what the workers committed."""
    return [fields[b"data"] for _, fields in sync_redis.xrange(Keyspace().log(0))]


def a_call(sid: str, dialog: str = "helpdesk") -> list[ev.Event]:
    return [call_started(sid, dialog=dialog), transition(sid, 2, "menu", "greeting"),
            dtmf(sid, 3, "7"), terminated(sid, 4)]


def test_tail_prints_the_committed_events_in_order_and_json_byte_for_byte(
    redis_url: str, sync_redis: redis.Redis, hubs: list[HubProcess], run_tail: TailFactory,
) -> None:
    hub = serve_on(redis_url, free_port(), hubs)
    plain = run_tail(hub.url)
    raw = run_tail(hub.url, "--json")
    for tail in (plain, raw):
        tail.wait_err("connected to")
    commit(redis_url, spec_events() + a_call("call-2"))
    committed = committed_json(sync_redis)
    assert len(committed) == 7
    assert raw.wait_out(7) == committed
    assert [line.decode() for line in plain.wait_out(7)] == [
        "18:30:00.000 call_started     call-abc-123   +15551234567 → +18001234567  "
        "dialog helpdesk",
        '18:30:04.000 speech_final     call-abc-123   "I need a password reset" (94%) en',
        "18:32:15.000 call_terminated  call-abc-123   normal after 2m15s  final state goodbye,"
        " 4 transitions",
        "18:30:00.000 call_started     call-2         +15551234567 → +18001234567  "
        "dialog helpdesk",
        "18:30:00.000 state_transition call-2         greeting → menu  on speech_final",
        "18:30:00.000 dtmf_received    call-2         digit 7 (120 ms)",
        "18:31:00.000 call_terminated  call-2         normal after 1m00s  final state goodbye,"
        " 0 transitions",
    ]
    assert "\x1b" not in plain.stderr + b"".join(plain.out).decode()  # a pipe gets no colour


def test_filters_and_history(
    redis_url: str, sync_redis: redis.Redis, hubs: list[HubProcess], run_tail: TailFactory,
) -> None:
    hub = serve_on(redis_url, free_port(), hubs)
    commit(redis_url, [call_started("early", dialog="billing")])
    by_session = run_tail(hub.url, "--json", "--session-id", "s-2")
    by_dialog = run_tail(hub.url, "--json", "--dialog-name", "billing")
    by_type = run_tail(hub.url, "--json",
                       "--event-types", "call_started,call_terminated")
    history = run_tail(hub.url, "--json", "--include-history",
                       "--dialog-name", "billing", "--event-types", "call_started")
    for tail in (by_session, by_dialog, by_type, history):
        tail.wait_err("connected to")
    commit(redis_url, a_call("s-1") + a_call("s-2", dialog="billing") + a_call("s-3"))
    everything = [ev.decode_event(data) for data in committed_json(sync_redis)]
    data = dict(zip((id(e) for e in everything), committed_json(sync_redis), strict=True))

    def expected(keep: object) -> list[bytes]:
        return [data[id(e)] for e in everything if keep(e)]

    billing = {"early", "s-2"}
    cases = [
        (by_session, expected(lambda e: e.session_id == "s-2")),
        (by_dialog, expected(lambda e: e.session_id == "s-2")),  # "early" was before it joined
        (by_type, expected(lambda e: isinstance(e, ev.CallStarted | ev.CallTerminated)
                           and e.session_id != "early")),
        (history, expected(lambda e: e.session_id in billing and isinstance(e, ev.CallStarted))),
    ]
    for tail, want in cases:
        assert tail.wait_out(len(want)) == want
    # A fence: one more matching event for all, then nothing unexpected came before it.
    # (by_session and history see none of it; the same dispatcher served them first.)
    commit(redis_url, [terminated("early", 2)])
    assert by_type.wait_out(len(cases[2][1]) + 1)[-1] == committed_json(sync_redis)[-1]
    assert by_dialog.wait_out(len(cases[1][1]) + 1)[-1] == committed_json(sync_redis)[-1]
    assert by_session.out == cases[0][1]
    assert history.out == cases[3][1]


def test_resume_after_the_hub_is_killed_and_restarted_gets_the_gap_exactly_once(
    redis_url: str, sync_redis: redis.Redis, hubs: list[HubProcess], run_tail: TailFactory,
) -> None:
    port = free_port()
    first = serve_on(redis_url, port, hubs)
    tail = run_tail(first.url, "--json")
    tail.wait_err("connected to")
    commit(redis_url, a_call("before")[:3])
    tail.wait_out(3)

    first.process.kill()  # no goodbye: the connection just drops
    first.process.wait(timeout=DEADLINE)
    commit(redis_url, a_call("before")[3:] + a_call("during"))  # while no hub runs
    serve_on(redis_url, port, hubs)
    # Its first retry (after 3-3.6 s) may find the new hub not yet listening:
    # the second comes 6-7.2 s later.
    tail.wait_err("reconnected; resuming after", timeout=30)
    commit(redis_url, a_call("after"))

    committed = committed_json(sync_redis)
    assert len(committed) == 12
    assert tail.wait_out(12) == committed
    assert "callhub tail: connection lost: " in tail.stderr
    assert "Traceback" not in tail.stderr


def test_ctrl_c_exits_0_without_a_traceback_streaming_or_waiting_to_retry(
    redis_url: str, hubs: list[HubProcess], run_tail: TailFactory,
) -> None:
    hub = serve_on(redis_url, free_port(), hubs)
    streaming = run_tail(hub.url)
    waiting = run_tail(f"http://127.0.0.1:{free_port()}")
    streaming.wait_err("connected to")
    waiting.wait_err("cannot reach")
    for tail in (streaming, waiting):
        assert tail.interrupt() == 0, tail.stderr
        assert "Traceback" not in tail.stderr
        assert "KeyboardInterrupt" not in tail.stderr


def test_an_unreachable_hub_with_max_retries_exits_1(run_tail: TailFactory) -> None:
    tail = run_tail(f"http://127.0.0.1:{free_port()}", "--max-retries", "0")
    assert tail.exit_status() == 1
    assert "giving up after 0 retries: cannot reach" in tail.stderr


def test_keys_and_bad_requests_exit_2_with_a_clear_message(
    redis_url: str, hubs: list[HubProcess], run_tail: TailFactory,
) -> None:
    hub = serve_on(redis_url, free_port(), hubs, env={"CALLHUB_API_KEYS": "good-key"})
    no_key = run_tail(hub.url)
    bad_key = run_tail(hub.url, "--api-key", "wrong")
    bad_type = run_tail(hub.url, "--event-types", "dtfm",
                        env={"CALLHUB_API_KEY": "good-key"})
    good_key = run_tail(hub.url, env={"CALLHUB_API_KEY": "good-key"})
    bad_url = run_tail("hub:8080")
    assert no_key.exit_status() == 2
    assert "the hub needs an API key (401: an API key is required" in no_key.stderr
    assert "--api-key or set CALLHUB_API_KEY" in no_key.stderr
    assert bad_key.exit_status() == 2
    assert "the API key was refused (401: the API key is not valid)" in bad_key.stderr
    assert bad_type.exit_status() == 2
    assert "400 Bad Request: unknown event type 'dtfm'; valid types: call_started" in (
        bad_type.stderr)
    assert bad_url.exit_status() == 2
    assert "is not an http:// or https:// URL" in bad_url.stderr
    good_key.wait_err("connected to")
    assert good_key.interrupt() == 0
    for tail in (no_key, bad_key, bad_type, bad_url):
        assert "Traceback" not in tail.stderr


def test_https_to_a_plain_http_hub_says_so_and_exits_2(
    redis_url: str, hubs: list[HubProcess], run_tail: TailFactory,
) -> None:
    """Not a bare ``WRONG_VERSION_NUMBER`` retried for ever: a retry cannot fix it."""
    hub = serve_on(redis_url, free_port(), hubs)
    tail = run_tail(hub.url.replace("http://", "https://"))
    assert tail.exit_status() == 2
    assert tail.stderr == ("callhub tail: the hub answers plain HTTP, not TLS: use an http:// "
                           "URL (or serve the hub with --tls-cert)")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, the hub's certificate for 127.0.0.1, and a client certificate from the CA."""
    folder = tmp_path_factory.mktemp("tail-pki")
    ca = trustme.CA()
    server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("tail@callhub.test")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "server", "server_key", "client")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return paths


def test_mtls_hub_with_its_ca_and_a_client_certificate(
    redis_url: str, hubs: list[HubProcess], run_tail: TailFactory, pki: dict[str, Path],
) -> None:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["client"]))
    with httpx.Client(verify=context) as client:
        hub = serve_on(redis_url, free_port(), hubs, "--tls-cert", str(pki["server"]),
                       "--tls-key", str(pki["server_key"]), "--tls-ca", str(pki["ca"]),
                       "--require-client-cert", client=client)
    trusted = run_tail(hub.url, "--json", "--tls-ca", str(pki["ca"]),
                       "--tls-cert", str(pki["client"]))
    untrusted = run_tail(hub.url, "--tls-cert", str(pki["client"]))
    anonymous = run_tail(hub.url, "--tls-ca", str(pki["ca"]), "--max-retries", "0")
    trusted.wait_err("connected to")
    commit(redis_url, a_call("tls")[:1])
    assert len(trusted.wait_out(1)) == 1
    assert untrusted.exit_status() == 2
    assert "the hub's certificate is not trusted" in untrusted.stderr
    assert "give --tls-ca" in untrusted.stderr
    # Under TLS 1.3 a refused client certificate looks like a closed connection.
    assert anonymous.exit_status() == 1, anonymous.stderr
    assert ("the hub closed the connection without answering (a hub that requires client "
            "certificates does that: see --tls-cert)") in anonymous.stderr
