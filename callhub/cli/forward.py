"""``callhub forward``: deliver webhooks — call events POSTed to the subscriptions' URLs.

    callhub forward [--redis-url URL] [--metrics-port N] [--progress-interval SECONDS]

Run as many as you like, anywhere that reaches Redis and the receivers: the
(subscription, shard) pairs are shared out by leases (``CALLHUB_FORWARD_LEASE``),
and a dead forwarder's are taken over within a lease and a second. On SIGTERM
or SIGINT it stops reading, gives requests in flight a few seconds, stores
its cursors, releases its leases and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from callhub.cli.arguments import port, positive
from callhub.plurals import counted
from callhub.settings import Settings, SettingsError, require_secret

HELP = "deliver webhooks: POST call events to the subscriptions' URLs"
DESCRIPTION = (
    "Deliver the webhook subscriptions: every matching call event POSTed, signed (Standard "
    "Webhooks), in order per call, retried with backoff for the retry window, then "
    "dead-lettered. Any number may run; leases share the work. Runs until SIGTERM or SIGINT."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=port, default=None, metavar="PORT",
                        help="serve Prometheus metrics on this port (default: none)")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address for --metrics-port (127.0.0.1)")
    parser.add_argument("--progress-interval", type=positive(float, "seconds above 0"),
                        default=None, metavar="SECONDS",
                        help="seconds between status lines (default: 0.2 on a terminal, 5 "
                        "otherwise)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    # The same rule as `callhub serve`, on the same settings: with API keys the
    # deployment seals its cursors with CALLHUB_SECRET, and a forwarder without
    # it could neither open a rewind's cursor nor seal the cursors its deliveries
    # carry in a form the replicas accept.
    try:
        require_secret(settings)
    except SettingsError as error:
        sys.stderr.write(f"callhub forward: {error} (the forwarder reads the rewinds' cursors "
                         "and seals the cursors its deliveries carry)\n")
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvloop: its loop and transports cost less CPU per request than asyncio's
    # own, and thousands of POSTs a second are what a forwarder does.
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_forward(args, settings))


async def _forward(args: argparse.Namespace, settings: Settings) -> int:
    from redis.exceptions import RedisError

    from callhub.cli.status_line import StatusLine
    from callhub.connections import connect_client, describe
    from workers.forward.forwarder import Forwarder
    from workers.forward.metrics import ForwardMetrics

    redis = connect_client(settings)
    try:
        await redis.ping()
    except (RedisError, OSError) as error:
        await redis.aclose()
        sys.stderr.write(f"callhub forward: cannot reach Redis at "
                         f"{describe(settings.redis_url)}: {error}\n")
        return 1
    metrics = ForwardMetrics()
    if args.metrics_port is not None:
        try:
            metrics.serve(args.metrics_port, args.metrics_host)
        except OSError as error:
            sys.stderr.write(f"callhub forward: error: cannot serve metrics on "
                             f"{args.metrics_host}:{args.metrics_port}: {error.strerror}\n")
            await redis.aclose()
            return 2
    forwarder = Forwarder(redis, settings, metrics=metrics)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, forwarder.stop)
    sys.stderr.write(f"callhub forward: delivering webhooks from "
                     f"{describe(settings.redis_url)} as {forwarder.holder}\n")
    sys.stderr.flush()
    status = StatusLine(sys.stderr, interval_s=args.progress_interval)
    task = asyncio.create_task(forwarder.run())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.2)
            stopping = " (stopping)" if forwarder.stopping else ""
            status.update(f"leases: {forwarder.held} · {forwarder.delivered} delivered · "
                          f"{counted(forwarder.dead_letters, 'dead letter')}{stopping}")
        await task
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await redis.aclose()
    status.clear()
    sys.stderr.write(f"callhub forward: stopped; {forwarder.delivered} delivered, "
                     f"{counted(forwarder.dead_letters, 'dead letter')}\n")
    return 0
