"""``callhub export``: a hub's calls as JSON Lines, for a log pipeline or a warehouse.

One JSON object per call per line: the Get Call object with its summary, and
its transcript with ``--with-transcript``. It streams page by page through the
REST API (``callhub.client``), so it works through the load balancer, with
keys and their scopes (a dialog-scoped key exports only its dialogs' calls),
and holds one page in memory, never the whole export.

``--output FILE`` is written to a temporary file beside it and renamed at the
end: a loader watching for FILE never picks up half an export. A progress
line goes to stderr. Exit status: 0 done, 1 the hub could not be reached or
stayed unavailable, 2 a bad option or an answer no retry changes (a refused
key, a bad filter).

Like ``callhub tail`` it is an HTTP client: no Redis options, and its own two
variables ``CALLHUB_URL`` and ``CALLHUB_API_KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO

import msgspec

from callhub.cli.arguments import whole_number
from callhub.cli.status_line import StatusLine

if TYPE_CHECKING:
    from callhub.client import CallhubClient

HELP = "write a hub's calls as JSON Lines (one Get Call object per line)"
DESCRIPTION = (
    "Export calls through the REST API: one JSON object per call per line (the Get Call "
    "object with its summary, and its transcript with --with-transcript), to stdout or "
    "--output, page by page, with a progress line on stderr. Without --status the hub "
    "lists active calls; --status terminated exports ended ones (newest first). Exit "
    "status: 1 if the hub cannot be reached, 2 for a bad option or a refused request."
)
REDIS_OPTIONS = False
DEFAULT_URL = "http://127.0.0.1:8080"
STATUSES = ("active", "terminated", "all")
CONCURRENCY = 8  # summary (and transcript) requests in flight per page


def iso_time(text: str) -> str:
    """An ISO 8601 time (``2026-12-02T09:00:00Z``), passed to the hub as given."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-12-02T09:00:00Z)") from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"the hub's base URL (env CALLHUB_URL; {DEFAULT_URL})")
    parser.add_argument("--api-key", help="API key (env CALLHUB_API_KEY); sent as a Bearer token")
    parser.add_argument("--status", choices=STATUSES,
                        help="active, terminated (ended calls, newest first) or all "
                        "(default: the hub's, active)")
    parser.add_argument("--ended-after", type=iso_time, metavar="TIME",
                        help="only calls that ended at or after this ISO 8601 time")
    parser.add_argument("--ended-before", type=iso_time, metavar="TIME",
                        help="only calls that ended before this ISO 8601 time")
    parser.add_argument("--dialog", default="", help="only this dialog's calls")
    parser.add_argument("--caller-id", default="", help="only calls from this caller id")
    parser.add_argument("--with-transcript", action="store_true",
                        help="add each call's transcript (GET /v1/calls/{id}/transcript)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write here (atomically, at the end) instead of stdout")
    parser.add_argument("--page-size", type=whole_number(1, 1000), default=200, metavar="N",
                        help="calls per List Calls page (default 200)")
    parser.add_argument("--tls-ca", default="", metavar="PEM",
                        help="CA bundle that signs the hub's certificate (https)")
    parser.add_argument("--tls-cert", default="", metavar="PEM",
                        help="client certificate for a hub that requires one (mTLS)")
    parser.add_argument("--tls-key", default="", metavar="PEM",
                        help="the client certificate's key, if not in --tls-cert")


def run(args: argparse.Namespace) -> int:
    from callhub.client import (
        CallhubError,
        ClientConfigError,
        HubError,
        HubUnavailable,
        HubUnreachable,
    )

    try:
        return asyncio.run(_export(args))
    except KeyboardInterrupt:
        return 130
    except ClientConfigError as error:
        return _fail(f"error: {error.message}", 2)
    except (HubUnreachable, HubUnavailable) as error:
        return _fail(str(error.message if isinstance(error, HubUnreachable) else
                         f"the hub stayed unavailable ({error})"), 1)
    except HubError as error:
        return _fail(_refusal(error, args), 2)
    except CallhubError as error:
        return _fail(error.message, 2)
    except OSError as error:
        return _fail(f"cannot write {args.output}: {error.strerror or error}", 2)


def _fail(message: str, status: int) -> int:
    print(f"callhub export: {message}", file=sys.stderr)
    return status


def _refusal(error: object, args: argparse.Namespace) -> str:
    from callhub.client import BadRequest, Forbidden, Unauthorized

    if isinstance(error, Unauthorized | Forbidden):
        if not _api_key(args):
            return (f"the hub needs an API key ({error.status}: {error.message}); give "
                    "--api-key or set CALLHUB_API_KEY")
        return f"the API key was refused ({error.status}: {error.message})"
    if isinstance(error, BadRequest):
        option = f" {_OPTIONS.get(error.param, error.param)}" if error.param else ""
        return f"the hub refused{option}: {error.message}"
    return f"the hub answered {error}"


# The hub names its query parameters; the user typed these options.
_OPTIONS = {"dialog_name": "--dialog", "page_size": "--page-size", "status": "--status",
            "ended_after": "--ended-after", "ended_before": "--ended-before",
            "caller_id": "--caller-id"}


def _api_key(args: argparse.Namespace) -> str:
    key = args.api_key if args.api_key is not None else os.environ.get("CALLHUB_API_KEY", "")
    return str(key).strip()


async def _export(args: argparse.Namespace) -> int:
    from callhub.client import CallhubClient

    url = args.url or os.environ.get("CALLHUB_URL") or DEFAULT_URL
    async with CallhubClient(url, api_key=_api_key(args), tls_ca=args.tls_ca,
                             tls_cert=args.tls_cert, tls_key=args.tls_key) as hub:
        status = StatusLine(sys.stderr)
        if args.output is None:
            count = await _write(hub, args, sys.stdout.buffer, status)
        else:
            count = await _write_file(hub, args, status)
        status.clear()
    where = f" to {args.output}" if args.output else ""
    print(f"callhub export: {count} call{'s' if count != 1 else ''}{where}", file=sys.stderr)
    return 0


async def _write_file(hub: CallhubClient, args: argparse.Namespace,
                      status: StatusLine) -> int:
    target = os.path.abspath(args.output)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.",
                                         dir=os.path.dirname(target))
    try:
        with os.fdopen(handle, "wb") as out:
            count = await _write(hub, args, out, status)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return count


async def _write(hub: CallhubClient, args: argparse.Namespace, out: BinaryIO,
                 status: StatusLine) -> int:
    encoder = msgspec.json.Encoder()
    count = 0
    async for page in hub.export_pages(
            with_transcript=args.with_transcript, concurrency=CONCURRENCY,
            dialog_name=args.dialog, status=args.status or "", ended_after=args.ended_after,
            ended_before=args.ended_before, caller_id=args.caller_id,
            page_size=args.page_size):
        out.write(b"".join(encoder.encode(call) + b"\n" for call in page.calls))
        count += len(page.calls)
        status.update(f"callhub export: {count:,} of {max(page.total_count, count):,} calls")
    out.flush()
    return count
