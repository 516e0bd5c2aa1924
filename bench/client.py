"""bench/client.py: what typed decoding costs a ``callhub.client`` consumer.

One client process reads the event stream of a ``callhub serve`` and counts
events, two ways in the same run:

- **raw**: ``httpx`` streaming plus the SSE parser (``callhub.client.sse_parser``),
  no decoding: the least any Python consumer of the stream does;
- **typed**: ``CallhubClient.events()``: each event decoded and validated into
  its msgspec Struct, with the stream's bookkeeping (cursor, history seam);
- **typed, validate=False**: the same without the Structs' Python-level checks
  (which the hub made at commit; msgspec still checks types, ranges, patterns).

Two loads: **catch-up** (the client resumes from a cursor 100,000 events back,
so the hub sends them as fast as it can) and **live** (a publisher process
commits 1,000 events/s for 10 s while one client of each kind follows; each
must keep up: its CPU share below a core, and the last event arriving
promptly). Each consumer is its own process, its CPU read from /proc. The
target: typed costs at most 1.5× the raw read (CPU per event).

    python -m bench.client [--events 100000] [--rate 1000] [--seconds 10] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from bench.harness import BenchError, LocalRedis, Server, free_port
from callhub import events as ev
from callhub.client import CallhubClient
from callhub.client.sse_parser import SseEvent, SseParser
from callhub.connections import connect_client
from callhub.settings import Settings
from workers.commit.publisher import CallPublisher

MARKER: Final = "bench-marker"
END: Final = "bench-end"
MODES: Final = ("raw", "typed", "typed, validate=False")
CALL_EVENTS: Final = 100  # events per simulated call


def call_events(session_id: str, start_seq: int, count: int, now: datetime) -> list[ev.Event]:
    """A plausible mix: speech (with word timings), partials, keys, transitions."""
    made: list[ev.Event] = []
    for seq in range(start_seq, start_seq + count):
        base: dict[str, Any] = {"event_id": f"{session_id}-{seq}", "session_id": session_id,
                                "timestamp": now, "seq": seq}
        if seq == 1:
            made.append(ev.CallStarted(**base, caller_id="+15551234567",
                                       called_number="+18001234567", dialog_name="helpdesk"))
        elif seq % 4 == 0:
            words = ["I", "need", "a", "password", "reset"]
            made.append(ev.SpeechFinal(**base, transcript=" ".join(words), confidence=0.94,
                                       language="en", duration_ms=2100, segments=[
                                           ev.Segment(w, i * 200, i * 200 + 180, 0.95)
                                           for i, w in enumerate(words)]))
        elif seq % 4 == 1:
            made.append(ev.SpeechPartial(**base, transcript="I need a", confidence=0.6,
                                         language="en", duration_ms=900))
        elif seq % 4 == 2:
            made.append(ev.StateTransition(**base, from_state="greeting", to_state="menu",
                                           trigger_event="speech_final",
                                           dialog_name="helpdesk"))
        else:
            made.append(ev.DtmfReceived(**base, digit="5", duration_ms=120))
    return made


async def populate(redis_url: str, events: int) -> None:
    settings = Settings(redis_url=redis_url)
    client = connect_client(settings)
    publisher = CallPublisher(client, settings)
    now = datetime.now(UTC)
    await publisher.commit_many(call_events(MARKER, 1, 1, now))
    calls = events // CALL_EVENTS
    for first in range(0, calls, 20):
        batch = [e for n in range(first, min(first + 20, calls))
                 for e in call_events(f"call-{n:06}", 1, CALL_EVENTS, now)]
        outcomes = await publisher.commit_many(batch)
        if not all(o.stored for o in outcomes):
            raise BenchError("a commit failed while populating")
        print(f"\rpopulating: {(first + 20) * CALL_EVENTS:,}/{events:,} events", end="",
              file=sys.stderr)
    print(file=sys.stderr)
    await client.aclose()


async def publish_live(redis_url: str, rate: int, seconds: float) -> None:
    """``rate`` events/s for ``seconds``, in batches every 50 ms, then the end marker."""
    settings = Settings(redis_url=redis_url)
    client = connect_client(settings)
    publisher = CallPublisher(client, settings)
    per_tick = max(1, rate // 20)  # a batch every 50 ms
    started = time.monotonic()
    sent = 0
    call = 0
    seq = 1
    while time.monotonic() - started < seconds:
        now = datetime.now(UTC)
        batch: list[ev.Event] = []
        while len(batch) < per_tick:
            take = min(per_tick - len(batch), CALL_EVENTS - seq + 1)
            batch += call_events(f"live-{call:05}", seq, take, now)
            seq += take
            if seq > CALL_EVENTS:
                call, seq = call + 1, 1
        await publisher.commit_many(batch)
        sent += len(batch)
        await asyncio.sleep(max(0.0, started + (sent / rate) - time.monotonic()))
    await publisher.commit_many(call_events(END, 1, 1, datetime.now(UTC)))
    print(json.dumps({"sent": sent + 1, "ended_at": time.time()}))
    await client.aclose()


async def consume(url: str, mode: str, cursor: str, count: int) -> dict[str, float]:
    """Read until ``count`` events (or the end marker); wall and CPU seconds."""
    started_wall, started_cpu = time.monotonic(), time.process_time()
    seen = 0
    end_marker = f'"session_id":"{END}"'.encode()
    if mode == "raw":
        headers = {"Last-Event-ID": cursor} if cursor else {}
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http, \
                http.stream("GET", f"{url}/v1/calls/events", headers=headers) as response:
            parser = SseParser(cursor)
            async for chunk in response.aiter_bytes():
                for item in parser.feed(chunk):
                    if isinstance(item, SseEvent):
                        seen += 1
                        if seen >= count or end_marker in item.data:
                            return _result(seen, started_wall, started_cpu)
    else:
        async with CallhubClient(url) as hub:
            async for typed in hub.events(last_event_id=cursor, validate=mode == "typed"):
                if isinstance(typed, ev.Event):
                    seen += 1
                    if seen >= count or typed.session_id == END:
                        return _result(seen, started_wall, started_cpu)
    raise BenchError(f"the stream ended after {seen} events")


def _result(seen: int, wall: float, cpu: float) -> dict[str, float]:
    return {"events": seen, "wall_s": time.monotonic() - wall,
            "cpu_s": time.process_time() - cpu, "done_at": time.time()}


def consumer(url: str, mode: str, cursor: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.client", "consume", "--url", url,
                             "--mode", mode, "--cursor", cursor, "--count", str(count)],
                            stdout=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    out, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise BenchError(f"a consumer failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


def wait_for_subscribers(url: str, count: int, within_s: float = 20.0) -> None:
    """Until the hub's /metrics counts ``count`` open streams."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
            if line.startswith("callhub_stream_subscribers ") and \
                    float(line.split()[-1]) >= count:
                return
        time.sleep(0.05)  # poll interval, bounded by the deadline
    raise BenchError(f"the live consumers did not connect within {within_s:g}s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role")
    run_consumer = sub.add_parser("consume")
    run_consumer.add_argument("--url", required=True)
    run_consumer.add_argument("--mode", choices=MODES, required=True)
    run_consumer.add_argument("--cursor", default="")
    run_consumer.add_argument("--count", type=int, required=True)
    run_publisher = sub.add_parser("publish")
    run_publisher.add_argument("--redis-url", required=True)
    run_publisher.add_argument("--rate", type=int, required=True)
    run_publisher.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    if args.role == "consume":
        print(json.dumps(asyncio.run(consume(args.url, args.mode, args.cursor, args.count))))
        return 0
    if args.role == "publish":
        asyncio.run(publish_live(args.redis_url, args.rate, args.seconds))
        return 0
    return bench(args)


