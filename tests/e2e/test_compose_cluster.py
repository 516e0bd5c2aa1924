"""`docker compose -f docker-compose.cluster.yml up`: callhub on a Redis Cluster, for real.

Six redis-server containers (3 masters, 3 replicas) joined by the one-shot
redis-init (`redis-cli --cluster create`, default slot ranges), three API
replicas, two workers and a forwarder with CALLHUB_REDIS_CLUSTER=true,
CALLHUB_SHARDS=6 and CALLHUB_DURABLE_REPLICAS=1, nginx in front. Then:

1. /healthz and the list of calls through nginx; every replica logs the shard
   spread, and it is even (2 shards per master, no warning).
2. Eight SSE clients receive events; a master is killed (`docker kill`: no
   restart policy brings it back before the failover), its replica takes over,
   the streams go on; the old master is started again and rejoins as a replica.
3. The workers stop; each client is held to the stored record of every call it
   saw start: 0 lost, 0 duplicated, and no stored call has a gap in its seqs
   (an acknowledged commit lost in the failover would leave one). Every call
   ended but those a worker's log says it gave up (no replica could confirm
   its commits during the failover).

Every step timed and printed; the table goes to tests/artifacts/compose-cluster.txt.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.support.compose_stack import ComposeStack, Steps, answers
from tests.support.docker_engine import DockerEngine, say
from tests.support.paths import ARTIFACTS, ROOT
from tests.support.polling import async_wait_until
from tests.support.processes import free_port
from tests.support.resuming_stream import following, settle

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

CLIENTS = 8
NODES = [f"redis-{n}" for n in range(1, 7)]
_ABANDONED = re.compile(r"call (\S+) abandoned")


def role(stack: ComposeStack, node: str) -> str:
    """``master`` or ``slave``, as the node says (empty if it does not answer)."""
    containers = stack.containers(node)
    result = stack.engine.docker("exec", containers[0], "redis-cli", "role", check=False,
                                 timeout=10)
    return result.stdout.split("\n", 1)[0].strip() if result.returncode == 0 else ""


def masters(stack: ComposeStack, nodes: list[str]) -> list[str]:
    return [node for node in nodes if role(stack, node) == "master"]


async def test_compose_cluster_profile_fails_over_a_master_losing_no_acknowledged_commit(
        docker_engine: DockerEngine) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stack = ComposeStack(docker_engine, [ROOT / "docker-compose.cluster.yml"],
                         "callhub-e2e-cluster", {"CALLHUB_LB_PUBLISH": f"127.0.0.1:{port}"})
    steps = Steps()
    figures: dict[str, object] = {"compose": " ".join(stack.command)}
    try:
        with steps.step("build the callhub image (compose build)"):
            await asyncio.to_thread(stack.run, "build", timeout=900)
        with steps.step("up -d: cluster created, /healthz through the load balancer"):
            await asyncio.to_thread(stack.run, "up", "-d", timeout=300)
            await async_wait_until(lambda: answers(url), timeout=180, in_thread=True,
                                   what="/healthz through nginx", interval=0.5)
            await async_wait_until(lambda: answers(url, "/v1/calls"), timeout=60,
                                   in_thread=True, what="the list of calls", interval=0.5)
        with steps.step("every replica logs an even shard spread"):
            def spread_logged() -> str:
                logs = stack.logs("hub")
                assert "spread unevenly" not in logs, logs[-3000:]
                lines = [line for line in logs.splitlines() if "shards per master" in line]
                return lines[-1] if len(lines) >= 3 else ""
            line = await async_wait_until(spread_logged, timeout=60, in_thread=True,
                                          what="each replica's spread line", interval=1)
            assert line.count(": 2 (") == 3, line  # 6 shards: 2 on each of 3 masters
            figures["spread"] = line.split("shards per master: ", 1)[-1]

        async with following(url, CLIENTS) as clients:
            with steps.step(f"SSE: {CLIENTS} clients receive simulated events"):
                await async_wait_until(lambda: all(len(c.received) >= 3 for c in clients),
                                       timeout=60, what="events on every stream")
            with steps.step("kill a master: its replica takes over, streams go on"):
                before = await asyncio.to_thread(masters, stack, NODES)
                assert len(before) == 3, before
                victim = before[0]
                counts = [len(c.received) for c in clients]
                killed_at = time.monotonic()
                docker_engine.docker("kill", stack.containers(victim)[0])
                survivors = [node for node in NODES if node != victim]
                await async_wait_until(
                    lambda: len(masters(stack, survivors)) == 3, timeout=60, in_thread=True,
                    interval=0.5, what="a replica promoted in the killed master's place")
                figures["failover (kill to a new master)"] = (
                    f"{time.monotonic() - killed_at:.1f} s")
                await async_wait_until(
                    lambda: all(len(c.received) > n for c, n in zip(clients, counts, strict=True)),
                    timeout=60, what="new events on every stream after the failover")
                figures["first events on every stream after the kill"] = (
                    f"{time.monotonic() - killed_at:.1f} s")
            with steps.step("start the old master again: it rejoins as a replica"):
                docker_engine.docker("start", stack.containers(victim)[0])
                await async_wait_until(lambda: role(stack, victim) == "slave", timeout=60,
                                       in_thread=True, interval=0.5,
                                       what="the old master to rejoin as a replica")
            with steps.step("stop the workers; every client holds every stored event once"):
                await asyncio.to_thread(stack.run, "stop", "worker", timeout=120)
                result = await settle(url, clients)
                figures["comparison"] = result.describe()
                # While the new master has no replica, no durable commit is confirmed;
                # a worker that cannot commit for long gives the call up (its lease
                # then expires, for a running worker's reaper to end it). Those, and
                # only those, are stored without an end once the workers stopped.
                abandoned = set(_ABANDONED.findall(stack.logs("worker")))
                figures["calls abandoned during the failover"] = len(abandoned)
                figures["streams broken"] = sum(c.drops for c in clients)
            say(result.describe())
            assert result.calls > 0 and result.events > 0
            assert (result.lost, result.duplicated, result.gaps) == (0, 0, 0), result
            assert result.unfinished <= abandoned, (result.unfinished - abandoned)

        lb_log = stack.logs("lb")
        assert "[alert]" not in lb_log and "[emerg]" not in lb_log, lb_log[-3000:]
    finally:
        with steps.step("down -v"):
            await asyncio.to_thread(stack.down)
        table = steps.table("docker compose (Redis Cluster, 3 masters + 3 replicas): steps")
        table += "\n" + "\n".join(f"{name}: {value}" for name, value in figures.items())
        print(table, flush=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "compose-cluster.txt").write_text(table + "\n")
