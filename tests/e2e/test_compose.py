"""`docker compose up` of the project's own docker-compose.yml, for real.

A Docker engine of the test's own (tests/support/docker_engine.py), the base
images pulled or built from Debian's packages, the callhub image built from the
Dockerfile, then everything through the load balancer on a loopback port:

1. `up -d`: /healthz answers through nginx; the list of calls fills up as the
   simulated workers start calls; ten SSE clients receive their events.
2. `up -d --no-deps --scale hub=5 hub`: all five replicas serve requests, and
   the load balancer is the same container, never restarted (it resolves `hub`
   through Docker's DNS while it runs).
3. The replica serving the most streams is SIGKILLed (its container's PID, as a
   crash would be): its clients reconnect with Last-Event-ID; the restart policy
   brings it back.
4. `restart redis`: streams go on, commits go on (AOF on the named volume).
5. The workers stop (their calls end cleanly); each client's events are held to
   the stored record of every call it saw start: 0 lost, 0 duplicated.
6. No [alert] in nginx's log; `down -v`.

Every step is timed and printed (`make test-compose` runs pytest -s); the table
also goes to tests/artifacts/compose.txt.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal

import httpx
import pytest

from tests.support.compose_stack import ComposeStack, Steps, answers
from tests.support.docker_engine import DockerEngine, say
from tests.support.paths import ARTIFACTS, ROOT
from tests.support.polling import async_wait_until
from tests.support.processes import free_port
from tests.support.resuming_stream import following, settle

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

CLIENTS = 10
_UPSTREAM = re.compile(r"upstream=(\d+\.\d+\.\d+\.\d+):8080")


def upstreams_in_log(stack: ComposeStack) -> set[str]:
    """The replica addresses nginx's access log names."""
    return set(_UPSTREAM.findall(stack.logs("lb")))


def subscribers(stack: ComposeStack, container: str) -> int:
    """The streams a replica serves now (its own /metrics, asked inside its container)."""
    script = ("import urllib.request; print(urllib.request.urlopen("
              "'http://127.0.0.1:8080/metrics', timeout=2).read().decode())")
    text = stack.engine.docker("exec", container, "python", "-c", script).stdout
    found = re.search(r"^callhub_stream_subscribers(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


async def test_compose_up_scales_survives_a_replica_kill_and_a_redis_restart(
        docker_engine: DockerEngine) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stack = ComposeStack(docker_engine, [ROOT / "docker-compose.yml"], "callhub-e2e",
                         {"CALLHUB_LB_PUBLISH": f"127.0.0.1:{port}"})
    steps = Steps()
    figures: dict[str, object] = {"compose": " ".join(stack.command)}
    try:
        with steps.step("build the callhub image (compose build)"):
            await asyncio.to_thread(stack.run, "build", timeout=900)
        with steps.step("up -d: /healthz through the load balancer"):
            await asyncio.to_thread(stack.run, "up", "-d", timeout=300)
            await async_wait_until(lambda: answers(url), timeout=120, in_thread=True,
                                   what="/healthz through nginx", interval=0.5)
        with steps.step("GET /v1/calls lists calls"):
            def listed() -> int:
                response = httpx.get(f"{url}/v1/calls", timeout=3)
                assert response.status_code == 200, response.text
                return int(response.json()["total_count"])
            figures["calls listed"] = await async_wait_until(
                listed, timeout=60, in_thread=True, what="an active call", interval=0.5)

        async with following(url, CLIENTS) as clients:
            with steps.step(f"SSE: {CLIENTS} clients receive simulated events"):
                await async_wait_until(lambda: all(len(c.received) >= 3 for c in clients),
                                       timeout=60, what="events on every stream")
            first_hubs = stack.running("hub")
            assert len(first_hubs) == 3, first_hubs

            with steps.step("--scale hub=5: all five serve, the lb not restarted"):
                lb = stack.containers("lb")
                lb_started = stack.inspect(lb[0], "{{.State.StartedAt}}")
                await asyncio.to_thread(stack.run, "up", "-d", "--no-deps", "--scale", "hub=5",
                                        "hub", timeout=180)
                hubs = stack.running("hub")
                assert len(hubs) == 5, hubs
                addresses = {stack.address(h) for h in hubs}

                def all_serve() -> bool:
                    for _ in range(20):
                        httpx.get(f"{url}/healthz", timeout=3)
                    return addresses <= upstreams_in_log(stack)
                await async_wait_until(all_serve, timeout=60, in_thread=True, interval=0.2,
                                       what="requests on each of the five replicas")
                assert stack.containers("lb") == lb
                assert stack.inspect(lb[0], "{{.State.StartedAt}}") == lb_started

            with steps.step("SIGKILL the replica with most streams; clients resume"):
                load = {h: subscribers(stack, h) for h in first_hubs}
                victim = max(load, key=lambda h: load[h])
                assert load[victim] > 0, load
                figures["streams on the killed replica"] = load[victim]
                drops_before = sum(c.drops for c in clients)
                counts = [len(c.received) for c in clients]
                os.kill(int(stack.inspect(victim, "{{.State.Pid}}")), signal.SIGKILL)
                await async_wait_until(
                    lambda: sum(c.drops for c in clients) - drops_before >= load[victim],
                    timeout=30, what="the killed replica's streams to break")
                await async_wait_until(
                    lambda: all(c.connected and len(c.received) > n
                                for c, n in zip(clients, counts, strict=True)),
                    timeout=60, what="every client streaming again, with new events")
                figures["streams broken by the kill"] = sum(c.drops for c in clients) - drops_before
                await async_wait_until(
                    lambda: stack.inspect(victim, "{{.State.Running}}") == "true",
                    timeout=60, in_thread=True, what="the restart policy to bring it back")

            with steps.step("restart redis: streams and commits go on"):
                counts = [len(c.received) for c in clients]
                await asyncio.to_thread(stack.run, "restart", "redis", timeout=120)
                await async_wait_until(lambda: answers(url, "/readyz"), timeout=60,
                                       in_thread=True, what="/readyz after the restart")
                await async_wait_until(
                    lambda: all(len(c.received) > n for c, n in zip(clients, counts, strict=True)),
                    timeout=60, what="new events on every stream after the restart")

            with steps.step("stop the workers; every client holds every stored event once"):
                await asyncio.to_thread(stack.run, "stop", "worker", timeout=120)
                result = await settle(url, clients)
                figures["comparison"] = result.describe()
                figures["reconnects"] = sum(c.connections for c in clients) - CLIENTS
            say(result.describe())
            assert result.calls > 0 and result.events > 0
            assert (result.lost, result.duplicated, result.gaps) == (0, 0, 0), result
            assert not result.unfinished, "every call ends when its worker stops"

        lb_log = stack.logs("lb")
        assert "[alert]" not in lb_log and "[emerg]" not in lb_log, lb_log[-3000:]
    finally:
        with steps.step("down -v"):
            await asyncio.to_thread(stack.down)
        table = steps.table("docker compose (single Redis): steps") + "\n" + "\n".join(
            f"{name}: {value}" for name, value in figures.items())
        print(table, flush=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "compose.txt").write_text(table + "\n")