def bench(args: argparse.Namespace) -> int:
    local = LocalRedis(shutil.which("redis-server") or "redis-server")
    hub: Server | None = None
    try:
        local.start()
        asyncio.run(populate(local.url, args.events))
        port = free_port()
        hub = Server("callhub serve", [sys.executable, "-m", "callhub.cli", "serve", "--port",
                                       str(port), "--redis-url", local.url, "--no-access-log"],
                     port)
        hub.wait_ready("/healthz")
        cursor = httpx.get(f"{hub.url}/v1/calls/{MARKER}", timeout=10).json()["cursor"]
        rows: list[tuple[str, str, dict[str, Any]]] = []
        catch_up: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for _ in range(args.runs):
            for mode in MODES:  # alternating: a slow moment hits each
                catch_up[mode].append(finished(consumer(hub.url, mode, cursor, args.events)))
        for mode, results in catch_up.items():
            rows.append(("catch-up", mode, {
                "events": results[0]["events"],
                "wall_s": statistics.median(r["wall_s"] for r in results),
                "cpu_s": statistics.median(r["cpu_s"] for r in results)}))
        live = {mode: consumer(hub.url, mode, "", 10**9) for mode in MODES}
        wait_for_subscribers(hub.url, len(MODES))
        publisher = subprocess.run(
            [sys.executable, "-m", "bench.client", "publish", "--redis-url", local.url,
             "--rate", str(args.rate), "--seconds", str(args.seconds)],
            capture_output=True, text=True, check=True, timeout=args.seconds + 120)
        published = json.loads(publisher.stdout)
        for mode, process in live.items():
            result = finished(process, timeout=60)
            result["lag_ms"] = (result["done_at"] - published["ended_at"]) * 1000
            result["window_s"] = args.seconds  # the CPU share is of the publishing window
            rows.append((f"live {args.rate:,}/s", mode, result))
    finally:
        if hub is not None:
            hub.stop()
        local.stop()
    print_table(rows, args)
    return 0


def print_table(rows: list[tuple[str, str, dict[str, Any]]], args: argparse.Namespace) -> None:
    print(f"\ncallhub.client: typed events vs raw httpx + SSE parser, one client process "
          f"(catch-up: median of {args.runs} alternating runs)\n")
    print("| load | client | events | wall s | events/s | client CPU s | CPU µs/event "
          "| CPU share | typed/raw (CPU/event) | last event after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    raw_cost: dict[str, float] = {}
    for load, mode, result in rows:
        per_event = result["cpu_s"] / result["events"] * 1e6
        if mode == "raw":
            raw_cost[load] = per_event
        ratio = f"× {per_event / raw_cost[load]:.2f}"
        lag = "-"
        if "lag_ms" in result:  # from the last commit's reply (it may come first: < 1 ms)
            lag = f"{result['lag_ms']:.0f} ms" if result["lag_ms"] >= 1 else "< 1 ms"
        window = result.get("window_s", result["wall_s"])
        print(f"| {load} | {mode} | {result['events']:,} | {result['wall_s']:.2f} | "
              f"{result['events'] / window:,.0f} | {result['cpu_s']:.2f} | "
              f"{per_event:.1f} | {result['cpu_s'] / window:.0%} | {ratio} | {lag} |")


if __name__ == "__main__":
    sys.exit(main())
