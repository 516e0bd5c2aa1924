"""Every ``speech_final`` of a dialog appended to a JSON Lines file, resuming exactly.

    python examples/transcripts_to_jsonl.py --dialog helpdesk --output helpdesk.jsonl

The stream position is kept in ``--cursor`` (default: the output file's name
with ``.cursor``), saved after each line is on disk: killed at any moment and
started again, it goes on after the last line it checkpointed (at worst the
one line written but not yet checkpointed comes again: at-least-once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

import msgspec

from callhub.client import CallhubClient, FileCursorStore
from callhub.events import SpeechFinal


class Line(msgspec.Struct):
    session_id: str
    seq: int
    timestamp: str
    transcript: str
    confidence: float
    language: str


async def record(url: str, api_key: str, dialog: str, output: str, cursor: str) -> None:
    encoder = msgspec.json.Encoder()
    async with CallhubClient(url, api_key=api_key) as hub:
        stream = hub.events(event_types=["speech_final"], dialog_name=dialog,
                            cursor_store=FileCursorStore(cursor))
        with open(output, "ab") as out:
            async for event in stream:
                if isinstance(event, SpeechFinal):
                    out.write(encoder.encode(Line(
                        event.session_id, event.seq, event.timestamp.isoformat(),
                        event.transcript, event.confidence, event.language)) + b"\n")
                    out.flush()
                    os.fsync(out.fileno())
                await stream.ack()  # the line is on disk: checkpoint after it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("CALLHUB_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--api-key", default=os.environ.get("CALLHUB_API_KEY", ""))
    parser.add_argument("--dialog", default="helpdesk")
    parser.add_argument("--output", default="transcripts.jsonl")
    parser.add_argument("--cursor", help="position file (default: OUTPUT.cursor)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(record(args.url, args.api_key, args.dialog, args.output,
                           args.cursor or args.output + ".cursor"))


if __name__ == "__main__":
    main()
