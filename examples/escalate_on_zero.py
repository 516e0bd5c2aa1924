"""A caller presses 0 in dialog ``helpdesk``: POST the call to a workflow URL.

    python examples/escalate_on_zero.py --workflow-url http://127.0.0.1:9000/escalate

Runs against ``make demo`` (http://127.0.0.1:8080) as it is; ``--url`` and
``--api-key`` (or CALLHUB_URL, CALLHUB_API_KEY) point it at another hub. With
``--cursor FILE`` a restart goes on after the last call it escalated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

import httpx

from callhub.client import CallhubClient, FileCursorStore
from callhub.events import DtmfReceived


async def escalate(url: str, api_key: str, workflow_url: str, dialog: str,
                   cursor: str | None) -> None:
    store = FileCursorStore(cursor) if cursor else None
    async with CallhubClient(url, api_key=api_key) as hub, httpx.AsyncClient() as workflow:
        stream = hub.events(event_types=["dtmf_received"], dialog_name=dialog,
                            cursor_store=store)
        async for event in stream:
            match event:
                case DtmfReceived(session_id=session_id, digit="0"):
                    call = await hub.get_call(session_id)
                    answer = await workflow.post(workflow_url, json={
                        "session_id": session_id, "caller_id": call.caller_id,
                        "dialog_name": call.dialog_name, "state": call.current_state,
                        "pressed_at": event.timestamp.isoformat()})
                    answer.raise_for_status()  # not acked: a restart posts it again
                    print(f"escalated {session_id} ({call.caller_id})", flush=True)
            await stream.ack()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("CALLHUB_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--api-key", default=os.environ.get("CALLHUB_API_KEY", ""))
    parser.add_argument("--workflow-url", required=True, help="where to POST each escalation")
    parser.add_argument("--dialog", default="helpdesk")
    parser.add_argument("--cursor", help="file that keeps the stream position across restarts")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(escalate(args.url, args.api_key, args.workflow_url, args.dialog, args.cursor))


if __name__ == "__main__":
    main()
