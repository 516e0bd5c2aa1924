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
    _redis_options(publish)
    return parser


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

        if args.file == "-":
            return asyncio.run(publish_file(settings, sys.stdin.buffer))
        try:
            source = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            parser.exit(2, f"callhub publish: cannot read {args.file}: {error.strerror}\n")
        with source:
            return asyncio.run(publish_file(settings, source))
    parser.error(f"unknown command {args.command}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
