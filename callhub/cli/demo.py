"""``callhub demo``: the hub with simulated calls, in one process, nothing to install.

Without a Redis URL it starts an embedded in-memory Redis (``EmbeddedRedis``);
the hub (the same app ``callhub serve`` runs) and a simulated worker (the same
one ``callhub worker --simulate`` runs) connect to it by URL, so what the demo
shows is the real code path. Given ``--redis-url`` (or ``CALLHUB_REDIS_URL``),
it uses that Redis instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time

import msgspec

from callhub.cli.arguments import port, positive
from callhub.cli.listening import base_url, port_problem
from callhub.settings import Settings

HELP = "run the hub with simulated calls on an embedded Redis (no server needed)"
DESCRIPTION = (
    "Run the hub on --port (default 8080) with a simulated worker producing a steady "
    "stream of calls, on an embedded in-memory Redis unless --redis-url (or "
    "CALLHUB_REDIS_URL) names a real one. Prints where to open the dashboard. Ctrl-C stops."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=port, default=8080, help="port (8080)")
    parser.add_argument("--rate", type=positive(float, "calls per second above 0"), default=0.5,
                        metavar="CALLS_PER_SECOND", help="new simulated calls per second (0.5)")
    parser.add_argument("--speed", type=positive(float, "a factor above 0"), default=1.0,
                        metavar="FACTOR",
                        help="simulated time runs this many times faster than real time (1)")
    parser.add_argument("--seed", type=int, default=None, help="seed for repeatable callers")
    parser.add_argument("--calls", type=positive(int, "a whole number above 0"), default=None,
                        metavar="N",
                        help="stop starting calls after N (default: run until Ctrl-C)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    problem = port_problem(args.host, args.port)
    if problem:
        print(f"callhub demo: {problem}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    redis_given = args.redis_url is not None or "CALLHUB_REDIS_URL" in os.environ
    with contextlib.ExitStack() as stack:
        if not redis_given:
            from callhub.cli.embedded_redis import EmbeddedRedis

            embedded = stack.enter_context(EmbeddedRedis())
            settings = msgspec.structs.replace(settings, redis_url=embedded.url)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_demo(args, settings, embedded=not redis_given))
    return 0


async def _demo(args: argparse.Namespace, settings: Settings, *, embedded: bool) -> None:
    import uvicorn

    from callhub.cli.status_line import StatusLine
    from callhub.cli.worker import lease_companions
    from callhub.connections import connect_client, describe
    from hub.app import create_app
    from workers.simulator.worker import SimulatedWorker

    app = create_app(settings, end_streams_on_sigterm=True)
    server = uvicorn.Server(uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=3, lifespan="on",
    ))
    serving = asyncio.create_task(server.serve(), name="hub")
    while not server.started:
        if serving.done():
            await serving  # start-up failed: its error ends the demo
            return
        await asyncio.sleep(0.05)

    redis = connect_client(settings, max_connections=64)
    keeper, companions = lease_companions(redis, settings)
    worker = SimulatedWorker(redis, settings, rate=args.rate, speed=args.speed, seed=args.seed,
                             calls=args.calls, leases=keeper, companions=companions,
                             stop_grace_s=5.0)
    working = asyncio.create_task(worker.run(), name="simulated-worker")
    _print_welcome(args.host, args.port, describe(settings.redis_url), embedded=embedded)
    status = StatusLine(sys.stderr, interval_s=1.0)
    started = time.monotonic()
    try:
        while not serving.done():
            status.update(f"{worker.describe()}  ({time.monotonic() - started:.0f} s)")
            await asyncio.sleep(0.5)
    finally:
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(working, 10)
        await redis.aclose()
        status.clear()
        print(f"callhub demo: stopped. {worker.describe()}", file=sys.stderr)


def _print_welcome(host: str, port: int, redis: str, *, embedded: bool) -> None:
    from callhub.cli.own_command import own_command

    base = base_url(host, port)
    store = f"an embedded in-memory Redis ({redis}; gone when the demo stops)" if embedded \
        else f"Redis at {redis}"
    callhub = own_command()
    tail = f"{callhub.command} tail --url {base}"
    if callhub.activate:
        tail += f"\n{'':17}(or `{callhub.activate}` first, then `callhub tail …`)"
    lines = [
        ("dashboard", f"{base}/"),
        ("api reference", f"{base}/docs"),
        ("live events", f"curl -N '{base}/v1/calls/events?include_history=true'"),
        ("transcripts", f"curl -N '{base}/v1/calls/events?event_types=speech_final,"
                        "call_terminated'"),
        ("active calls", f"curl '{base}/v1/calls?page_size=5'"),
        ("one call", f"curl '{base}/v1/calls/<session_id>'"),
        ("in a terminal", tail),
    ]
    shown = "\n".join(f"  {label:<15}{value}" for label, value in lines)
    print(f"callhub demo: simulated calls on {store}\n\n{shown}\n\nCtrl-C stops.\n",
          flush=True)
