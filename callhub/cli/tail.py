"""``callhub tail``: follow a hub's call events in a terminal, or as JSON Lines.

This module is what the CLI imports to build its parser, so it stays light:
httpx and the stream loop (``callhub/client/tail_client.py``) load only when the command
runs. The tail is an HTTP client of a hub; it needs no Redis options
(``REDIS_OPTIONS = False``), so the hub's settings are not loaded for it (a
bad ``CALLHUB_SHARDS`` does not stop it), and it reads its own two variables,
``CALLHUB_URL`` and ``CALLHUB_API_KEY``, which are the client's settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from callhub.cli.arguments import seconds, whole_number

if TYPE_CHECKING:
    from callhub.client.tail_client import TailOptions

HELP = "print a hub's call events as they happen"
DESCRIPTION = (
    "Follow the hub's event stream (GET /v1/calls/events): one line per event, or with "
    "--json the event JSON exactly as received, one per line. Reconnects with the last "
    "cursor when the connection drops, so no event is missed or repeated. Notices go to "
    "stderr. Exit status: 0 on Ctrl-C, 1 when --max-retries is exhausted, 2 when the hub "
    "refuses the request (bad key, bad filter), its certificate is not trusted or it "
    "answers plain HTTP to https://."
)
REDIS_OPTIONS = False
DEFAULT_URL = "http://127.0.0.1:8080"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"the hub's base URL (env CALLHUB_URL; {DEFAULT_URL})")
    parser.add_argument("--event-types", default="", metavar="TYPES",
                        help="comma-separated event types (default: all)")
    parser.add_argument("--session-id", default="", help="only this call's events")
    parser.add_argument("--dialog-name", default="", help="only this dialog's calls")
    parser.add_argument("--include-history", action="store_true",
                        help="first replay the stored events of the matching active calls")
    parser.add_argument("--last-event-id", default="", metavar="CURSOR",
                        help="start after this stream cursor (an id: the stream sent, "
                        "or a Get Call cursor)")
    parser.add_argument("--api-key", help="API key (env CALLHUB_API_KEY); sent as a Bearer token")
    parser.add_argument("--json", action="store_true",
                        help="print each event's JSON exactly as received, one per line")
    parser.add_argument("--max-retries", type=whole_number(0), default=None, metavar="N",
                        help="give up (exit 1) after N failed reconnection attempts in a row "
                        "(default: retry for ever)")
    parser.add_argument("--tls-ca", default="", metavar="PEM",
                        help="CA bundle that signs the hub's certificate (https)")
    parser.add_argument("--tls-cert", default="", metavar="PEM",
                        help="client certificate for a hub that requires one (mTLS)")
    parser.add_argument("--tls-key", default="", metavar="PEM",
                        help="the client certificate's key, if not in --tls-cert")
    parser.add_argument("--idle-timeout", type=seconds, default=60.0, metavar="SECONDS",
                        help="reconnect when nothing, not even a ping, arrives for this long "
                        "(default 60; 0 waits for ever)")


def run(args: argparse.Namespace) -> int:
    """Tail until Ctrl-C (0), a refusal (2) or ``--max-retries`` running out (1)."""
    try:
        from callhub.client.tail_client import Tail, UsageError

        try:
            options = tail_options(args, os.environ, colour=_colour(os.environ))
        except UsageError as error:
            print(f"callhub tail: error: {error}", file=sys.stderr)
            return 2
        tail = Tail(options, sys.stdout.buffer, sys.stderr,
                    encoding=sys.stdout.encoding or "utf-8")
        return tail.run()
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (`callhub tail --json | head`): stop quietly, and
        # keep the interpreter's final flush of stdout from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def tail_options(
    args: argparse.Namespace, environ: Mapping[str, str], *, colour: bool
) -> TailOptions:
    """The options from the flags, then the environment, then the defaults."""
    from callhub.client.tail_client import TailOptions, check_url

    return TailOptions(
        url=check_url(args.url or environ.get("CALLHUB_URL") or DEFAULT_URL),
        event_types=args.event_types,
        session_id=args.session_id,
        dialog_name=args.dialog_name,
        include_history=args.include_history,
        last_event_id=args.last_event_id.strip(),
        api_key=(args.api_key if args.api_key is not None
                 else environ.get("CALLHUB_API_KEY", "")).strip(),
        json=args.json,
        colour=colour and not args.json,
        max_retries=args.max_retries,
        idle_timeout_s=args.idle_timeout or None,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def _colour(environ: Mapping[str, str]) -> bool:
    """Colour only for a person: stdout is a terminal and NO_COLOR is unset (no-color.org)."""
    return sys.stdout.isatty() and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"

