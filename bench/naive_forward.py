"""The naive peer of ``bench/forward.py``: webhooks as a user would first write them.

One process reads a replica's event stream (``GET /v1/calls/events``, SSE)
with httpx and POSTs each event's JSON to the receiver with httpx, signed as
``callhub forward`` signs (``callhub.signing``: Standard Webhooks, the same
headers but callhub's own), one event at a time: each POST is awaited before
the next event is read. With ``--concurrency N`` it starts a task per event
instead, at most N POSTs in flight, which gives up the order within a call
(the receiver counts what arrives out of order).

No retries, no cursor: a failed POST is counted and the event dropped, as in
the script this stands for.

Run by ``bench/forward.py`` as ``python -m bench.naive_forward EVENTS_URL
TARGET_URL`` with the signing secret in ``NAIVE_SECRET``; it prints
``connected`` once the stream answered, and on SIGTERM how many it posted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time

import httpx

from callhub.signing import secret_key, signature_header


async def forward(events_url: str, target: str, key: bytes, concurrency: int) -> None:
    posted = failed = 0
    gate = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def post(client: httpx.AsyncClient, cursor: str, data: str) -> None:
        nonlocal posted, failed
        body = data.encode()
        message = f"msg_naive_{cursor}"
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header([key], message, timestamp, body),
        }
        try:
            response = await client.post(target, content=body, headers=headers)
            if response.is_success:
                posted += 1
            else:
                failed += 1
        except httpx.HTTPError:
            failed += 1

    async def post_with_gate(client: httpx.AsyncClient, cursor: str, data: str) -> None:
        try:
            await post(client, cursor, data)
        finally:
            gate.release()

    limits = httpx.Limits(max_connections=max(concurrency, 1))
    async with httpx.AsyncClient(timeout=10, limits=limits) as client, \
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as stream_client, \
            stream_client.stream("GET", events_url,
                                 headers={"accept": "text/event-stream"}) as response:
        response.raise_for_status()
        print("connected", flush=True)
        try:
            cursor, data = "", ""
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    cursor = line[3:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif not line and data:
                    if concurrency <= 1:
                        await post(client, cursor, data)
                    else:
                        await gate.acquire()
                        task = asyncio.create_task(post_with_gate(client, cursor, data))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    data = ""
        finally:
            for task in tasks:
                task.cancel()  # stopped: what is in flight is dropped, as in the script
            print(f"posted {posted}, failed {failed}", flush=True)


async def main_async(args: argparse.Namespace, key: bytes) -> None:
    task = asyncio.create_task(forward(args.events_url, args.target, key, args.concurrency))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("events_url")
    parser.add_argument("target")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="POSTs in flight (default 1: each awaited before the next)")
    args = parser.parse_args()
    asyncio.run(main_async(args, secret_key(os.environ["NAIVE_SECRET"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
