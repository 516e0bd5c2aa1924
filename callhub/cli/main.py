"""The ``callhub`` command: one entry point, one sub-command per job.

Settings come from the environment (``CALLHUB_*``); flags override them. A bad
setting or argument ends the command with a message naming it and status 2.
Only the commands that use the settings load them (those with Redis options:
serve, demo, worker, publish): a bad ``CALLHUB_SHARDS`` does not stop
``hash-key`` or ``tail``, which never touch Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence

from callhub.cli.arguments import port, seconds, whole_number
from callhub.cli.listening import port_problem
from callhub.settings import Settings, SettingsError, load_settings, require_secret


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callhub", description="The call event hub of a voicetyped deployment."
    )
    parser.add_argument("--version", action="version", version=f"callhub {_version()}")
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
        "--retry-for", type=seconds, default=10.0, metavar="SECONDS",
        help="how long to keep retrying while Redis is unreachable (default 10)",
    )
    publish.add_argument(
        "--progress-interval", type=seconds, default=None, metavar="SECONDS",
        help="seconds between progress lines (default: 0.2 on a terminal, 5 otherwise)",
    )
    _redis_options(publish)

    serve = commands.add_parser(
        "serve",
        help="run the API (REST and event stream) with uvicorn",
        description="Run API replicas. Keys: CALLHUB_API_KEYS or CALLHUB_API_KEYS_FILE.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=port, default=8080, help="port (8080)")
    serve.add_argument("--workers", type=whole_number(1, 64), default=1,
                       help="worker processes (1)")
    serve.add_argument("--no-access-log", action="store_true",
                       help="do not log a line per request (errors are still logged)")
    serve.add_argument("--tls-cert", help="server certificate (PEM): serve HTTPS")
    serve.add_argument("--tls-key", help="server private key (PEM)")
    serve.add_argument("--tls-ca", help="CA bundle (PEM) that signs client certificates")
    serve.add_argument("--require-client-cert", action="store_true",
                       help="mTLS: refuse clients without a certificate signed by --tls-ca")
    _redis_options(serve)

    hash_key = commands.add_parser(
        "hash-key",
        help="make an API key and its keys-file entry",
        description="Make a new API key (or hash the one given): its entry for "
        "CALLHUB_API_KEYS_FILE on stdout, so `callhub hash-key ... >> keys.toml` appends "
        "it; the new key itself, shown only once, and what to do next on stderr.",
    )
    hash_key.add_argument("key", nargs="?", help="an existing key (default: make a new one)")
    hash_key.add_argument("--name", default="my-key", help="the key's name in the file")
    hash_key.add_argument("--dialogs", help="comma-separated dialogs it may see "
                          "(leave it out for a key that sees every dialog)")
    hash_key.add_argument("--webhooks", action="store_true",
                          help="the key may manage webhook subscriptions")

    for name, module in COMMAND_MODULES.items():
        command = importlib.import_module(module)
        sub = commands.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(sub)
        if getattr(command, "REDIS_OPTIONS", True):
            _redis_options(sub)
    return parser


# Commands that live in their own module: each defines HELP, DESCRIPTION,
# ``add_arguments(parser)`` and ``run(args, settings) -> int`` (its exit status),
# and keeps its module-level imports light (the parser imports every one). One
# that sets ``REDIS_OPTIONS = False`` uses no settings: it gets no Redis options,
# and ``run(args)`` without settings.
COMMAND_MODULES = {
    "worker": "callhub.cli.worker",
    "forward": "callhub.cli.forward",
    "demo": "callhub.cli.demo",
    "tail": "callhub.cli.tail",
    "export": "callhub.cli.export",
}


def _redis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (env CALLHUB_REDIS_URL)")
    parser.add_argument("--shards", help="number of shards (env CALLHUB_SHARDS)")
    parser.add_argument("--prefix", help="key prefix (env CALLHUB_PREFIX)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "hash-key":
        return _hash_key(args)
    module = COMMAND_MODULES.get(args.command)
    command = importlib.import_module(module) if module is not None else None
    if command is not None and not getattr(command, "REDIS_OPTIONS", True):
        status: int = command.run(args)
        return status

    settings = _settings(parser, args)
    if command is not None:
        status = command.run(args, settings)
        return status
    if args.command == "publish":
        from callhub.cli.publish import publish_file

        options = {"retry_for_s": args.retry_for, "progress_interval_s": args.progress_interval}
        if args.file == "-":
            return asyncio.run(publish_file(settings, sys.stdin.buffer, **options))
        try:
            source = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            parser.exit(2, f"callhub publish: cannot read {args.file}: {error.strerror}\n")
        with source:
            return asyncio.run(publish_file(settings, source, **options))
    if args.command == "serve":
        return _serve(parser, args, settings)
    parser.error(f"unknown command {args.command}")  # pragma: no cover


def _settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    """The settings from the environment and the Redis options; exit 2 if bad."""
    try:
        return load_settings(
            os.environ, redis_url=args.redis_url, shards=args.shards, prefix=args.prefix
        )
    except SettingsError as error:
        parser.exit(2, f"callhub: error: {error}\n")


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    from callhub.cli.serve import TlsOptions, serve
    from hub.api.auth import ApiKeys

    tls = TlsOptions(args.tls_cert, args.tls_key, args.tls_ca, args.require_client_cert)
    problem = tls.problem()
    if problem:
        parser.exit(2, f"callhub serve: {problem}\n")
    try:
        ApiKeys.load(settings.api_keys, settings.api_keys_file)  # fail here, not per worker
        require_secret(settings)
    except SettingsError as error:
        parser.exit(2, f"callhub serve: {error}\n")
    problem = port_problem(args.host, args.port)
    if problem:
        parser.exit(2, f"callhub serve: {problem}\n")
    overrides = {
        variable: value
        for variable, value in (
            ("CALLHUB_REDIS_URL", args.redis_url),
            ("CALLHUB_SHARDS", args.shards),
            ("CALLHUB_PREFIX", args.prefix),
        )
        if value is not None
    }
    serve(args.host, args.port, args.workers, tls, overrides, access_log=not args.no_access_log,
          max_connections=settings.max_connections, log_format=settings.log_format)
    return 0


def _hash_key(args: argparse.Namespace) -> int:
    """The keys-file entry on stdout (nothing else: ``>> keys.toml`` stays valid
    TOML); the secret and the next steps on stderr, for the person."""
    from callhub.events import check_dialog_name
    from hub.api.auth import hash_key, new_key

    problem = _key_name_problem(args.name)
    dialogs: list[str] = []
    if problem is None and args.dialogs is not None:
        dialogs = list(dict.fromkeys(d.strip() for d in args.dialogs.split(",") if d.strip()))
        if not dialogs:
            problem = ("--dialogs names no dialog: give dialog names separated by commas, or "
                       "leave --dialogs out for a key that sees every dialog")
        for dialog in dialogs:
            try:
                check_dialog_name(dialog)  # what the hub checks when it reads the file
            except ValueError as error:
                problem = f"--dialogs: {error}"
                break
    if problem is not None:
        print(f"callhub hash-key: {problem}", file=sys.stderr)
        return 2
    key = args.key or new_key()
    entry = ["[[keys]]", f"name = {_toml_string(args.name)}", f'sha256 = "{hash_key(key)}"']
    if dialogs:
        entry.append("dialogs = [" + ", ".join(_toml_string(d) for d in dialogs) + "]")
    if args.webhooks:
        entry.append("webhooks = true")
    print("\n".join(entry) + "\n", flush=True)  # a blank line between appended entries
    if not args.key:
        print(f"callhub hash-key: the new key (shown only this once; the file keeps only "
              f"its hash):\n\n    {key}\n", file=sys.stderr)
    steps = ["start the hub with CALLHUB_API_KEYS_FILE=keys.toml (it reads keys at start-up)",
             "clients send `Authorization: Bearer <key>` (callhub tail --api-key, or "
             "CALLHUB_API_KEY)"]
    if sys.stdout.isatty():
        steps.insert(0, "add the entry above to the keys file, keys.toml (`callhub hash-key "
                     "... >> keys.toml` appends it)")
    print("next:\n" + "".join(f"  {n}. {step}\n" for n, step in enumerate(steps, 1)),
          end="", file=sys.stderr)
    return 0


def _key_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a key, if it cannot. The hub prints names in its
    start-up messages, so they are one printable line; and the file is UTF-8."""
    if not name.strip():
        return "--name is empty: give the key a name (it appears in the hub's messages)"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        return "--name must be one printable line: no control characters"
    if any(0xD800 <= ord(c) < 0xE000 for c in name):
        return "--name is not valid UTF-8 text"
    return None


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string. Not JSON's escaping: JSON writes an astral
    character as a surrogate pair (``\\ud83d\\ude00``), which TOML refuses, and
    leaves DEL raw, which TOML forbids."""
    return '"' + "".join(
        _TOML_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
        for c in text) + '"'


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("callhub")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


if __name__ == "__main__":
    sys.exit(main())
