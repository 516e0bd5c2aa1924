"""The ``callhub`` command: one entry point, one sub-command per job.

Settings come from the environment (``CALLHUB_*``); flags override them. A bad
setting or argument ends the command with a message naming it and status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from hub.settings import SettingsError, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callhub", description="The call event hub of a voicetyped deployment."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    publish = commands.add_parser(
        "publish",
        help="commit call events from JSON Lines",
        description="Commit call events from JSON Lines (one spec-shaped event per line). "
        "Missing seq, event_id and timestamp are filled in; publishing a file twice "
        "stores nothing twice. Exit status 1 if any line failed.",
    )
    publish.add_argument("file", nargs="?", default="-", help="JSON Lines file, or - for stdin")
    publish.add_argument(
        "--retry-for", type=_seconds, default=10.0, metavar="SECONDS",
        help="how long to keep retrying while Redis is unreachable (default 10)",
    )
    publish.add_argument(
        "--progress-interval", type=_seconds, default=None, metavar="SECONDS",
        help="seconds between progress lines (default: 0.2 on a terminal, 5 otherwise)",
    )
    _redis_options(publish)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 86400, got {text!r}")
    return value


def _redis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (env CALLHUB_REDIS_URL)")
    parser.add_argument("--shards", help="number of shards (env CALLHUB_SHARDS)")
    parser.add_argument("--prefix", help="key prefix (env CALLHUB_PREFIX)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            os.environ, redis_url=args.redis_url, shards=args.shards, prefix=args.prefix
        )
    except SettingsError as error:
        parser.exit(2, f"callhub: error: {error}\n")

    if args.command == "publish":
        from workers.publish_command import publish_file

        options = {"retry_for_s": args.retry_for, "progress_interval_s": args.progress_interval}
        if args.file == "-":
            return asyncio.run(publish_file(settings, sys.stdin.buffer, **options))
        try:
            source = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            parser.exit(2, f"callhub publish: cannot read {args.file}: {error.strerror}\n")
        with source:
            return asyncio.run(publish_file(settings, source, **options))
    parser.error(f"unknown command {args.command}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
