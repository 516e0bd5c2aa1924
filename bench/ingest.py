"""Ingest benchmark: how close does the worker's publisher get to Redis itself?

Run as ``.venv/bin/python -m bench.ingest [--redis-url URL] [--events N] [--batch B]``
(or ``make bench-ingest``).

What is measured, and why: a worker's ingest rate is bounded by how fast
``CallPublisher.commit_many`` turns event Structs into commits. That is the
publisher's own work (encode each event once, validate it by decoding it
again, build the commit script's KEYS/ARGV, pipeline the EVALSHAs, parse the
replies into outcomes) plus Redis running ``commit_event.lua`` once per event.
The ceiling is Redis running the same script as fast as a C client can feed
it. The issue's target is a ratio publisher / redis-benchmark of at least 0.4.

Three phases, each on an empty database:

A. publisher, realistic mix: one ``CallPublisher`` (redis.asyncio with the
   hiredis parser, built like a worker builds it) commits the events of ~100
   concurrent, interleaved calls: call_started, speech_partials growing word
   by word, speech_final with word segments, dtmf_received, state
   transitions, action_executed (sometimes with a variables patch),
   hook_result, tts_started, tts_completed and call_terminated, seq 1, 2, 3 ...
   per call. The Structs are built before the clock starts (building them is
   the worker's job); encode, validate and commit are timed, because that is
   what ``commit_many`` does. Batches are awaited one after another, and the
   round trip of each batch is recorded for p50/p99.
B. publisher, call_started only: the same publisher committing call_started
   events of distinct new calls: the same work as phase C, for a fair ratio.
C. redis-benchmark, same script: ``EVALSHA <COMMIT_SHA>`` with the KEYS and
   ARGV the publisher would send for such a call_started, every request a new
   call (see ``redis_benchmark_command`` for how the session id is made random).

With ``--cluster`` (a private 3-master Redis Cluster on loopback) or
``--cluster-url URL`` (a scratch cluster, named by one of its nodes), phases A
and B run again on the cluster with ``CALLHUB_SHARDS=6``, and their rates are
printed as ratios to the single node's: on one machine the masters share its
cores, so this is the cost of cluster mode, not a scaling figure
(``make bench-cluster`` adds the durability option, with 6 shards on both).

If no ``--redis-url`` is given, a private ``redis-server`` is started on a free
127.0.0.1 port and stopped at the end. A given ``--redis-url`` must name a
scratch database: it is flushed between phases (the script refuses to touch a
non-empty one unless ``--flush-existing`` is passed).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Final
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.utils import HIREDIS_AVAILABLE

from bench.harness import BenchError, LocalRedis, LocalRedisCluster, percentile
from callhub import events as ev
from callhub.cli.status_line import StatusLine
from callhub.connections import RedisClient, connect, connect_client, describe
from callhub.layout import CALL_DIALOG_NAME, CALL_LAST_ID, COMMIT_NUMKEYS, commit_arguments
from callhub.settings import Settings
from workers.commit.publisher import (
    COMMIT_SCRIPT,
    COMMIT_SHA,
    CallPublisher,
    CommitOutcome,
    hash_attributes,
    timestamp_ms,
)

DEFAULT_EVENTS: Final = 100_000
DEFAULT_BATCH: Final = 256
DEFAULT_PHASE_SECONDS: Final = 15.0
CONCURRENT_CALLS: Final = 100
TARGET_RATIO: Final = 0.4
TARGET_CLUSTER_RATIO: Final = 0.7  # a 3-master cluster / one node, same machine
CLUSTER_SHARDS: Final = 6

BENCH_CLIENTS: Final = 50
BENCH_PIPELINE: Final = 16
# redis-benchmark 7.0 reads -r with atoi() and draws with random(), whose
# values are below 2**31: ``-r 1000000000000`` overflows the int and makes
# every __rand_int__ 000000000000 (one call, all but one request duplicates).
# 2**31 - 1 is the largest keyspace that works.
BENCH_KEYSPACE: Final = 2**31 - 1
RAND: Final = "__rand_int__"
# A valid session id of the same length as RAND, replaced by RAND in phase C.
TEMPLATE_SID: Final = "SIDxTEMPLATE"
assert len(TEMPLATE_SID) == len(RAND)

DIALOGS: Final = ("helpdesk", "billing", "sales", "outage-line")
STATES: Final = ("greeting", "identify", "triage", "resolve", "confirm", "goodbye")
VOICES: Final = ("en-US-neural-a", "en-US-neural-b")
PROMPTS: Final = (
    "Welcome to support. How can I help you today?",
    "Please say or enter your account number.",
    "Thanks. One moment while I look that up.",
    "Is there anything else I can help you with?",
)
UTTERANCES: Final = (
    "I need a password reset",
    "my internet has been down since this morning",
    "I want to check the balance on my account",
    "can you tell me why my bill went up this month",
    "I would like to cancel my subscription please",
    "the router keeps blinking red",
    "yes that is correct",
    "I want to speak to an agent",
)
DIGITS: Final[tuple[ev.Digit, ...]] = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "#")


# ---------------------------------------------------------------------------
# Events (built before any clock starts)


def _started(sid: str, seq: int, at: datetime, rng: random.Random) -> ev.CallStarted:
    headers = {"X-Call-ID": f"{rng.getrandbits(64):016x}@sbc.example.net"}
    if rng.random() < 0.5:
        headers["User-Agent"] = "FreeSWITCH-mod_sofia/1.10.9"
    return ev.CallStarted(
        event_id=f"{sid}-{seq}", session_id=sid, timestamp=at, seq=seq,
        caller_id=f"+1555{rng.randrange(10**7):07d}",
        called_number=f"+1800{rng.randrange(10**7):07d}",
        dialog_name=rng.choice(DIALOGS), sip_headers=headers,
    )


def build_call(sid: str, t0: datetime, rng: random.Random) -> Iterator[ev.Event]:
    """One realistic call, in seq order, lazily (so calls can interleave)."""
    seq = 0
    at = t0

    def step(ms: int) -> tuple[int, datetime]:
        nonlocal seq, at
        seq += 1
        at += timedelta(milliseconds=ms)
        return seq, at

    started = _started(sid, *step(0), rng)
    dialog = started.dialog_name
    yield started
    state, transitions = STATES[0], 0
    turns = rng.choice((1, 1, 2))
    for turn in range(turns):
        words = rng.choice(UTTERANCES).split()
        for count in range(1, len(words)):
            n, t = step(rng.randrange(150, 400))
            yield ev.SpeechPartial(
                event_id=f"{sid}-{n}", session_id=sid, timestamp=t, seq=n,
                transcript=" ".join(words[:count]), confidence=round(rng.uniform(0.5, 0.9), 2),
                language="en-US", duration_ms=count * 250,
            )
        segments, start_ms = [], 0
        for word in words:
            end_ms = start_ms + 80 + 40 * len(word)
            segments.append(ev.Segment(
                text=word, start_ms=start_ms, end_ms=end_ms,
                confidence=round(rng.uniform(0.85, 0.99), 2),
            ))
            start_ms = end_ms + 20
        n, t = step(300)
        yield ev.SpeechFinal(
            event_id=f"{sid}-{n}", session_id=sid, timestamp=t, seq=n,
            transcript=" ".join(words), confidence=round(rng.uniform(0.85, 0.99), 2),
            language="en-US", duration_ms=start_ms, segments=segments,
        )
        n, t = step(rng.randrange(500, 3000))
        yield ev.DtmfReceived(
            event_id=f"{sid}-{n}", session_id=sid, timestamp=t, seq=n,
            digit=rng.choice(DIGITS), duration_ms=rng.randrange(60, 200),
        )
        for _ in range(rng.choice((1, 2))):
            new_state = STATES[min(transitions + 1, len(STATES) - 2)]
            n, t = step(50)
            yield ev.StateTransition(
                event_id=f"{sid}-{n}", session_id=sid, timestamp=t, seq=n,
                from_state=state, to_state=new_state, trigger_event="speech_final",
                dialog_name=dialog,
            )
            state, transitions = new_state, transitions + 1
        variables: dict[str, ev.Scalar] = {}
        if rng.random() < 0.4:
            variables = {"intent": words[-1], "turn": turn + 1}
            if rng.random() < 0.25:
                variables["pending_transfer"] = None
        n, t = step(20)
        yield ev.ActionExecuted(
            event_id=f"{sid}-{n}", session_id=sid, timestamp=t, seq=n,
            action="set_variable" if variables else "play", state=state,
            parameters={"prompt": f"{state}-prompt"}, variables=variables,
        )
        n, t = step(rng.randrange(40, 400))
        yield ev.HookResult(
            event_id=f"{sid}-{n}", session_id=sid, timestamp=t, seq=n,
            hook_name="crm_lookup", state=state, status_code=200,
            duration_ms=rng.randrange(40, 400),
            variables={"account_id": f"AC{rng.randrange(10**8):08d}", "verified": True},
        )
        utterance = f"{sid}-utt-{turn}"
        n, t = step(30)
        yield ev.TtsStarted(
            event_id=f"{sid}-{n}", session_id=sid, timestamp=t, seq=n,
            utterance_id=utterance, text=rng.choice(PROMPTS), voice=rng.choice(VOICES),
            state=state,
        )
        n, t = step(rng.randrange(1500, 4000))
        yield ev.TtsCompleted(
            event_id=f"{sid}-{n}", session_id=sid, timestamp=t, seq=n,
            utterance_id=utterance, duration_ms=rng.randrange(1500, 4000),
            interrupted=rng.random() < 0.1,
        )
    n, t = step(500)
    yield ev.CallTerminated(
        event_id=f"{sid}-{n}", session_id=sid, timestamp=t, seq=n,
        reason=rng.choice(("normal", "normal", "caller_hangup")),
        duration_seconds=int((t - t0).total_seconds()), state_transitions=transitions,
        final_state=state,
    )


def realistic_mix(total: int, concurrency: int, seed: int = 1) -> list[ev.Event]:
    """``total`` events of ``concurrency`` calls at a time, interleaved at random.

    Each call's events stay in seq order; when a call ends a new one takes its
    place. Calls still open when ``total`` is reached are simply cut off.
    """
    rng = random.Random(seed)
    t0 = datetime.now(UTC).replace(microsecond=0)
    started = 0

    def new_call() -> Iterator[ev.Event]:
        nonlocal started
        started += 1
        return build_call(f"call-a-{started:07d}", t0 + timedelta(seconds=started), rng)

    slots = [new_call() for _ in range(concurrency)]
    out: list[ev.Event] = []
    while len(out) < total:
        index = rng.randrange(len(slots))
        event = next(slots[index], None)
        if event is None:
            slots[index] = new_call()
            continue
        out.append(event)
    return out


def call_starts(total: int, seed: int = 2) -> list[ev.Event]:
    """``total`` call_started events of distinct new calls.

    Session ids are 12 digits, the length redis-benchmark's ``__rand_int__``
    has in phase C, so keys and payloads have the same sizes in B and C.
    """
    rng = random.Random(seed)
    t0 = datetime.now(UTC).replace(microsecond=0)
    return [
        _started(f"{i:012d}", 1, t0 + timedelta(milliseconds=i), rng) for i in range(1, total + 1)
    ]


# ---------------------------------------------------------------------------
# Phases


@dataclass
class PhaseResult:
    name: str
    events: int
    seconds: float
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)
    note: str = ""
    # Redis's own time per EVALSHA (INFO commandstats): the rest of a
    # publisher phase's time per event is the client's.
    script_usec: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def raise_if_cancelled() -> None:
    """Re-raise a cancellation (Ctrl-C) that an await swallowed.

    redis-py sends commands with ``asyncio.wait_for`` when a socket timeout is
    set, and on Python 3.11 ``wait_for`` drops a cancellation that lands just
    as the send completes (python/cpython#86296, fixed in 3.12). Here that
    lost about a third of Ctrl-Cs during commit_many.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def fresh_database(client: aioredis.Redis) -> None:
    """An empty database and zeroed command statistics."""
    raise_if_cancelled()
    await client.flushdb()
    await client.config_resetstat()


async def script_usec_per_call(client: RedisClient) -> float:
    """Microseconds Redis spent per EVALSHA since the last ``fresh_database``
    (on a cluster: over all its masters)."""
    if isinstance(client, RedisCluster):
        per_node = await client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        stats = [node.get("cmdstat_evalsha", {}) for node in per_node.values()]
    else:
        stats = [(await client.info("commandstats")).get("cmdstat_evalsha", {})]
    calls = sum(int(one.get("calls", 0)) for one in stats)
    usec = sum(int(one.get("usec", 0)) for one in stats)
    return usec / calls if calls else 0.0


def tally(result: PhaseResult, chunk: Sequence[ev.Event], outcomes: list[CommitOutcome]) -> None:
    """Count every outcome of a batch that is not ``committed``; keep a few examples."""
    if len(outcomes) != len(chunk):
        result.failures["missing_outcome"] += len(chunk) - len(outcomes)
    for outcome in outcomes:
        if outcome.status != "committed":
            key = outcome.status if outcome.code is None else f"{outcome.status}:{outcome.code}"
            result.failures[key] += 1
            if len(result.examples) < 3:
                result.examples.append(
                    f"{outcome.event.session_id} seq {outcome.event.seq}: {key} {outcome.reason}"
                )


async def run_publisher_phase(
    name: str,
    publisher: CallPublisher,
    events: Sequence[ev.Event],
    *,
    batch: int,
    time_limit_s: float,
    status: StatusLine,
) -> PhaseResult:
    """Commit ``events`` in batches, one await after the other, until done or out of time."""
    result = PhaseResult(name, 0, 0.0)
    clock = time.perf_counter
    started = clock()
    deadline = started + time_limit_s
    while result.events < len(events):
        chunk = events[result.events:result.events + batch]
        before = clock()
        outcomes = await publisher.commit_many(chunk)
        after = clock()
        raise_if_cancelled()
        result.batch_seconds.append(after - before)
        result.events += len(chunk)
        # Looking at the outcomes is part of a worker's job too (and cheap).
        tally(result, chunk, outcomes)
        status.update(
            f"{name}: {result.events:,}/{len(events):,} events, "
            f"{result.events / (after - started):,.0f} events/s"
        )
        if after >= deadline:
            break
    result.seconds = clock() - started
    status.clear()
    if result.events < len(events):
        result.note = f"stopped by the {time_limit_s:g} s limit"
    return result


def benchmark_arguments(settings: Settings, template: ev.CallStarted) -> list[str]:
    """KEYS and ARGV of a commit of ``template``, its session id replaced by ``__rand_int__``.

    Built from the same public pieces the publisher uses, following the
    KEYS/ARGV layout of ``commit_event.lua``; ``check_same_commit`` proves
    they store what the publisher's commit stores.
    """
    data = ev.encode_event(template)
    a, b = hash_attributes(template)
    values = commit_arguments(
        settings.keyspace.commit_keys(template.session_id, template.dialog_name,
                                      template.caller_id),
        event_type="call_started",
        session_id=template.session_id,
        seq=template.seq,
        data=data,
        dialog_name=template.dialog_name,
        event_ms=timestamp_ms(template.timestamp),
        log_retention_ms=settings.log_retention_ms,
        call_retention_ms=settings.call_retention_ms,
        lease_ms=settings.lease_ms,
        attribute_a=a,
        attribute_b=b,
        caller_id=template.caller_id,
    )
    return [
        (value.decode() if isinstance(value, bytes) else str(value)).replace(TEMPLATE_SID, RAND)
        for value in values
    ]


async def stored_call(client: aioredis.Redis, settings: Settings, sid: str) -> object:
    """What a call_started of ``sid`` left in Redis, minus entry ids and lease times."""
    keys = settings.keyspace
    shard = keys.shard_of(sid)
    call = await client.hgetall(keys.call(sid))
    call.pop(CALL_LAST_ID, None)
    dialog = call.get(CALL_DIALOG_NAME, b"")
    dialog = dialog.decode() if isinstance(dialog, bytes) else dialog
    return (
        call,
        [entry[1] for entry in await client.xrange(keys.call_events(sid)) or []],
        [entry[1] for entry in await client.xrange(keys.log(shard)) or []],
        await client.zrange(keys.active(shard), 0, -1, withscores=True),
        await client.zrange(keys.active_dialog(shard, dialog), 0, -1, withscores=True),
        await client.zrange(keys.leases(shard), 0, -1),
    )


async def check_same_commit(
    client: aioredis.Redis, settings: Settings, script_args: Sequence[str], at: datetime
) -> None:
    """Phase C's EVALSHA must store exactly what the publisher stores.

    One call_started is committed by ``CallPublisher`` and, on an empty
    database, by EVALSHA with phase C's arguments (the random id filled in);
    both must say committed and leave the same hash, streams and indexes.
    This keeps phase C honest if the publisher's arguments change.
    """
    sid = "424242424242"
    assert len(sid) == len(RAND)
    await fresh_database(client)
    outcome = await CallPublisher(client, settings).commit(
        _started(sid, 1, at, random.Random(2))
    )
    by_publisher = await stored_call(client, settings, sid)
    await fresh_database(client)
    reply = await client.evalsha(
        COMMIT_SHA, COMMIT_NUMKEYS, *(value.replace(RAND, sid) for value in script_args)
    )
    by_benchmark = await stored_call(client, settings, sid)
    if outcome.status != "committed" or reply[0] != b"committed":
        raise BenchError(f"check commit failed: publisher {outcome}, EVALSHA {reply}")
    if by_publisher != by_benchmark:
        raise BenchError(
            "phase C's arguments store something else than the publisher does:\n"
            f"publisher: {by_publisher}\nEVALSHA:   {by_benchmark}"
        )


def redis_benchmark_command(
    executable: str, url: str, requests: int, script_args: Sequence[str]
) -> list[str]:
    """The redis-benchmark command line for phase C.

    The placeholder question: redis-benchmark 7.0.15 only knows ``__rand_int__``
    (``__rand_1st__`` ... ``__rand_9th__`` came later and are sent literally
    here; tried), and every occurrence gets its own random 12-digit number. So
    the call hash key (KEYS[2]), the call's stream key (KEYS[3]) and the
    session id (ARGV[2], also inside the event JSON) of one request carry
    *different* random numbers. The choice: accept that, because the script
    never derives a key from the session id nor compares them: for every
    request it sees a call hash that does not exist yet, so it takes the full
    new-call path (HMGET, XADD to the shard log with MINID trimming, DEL,
    XADD to a new call stream, HSET of a new hash, two ZADDs to the active
    indexes, ZADD to the leases) exactly as for a real call_started. The cost
    per request is the publisher's; only the stored data is not cross-linked
    (the hash's session_id names another id). Keys stay in one shard (hash
    tag {0}), as the publisher's do with one shard. Random ids below 2**31 may
    collide a few times in 100,000 draws; such a request takes the cheap
    duplicate path, and the XLEN check after the run counts them.
    """
    parts = urlsplit(url)
    command = [executable]
    if parts.scheme == "unix":
        command += ["-s", parts.path]
    else:
        command += ["-h", parts.hostname or "localhost", "-p", str(parts.port or 6379)]
        if parts.scheme == "rediss":
            command.append("--tls")
    if parts.username:
        command += ["--user", unquote(parts.username)]
    if parts.password:
        command += ["-a", unquote(parts.password)]
    db = parts.path.strip("/") if parts.scheme != "unix" else ""
    if db.isdigit():
        command += ["--dbnum", db]
    command += [
        "-n", str(requests), "-c", str(BENCH_CLIENTS), "-P", str(BENCH_PIPELINE),
        "-r", str(BENCH_KEYSPACE), "--csv",
        "EVALSHA", COMMIT_SHA, str(COMMIT_NUMKEYS), *script_args,
    ]
    return command


def parse_benchmark_csv(output: str) -> dict[str, float]:
    """The numbers of redis-benchmark's ``--csv`` result row, by column name.

    The first column repeats the command unescaped (the event JSON has quotes
    and commas), so the numbers are taken from the right.
    """
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) < 2:
        raise BenchError(f"cannot read redis-benchmark's CSV output: {output!r}")
    header = next(csv.reader([lines[0]]))
    values = lines[-1].rsplit(",", len(header) - 1)[1:]
    try:
        return {
            name: float(value.strip('"')) for name, value in zip(header[1:], values, strict=True)
        }
    except ValueError:
        raise BenchError(f"cannot read redis-benchmark's CSV output: {output!r}") from None


