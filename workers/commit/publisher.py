"""CallPublisher: how a worker commits call events to Redis.

Each event is validated against the schema, encoded once with msgspec, and
committed by ``commit_event.lua`` in one atomic step (DESIGN I1). Many calls'
events go out in one pipeline, one round trip. A commit is idempotent by
``seq`` (I2), which is what makes retrying a whole batch after a connection
error safe: what already landed comes back as ``duplicate`` with its original
entry id, never twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Final, Literal

import msgspec
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    MovedError,
    NoScriptError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callhub.backoff import Backoff
from callhub.connections import RedisClient
from callhub.events import (
    EVENT_MAX_BYTES,
    ActionExecuted,
    CallStarted,
    CallTerminated,
    Event,
    StateTransition,
    decode_event,
    encode_event,
    variables_patch,
)
from callhub.keyspace import Keyspace
from callhub.layout import (
    CALL_CALLER_ID,
    CALL_DIALOG_NAME,
    COMMIT_NUMKEYS,
    REDIRECT_CALLER,
    CommitArg,
    CommitArguments,
    CommitKey,
    commit_arguments,
)
from callhub.settings import Settings
from workers.commit.timestamps import SkewWarnings
from workers.metrics import WorkerMetrics

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_NULL: Final = b"null"
_SESSION_ID: Final = COMMIT_NUMKEYS + CommitArg.SESSION_ID  # in a commit's argument list

COMMIT_SCRIPT: Final = resources.files("workers.commit").joinpath("commit_event.lua").read_text()
COMMIT_SHA: Final = hashlib.sha1(COMMIT_SCRIPT.encode()).hexdigest()

# Backoff between attempts at a batch, jittered so that the workers that lost
# Redis together do not all come back in the same instant.
RETRY_DELAY_S: Final = 0.05
MAX_RETRY_DELAY_S: Final = 1.0

Status = Literal["committed", "duplicate", "rejected"]
_CallKeys = tuple[str, str]  # a call's dialog and caller id: what its index keys are named by
_UNKNOWN_CALL: Final[_CallKeys] = ("", "")
_MAX_ROUNDS: Final = 4  # a redirected call_terminated goes again; a caller changes rarely


def _first_round(
    commits: list[tuple[int, Event, bytes]],
) -> tuple[list[tuple[int, Event, bytes]], list[tuple[int, Event, bytes]]]:
    """The commits to send now, and those held back: a call's events after its
    ``call_terminated`` wait until it is answered, so a termination sent again
    (redirected to its stored caller) still comes before them."""
    sent, held, ending = [], [], set()
    for commit in commits:
        session_id = commit[1].session_id
        if session_id in ending:
            held.append(commit)
        else:
            sent.append(commit)
            if isinstance(commit[1], CallTerminated):
                ending.add(session_id)
    return sent, held


def _redirected_caller(reply: object) -> str | None:
    """The stored caller of a ``{"caller", caller_id}`` answer, else None."""
    if isinstance(reply, list) and len(reply) == 2 and reply[0] == REDIRECT_CALLER:
        caller = reply[1]
        return caller.decode() if isinstance(caller, bytes) else str(caller)
    return None


class CommitOutcome(msgspec.Struct, frozen=True):
    """What became of one event.

    ``committed``: stored now, at ``entry_id``. ``duplicate``: its ``seq`` was
    already stored (by an earlier run, or an earlier attempt of this batch),
    at ``entry_id``. ``rejected``: not stored; ``code`` and ``reason`` say why.
    """

    event: Event
    status: Status
    entry_id: str | None = None
    code: str | None = None
    reason: str | None = None

    @property
    def stored(self) -> bool:
        return self.status != "rejected"


class PublisherUnavailable(Exception):
    """Redis stayed unreachable for longer than the publisher's retry window."""


class NotReplicated(Exception):
    """Fewer replicas than ``durable_replicas`` confirmed a batch within the timeout."""


class ClusterInTransition(Exception):
    """A commit's reply said "not here, not now": its slot is moving (ASK,
    TRYAGAIN, a MOVED redis-py could not follow), the cluster is down, or a
    node is loading. The batch is sent again after a pause (it is idempotent)."""


