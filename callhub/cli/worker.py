"""``callhub worker --simulate``: simulated calls through dialogs, committed to Redis.

    callhub worker [--redis-url URL] --simulate [--rate CALLS_PER_SECOND] [--calls N]
                   [--dialog FILE ...] [--speed FACTOR] [--seed N] [--hook-url URL]

Runs many concurrent calls in one asyncio process (``SimulatedWorker``) with a
live status line on stderr. Without ``--calls`` it runs until SIGTERM or
SIGINT; then it takes no new calls, ends its active ones with reason
``system_hangup`` within a bounded time, prints its summary and exits 0.
Leases are renewed for the calls it holds and a reaper ends calls of workers
that died (DESIGN I7). A bad argument or dialog file: a message, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from callhub.cli.arguments import port, positive
from callhub.plurals import counted
from callhub.settings import Settings

if TYPE_CHECKING:
    from callhub.cli.status_line import StatusLine
    from callhub.connections import RedisClient
    from workers.commit.leases import LeaseKeeper
    from workers.dialog.spec import Dialog
    from workers.metrics import WorkerMetrics
    from workers.simulator.worker import Companion, SimulatedWorker

HELP = "run simulated calls through dialogs (--simulate)"
DESCRIPTION = (
    "Run simulated calls: callers who speak, press keys, stay silent, barge in and hang up, "
    "driven through dialog files (default: the bundled helpdesk and billing_menu), every "
    "event committed to Redis. Without --calls it runs until SIGTERM or SIGINT, then ends "
    "its active calls cleanly."
)
STOP_GRACE_S = 10.0



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's own options (the Redis options are added by the CLI)."""
    parser.add_argument("--simulate", action="store_true",
                        help="simulate callers (the only mode so far; required)")
    parser.add_argument("--rate", type=positive(float, "calls per second above 0"),
                        default=1.0, metavar="CALLS_PER_SECOND",
                        help="new calls per second, on average (default 1)")
    parser.add_argument("--calls", type=positive(int, "a whole number above 0"), default=None,
                        metavar="N", help="stop after N calls have ended (default: run until "
                        "SIGTERM/SIGINT)")
    parser.add_argument("--dialog", action="extend", nargs="+", default=None, metavar="FILE",
                        dest="dialogs", help="dialog files (TOML), calls spread evenly over "
                        "them (default: the bundled helpdesk and billing_menu)")
    parser.add_argument("--speed", type=positive(float, "a factor above 0"), default=1.0,
                        metavar="FACTOR", help="run dialog time FACTOR times faster: pauses, "
                        "prompts, timeouts, holds (default 1)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="seed of the callers' choices: the same seed makes the same calls "
                        "(default: random)")
    parser.add_argument("--hook-url", default=None, metavar="URL",
                        help="base URL for the dialogs' /path hooks (default: a simulated back "
                        "office this worker serves on 127.0.0.1)")
    parser.add_argument("--progress-interval", type=positive(float, "seconds above 0"),
                        default=None, metavar="SECONDS",
                        help="seconds between status lines (default: 0.2 on a terminal, 5 "
                        "otherwise)")
    parser.add_argument("--metrics-port", type=port, default=None, metavar="PORT",
                        help="serve Prometheus metrics on this port (default: none)")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address for --metrics-port (127.0.0.1)")


def load_dialogs(paths: Sequence[str] | None) -> list[Dialog]:
    """The dialog files named, or the bundled ones; raises ``DialogFileError``."""
    from workers.dialog.spec import DialogFileError, load_dialog
    from workers.simulator.bundled_dialogs import bundled_dialogs

    if not paths:
        return bundled_dialogs()
    dialogs: dict[str, Dialog] = {}
    files: dict[str, str] = {}
    for path in paths:
        dialog = load_dialog(path)
        if dialog.name in dialogs:
            raise DialogFileError(path, 1, f"the dialog name {dialog.name!r} is taken by "
                                  f"{files[dialog.name]}")
        dialogs[dialog.name], files[dialog.name] = dialog, path
    return list(dialogs.values())