async def run_redis_benchmark(
    client: aioredis.Redis,
    command: list[str],
    requests: int,
    log_key: str,
    *,
    timeout_s: float,
    status: StatusLine,
) -> PhaseResult:
    """Run redis-benchmark, show the shard log growing, and check what it committed."""
    name = "C redis-benchmark"
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    output = asyncio.ensure_future(process.communicate())
    try:
        deadline = started + timeout_s
        while not output.done():
            await asyncio.wait({output}, timeout=0.2)
            if output.done():
                break
            if time.perf_counter() > deadline:
                raise BenchError(f"redis-benchmark did not finish within {timeout_s:g} s")
            done = await client.xlen(log_key)
            raise_if_cancelled()
            elapsed = time.perf_counter() - started
            status.update(f"{name}: {done:,}/{requests:,} commits, {done / elapsed:,.0f} events/s")
    finally:
        if not output.done():  # an error, a timeout or Ctrl-C: stop it (this PID only)
            if process.returncode is None:
                process.kill()
            await asyncio.wait({output})
        status.clear()
    stdout, stderr = output.result()
    if process.returncode != 0:
        raise BenchError(
            f"redis-benchmark exited with {process.returncode}: {stderr.decode()[-2000:]}"
        )
    row = parse_benchmark_csv(stdout.decode())
    rps = row["rps"]
    committed = await client.xlen(log_key)
    active = await client.zcard(log_key.removesuffix(":log") + ":active")

    result = PhaseResult(name, requests, requests / rps if rps else float("inf"))
    if committed < requests:
        result.failures["duplicate (random id drawn twice)"] = requests - committed
    elif committed > requests:
        result.failures["more commits than requests"] = committed - requests
    result.note = (
        f"verified: XLEN {log_key} = {committed:,}, ZCARD active = {active:,} "
        f"after {requests:,} requests; p99 {row['p99_latency_ms']:.2f} ms "
        f"per request (-c {BENCH_CLIENTS} -P {BENCH_PIPELINE})"
    )
    return result


