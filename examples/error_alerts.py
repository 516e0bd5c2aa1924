"""A call that ended in ``error``, or any ``error`` event: an alert with the call's transcript.

    python examples/error_alerts.py [--webhook-url http://127.0.0.1:9000/alerts]

Each alert is a line on stderr and, with ``--webhook-url``, a POST of JSON
(``kind``, ``session_id``, ``message``, ``transcript``: the call's turns as
text) in the manner of a webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

import httpx

from callhub.client import CallhubClient, NotFound
from callhub.events import CallTerminated, Error
from callhub.transcript import transcript_text


async def alert(url: str, api_key: str, webhook_url: str) -> None:
    async with CallhubClient(url, api_key=api_key) as hub, httpx.AsyncClient() as webhook:
        async for event in hub.events(event_types=["call_terminated", "error"]):
            match event:
                case CallTerminated(reason="error"):
                    kind, message = "call_failed", f"ended in error in {event.final_state}"
                case Error(code=code, message=text, component=component):
                    kind, message = "error", f"{component}: {code}: {text}"
                case _:
                    continue
            try:
                transcript = transcript_text(await hub.transcript(event.session_id))
            except NotFound:  # expired, or outside the key's dialogs
                transcript = ""
            print(f"ALERT {kind} {event.session_id}: {message}", file=sys.stderr, flush=True)
            if webhook_url:
                answer = await webhook.post(webhook_url, json={
                    "kind": kind, "session_id": event.session_id, "message": message,
                    "transcript": transcript})
                answer.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("CALLHUB_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--api-key", default=os.environ.get("CALLHUB_API_KEY", ""))
    parser.add_argument("--webhook-url", default="", help="also POST each alert here")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(alert(args.url, args.api_key, args.webhook_url))


if __name__ == "__main__":
    main()
