"""A state machine drives commits, retries, duplicates and terminations against a
real redis-server and checks the log, session streams, hashes and indexes
against a simple model after every step (I1, I2)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from callhub import events as ev
from callhub.settings import Settings
from tests.support.redis_servers import async_client, sync_client
from tests.support.strategies import action, call_started, dtmf, terminated, transition
from workers.commit.publisher import CallPublisher, CommitOutcome

SESSIONS = [f"call-{n}" for n in range(6)]
DIALOGS = ["helpdesk", "billing"]
SHARDS = 2


@dataclass
class CallModel:
    dialog: str
    status: str = "active"
    seq: int = 1
    state: str = ""
    transitions: int = 0
    entries: list[tuple[int, str]] = field(default_factory=list)  # (seq, entry id)
    events: dict[int, ev.Event] = field(default_factory=dict)
    variables: dict[str, bytes] = field(default_factory=dict)


class CommitMachine(RuleBasedStateMachine):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        settings = msgspec.structs.replace(settings, shards=SHARDS)
        self.sync = sync_client(settings)
        self.sync.flushall()
        self.loop = asyncio.new_event_loop()
        self.client = async_client(settings)
        self.keys = settings.keyspace
        self.publisher = CallPublisher(self.client, settings)
        self.calls: dict[str, CallModel] = {}
        self.logs: dict[int, list[str]] = {shard: [] for shard in range(SHARDS)}

    def teardown(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
        self.sync.close()

    # -- helpers --------------------------------------------------------------

    def commit(self, *events: ev.Event) -> list[CommitOutcome]:
        return self.loop.run_until_complete(self.publisher.commit_many(list(events)))

    def record(self, event: ev.Event, outcome: CommitOutcome) -> None:
        assert outcome.status == "committed", outcome
        assert outcome.entry_id is not None
        call = self.calls[event.session_id]
        call.seq = event.seq
        call.entries.append((event.seq, outcome.entry_id))
        call.events[event.seq] = event
        self.logs[self.keys.shard_of(event.session_id)].append(outcome.entry_id)

    def active(self) -> list[str]:
        return sorted(s for s, c in self.calls.items() if c.status != "terminated")

    def next_event(self, sid: str, kind: str, seq: int) -> ev.Event:
        if kind == "transition":
            return transition(sid, seq, f"state-{seq}")
        if kind in ("hold", "resume", "transfer"):
            return action(sid, seq, kind)  # type: ignore[arg-type]
        if kind == "variables":
            return action(sid, seq, "set_variable", {"n": seq, "gone": None, "name": "Jane"})
        return dtmf(sid, seq)

    def apply(self, event: ev.Event) -> None:
        call = self.calls[event.session_id]
        if isinstance(event, ev.StateTransition):
            call.state = event.to_state
            call.transitions += 1
        elif isinstance(event, ev.ActionExecuted):
            call.status = {"hold": "on_hold", "resume": "active",
                           "transfer": "transferring"}.get(event.action, call.status)
            for name, value in event.variables.items():
                if value is None:
                    call.variables.pop(name, None)
                else:
                    call.variables[name] = msgspec.json.encode(value)
        elif isinstance(event, ev.CallTerminated):
            call.status = "terminated"

    # -- rules ----------------------------------------------------------------

    @rule(sid=st.sampled_from(SESSIONS), dialog=st.sampled_from(DIALOGS))
    def start(self, sid: str, dialog: str) -> None:
        event = call_started(sid, dialog=dialog)
        [outcome] = self.commit(event)
        if sid in self.calls:
            # seq 1 again: a retry of the start, answered with the first entry
            assert outcome.status == "duplicate"
            assert outcome.entry_id == self.calls[sid].entries[0][1]
        else:
            self.calls[sid] = CallModel(dialog)
            self.record(event, outcome)

    @precondition(lambda self: self.active())
    @rule(data=st.data(), kinds=st.lists(
        st.sampled_from(["dtmf", "transition", "hold", "resume", "transfer", "variables"]),
        min_size=1, max_size=4))
    def events(self, data: st.DataObject, kinds: list[str]) -> None:
        """A pipelined batch of events, interleaving calls."""
        batch: list[ev.Event] = []
        last_seq: dict[str, int] = {}
        for kind in kinds:
            sid = data.draw(st.sampled_from(self.active()))
            last_seq[sid] = last_seq.get(sid, self.calls[sid].seq) + 1
            batch.append(self.next_event(sid, kind, last_seq[sid]))
        for event, outcome in zip(batch, self.commit(*batch), strict=True):
            self.record(event, outcome)
            self.apply(event)

    @precondition(lambda self: self.active())
    @rule(data=st.data(), reason=st.sampled_from(["normal", "caller_hangup", "error"]))
    def terminate(self, data: st.DataObject, reason: str) -> None:
        sid = data.draw(st.sampled_from(self.active()))
        event = terminated(sid, self.calls[sid].seq + 1, reason=reason)
        [outcome] = self.commit(event)
        self.record(event, outcome)
        self.apply(event)

    @precondition(lambda self: self.calls)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        """Any committed event, sent again, comes back with its original entry id."""
        sid = data.draw(st.sampled_from(sorted(self.calls)))
        seq, entry_id = data.draw(st.sampled_from(self.calls[sid].entries))
        [outcome] = self.commit(self.calls[sid].events[seq])
        assert (outcome.status, outcome.entry_id) == ("duplicate", entry_id)

    @precondition(lambda self: any(c.status == "terminated" for c in self.calls.values()))
    @rule(data=st.data())
    def after_the_end(self, data: st.DataObject) -> None:
        ended = sorted(s for s, c in self.calls.items() if c.status == "terminated")
        sid = data.draw(st.sampled_from(ended))
        [outcome] = self.commit(dtmf(sid, self.calls[sid].seq + 1))
        assert (outcome.status, outcome.code) == ("rejected", "call_ended")

    @rule(sid=st.sampled_from(SESSIONS), seq=st.integers(1, 5))
    def unknown_call(self, sid: str, seq: int) -> None:
        if sid in self.calls:
            return
        [outcome] = self.commit(dtmf(sid, seq))
        assert (outcome.status, outcome.code) == ("rejected", "unknown_call")

    @precondition(lambda self: self.active())
    @rule(data=st.data())
    def gap_then_stale(self, data: st.DataObject) -> None:
        """A skipped seq is allowed; the skipped one arriving late is refused."""
        sid = data.draw(st.sampled_from(self.active()))
        seq = self.calls[sid].seq
        late, ahead = dtmf(sid, seq + 1), dtmf(sid, seq + 2)
        first, second = self.commit(ahead, late)
        self.record(ahead, first)
        assert (second.status, second.code) == ("rejected", "stale_seq")

    # -- invariants -----------------------------------------------------------

    @invariant()
    def redis_matches_the_model(self) -> None:
        for shard, ids in self.logs.items():
            stored = [i.decode() for i, _ in self.sync.xrange(self.keys.log(shard))]
            assert stored == ids
            active = {m.decode() for m in self.sync.zrange(self.keys.active(shard), 0, -1)}
            mine = {s for s in self.active() if self.keys.shard_of(s) == shard}
            assert active == mine
            leased = {m.decode() for m in self.sync.zrange(self.keys.leases(shard), 0, -1)}
            assert leased == mine
            for dialog in DIALOGS:
                index = self.sync.zrange(self.keys.active_dialog(shard, dialog), 0, -1)
                assert {m.decode() for m in index} == {
                    s for s in mine if self.calls[s].dialog == dialog}
        for sid, call in self.calls.items():
            stream = self.sync.xrange(self.keys.call_events(sid))
            assert [(int(f[b"seq"]), i.decode()) for i, f in stream] == call.entries
            stored = self.sync.hgetall(self.keys.call(sid))
            assert stored[b"status"].decode() == call.status
            assert int(stored[b"seq"]) == call.seq
            assert stored[b"last_id"].decode() == call.entries[-1][1]
            assert stored[b"current_state"].decode() == call.state
            assert int(stored[b"state_transitions"]) == call.transitions
            assert stored[b"dialog_name"].decode() == call.dialog
            variables = {k[4:].decode(): v for k, v in stored.items() if k.startswith(b"var:")}
            assert variables == call.variables


@pytest.mark.both_engines
def test_commits_match_the_model(settings: Settings) -> None:
    run_state_machine_as_test(
        lambda: CommitMachine(settings),
        settings=hypothesis_settings(max_examples=40, stateful_step_count=25, deadline=None),
    )