# ---------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis-url", help="a scratch Redis (default: start a private one)")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS,
                        help=f"events per phase (default {DEFAULT_EVENTS:,})")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                        help=f"events per commit_many (default {DEFAULT_BATCH})")
    parser.add_argument("--phase-seconds", type=float, default=DEFAULT_PHASE_SECONDS,
                        help="time limit of each publisher phase "
                             f"(default {DEFAULT_PHASE_SECONDS:g})")
    parser.add_argument("--flush-existing", action="store_true",
                        help="flush --redis-url's database even if it holds keys")
    parser.add_argument("--cluster", action="store_true",
                        help="also run phases A and B on a private 3-master Redis Cluster")
    parser.add_argument("--cluster-url", metavar="URL",
                        help="also run phases A and B on this scratch Redis Cluster "
                        "(flushed; refused if it holds keys unless --flush-existing)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.batch < 1 or args.phase_seconds <= 0:
        parser.error("--events, --batch and --phase-seconds must be positive")
    return args


async def benchmark(args: argparse.Namespace, url: str, redis_benchmark: str,
                    cluster_url: str | None = None) -> int:
    # SIGTERM cancels like Ctrl-C does, so every finally (the redis-benchmark
    # child, the client) runs inside the loop before the loop closes.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    settings = Settings(redis_url=url)
    if settings.shards != 1:
        raise BenchError("phase C assumes one shard (all keys under the {0} hash tag)")
    status = StatusLine(sys.stderr)
    keys = settings.keyspace

    status.update("building events ...", force=True)
    mix = realistic_mix(args.events, CONCURRENT_CALLS)
    starts = call_starts(args.events)
    status.clear()

    client = connect(settings)
    try:
        await client.ping()
        connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        parser_name = type(connection._parser).__name__
        await client.connection_pool.release(connection)
        if "Hiredis" not in parser_name:
            raise BenchError(f"the client does not use hiredis (its parser is {parser_name})")
        if not args.flush_existing and args.redis_url and await client.dbsize():
            raise BenchError(
                f"{describe(url)} is not empty; this benchmark flushes it between phases. "
                "Use a scratch database or pass --flush-existing."
            )
        results: list[PhaseResult] = []

        await fresh_database(client)
        publisher = CallPublisher(client, settings)
        result_a = await run_publisher_phase(
            "A publisher, realistic mix", publisher, mix,
            batch=args.batch, time_limit_s=args.phase_seconds, status=status,
        )
        result_a.script_usec = await script_usec_per_call(client)
        stored = await client.xlen(keys.log(0))
        committed_mix = mix[:result_a.events]
        mix_types = Counter(str(type(event).__struct_config__.tag) for event in committed_mix)
        calls = len({event.session_id for event in committed_mix})
        result_a.note = "; ".join(filter(None, [
            result_a.note,
            f"{calls:,} calls, ~{CONCURRENT_CALLS} concurrent; XLEN log = {stored:,}",
        ]))
        results.append(result_a)

        await fresh_database(client)
        publisher = CallPublisher(client, settings)
        result_b = await run_publisher_phase(
            "B publisher, call_started only", publisher, starts,
            batch=args.batch, time_limit_s=args.phase_seconds, status=status,
        )
        result_b.script_usec = await script_usec_per_call(client)
        stored = await client.xlen(keys.log(0))
        result_b.note = "; ".join(filter(None, [result_b.note, f"XLEN log = {stored:,}"]))
        results.append(result_b)

        sha = await client.script_load(COMMIT_SCRIPT)
        sha = sha.decode() if isinstance(sha, bytes) else str(sha)
        if sha != COMMIT_SHA:
            raise BenchError(f"SCRIPT LOAD returned {sha}, expected {COMMIT_SHA}")
        template = _started(TEMPLATE_SID, 1, starts[0].timestamp, random.Random(2))
        script_args = benchmark_arguments(settings, template)
        await check_same_commit(client, settings, script_args, starts[0].timestamp)
        await fresh_database(client)
        # As many new calls as phase B committed (the cost of a commit grows a
        # little with the data set), rounded up to whole pipelines: redis-benchmark
        # sends whole pipelines, so it then sends exactly that many requests.
        requests = -(-result_b.events // BENCH_PIPELINE) * BENCH_PIPELINE
        command = redis_benchmark_command(redis_benchmark, url, requests, script_args)
        result_c = await run_redis_benchmark(
            client, command, requests, keys.log(0),
            # C commits what B committed within --phase-seconds, and faster:
            # 1.5 times that bounds the whole run (about 55 s at the defaults).
            timeout_s=args.phase_seconds * 1.5, status=status,
        )
        result_c.script_usec = await script_usec_per_call(client)
        results.append(result_c)
        await fresh_database(client)
    finally:
        await client.aclose()

    on_cluster: list[PhaseResult] = []
    if cluster_url is not None:
        on_cluster = await cluster_phases(args, cluster_url, mix, starts, status)
    report(results, result_a, mix_types, args.batch, on_cluster)
    return 1 if any(result.failures for result in [*results[:2], *on_cluster]) else 0


async def cluster_phases(args: argparse.Namespace, url: str, mix: Sequence[ev.Event],
                         starts: Sequence[ev.Event], status: StatusLine) -> list[PhaseResult]:
    """Phases A and B again, on a Redis Cluster (6 shards over its masters)."""
    settings = Settings(redis_url=url, redis_cluster=True, shards=CLUSTER_SHARDS)
    client = connect_client(settings)
    results: list[PhaseResult] = []
    try:
        if not args.flush_existing and args.cluster_url and await client.dbsize():
            raise BenchError(f"the cluster at {describe(url)} is not empty; this benchmark "
                             "flushes it. Use a scratch cluster or pass --flush-existing.")
        for name, events in (("A on the cluster, realistic mix", mix),
                             ("B on the cluster, call_started", starts)):
            raise_if_cancelled()
            await client.flushall()
            await client.config_resetstat(target_nodes=RedisCluster.PRIMARIES)
            results.append(await run_publisher_phase(
                name, CallPublisher(client, settings), events, batch=args.batch,
                time_limit_s=args.phase_seconds, status=status))
            results[-1].script_usec = await script_usec_per_call(client)
        await client.flushall()
    finally:
        await client.aclose()
    return results


def report(
    results: list[PhaseResult], phase_a: PhaseResult, mix_types: Counter[str], batch: int,
    on_cluster: Sequence[PhaseResult] = (),
) -> None:
    print()
    print(f"{'phase':<34} {'events':>9} {'seconds':>8} {'events/s':>10}"
          f" {'us/event':>9} {'in Redis':>9}")
    print(f"{'-' * 34} {'-' * 9} {'-' * 8} {'-' * 10} {'-' * 9} {'-' * 9}")
    for result in [*results, *on_cluster]:
        per_event = 1e6 / result.rate if result.rate else 0.0
        print(f"{result.name:<34} {result.events:>9,} {result.seconds:>8.2f} {result.rate:>10,.0f}"
              f" {per_event:>9.1f} {result.script_usec:>9.1f}")
    print("(us/event: wall time per event; in Redis: the script's run time per EVALSHA,"
          " from INFO commandstats)")
    print()
    for result in [*results, *on_cluster]:
        failed = sum(result.failures.values())
        print(f"{result.name}: {failed:,} not committed"
              + (f" {dict(result.failures)}" if failed else "")
              + (f"; {result.note}" if result.note else ""))
        for example in result.examples:
            print(f"    e.g. {example}")
    print()
    mix = ", ".join(f"{name} {count:,}" for name, count in mix_types.most_common())
    print(f"phase A mix: {mix}")
    if phase_a.batch_seconds:
        p50 = percentile(phase_a.batch_seconds, 0.50) * 1000
        p99 = percentile(phase_a.batch_seconds, 0.99) * 1000
        print(f"phase A commit_many round trip ({batch} events, {len(phase_a.batch_seconds):,} "
              f"batches): p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    bench = results[-1]
    for publisher in results[:2]:
        ratio = publisher.rate / bench.rate if bench.rate else 0.0
        verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
        print(f"ratio {publisher.name} / redis-benchmark: {ratio:.2f} "
              f"({verdict} the {TARGET_RATIO} target)")
    for single, clustered in zip(results[:2], on_cluster, strict=False):
        ratio = clustered.rate / single.rate if single.rate else 0.0
        verdict = "meets" if ratio >= TARGET_CLUSTER_RATIO else "BELOW"
        print(f"ratio {clustered.name} / single node: {ratio:.2f} "
              f"({verdict} the {TARGET_CLUSTER_RATIO} target; the masters share this "
              "machine's cores)")


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside the event loop: unwind through the finally that stops redis-server."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    redis_benchmark = shutil.which("redis-benchmark")
    if redis_benchmark is None:
        print("bench/ingest.py: redis-benchmark is not on PATH", file=sys.stderr)
        return 2
    if not HIREDIS_AVAILABLE:
        print("bench/ingest.py: hiredis is not installed", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    server: LocalRedis | None = None
    cluster: LocalRedisCluster | None = None
    try:
        if args.redis_url:
            url = args.redis_url
        else:
            executable = shutil.which("redis-server")
            if executable is None:
                print("bench/ingest.py: redis-server is not on PATH", file=sys.stderr)
                return 2
            server = LocalRedis(executable)
            server.start()
            url = server.url
        cluster_url = args.cluster_url
        if args.cluster and cluster_url is None:
            cluster = LocalRedisCluster(shutil.which("redis-server") or "redis-server")
            print("starting a 3-master Redis Cluster ...", file=sys.stderr)
            cluster.start()
            cluster_url = cluster.url
        print(f"Redis: {describe(url)}; {args.events:,} events per phase, "
              f"batches of {args.batch}; {os.cpu_count()} CPUs", file=sys.stderr)
        return asyncio.run(benchmark(args, url, redis_benchmark, cluster_url))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:  # SIGTERM while the loop ran
        print("\nterminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BenchError as error:
        print(f"bench/ingest.py: {error}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