def lease_companions(
    redis: RedisClient, settings: Settings, metrics: WorkerMetrics | None = None
) -> tuple[LeaseKeeper, list[Companion]]:
    """A lease keeper for a worker's calls, and the loops to run beside it (keeper, reaper)."""
    from workers.commit.leases import LeaseKeeper
    from workers.commit.publisher import CallPublisher
    from workers.commit.reaper import Reaper

    keeper = LeaseKeeper(redis, settings.keyspace, settings.lease_ms)
    reaper = Reaper(redis, CallPublisher(redis, settings, metrics=metrics), settings,
                    metrics=metrics)
    return keeper, [keeper, reaper]


def run(args: argparse.Namespace, settings: Settings) -> int:
    from workers.dialog.spec import DialogFileError

    if not args.simulate:
        sys.stderr.write("callhub worker: error: only --simulate is supported so far; "
                         "add --simulate\n")
        return 2
    if args.hook_url is not None and not args.hook_url.startswith(("http://", "https://")):
        sys.stderr.write(f"callhub worker: error: --hook-url must be an http(s) URL, "
                         f"got {args.hook_url!r}\n")
        return 2
    try:
        dialogs = load_dialogs(args.dialogs)
    except DialogFileError as error:
        sys.stderr.write(f"callhub worker: error: {error}\n")
        return 2
    return asyncio.run(_simulate(args, settings, dialogs))


async def _simulate(args: argparse.Namespace, settings: Settings, dialogs: list[Dialog]) -> int:
    import random

    from redis.exceptions import RedisError

    from callhub.cli.status_line import StatusLine
    from callhub.connections import connect_client, describe
    from workers.metrics import WorkerMetrics
    from workers.simulator.worker import SimulatedWorker

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    redis = connect_client(settings, max_connections=64)
    try:
        await redis.ping()
    except (RedisError, OSError) as error:
        await redis.aclose()
        sys.stderr.write(f"callhub worker: cannot reach Redis at "
                         f"{describe(settings.redis_url)}: {error}\n")
        return 1
    metrics = WorkerMetrics()
    if args.metrics_port is not None:
        try:
            metrics.serve(args.metrics_port, args.metrics_host)
        except OSError as error:
            sys.stderr.write(f"callhub worker: error: cannot serve metrics on "
                             f"{args.metrics_host}:{args.metrics_port}: {error.strerror}\n")
            await redis.aclose()
            return 2
    keeper, companions = lease_companions(redis, settings, metrics)
    worker = SimulatedWorker(
        redis, settings, dialogs, rate=args.rate, calls=args.calls, speed=args.speed,
        seed=seed, hook_base_url=args.hook_url, leases=keeper, companions=companions,
        stop_grace_s=STOP_GRACE_S, metrics=metrics,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    status = StatusLine(sys.stderr, interval_s=args.progress_interval)
    names = ", ".join(d.name for d in dialogs)
    sys.stderr.write(f"callhub worker: simulating calls ({names}) on "
                     f"{describe(settings.redis_url)}, rate {args.rate:g}/s, "
                     f"speed {args.speed:g}, seed {seed}\n")
    task = asyncio.create_task(worker.run())
    try:
        await _show_progress(worker, task, status)
        stats = await task
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await redis.aclose()
    status.clear()
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(stats.reasons.items())) or "none"
    _write(sys.stdout, f"{counted(stats.done, 'call')}, {counted(stats.events, 'event')}, "
                       f"{stats.describe_errors()}; ended: {reasons}\n")
    return 1 if stats.errors else 0


async def _show_progress(
    worker: SimulatedWorker, task: asyncio.Task[object], status: StatusLine
) -> None:
    last_events, last_time = 0, time.monotonic()
    rate = 0.0
    while not task.done():
        await asyncio.wait({task}, timeout=0.2)
        stats = worker.stats
        now = time.monotonic()
        if now - last_time >= 1.0:
            rate = (stats.events - last_events) / (now - last_time)
            last_events, last_time = stats.events, now
        stopping = " (stopping)" if worker.stopping else ""
        status.update(f"calls: {stats.active} active, {stats.done} done · "
                      f"{rate:,.0f} events/s · {stats.describe_errors()}{stopping}")


def _write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()
