"""Read API benchmark: is a deep page as fast as the first, and what does Get Call
cost next to a bare route?

Run as ``.venv/bin/python -m bench.read_api [--calls N] [--seconds S]`` (needs
``wrk``: ``make bench-read-api`` installs it).

With N active calls (default 100,000) committed by the real publisher into a
private redis-server, one ``callhub serve`` process is measured with wrk:

1. List Calls latency (one connection, p50/p99): page 1 against a page 90% of
   the way through the listing, reached by its page token. Keyset pagination
   should make them cost the same (target ratio deep/first <= 1.2); an offset
   would make the deep page scan everything before it.
2. Requests/s of Get Call against a bare route answering a body of the same
   size from the hub's own set-up: ``callhub serve``'s command line serving the
   real app (same middleware, router and lifespan) with Get Call's route
   swapped for the bare one (``bench/bare_app.py``), one after the other with
   the same wrk load (target ratio >= 0.6). A third row, the route alone in a
   Starlette app with no middleware, shows what the stack itself costs.
3. Transcript and summary of a 200-event call (ended; a realistic mix:
   prompts, partials, finals, transitions, hooks), p50/p99 ms and requests/s
   against Get Call in the same run: one connection (the service time) and
   ``--connections`` (the rate); Get Call of the ended call carries the
   summary. The decoding and computing alone is timed in process too: the
   figure that says whether a cache would pay.
4. List Calls of ended calls (``status=terminated``, newest first) with
   ``--ended`` ended calls (default 101,000) in the same Redis, one
   connection: page 1 against the page at depth 100,000, reached by its page
   token (target ratio deep/first <= 1.2). And what the ended-call indexes
   cost in Redis memory per ended call: MEMORY USAGE of every index key, and
   the INFO used_memory drop when they are deleted, for these calls (one
   caller) and for ``--memory-calls`` calls of distinct callers (the most keys
   an ended call can make).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
import redis

from bench.bare_app import BODY
from bench.harness import BenchError, LocalRedis, Server, free_port
from callhub import events as ev
from callhub.call_summary import SUMMARY_EVENT_TYPES, summarize
from callhub.cli.status_line import StatusLine
from callhub.connections import connect
from callhub.layout import ENTRY_DATA, ENTRY_TYPE
from callhub.settings import Settings
from callhub.transcript import build_transcript
from callhub.trusted_events import decode_trusted_event
from callhub.types import Entry
from hub.store.call_store import PagePosition, encode_page_token
from workers.commit.publisher import CallPublisher

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


async def populate(url: str, calls: int) -> None:
    """N active calls, ten starting in each second (so pages cross ties)."""
    settings = Settings(redis_url=url)
    client = connect(settings)
    publisher = CallPublisher(client, settings)
    status = StatusLine(sys.stderr)
    batch = 2000
    for first in range(0, calls, batch):
        events = [
            ev.CallStarted(
                event_id=f"evt-{n}", session_id=f"call-{n:06}",
                timestamp=T0 + timedelta(seconds=n // 10), seq=1,
                caller_id="+15551234567", called_number="+18001234567",
                dialog_name=("helpdesk", "billing")[n % 2],
            )
            for n in range(first, min(first + batch, calls))
        ]
        outcomes = await publisher.commit_many(events)
        if any(o.status != "committed" for o in outcomes):
            raise BenchError(f"a commit failed: {next(o for o in outcomes if not o.stored)}")
        status.update(f"populating: {first + len(events):,}/{calls:,} calls")
    status.clear()
    await client.aclose()


RECORD_CALL = "record-200"
ENDED_DEPTH = 100_000


async def populate_ended(url: str, calls: int, prefix: str = "callhub",
                         distinct_callers: bool = False) -> None:
    """N ended calls, four ending in each 50 ms (within the default call
    retention, so the commit script's trim keeps them all)."""
    settings = Settings(redis_url=url, prefix=prefix)
    client = connect(settings)
    publisher = CallPublisher(client, settings)
    status = StatusLine(sys.stderr)
    batch = 1000
    for first in range(0, calls, batch):
        numbers = range(first, min(first + batch, calls))
        starts: list[ev.Event] = [
            ev.CallStarted(
                event_id=f"evt-s{n}", session_id=f"ended-{n:06}", timestamp=T0, seq=1,
                caller_id=f"+1555{n:07}" if distinct_callers else "+15551234567",
                called_number="+18001234567", dialog_name=("helpdesk", "billing")[n % 2])
            for n in numbers]
        ends: list[ev.Event] = [
            ev.CallTerminated(
                event_id=f"evt-t{n}", session_id=f"ended-{n:06}",
                timestamp=T0 + timedelta(milliseconds=50 * (n // 4)), seq=2, reason="normal",
                duration_seconds=n // 80, state_transitions=0, final_state="goodbye")
            for n in numbers]
        for events in (starts, ends):
            outcomes = await publisher.commit_many(events)
            if any(o.status != "committed" for o in outcomes):
                raise BenchError(f"a commit failed: {next(o for o in outcomes if not o.stored)}")
        status.update(f"populating: {first + len(numbers):,}/{calls:,} ended calls")
    status.clear()
    await client.aclose()


def ended_token(url: str, depth: int) -> tuple[str, str]:
    """The page token of a terminated listing after its first ``depth`` calls,
    and the session id its page must start with."""
    keys = Settings().keyspace
    with redis.Redis.from_url(url) as client:
        [(member, score), (after, _)] = client.zrange(keys.ended(0), depth - 1, depth,
                                                      desc=True, withscores=True)
    token = encode_page_token(PagePosition("", int(score), member.decode(), "terminated",
                                           ended=True))
    return token, after.decode()


def index_bytes(url: str, prefix: str, calls: int) -> dict[str, float]:
    """Bytes per ended call of a prefix's ended-call indexes: the sum of MEMORY
    USAGE (every entry counted: SAMPLES 0) of its index keys, and the drop of
    INFO used_memory when they are deleted (the allocator's view)."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:{{*}}:ended*", count=10_000))
        usage = sum(client.memory_usage(key, samples=0) or 0 for key in keys)
        before = client.info("memory")["used_memory"]
        for first in range(0, len(keys), 1000):
            client.delete(*keys[first:first + 1000])
        after = client.info("memory")["used_memory"]
    return {"keys": len(keys), "usage": usage / calls, "info": (before - after) / calls}


def record_call(session_id: str = RECORD_CALL, events: int = 200) -> list[ev.Event]:
    """One ended call of ``events`` events: exchanges of a prompt, the caller's
    partials and final, a transition and a hook, as the simulator makes them."""
    made: list[ev.Event] = []
    at = T0

    def add(cls: type[ev.Event], seconds: float, **fields: object) -> None:
        nonlocal at
        at += timedelta(seconds=seconds)
        made.append(cls(event_id=f"evt-{len(made) + 1}", session_id=session_id, timestamp=at,
                        seq=len(made) + 1, **fields))

    add(ev.CallStarted, 0, caller_id="+15551234567", called_number="+18001234567",
        dialog_name="helpdesk")
    words = ["I", "would", "like", "to", "reset", "the", "password", "of", "my", "account",
             "please"]
    turn = 0
    while len(made) + 11 <= events - 1:
        turn += 1
        add(ev.TtsStarted, 0.7, utterance_id=f"utt-{turn}", text="How can I help you today?",
            voice="en-US-1", state="menu")
        add(ev.TtsCompleted, 2.1, utterance_id=f"utt-{turn}", duration_ms=2100,
            interrupted=turn % 5 == 0)
        for n in range(1, 6):
            add(ev.SpeechPartial, 0.3, transcript=" ".join(words[:n * 2]), confidence=0.7,
                language="en", duration_ms=n * 300)
        add(ev.SpeechFinal, 0.5, transcript=" ".join(words), confidence=0.93, language="en",
            duration_ms=2000, segments=[ev.Segment(w, i * 180, i * 180 + 150, 0.9)
                                        for i, w in enumerate(words)])
        add(ev.StateTransition, 0.05, from_state="menu", to_state="menu",
            trigger_event="speech_final", dialog_name="helpdesk")
        add(ev.ActionExecuted, 0.01, action="hook", state="menu", parameters={"hook": "crm"})
        add(ev.HookResult, 0.2, hook_name="crm", state="menu", status_code=200,
            duration_ms=200, variables={"intent": "password_reset"})
    while len(made) < events - 1:
        add(ev.DtmfReceived, 0.5, digit="1", duration_ms=120)
    add(ev.CallTerminated, 1, reason="normal", duration_seconds=int((at - T0).total_seconds()),
        state_transitions=turn, final_state="goodbye")
    return made


async def commit_record_call(url: str) -> None:
    settings = Settings(redis_url=url)
    client = connect(settings)
    outcomes = await CallPublisher(client, settings).commit_many(record_call())
    await client.aclose()
    if any(o.status != "committed" for o in outcomes):
        raise BenchError("the 200-event call did not commit")


def compute_cost_us(url: str, repeats: int = 300) -> dict[str, float]:
    """The parts of a summary, in process: reading the call's stream (redis-py's
    XRANGE), decoding its events as the hub does (``callhub.trusted_events``) and as a
    validating reader would (``callhub.events``), and computing."""
    client = redis.Redis.from_url(url)
    key = Settings().keyspace.call_events(RECORD_CALL)
    entries: list[Entry] = client.xrange(key)  # type: ignore[assignment]
    wanted = {t.encode() for t in SUMMARY_EVENT_TYPES}

    def decoded() -> list[ev.Event]:
        return [decode_trusted_event(f[ENTRY_DATA]) for _, f in entries
                if f[ENTRY_TYPE] in wanted]

    def validated() -> list[ev.Event]:
        return [ev.decode_event(f[ENTRY_DATA]) for _, f in entries if f[ENTRY_TYPE] in wanted]

    events = decoded()
    costs = {}
    for name, work in (("xrange", lambda: client.xrange(key, count=1000)), ("decode", decoded),
                       ("validated", validated), ("summary", lambda: summarize(events)),
                       ("transcript", lambda: build_transcript(events))):
        started = time.perf_counter()
        for _ in range(repeats):
            work()
        costs[name] = (time.perf_counter() - started) / repeats * 1e6
    client.close()
    return costs


def deep_token(url: str, fraction: float) -> str:
    settings = Settings(redis_url=url)
    keys = settings.keyspace
    with redis.Redis.from_url(url) as client:
        size = client.zcard(keys.active(0))
        index = int(size * fraction)
        [(member, score)] = client.zrange(keys.active(0), index, index, withscores=True)
    return encode_page_token(PagePosition("", int(score), member.decode()))


def wrk(url: str, *, seconds: float, connections: int, threads: int = 1) -> dict[str, float]:
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         url],
        capture_output=True, text=True, timeout=seconds + 30, check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed: {done.stderr or done.stdout}")
    out = done.stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for label in ("50", "99"):
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if match is None:
            raise BenchError(f"wrk printed no {label}% latency:\n{out}")
        result[f"p{label}_ms"] = float(match.group(1)) * _UNITS[match.group(2)]
    if "Non-2xx" in out:
        raise BenchError(f"wrk saw errors:\n{out}")
    return result


def bare_server(name: str, which: str, redis_url: str) -> Server:
    """A ``bench/bare_app.py`` process: ``callhub serve``'s command line, other app."""
    port = free_port()
    return Server(name, [sys.executable, "-m", "bench.bare_app", which, "serve", "--port",
                         str(port), "--redis-url", redis_url, "--no-access-log"], port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections, rate runs")
    parser.add_argument("--ended", type=int, default=ENDED_DEPTH + 1000,
                        help=f"ended calls listed (the deep page is at {ENDED_DEPTH:,}, or 90%%)")
    parser.add_argument("--memory-calls", type=int, default=20_000,
                        help="ended calls of distinct callers, for the memory figure")
    args = parser.parse_args(argv)
    depth = ENDED_DEPTH if args.ended > ENDED_DEPTH + 50 else max(1, int(args.ended * 0.9))
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            print(f"read_api: {tool} is not installed (make bench-read-api installs it)",
                  file=sys.stderr)
            return 2
    servers: list[Server] = []
    # Its own empty directory: a redis-server loads any dump.rdb in its working
    # directory at start, and the calls in one would be counted too.
    scratch = tempfile.TemporaryDirectory(prefix="callhub-bench-redis-")
    local = LocalRedis(shutil.which("redis-server") or "redis-server", ["--dir", scratch.name])
    try:
        local.start()
        asyncio.run(populate(local.url, args.calls))
        asyncio.run(commit_record_call(local.url))
        token = deep_token(local.url, 0.9)
        asyncio.run(populate_ended(local.url, args.ended))
        ended_deep, deep_first = ended_token(local.url, depth)
        asyncio.run(populate_ended(local.url, args.memory_calls, prefix="memory",
                                   distinct_callers=True))
        # Both servers without access logs: a log line costs about as much as
        # the rest of a small request, and would hide the work compared here.
        hub = Server("callhub serve", [sys.executable, "-m", "callhub.cli", "serve", "--port",
                                       str(port := free_port()), "--redis-url", local.url,
                                       "--no-access-log"], port)
        servers.append(hub)
        # The peer is callhub serve's own command line serving the real app with
        # Get Call's route answering a fixed body (bench/bare_app.py): same
        # uvicorn flags, middleware, router and lifespan. The plain app (the
        # route alone, no middleware) is a reference row, not the peer.
        bare = bare_server("bare route, hub's stack", "stack", local.url)
        servers.append(bare)
        plain = bare_server("bare route, no middleware", "plain", local.url)
        servers.append(plain)
        hub.wait_ready("/healthz")
        bare.wait_ready("/healthz")
        plain.wait_ready("/v1/calls/x")
        get_body = httpx.get(f"{hub.url}/v1/calls/call-000042").content
        if abs(len(get_body) - len(BODY)) > 16:
            raise BenchError(f"the bare body ({len(BODY)} bytes) is not a Get Call's size "
                             f"({len(get_body)} bytes)")

        first_url = f"{hub.url}/v1/calls?page_size=50"
        deep_url = f"{hub.url}/v1/calls?page_size=50&page_token={token}"
        deep_page = httpx.get(deep_url).json()
        if len(deep_page["calls"]) != 50 or deep_page["total_count"] != args.calls:
            raise BenchError(f"the deep page is not a full page: {str(deep_page)[:300]}")
        ended_first_url = f"{hub.url}/v1/calls?status=terminated&page_size=50"
        ended_deep_url = f"{ended_first_url}&page_token={ended_deep}"
        check_ended(ended_first_url, ended_deep_url, args.ended + 1, deep_first)
        record = f"{hub.url}/v1/calls/{RECORD_CALL}"
        c = args.connections
        record_runs = [
            ("Get Call, active call (c=1)", f"{hub.url}/v1/calls/call-000042", 1),
            ("summary, 200 events (c=1)", f"{record}/summary", 1),
            ("transcript JSON, 200 events (c=1)", f"{record}/transcript", 1),
            (f"Get Call, ended + summary (c={c})", record, c),
            (f"summary, 200 events (c={c})", f"{record}/summary", c),
            (f"transcript JSON (c={c})", f"{record}/transcript", c),
            (f"transcript text (c={c})", f"{record}/transcript?format=text", c),
            (f"transcript WebVTT (c={c})", f"{record}/transcript?format=webvtt", c),
            (f"events, page of 100 (c={c})", f"{record}/events?page_size=100", c),
        ]
        check_record(record)
        costs = compute_cost_us(local.url)
        runs = [
            ("List Calls, page 1 (c=1)", first_url, 1),
            ("List Calls, page at 90% (c=1)", deep_url, 1),
            (f"Get Call (c={args.connections})", f"{hub.url}/v1/calls/call-000042",
             args.connections),
            (f"bare route, hub's stack (c={args.connections})",
             f"{bare.url}/v1/calls/call-000042", args.connections),
            (f"bare route, no middleware (c={args.connections})",
             f"{plain.url}/v1/calls/call-000042", args.connections),
            *record_runs,
            ("ended calls, page 1 (c=1)", ended_first_url, 1),
            (f"ended calls, page at depth {depth:,} (c=1)", ended_deep_url, 1),
        ]
        # This VM's speed drifts: the runs alternate, round after round, and
        # each row reports its median round, so a slow spell hits every row.
        results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in runs}
        status = StatusLine(sys.stderr)
        for round_number in range(1, args.rounds + 1):
            for name, url, connections in runs:
                status.update(f"round {round_number}/{args.rounds}: {name}", force=True)
                results[name].append(wrk(url, seconds=args.seconds, connections=connections))
        rows = [(name, {key: statistics.median(r[key] for r in results[name])
                        for key in results[name][0]}) for name, _, _ in runs]
        status.clear()
        # Last: deleting the indexes to weigh them ends what could be listed.
        memory = {f"{args.ended:,} calls, one caller": index_bytes(local.url, "callhub",
                                                                   args.ended),
                  f"{args.memory_calls:,} calls, distinct callers": index_bytes(
                      local.url, "memory", args.memory_calls)}
    except BenchError as error:
        print(f"read_api: {error}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            server.stop()
        local.stop()
        scratch.cleanup()

    print(f"\nRead API, {args.calls:,} active calls, one `callhub serve` process; median of "
          f"{args.rounds} alternating wrk runs of {args.seconds:g}s per row; 2-core machine\n")
    print(f"{'what':<38} {'requests/s':>12} {'p50 ms':>9} {'p99 ms':>9}")
    for name, result in rows:
        print(f"{name:<38} {result['rps']:>12,.0f} {result['p50_ms']:>9.2f} "
              f"{result['p99_ms']:>9.2f}")
    first, deep, get, bare_result, plain_result = (r for _, r in rows[:5])
    print()
    print(f"deep page p50 / page 1 p50     {deep['p50_ms'] / first['p50_ms']:.2f}  "
          "(target <= 1.2)")
    print(f"deep page p99 / page 1 p99     {deep['p99_ms'] / first['p99_ms']:.2f}")
    print(f"Get Call / bare route req/s    {get['rps'] / bare_result['rps']:.2f}  "
          "(target >= 0.6; the peer: the hub's own set-up and stack)")
    print(f"Get Call / no-middleware app   {get['rps'] / plain_result['rps']:.2f}  "
          "(reference: what the hub's middleware stack costs is on the Get Call side)")
    print_record_section(rows[:-2], get, costs)
    print_ended_section(rows[-2:], memory)
    return 0


def check_ended(first_url: str, deep_url: str, ended: int, deep_first: str) -> None:
    """Both ended pages are full pages (of all ``ended`` calls, the 200-event
    call's too), the deep one where its token says."""
    first = httpx.get(first_url).json()
    deep = httpx.get(deep_url).json()
    for page in (first, deep):
        if len(page["calls"]) != 50 or page["total_count"] != ended:
            raise BenchError(f"an ended page is not a full page: {str(page)[:300]}")
    if deep["calls"][0]["session_id"] != deep_first:
        raise BenchError(f"the deep page starts at {deep['calls'][0]['session_id']}")


def print_ended_section(rows: list[tuple[str, dict[str, float]]],
                        memory: dict[str, dict[str, float]]) -> None:
    print("\nList Calls of ended calls (status=terminated, newest first), page_size=50\n")
    print(f"{'what':<38} {'requests/s':>12} {'p50 ms':>9} {'p99 ms':>9}")
    for name, result in rows:
        print(f"{name:<38} {result['rps']:>12,.0f} {result['p50_ms']:>9.2f} "
              f"{result['p99_ms']:>9.2f}")
    (_, first), (_, deep) = rows
    print(f"\ndeep ended page p50 / page 1 p50   {deep['p50_ms'] / first['p50_ms']:.2f}  "
          "(target <= 1.2)")
    print(f"deep ended page p99 / page 1 p99   {deep['p99_ms'] / first['p99_ms']:.2f}")
    print("\nThe ended-call indexes in Redis memory, per ended call\n")
    print(f"{'calls':<38} {'index keys':>12} {'MEMORY USAGE':>13} {'INFO delta':>11}")
    for name, figures in memory.items():
        print(f"{name:<38} {figures['keys']:>12,.0f} {figures['usage']:>11,.0f} B "
              f"{figures['info']:>9,.0f} B")


def check_record(record_url: str) -> None:
    """The 200-event call answers as it must before it is measured."""
    summary = httpx.get(f"{record_url}/summary").json()
    if not summary.get("ended") or httpx.get(record_url).json().get("summary") != summary:
        raise BenchError(f"the 200-event call's summary is not right: {str(summary)[:300]}")
    page = httpx.get(f"{record_url}/events?page_size=100").json()
    if len(page["events"]) != 100 or not page["has_more"]:
        raise BenchError("the 200-event call's first page is not 100 events")


def print_record_section(rows: list[tuple[str, dict[str, float]]], get: dict[str, float],
                         costs: dict[str, float]) -> None:
    by_name = dict(rows)
    single = by_name["Get Call, active call (c=1)"]
    print("\nTranscript and summary of a 200-event call (ended), against Get Call in the "
          "same run\n")
    print(f"{'what':<38} {'requests/s':>12} {'p50 ms':>9} {'p99 ms':>9} "
          f"{'vs Get Call':>12}")
    for name, result in rows[5:]:
        peer = single if name.endswith("(c=1)") else get
        ratio = (result["p50_ms"] / peer["p50_ms"] if name.endswith("(c=1)")
                 else result["rps"] / peer["rps"])
        label = "p50 x" if name.endswith("(c=1)") else "req/s x"
        print(f"{name:<38} {result['rps']:>12,.0f} {result['p50_ms']:>9.2f} "
              f"{result['p99_ms']:>9.2f} {label:>7}{ratio:>5.2f}")
    print("\n(vs Get Call: the rows at c=1 compare p50 with Get Call's at c=1; the others "
          "requests/s with Get Call's above, an active call at the same connections)")
    print(f"\nin process, per request: XRANGE of the 200 entries (redis-py) "
          f"{costs['xrange']:.0f} us, decode the events a summary reads "
          f"{costs['decode']:.0f} us (validating them again: {costs['validated']:.0f} us), "
          f"summary {costs['summary']:.0f} us, transcript {costs['transcript']:.0f} us")


if __name__ == "__main__":
    sys.exit(main())