# Per-command replies of a pipeline that mean "retry", not "rejected". A
# ClusterError is the cluster client giving up on redirections ("TTL exhausted":
# ASK and TRYAGAIN for as long as a slot migrates, likelier the more keys a
# commit declares): the slot settles, so it is retried within the window too.
TRANSIENT_REPLIES: Final = (AskError, BusyLoadingError, ClusterDownError, ClusterError,
                            MovedError, TryAgainError, RedisConnectionError, RedisTimeoutError)


def timestamp_ms(moment: datetime) -> int:
    """Unix milliseconds, in exact integer arithmetic."""
    return (moment - _EPOCH) // _MS


def hash_attributes(event: Event) -> tuple[str, str]:
    """The per-type values the commit script writes into the call hash."""
    match event:
        case CallStarted():
            return event.caller_id, event.called_number
        case StateTransition():
            return event.to_state, ""
        case ActionExecuted():
            return event.action, ""
        case CallTerminated():
            return event.reason, event.final_state
    return "", ""


class CallPublisher:
    """Commits events for the calls a worker handles.

    The publisher remembers each call's dialog and caller from its
    ``call_started`` (the commit script needs the dialog's and the caller's
    index keys, and Redis Cluster wants every key named up front); a call it
    has not seen start is looked up once. Should the caller the script is
    given not be the one stored (a namesake call started since), the script
    says whose it is and the event goes again in a second round: the stored
    caller wins, and the worker sees a commit, not an error.
    """

    def __init__(
        self,
        redis: RedisClient,
        settings: Settings,
        *,
        retry_for_s: float = 10.0,
        validate: bool = True,
        max_dialog_cache: int = 100_000,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._keys: Keyspace = settings.keyspace
        self._retry_for_s = retry_for_s
        self._validate = validate
        self._calls: dict[str, _CallKeys] = {}  # session id -> (dialog, caller id)
        self._max_dialog_cache = max_dialog_cache
        self.retries = 0
        self._metrics = metrics
        self._skew = SkewWarnings(logging.getLogger("callhub.publisher"))

    async def commit(self, event: Event) -> CommitOutcome:
        """Commit one event (see ``commit_many``)."""
        return (await self.commit_many([event]))[0]

    async def commit_many(self, events: Sequence[Event]) -> list[CommitOutcome]:
        """Commit events in order, in one round trip; one outcome per event.

        Events of one call must be given in ``seq`` order; events of different
        calls may interleave freely. Raises ``PublisherUnavailable`` only when
        Redis stays unreachable for the retry window; then nothing is known of
        the batch, and committing it again is safe.
        """
        outcomes: list[CommitOutcome | None] = [None] * len(events)
        commits: list[tuple[int, Event, bytes]] = []
        for index, event in enumerate(events):
            data = encode_event(event)
            problem = self._problem(data)
            if problem:
                outcomes[index] = CommitOutcome(event, "rejected", code="invalid", reason=problem)
            else:
                commits.append((index, event, data))
        calls = await self._calls_for([event for _, event, _ in commits])
        for _ in range(_MAX_ROUNDS):
            if not commits:
                break
            sent, held = _first_round(commits)
            replies = await self._with_retries(
                [self._arguments(event, data, calls) for _, event, data in sent]
            )
            redirected = []
            for commit, reply in zip(sent, replies, strict=True):
                caller = _redirected_caller(reply)
                if caller is None:
                    outcomes[commit[0]] = self._outcome(commit[1], reply)
                else:  # the stored call's caller wins: its indexes, next round
                    session_id = commit[1].session_id
                    dialog = (self._calls.pop(session_id, None)
                              or calls.get(session_id, _UNKNOWN_CALL))[0]
                    calls[session_id] = (dialog, caller)
                    redirected.append(commit)
            commits = redirected + held
        for index, event, _ in commits:  # the stored caller kept changing: give up
            outcomes[index] = CommitOutcome(event, "rejected", code="caller_changed",
                                            reason="the call's caller changed while it ended")
        done = [outcome for outcome in outcomes if outcome is not None]
        for outcome in done:
            if isinstance(outcome.event, CallStarted) and outcome.status == "committed":
                self._skew.check(outcome.event, timestamp_ms(outcome.event.timestamp),
                                 outcome.entry_id)
        if self._metrics is not None:
            for outcome in done:
                self._metrics.committed(outcome.event, outcome.status, outcome.code)
        return done

    def _problem(self, data: bytes) -> str | None:
        if len(data) > EVENT_MAX_BYTES:
            return f"event is {len(data)} bytes, more than the {EVENT_MAX_BYTES} allowed"
        if self._validate:
            try:
                decode_event(data)
            except msgspec.ValidationError as error:
                return str(error)
        return None

    async def _calls_for(self, events: Sequence[Event]) -> dict[str, _CallKeys]:
        """The dialog and caller of every call in the batch that the commit
        script needs (a call's indexes are named by them).

        Known from the cache (calls this publisher saw start), from a
        ``call_started`` in the batch, or looked up in one round trip for a
        call that ends here unseen (started by another process).
        """
        calls: dict[str, _CallKeys] = {}
        for event in events:
            if isinstance(event, CallStarted):
                calls.setdefault(event.session_id, (event.dialog_name, event.caller_id))
        unknown = sorted(
            {
                event.session_id
                for event in events
                if isinstance(event, CallTerminated)
                and event.session_id not in calls
                and event.session_id not in self._calls
            }
        )
        if unknown:
            pipe = self._redis.pipeline(transaction=False)
            for session_id in unknown:
                pipe.hmget(self._keys.call(session_id), CALL_DIALOG_NAME, CALL_CALLER_ID)
            for session_id, (dialog, caller) in zip(unknown, await pipe.execute(), strict=True):
                if dialog is not None:
                    calls[session_id] = (dialog.decode(), (caller or b"").decode())
        return calls

    def _remember(self, session_id: str, call: _CallKeys) -> None:
        if len(self._calls) >= self._max_dialog_cache:
            del self._calls[next(iter(self._calls))]
        self._calls[session_id] = call

    def _arguments(self, event: Event, data: bytes, calls: dict[str, _CallKeys]) -> CommitArguments:
        if isinstance(event, CallStarted):
            dialog, caller = event.dialog_name, event.caller_id
        else:  # what was committed wins over a start retried in this batch
            dialog, caller = (self._calls.get(event.session_id)
                              or calls.get(event.session_id, _UNKNOWN_CALL))
        settings = self._settings
        a, b = hash_attributes(event)
        # Positional, in the signature's order: keywords cost a quarter of a
        # microsecond per event here (test_script_layout checks each position).
        args = commit_arguments(
            self._keys.commit_keys(event.session_id, dialog, caller),
            type(event).__struct_config__.tag,  # type: ignore[arg-type]
            event.session_id,
            event.seq,
            data,
            dialog,
            timestamp_ms(event.timestamp),
            settings.log_retention_ms,
            settings.call_retention_ms,
            settings.lease_ms,
            a,
            b,
            caller,
        )
        for name, value in variables_patch(event).items():
            args.append(name)
            args.append(_NULL if value is None else msgspec.json.encode(value))
        return args

    async def _with_retries(self, argument_lists: list[CommitArguments]) -> list[object]:
        if not argument_lists:
            return []
        deadline = time.monotonic() + self._retry_for_s
        backoff = Backoff(RETRY_DELAY_S, MAX_RETRY_DELAY_S)
        while True:
            try:
                return await self._send(argument_lists)
            except (RedisConnectionError, RedisTimeoutError, OSError, NotReplicated,
                    ClusterInTransition) as error:
                delay = backoff.next_delay()
                if time.monotonic() + delay > deadline:
                    raise PublisherUnavailable(f"Redis is unreachable: {error}") from error
                self.retries += 1
                if self._metrics is not None:
                    self._metrics.retries.inc()
                await asyncio.sleep(delay)

    async def _send(self, argument_lists: list[CommitArguments]) -> list[object]:
        if isinstance(self._redis, RedisCluster):
            await self._redis.initialize()  # the slot map; a no-op once it is known
        for _ in range(2):
            pipe = self._redis.pipeline(transaction=False)
            targets = self._targets(argument_lists)
            for args, target in zip(argument_lists, targets, strict=True):
                # execute_command, not evalsha: redis-py refuses evalsha in a
                # cluster pipeline, but sends a raw EVALSHA where it is told.
                pipe.execute_command("EVALSHA", COMMIT_SHA, COMMIT_NUMKEYS, *args, **target)
            if self._settings.durable_replicas:
                self._wait_for_replicas(pipe, argument_lists, targets)
            replies = await pipe.execute(raise_on_error=False)
            commits, waits = replies[:len(argument_lists)], replies[len(argument_lists):]
            transient = next((r for r in commits if isinstance(r, TRANSIENT_REPLIES)), None)
            if transient is not None:
                raise ClusterInTransition(f"{type(transient).__name__}: {transient}")
            if not any(isinstance(reply, NoScriptError) for reply in commits):
                self._check_replicated(waits)
                return list(commits)
            # The script cache was flushed (restart, failover): load it, resend
            # the whole batch. What did commit comes back as a duplicate.
            await self._redis.script_load(COMMIT_SCRIPT)
        raise NoScriptError("the commit script could not be loaded")

    def _targets(self, argument_lists: list[CommitArguments]) -> list[dict[str, Any]]:
        """Where each commit goes: on a cluster, the master of its shard's slot.

        Looked up once per shard and batch. Left to itself, the cluster
        pipeline hashes all six keys of every EVALSHA to check that they share
        a slot (they do, by the shard's hash tag): a quarter of a cluster
        commit's CPU. A MOVED reply is still followed: redis-py resends the
        command routed by its keys.
        """
        cluster = self._redis
        if not isinstance(cluster, RedisCluster):
            return [{}] * len(argument_lists)
        nodes: dict[str | bytes | int, dict[str, Any]] = {}
        targets = []
        log = CommitKey.LOG  # in the shard's slot like every key
        for args in argument_lists:
            key = args[log]
            target = nodes.get(key)
            if target is None:
                target = nodes[key] = {"target_nodes": cluster.get_node_from_key(str(key))}
            targets.append(target)
        return targets

    def _wait_for_replicas(self, pipe: Any, argument_lists: list[CommitArguments],
                           targets: list[dict[str, Any]]) -> None:
        """End each master's part of the pipeline with a write, then WAIT.

        WAIT counts the replicas that have every write this connection made, so
        it must travel on the same connection as the commits: in one pipeline on
        one node, and per node on a cluster (the cluster pipeline sends each
        node's commands on one connection). The marker write makes it cover
        retries too: a batch whose commits all come back ``duplicate`` writes
        nothing itself, yet must not be acknowledged until replicas have the
        earlier attempt's writes, which precede the marker.
        """
        settings = self._settings
        # node name ("" on one node) -> (a shard it holds, where its commits went)
        marks: dict[str, tuple[int, dict[str, Any]]] = {}
        for args, target in zip(argument_lists, targets, strict=True):
            node = target.get("target_nodes")
            name = node.name if node is not None else ""
            if name not in marks:
                marks[name] = (self._keys.shard_of(str(args[_SESSION_ID])), target)
        for shard, target in marks.values():
            pipe.execute_command("INCR", self._keys.durable_mark(shard))
            pipe.execute_command("WAIT", settings.durable_replicas,
                                 settings.durable_timeout_ms, **target)

    def _check_replicated(self, waits: list[object]) -> None:
        want = self._settings.durable_replicas
        for reply in waits[1::2]:  # (INCR, WAIT) pairs
            if isinstance(reply, Exception) or not isinstance(reply, int) or reply < want:
                raise NotReplicated(
                    f"{reply!r} of the {want} replica(s) required confirmed the batch")

    def _outcome(self, event: Event, reply: object) -> CommitOutcome:
        if isinstance(reply, Exception):
            return CommitOutcome(event, "rejected", code="redis_error", reason=str(reply))
        assert isinstance(reply, list)
        status, *rest = (part.decode() if isinstance(part, bytes) else part for part in reply)
        if status == "rejected":
            if rest[0] == "dialog_mismatch":
                self._calls.pop(event.session_id, None)
            return CommitOutcome(event, "rejected", code=rest[0], reason=rest[1])
        if isinstance(event, CallTerminated):
            self._calls.pop(event.session_id, None)
        elif isinstance(event, CallStarted) and status == "committed":
            self._remember(event.session_id, (event.dialog_name, event.caller_id))
        return CommitOutcome(
            event, "duplicate" if status == "duplicate" else "committed", entry_id=rest[0]
        )
